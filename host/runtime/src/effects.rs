//! What a component asks the host to do during a call.

use nodeplane_entry::Entry;
use nodeplane_interface::MembershipUpdate;

/// Largest message a component may send, in bytes; larger ones are dropped
/// with a logged reason (a UDP datagram must fit, with headroom).
pub const MAX_MESSAGE_BYTES: usize = 60_000;

/// One effect recorded during a guest call, performed after it returns.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Send a message (unreliable).
    Send {
        /// Destination control address.
        to: String,
        /// The message.
        payload: Vec<u8>,
    },
    /// Fire `driver.fire-timer(timer)` after `after_ms`.
    SetTimer {
        /// Component-chosen timer id.
        timer: u64,
        /// Delay in milliseconds.
        after_ms: u64,
    },
    /// Cancel a timer.
    CancelTimer {
        /// Component-chosen timer id.
        timer: u64,
    },
    /// Persist a ledger entry (already verified by the host).
    Append(Entry),
    /// Deliver an update to a subscriber.
    Update {
        /// Subscriber handle.
        subscriber: u64,
        /// The update.
        update: MembershipUpdate,
    },
    /// A line for the node's local event log.
    Log {
        /// Short event name.
        kind: String,
        /// JSON object with the details.
        detail: String,
    },
}
