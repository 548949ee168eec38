//! The event queue: events ordered by (virtual time, insertion sequence),
//! so two events at the same millisecond run in the order they were queued.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// What happens when an event comes due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A message arrives at node `to` from node `from`; `depth` is its
    /// position in a causal chain of messages (for round-trip counts).
    Deliver {
        /// Receiving node.
        to: usize,
        /// Sending node.
        from: usize,
        /// Payload.
        payload: Vec<u8>,
        /// Causal depth.
        depth: u64,
        /// For a stream, the sender's life when it sent it: the stream is
        /// cut if the sender crashed since or a fault now separates the
        /// two. `None` for a datagram.
        stream: Option<u64>,
    },
    /// A timer of node `node` fires, if it is still the one set.
    Timer {
        /// The node.
        node: usize,
        /// The node's life (restart count) when the timer was set.
        life: u64,
        /// The component's timer id.
        timer: u64,
        /// Generation of the setting, to ignore replaced timers.
        generation: u64,
    },
    /// Hostile node `hostile` sends the next message of its own schedule,
    /// if it is still the schedule of that generation.
    HostileTick {
        /// The hostile node.
        hostile: usize,
        /// Its schedule's generation (silencing it starts a new one).
        generation: u64,
    },
    /// A message from hostile node `hostile` arrives at node `to`.
    HostileDeliver {
        /// Receiving node.
        to: usize,
        /// Sending hostile node.
        hostile: usize,
        /// What kind of hostile message it is.
        attack: crate::hostile::Attack,
        /// Payload.
        payload: Vec<u8>,
    },
}

/// One queued event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Virtual time it comes due, ms.
    pub at: u64,
    /// Insertion sequence number.
    pub seq: u64,
    /// What happens.
    pub kind: EventKind,
}

impl Ord for Event {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap, we want the earliest first.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A priority queue of events by (time, sequence).
#[derive(Debug, Default)]
pub struct EventQueue {
    heap: BinaryHeap<Event>,
    next_seq: u64,
}

impl EventQueue {
    /// An empty queue.
    pub fn new() -> EventQueue {
        EventQueue::default()
    }

    /// Queues `kind` at time `at`.
    pub fn push(&mut self, at: u64, kind: EventKind) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Event { at, seq, kind });
    }

    /// Time of the earliest event.
    pub fn peek_time(&self) -> Option<u64> {
        self.heap.peek().map(|e| e.at)
    }

    /// Removes the earliest event if it is due at or before `until`.
    pub fn pop_due(&mut self, until: u64) -> Option<Event> {
        if self.peek_time()? <= until {
            self.heap.pop()
        } else {
            None
        }
    }

    /// Number of queued events.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_out_by_time_then_insertion() {
        let mut q = EventQueue::new();
        let timer = |timer| EventKind::Timer {
            node: 0,
            life: 0,
            timer,
            generation: 0,
        };
        q.push(10, timer(1));
        q.push(5, timer(2));
        q.push(10, timer(3));
        let order: Vec<u64> = std::iter::from_fn(|| q.pop_due(10))
            .map(|e| match e.kind {
                EventKind::Timer { timer, .. } => timer,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(order, vec![2, 1, 3]);
    }
}
