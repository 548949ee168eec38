//! Every check of the suite, grouped by the operation it concerns. Each
//! check's name starts with the id of the `docs/interface.md` item it
//! verifies.

mod driver;
mod heartbeat;
mod join;
mod leave;
mod members;
mod metadata;
mod preconditions;
mod recovery;
mod report;
mod signing;
mod subscribe;
mod swap;
mod updates;

use crate::ctx::{Ctx, Violation};

/// One check: a spec item id plus a short description, and its body.
pub struct Check {
    /// `"<id> <description>"`, e.g. `"join-1 join without seeds lists self alive"`.
    pub name: &'static str,
    /// The check itself; builds its own nodes through the [`Ctx`].
    pub run: fn(&Ctx) -> Result<(), Violation>,
}

/// The whole suite, in the order of `docs/interface.md`.
pub static CHECKS: &[Check] = &[
    // Driver and robustness.
    driver::INFO,
    driver::INIT_BAD_ID,
    driver::INIT_BAD_ADDRESS,
    driver::UNKNOWN_TIMER,
    driver::GARBAGE_BEFORE_JOIN,
    driver::GARBAGE_AFTER_JOIN,
    driver::EMPTY_AND_OVERSIZED,
    // Preconditions.
    preconditions::MEMBERS,
    preconditions::HEARTBEAT,
    preconditions::REPORT,
    preconditions::METADATA,
    preconditions::LEAVE,
    // join.
    join::ALONE,
    join::SORTED,
    join::BAD_SEED,
    join::AGAIN,
    join::OWN_ADDRESS,
    join::UNREACHABLE_SEEDS,
    join::SELF_UPDATE,
    // get-members.
    members::EQUALS_JOIN,
    members::READ_ONLY,
    // publish-heartbeat.
    heartbeat::COUNTS,
    heartbeat::NO_VIEW_CHANGE,
    // report-peer-state.
    report::ABOUT_SELF,
    report::LEFT,
    report::UNKNOWN_PEER,
    report::SUSPECT_ALIVE,
    report::DEAD_ALIVE,
    report::ALIVE_ALIVE,
    report::SUSPECT_SUSPECT,
    report::DEAD_SUSPECT,
    report::NO_REVIVAL,
    // Updates.
    updates::GAP_FREE,
    updates::SAME_ORDER,
    updates::REPLAY,
    updates::ENTRY_IDS,
    // Subscriptions.
    subscribe::LATE,
    subscribe::DROPPED,
    subscribe::TWICE,
    subscribe::UNKNOWN,
    subscribe::UNSUBSCRIBED,
    subscribe::ANY_PHASE,
    // leave.
    leave::SHOWS_LEFT,
    leave::JOIN_AFTER,
    leave::HEARTBEAT_AFTER,
    leave::REPORT_AFTER,
    leave::TWICE,
    leave::READS_AFTER,
    // get-peer-metadata.
    metadata::OWN,
    metadata::UNKNOWN_PEER,
    metadata::PEER,
    // Hot swap.
    swap::KEEPS_SUBSCRIBERS,
    // Crash recovery.
    recovery::RESUME,
    // Signed entries.
    signing::SIGNED_ENTRIES,
];
