//! The node's local event log: JSON lines in `data_dir/events.jsonl`, not
//! replicated. Each line: `{"ts_ms", "source": "component"|"agent", "kind",
//! "detail"}`, where `ts_ms` is milliseconds since the Unix epoch.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// File name of the event log inside the data directory.
pub const EVENTS_FILE: &str = "events.jsonl";

/// Who recorded an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A `log-event` from the component.
    Component,
    /// A decision of the agent itself.
    Agent,
}

/// An append-only JSON-lines event log; clones share the file.
#[derive(Clone, Debug)]
pub struct EventLog {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

/// Milliseconds since the Unix epoch.
pub fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl EventLog {
    /// Opens (creating) `data_dir/events.jsonl` for appending.
    pub fn open(data_dir: &Path) -> std::io::Result<EventLog> {
        let path = data_dir.join(EVENTS_FILE);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(EventLog {
            path,
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event. `detail` is kept as JSON when it parses, as a
    /// string otherwise. Failures to write are logged, never fatal.
    pub fn record(&self, source: Source, kind: &str, detail: &str) {
        let detail: serde_json::Value = serde_json::from_str(detail)
            .unwrap_or_else(|_| serde_json::Value::String(detail.to_string()));
        self.record_value(source, kind, detail);
    }

    /// Appends one event with a JSON detail.
    pub fn record_value(&self, source: Source, kind: &str, detail: serde_json::Value) {
        let line = serde_json::json!({
            "ts_ms": epoch_ms(),
            "source": match source { Source::Component => "component", Source::Agent => "agent" },
            "kind": kind,
            "detail": detail,
        });
        let mut text = line.to_string();
        text.push('\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = file.write_all(text.as_bytes()) {
            tracing::warn!(error = %e, path = %self.path.display(), "could not write the event log");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    #[test]
    fn writes_json_lines() {
        let dir = TempDir::new("events");
        let log = EventLog::open(dir.path()).unwrap();
        log.record(Source::Component, "suspected", r#"{"peer":"n2"}"#);
        log.record(Source::Agent, "started", "plain text");
        let text = std::fs::read_to_string(dir.path().join(EVENTS_FILE)).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["detail"]["peer"], "n2");
        assert_eq!(lines[0]["source"], "component");
        assert_eq!(lines[1]["detail"], "plain text");
        assert!(lines[1]["ts_ms"].as_u64().unwrap() > 0);
    }
}
