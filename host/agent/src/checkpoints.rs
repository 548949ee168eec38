//! The latest checkpoint the component reported agreed, for `/status`,
//! `nodeplane status` and `/metrics`.
//!
//! The Control Plane Interface has no call that returns the checkpoint
//! state, so the agent follows the component's `checkpoint-agreed` events
//! (docs/design.md §13.9). The component is an external input like any
//! other: an event whose detail does not parse as one, or that goes back to
//! a lower checkpoint, is logged and ignored, and the checkpoint already
//! shown is kept.

use std::sync::Mutex;

use serde::Serialize;

/// The event kind this module follows.
pub const AGREED_EVENT: &str = "checkpoint-agreed";

/// Longest proposer id accepted from an event (the ledger's author limit).
const MAX_PROPOSER_LEN: usize = nodeplane_entry::MAX_AUTHOR_LEN;

/// One agreed checkpoint, as the component's `checkpoint-agreed` event
/// describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AgreedCheckpoint {
    /// The checkpoint's number (1, 2, ...).
    pub n: u64,
    /// The round it was agreed in.
    pub round: u64,
    /// Its id: the hex SHA-256 of its header.
    pub id: String,
    /// The member whose proposal was agreed.
    pub proposer: String,
    /// Member records in its state.
    pub records: u64,
    /// Linked entries after its cut when it was agreed here.
    pub tail: u64,
    /// When this agent saw the event (ms since the Unix epoch).
    pub seen_ms: u64,
}

/// Why an event's detail was not taken.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointEventError {
    /// The detail is not a JSON object with the fields of the event.
    #[error("detail is not a checkpoint-agreed record: {0}")]
    Malformed(String),
    /// The event names a checkpoint below the one already shown.
    #[error("checkpoint {got} reported after checkpoint {shown}: kept {shown}")]
    Behind {
        /// The number in the event.
        got: u64,
        /// The number already shown.
        shown: u64,
    },
    /// The event names the checkpoint already shown with another id.
    #[error("checkpoint {n} reported with id {got} after id {shown}: kept {shown}")]
    OtherId {
        /// The checkpoint's number.
        n: u64,
        /// The id in the event.
        got: String,
        /// The id already shown.
        shown: String,
    },
}

/// Parses a `checkpoint-agreed` event's detail.
pub fn parse_agreed(detail: &str, seen_ms: u64) -> Result<AgreedCheckpoint, CheckpointEventError> {
    let value: serde_json::Value = serde_json::from_str(detail)
        .map_err(|e| CheckpointEventError::Malformed(format!("not JSON: {e}")))?;
    let number = |field: &str| {
        value
            .get(field)
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| {
                CheckpointEventError::Malformed(format!("{field} is not a non-negative integer"))
            })
    };
    let text = |field: &str| {
        value
            .get(field)
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| CheckpointEventError::Malformed(format!("{field} is not a string")))
    };
    let n = number("n")?;
    if n == 0 {
        return Err(CheckpointEventError::Malformed(
            "n is 0 (checkpoints count from 1)".into(),
        ));
    }
    let id = text("id")?;
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(CheckpointEventError::Malformed(
            "id is not 64 hex digits".into(),
        ));
    }
    let proposer = text("proposer")?;
    if proposer.is_empty() || proposer.len() > MAX_PROPOSER_LEN {
        return Err(CheckpointEventError::Malformed(format!(
            "proposer is empty or longer than {MAX_PROPOSER_LEN} bytes"
        )));
    }
    Ok(AgreedCheckpoint {
        n,
        round: number("round")?,
        id: id.to_ascii_lowercase(),
        proposer: proposer.to_string(),
        records: number("records")?,
        tail: number("tail")?,
        seen_ms,
    })
}

/// The latest agreed checkpoint reported by the component (shared by the
/// services that see the events and the HTTP handlers that show it).
#[derive(Debug, Default)]
pub struct CheckpointTracker {
    latest: Mutex<Option<AgreedCheckpoint>>,
}

impl CheckpointTracker {
    /// Takes a `checkpoint-agreed` event's detail. A checkpoint at or
    /// above the one shown replaces it (a restarted or swapped-in
    /// component agrees its checkpoints again from its ledger, and repeats
    /// change nothing); anything else is refused with the reason.
    pub fn note_agreed(&self, detail: &str, seen_ms: u64) -> Result<(), CheckpointEventError> {
        let agreed = parse_agreed(detail, seen_ms)?;
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(shown) = latest.as_ref() {
            if agreed.n < shown.n {
                return Err(CheckpointEventError::Behind {
                    got: agreed.n,
                    shown: shown.n,
                });
            }
            if agreed.n == shown.n {
                if agreed.id != shown.id {
                    return Err(CheckpointEventError::OtherId {
                        n: agreed.n,
                        got: agreed.id,
                        shown: shown.id.clone(),
                    });
                }
                // The same checkpoint again: keep when it was first seen.
                return Ok(());
            }
        }
        *latest = Some(agreed);
        Ok(())
    }

    /// The latest agreed checkpoint, if the component reported one.
    pub fn latest(&self) -> Option<AgreedCheckpoint> {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(n: u64, id: &str) -> String {
        format!(
            r#"{{"n":{n},"round":0,"id":"{id}","proposer":"n3","records":64,"tail":12,"next_proposer":"n7"}}"#
        )
    }

    const ID_A: &str = "aa00000000000000000000000000000000000000000000000000000000000001";
    const ID_B: &str = "bb00000000000000000000000000000000000000000000000000000000000002";

    #[test]
    fn an_agreed_event_is_shown_and_a_later_one_replaces_it() {
        let t = CheckpointTracker::default();
        assert_eq!(t.latest(), None);
        t.note_agreed(&detail(1, ID_A), 10).unwrap();
        let shown = t.latest().unwrap();
        assert_eq!(
            (shown.n, shown.id.as_str(), shown.records, shown.tail),
            (1, ID_A, 64, 12)
        );
        assert_eq!(shown.proposer, "n3");
        // The same checkpoint again (a restarted component): unchanged.
        t.note_agreed(&detail(1, ID_A), 20).unwrap();
        assert_eq!(t.latest().unwrap().seen_ms, 10);
        t.note_agreed(&detail(2, ID_B), 30).unwrap();
        assert_eq!(t.latest().unwrap().n, 2);
    }

    #[test]
    fn an_event_that_goes_back_or_changes_an_id_is_refused_and_the_shown_one_kept() {
        let t = CheckpointTracker::default();
        t.note_agreed(&detail(2, ID_A), 10).unwrap();
        assert_eq!(
            t.note_agreed(&detail(1, ID_B), 20),
            Err(CheckpointEventError::Behind { got: 1, shown: 2 })
        );
        assert!(matches!(
            t.note_agreed(&detail(2, ID_B), 20),
            Err(CheckpointEventError::OtherId { n: 2, .. })
        ));
        let shown = t.latest().unwrap();
        assert_eq!((shown.n, shown.id.as_str()), (2, ID_A));
    }

    #[test]
    fn malformed_details_are_refused() {
        let t = CheckpointTracker::default();
        let long = "x".repeat(MAX_PROPOSER_LEN + 1);
        for bad in [
            "not json".to_string(),
            "[]".to_string(),
            detail(0, ID_A),
            detail(1, "abc"),
            detail(1, &"g".repeat(64)),
            r#"{"n":-1,"round":0,"id":"x","proposer":"n3","records":1,"tail":1}"#.to_string(),
            format!(r#"{{"n":1,"round":0,"id":"{ID_A}","proposer":"","records":1,"tail":1}}"#),
            format!(
                r#"{{"n":1,"round":0,"id":"{ID_A}","proposer":"{long}","records":1,"tail":1}}"#
            ),
            format!(r#"{{"n":1,"round":0,"id":"{ID_A}","proposer":"n3","tail":1}}"#),
            format!(r#"{{"n":1.5,"round":0,"id":"{ID_A}","proposer":"n3","records":1,"tail":1}}"#),
        ] {
            assert!(
                matches!(
                    t.note_agreed(&bad, 1),
                    Err(CheckpointEventError::Malformed(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(t.latest(), None);
    }
}
