//! Server-sent events: an incremental parser and the background reader
//! that feeds a [`Subscription`](nodeplane_interface::Subscription).

use std::io::BufRead;

use nodeplane_interface::{MembershipUpdate, SubscriptionSender};

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `message` when absent.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// A line-at-a-time SSE parser (the subset of the HTML specification the
/// compatibility API uses: `event`, `data`, comments; `id` and `retry` are
/// ignored).
#[derive(Debug, Default)]
pub struct SseParser {
    event: Option<String>,
    data: Vec<String>,
}

impl SseParser {
    /// Feeds one line (without its line ending); returns an event when the
    /// line was the blank line that ends one.
    pub fn line(&mut self, line: &str) -> Option<SseEvent> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            let event = self.event.take();
            if self.data.is_empty() {
                return None;
            }
            let data = std::mem::take(&mut self.data).join("\n");
            return Some(SseEvent {
                event: event.unwrap_or_else(|| "message".into()),
                data,
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => self.data.push(value.to_owned()),
            _ => {}
        }
        None
    }
}

/// Why a stream stopped.
pub(crate) enum StreamEnd {
    /// The subscriber dropped its subscription.
    SubscriberGone,
    /// The connection ended or failed.
    Disconnected(String),
}

/// Reads `update` events from `reader` and forwards them until the stream
/// ends or the subscriber is gone.
pub(crate) fn forward(reader: impl BufRead, sender: &SubscriptionSender) -> StreamEnd {
    let mut parser = SseParser::default();
    for line in reader.lines() {
        let line = match line {
            Ok(line) => line,
            Err(e) => return StreamEnd::Disconnected(e.to_string()),
        };
        let Some(event) = parser.line(&line) else {
            continue;
        };
        if event.event != "update" {
            continue;
        }
        match serde_json::from_str::<MembershipUpdate>(&event.data) {
            Ok(update) => {
                if !sender.send(update) {
                    return StreamEnd::SubscriberGone;
                }
            }
            Err(e) => tracing::warn!(error = %e, "ignoring an update event that does not parse"),
        }
    }
    StreamEnd::Disconnected("end of stream".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_comments_and_multiline_data() {
        let mut p = SseParser::default();
        let mut events = Vec::new();
        for line in ": keep-alive\n\nevent: update\ndata: {\"a\":\ndata: 1}\nid: 7\n\ndata:x\r\n\n"
            .split('\n')
        {
            events.extend(p.line(line));
        }
        assert_eq!(
            events,
            vec![
                SseEvent {
                    event: "update".into(),
                    data: "{\"a\":\n1}".into()
                },
                SseEvent {
                    event: "message".into(),
                    data: "x".into()
                },
            ]
        );
    }

    #[test]
    fn forwards_update_events_in_order() {
        let update = |v: u64| {
            serde_json::json!({
                "peer": "b", "previous": null, "cause": "joined", "entry": null, "version": v,
                "current": {"id": "b", "address": "127.0.0.1:2", "state": "alive", "incarnation": 0, "metadata": [["overlay-ip", "10.0.0.2"]]}
            })
        };
        let text = format!(
            "event: update\ndata: {}\n\nevent: other\ndata: 1\n\nevent: update\ndata: {}\n\n",
            update(1),
            update(2)
        );
        let (sender, subscription) = nodeplane_interface::Subscription::channel(1, |_| {});
        assert!(matches!(
            forward(text.as_bytes(), &sender),
            StreamEnd::Disconnected(_)
        ));
        let got: Vec<u64> = subscription.drain().iter().map(|u| u.version).collect();
        assert_eq!(got, vec![1, 2]);
    }
}
