//! What the node asks its host to do: the [`Timer`]s it asks to be woken
//! by, and the queue of [`Effect`]s (the shared `nodeplane-types` effect,
//! naming timers by [`Timer`] and delivering each update once for all
//! subscribers) it fills during a call.

use nodeplane_types::{Effect, MembershipUpdate};

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
#[derive(Debug, Default)]
pub(crate) struct Effects(Vec<Effect<Timer, ()>>);

impl Effects {
    /// Queues one effect.
    pub(crate) fn push(&mut self, effect: Effect<Timer, ()>) {
        self.0.push(effect);
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
        self.push(Effect::Send {
            to: to.to_string(),
            payload: wire::encode(msg),
        });
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

    /// Takes every queued effect.
    pub(crate) fn drain(&mut self) -> Vec<Effect<Timer, ()>> {
        std::mem::take(&mut self.0)
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
