//! What the node asks its host to do: the [`Timer`]s it asks to be woken
//! by, and the queue of [`Effect`]s (the shared `nodeplane-types` effect,
//! naming timers by [`Timer`] and delivering each update once for all
//! subscribers) it fills during a call.

use std::sync::Arc;

use nodeplane_types::transport::Transport;
use nodeplane_types::{Effect, MembershipUpdate};

use crate::ledger::Entry;
use crate::wire::{self, Message};

/// A timer the node sets and the host fires back through
/// [`crate::Node::handle_timer`]. On the WIT boundary a timer is its
/// [`Timer::id`]; a shell echoes ids back and never interprets them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// The protocol period (probe round, verdicts on the last round).
    Protocol,
    /// The direct-ack deadline of the current probe round.
    ProbeTimeout,
    /// The gossip tick (push fresh entries, deadlines, death rule).
    Gossip,
    /// Low-rate anti-entropy with dead members and seeds.
    AntiEntropy,
    /// The leaving node's second announcement.
    LeaveRepeat,
    /// The earliest deadline of an indirect probe relayed for another node
    /// (a nack is due).
    Relay,
    /// Unanswered probes ask a second set of helpers
    /// ([`crate::config::INDIRECT_RETRY_PERCENT`]).
    IndirectRetry,
}

impl Timer {
    /// Every timer, in id order.
    pub const ALL: [Timer; 7] = [
        Timer::Protocol,
        Timer::ProbeTimeout,
        Timer::Gossip,
        Timer::AntiEntropy,
        Timer::LeaveRepeat,
        Timer::Relay,
        Timer::IndirectRetry,
    ];

    /// The timer's id on the WIT boundary (1..=7, stable across versions:
    /// a hot swap hands pending timers to the new component by id).
    pub fn id(self) -> u64 {
        match self {
            Timer::Protocol => 1,
            Timer::ProbeTimeout => 2,
            Timer::Gossip => 3,
            Timer::AntiEntropy => 4,
            Timer::LeaveRepeat => 5,
            Timer::Relay => 6,
            Timer::IndirectRetry => 7,
        }
    }

    /// The timer with this id; `None` for an id this node never sets.
    pub fn from_id(id: u64) -> Option<Timer> {
        Timer::ALL.into_iter().find(|t| t.id() == id)
    }
}

/// The effects produced since the host last drained them, in order.
///
/// The `append` of an entry the ledger linked during this call is queued
/// as a placeholder (an `Effect::Append` of an empty entry, no heap) named
/// by (author, seq) in `linked`: the ledger holds that entry until the
/// drain anyway (its `recent` entries), so the queue does not hold a second
/// copy; the drain moves it out of the ledger into its place
/// ([`crate::ledger::Ledger::take_linked`]).
///
/// With a sink ([`EffectSink`], a shell's), an effect goes to the sink at
/// once while nothing is queued before it; behind a placeholder `append`
/// it is queued, and the queue goes to the sink at the node's next flush
/// point or drain. Either way the sink sees every effect in order.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// The effects, in order.
    queue: Vec<Effect<Timer, ()>>,
    /// (index in `queue`, author, seq) of each placeholder `append`.
    linked: Vec<(usize, Arc<str>, u64)>,
    /// Where effects are performed during the call, if anywhere.
    sink: Option<EffectSink>,
    /// Messages sent that travel as streams (over
    /// [`MAX_DATAGRAM_BYTES`](nodeplane_types::transport::MAX_DATAGRAM_BYTES)),
    /// ever: a sender's transport sets up only so many at once.
    streams: u64,
}

/// A shell's way to perform effects during a call rather than after it
/// ([`crate::Node::set_effect_sink`]): what the node would hold until the
/// drain (encoded messages, updates, the entries linked) is handed over
/// as it is produced, so a call's memory does not grow with its output.
pub struct EffectSink(pub Box<dyn FnMut(Effect<Timer, ()>)>);

impl std::fmt::Debug for EffectSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EffectSink")
    }
}

impl Effects {
    /// Queues one effect (or performs it at once through the sink, when
    /// nothing is queued before it).
    pub(crate) fn push(&mut self, effect: Effect<Timer, ()>) {
        match self.sink.as_mut() {
            Some(sink) if self.queue.is_empty() => (sink.0)(effect),
            _ => self.queue.push(effect),
        }
    }

    /// Installs the sink effects go to during a call.
    pub(crate) fn set_sink(&mut self, sink: EffectSink) {
        self.sink = Some(sink);
    }

    /// Whether a sink is waiting for queued effects.
    pub(crate) fn has_queued_for_sink(&self) -> bool {
        self.sink.is_some() && !self.queue.is_empty()
    }

    /// Hands `drained` (the queue as [`Effects::drain_with`] returned it)
    /// to the sink, in order; without a sink it is queued again.
    pub(crate) fn hand_to_sink(&mut self, drained: Vec<Effect<Timer, ()>>) {
        match self.sink.as_mut() {
            Some(sink) => drained.into_iter().for_each(|effect| (sink.0)(effect)),
            None => self.queue = drained,
        }
    }

    /// Queues the `append` of the entry the ledger linked at (author,
    /// seq) during this call; the drain fills it in from the ledger.
    pub(crate) fn append_linked(&mut self, author: Arc<str>, seq: u64) {
        self.linked.push((self.queue.len(), author, seq));
        self.queue.push(Effect::Append(Entry {
            author: String::new(),
            seq,
            prev: [0; 32],
            clock: 0,
            kind: String::new(),
            body: Vec::new(),
            id: [0; 32],
            signature: Vec::new(),
        }));
    }

    /// Queues an update for every subscriber.
    pub(crate) fn update(&mut self, update: MembershipUpdate) {
        self.push(Effect::Update {
            subscriber: (),
            update,
        });
    }

    /// Queues an encoded message for `to`.
    pub(crate) fn send(&mut self, to: &str, msg: &Message) {
        self.send_counted(to, msg);
    }

    /// Queues sending `msg` to `to`; returns its encoded size in bytes.
    pub(crate) fn send_counted(&mut self, to: &str, msg: &Message) -> usize {
        self.send_payload(to, wire::encode(msg))
    }

    /// Queues sending an encoded message to `to`; returns its size.
    pub(crate) fn send_payload(&mut self, to: &str, payload: Vec<u8>) -> usize {
        let bytes = payload.len();
        if !Transport::for_len(bytes).is_datagram() {
            self.streams = self.streams.saturating_add(1);
        }
        self.push(Effect::Send {
            to: to.to_string(),
            payload,
        });
        bytes
    }

    /// Messages sent so far that travel as streams.
    pub(crate) fn streams_sent(&self) -> u64 {
        self.streams
    }

    /// Queues (re)setting a timer.
    pub(crate) fn set_timer(&mut self, timer: Timer, after_ms: u64) {
        self.push(Effect::SetTimer { timer, after_ms });
    }

    /// Queues cancelling a timer.
    pub(crate) fn cancel_timer(&mut self, timer: Timer) {
        self.push(Effect::CancelTimer { timer });
    }

    /// Queues an event-log line whose detail is the JSON object of `pairs`.
    pub(crate) fn log(&mut self, kind: &str, pairs: &[(&str, serde_json::Value)]) {
        let map: serde_json::Map<String, serde_json::Value> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        self.push(Effect::Log {
            kind: kind.to_string(),
            detail: serde_json::Value::Object(map).to_string(),
        });
    }

    /// Takes every queued effect, in order; each placeholder `append`
    /// gets its entry from `linked` (one whose entry `linked` does not
    /// have is left out: each is queued right after its entry linked, and
    /// the ledger holds that entry until this drain).
    pub(crate) fn drain_with(
        &mut self,
        mut linked: impl FnMut(&str, u64) -> Option<Entry>,
    ) -> Vec<Effect<Timer, ()>> {
        let mut missing: Vec<usize> = Vec::new();
        for (i, author, seq) in std::mem::take(&mut self.linked) {
            match (linked(&author, seq), self.queue.get_mut(i)) {
                (Some(e), Some(slot)) => *slot = Effect::Append(e),
                _ => missing.push(i),
            }
        }
        let mut queue = std::mem::take(&mut self.queue);
        if !missing.is_empty() {
            let mut i = 0usize;
            queue.retain(|_| {
                let keep = !missing.contains(&i);
                i = i.saturating_add(1);
                keep
            });
        }
        queue
    }

    /// Takes every queued effect that needs no ledger (tests of parts
    /// that link nothing).
    #[cfg(test)]
    pub(crate) fn drain(&mut self) -> Vec<Effect<Timer, ()>> {
        self.drain_with(|_, _| None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_ids_are_the_wit_numbers() {
        let ids: Vec<u64> = Timer::ALL.iter().map(|t| t.id()).collect();
        assert_eq!(ids, [1, 2, 3, 4, 5, 6, 7]);
        for t in Timer::ALL {
            assert_eq!(Timer::from_id(t.id()), Some(t));
        }
        assert_eq!(Timer::from_id(0), None);
        assert_eq!(Timer::from_id(8), None);
    }
}
