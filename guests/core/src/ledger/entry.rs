//! One ledger entry: the format is shared with the host, so it lives in the
//! `nodeplane-entry` crate and is re-exported here.

pub use nodeplane_entry::*;
