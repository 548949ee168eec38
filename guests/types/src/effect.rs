//! What a control plane asks its host to do.

use nodeplane_entry::Entry;

use crate::update::MembershipUpdate;

/// Something a control plane asks its host to do, recorded during a call
/// and performed after it returns.
///
/// One definition serves both sides of the component boundary, which name
/// timers and subscribers differently; hence the two type parameters:
///
/// - `T`, the timer: the sans-IO core names its timers with its own type,
///   while the host sees the opaque `u64` ids that cross WIT
///   (`driver.fire-timer`).
/// - `S`, the recipient of an update: the core emits each update once for
///   all subscribers (`S = ()`; the guest shell delivers it to each of
///   them), while the host records one delivery per subscriber handle
///   (`S = u64`).
///
/// The defaults are the host's view: `Effect` alone is what the runtime
/// records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect<T = u64, S = u64> {
    /// Send `payload` to the address `to` (unreliable; at most
    /// [`MAX_MESSAGE_BYTES`](crate::MAX_MESSAGE_BYTES)).
    Send {
        /// Destination control-channel address.
        to: String,
        /// The encoded message.
        payload: Vec<u8>,
    },
    /// Fire `timer` after `after_ms`; replaces a pending timer of that id.
    SetTimer {
        /// The timer.
        timer: T,
        /// Delay in milliseconds.
        after_ms: u64,
    },
    /// Cancel a pending timer.
    CancelTimer {
        /// The timer.
        timer: T,
    },
    /// Persist a ledger entry (already verified and linked).
    Append(Entry),
    /// Deliver a membership update.
    Update {
        /// Who receives it (see the type's documentation).
        subscriber: S,
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
