//! The membership model: entry bodies, and the view as a pure function of
//! the entry set. (The vocabulary itself, [`PeerState`], [`Member`] and the
//! view and update types, is `nodeplane-types`, shared with every host.)
//!
//! Every state-changing entry is a *claim* `(subject, incarnation, state)`.
//! Per subject the claim with the highest incarnation wins; ties go to the
//! higher precedence `left > dead > suspect > alive`. `alive` (kinds `join`,
//! `alive`) and `left` count only when the subject wrote them itself. The
//! subject's address and metadata come from its own latest entry that
//! carries them. Taking a maximum is commutative, associative and
//! idempotent, so equal entry sets give equal views in any order.

use std::collections::BTreeMap;

use nodeplane_types::{Member, PeerState};
use serde::{Deserialize, Serialize};

use crate::ledger::{Entry, Hash};

/// Entry kind: a node joins (or rejoins after a restart).
pub const KIND_JOIN: &str = "join";
/// Entry kind: a node asserts it is alive (refutation or recovery).
pub const KIND_ALIVE: &str = "alive";
/// Entry kind: a node's new address or metadata, no state change.
pub const KIND_METADATA: &str = "metadata";
/// Entry kind: the author failed to reach `subject` at `inc`.
pub const KIND_SUSPECT: &str = "suspect";
/// Entry kind: the author applied the death rule to `subject` at `inc`.
pub const KIND_CONFIRM_DEAD: &str = "confirm-dead";
/// Entry kind: the author leaves gracefully.
pub const KIND_LEAVE: &str = "leave";

/// Body of `join`, `alive` and `metadata`: the author's own profile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileBody {
    /// The author's incarnation.
    pub inc: u64,
    /// The author's control-channel address.
    pub addr: String,
    /// The author's metadata.
    #[serde(default)]
    pub meta: Vec<(String, String)>,
}

/// Body of `suspect`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuspectBody {
    /// The suspected member.
    pub subject: String,
    /// The incarnation the suspicion is about.
    pub inc: u64,
}

/// Body of `confirm-dead`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadBody {
    /// The member declared dead.
    pub subject: String,
    /// The incarnation judged.
    pub inc: u64,
    /// Hex ids of the suspect entries relied on (at most
    /// [`crate::config::MAX_EVIDENCE_IDS`]).
    pub evidence: Vec<String>,
    /// Distinct suspecting authors the verdict counted.
    pub suspecters: u32,
}

/// Body of `leave`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaveBody {
    /// The leaver's incarnation.
    pub inc: u64,
}

/// What one entry says about membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fact {
    /// `subject` is in `state` at incarnation `inc`.
    Claim {
        /// The member concerned.
        subject: String,
        /// Incarnation.
        inc: u64,
        /// Claimed state.
        state: PeerState,
    },
    /// The author's own address and metadata as of its entry `seq`.
    Profile {
        /// Address.
        addr: String,
        /// Metadata.
        meta: Vec<(String, String)>,
    },
}

fn parse<'a, T: Deserialize<'a>>(e: &'a Entry) -> Result<T, String> {
    serde_json::from_slice(&e.body).map_err(|err| {
        format!(
            "entry {}#{} ({}): body is not valid: {err}",
            e.author, e.seq, e.kind
        )
    })
}

/// The claim of entry `e` that `subject` is in `state` at `inc`, for the
/// kinds a node may only write about another node: naming its own author
/// is an error ("entry a#3: a node cannot {forbidden}").
fn claim_about_other(
    e: &Entry,
    subject: String,
    inc: u64,
    state: PeerState,
    forbidden: &str,
) -> Result<Fact, String> {
    if subject == e.author {
        return Err(format!(
            "entry {}#{}: a node cannot {forbidden}",
            e.author, e.seq
        ));
    }
    Ok(Fact::Claim {
        subject,
        inc,
        state,
    })
}

/// The membership facts of an entry. Unknown kinds carry none (so newer
/// writers stay readable); a known kind with a bad body is an error.
pub fn facts(e: &Entry) -> Result<Vec<Fact>, String> {
    let me = e.author.clone();
    Ok(match e.kind.as_str() {
        KIND_JOIN | KIND_ALIVE => {
            let b: ProfileBody = parse(e)?;
            vec![
                Fact::Claim {
                    subject: me,
                    inc: b.inc,
                    state: PeerState::Alive,
                },
                Fact::Profile {
                    addr: b.addr,
                    meta: b.meta,
                },
            ]
        }
        KIND_METADATA => {
            let b: ProfileBody = parse(e)?;
            vec![Fact::Profile {
                addr: b.addr,
                meta: b.meta,
            }]
        }
        KIND_SUSPECT => {
            let b: SuspectBody = parse(e)?;
            vec![claim_about_other(
                e,
                b.subject,
                b.inc,
                PeerState::Suspect,
                "suspect itself",
            )?]
        }
        KIND_CONFIRM_DEAD => {
            let b: DeadBody = parse(e)?;
            vec![claim_about_other(
                e,
                b.subject,
                b.inc,
                PeerState::Dead,
                "declare itself dead",
            )?]
        }
        KIND_LEAVE => {
            let b: LeaveBody = parse(e)?;
            vec![Fact::Claim {
                subject: me,
                inc: b.inc,
                state: PeerState::Left,
            }]
        }
        _ => Vec::new(),
    })
}

/// The winning claim about a subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// Incarnation.
    pub inc: u64,
    /// State.
    pub state: PeerState,
    /// The entry that made it (smallest id among equal claims).
    pub entry: Hash,
}

impl Claim {
    fn beats(&self, other: &Claim) -> bool {
        (
            self.inc,
            self.state.precedence(),
            std::cmp::Reverse(self.entry),
        ) > (
            other.inc,
            other.state.precedence(),
            std::cmp::Reverse(other.entry),
        )
    }
}

/// (author seq, address, metadata, entry id) of a subject's latest profile.
type Profile = (u64, String, Vec<(String, String)>, Hash);

#[derive(Clone, Debug, Default)]
struct Subject {
    claim: Option<Claim>,
    /// (author seq, address, metadata, entry id) of the latest profile.
    profile: Option<Profile>,
}

/// The view derived from a set of entries, maintained incrementally.
#[derive(Clone, Debug, Default)]
pub struct Derived {
    subjects: BTreeMap<String, Subject>,
}

impl Derived {
    /// An empty derivation.
    pub fn new() -> Derived {
        Derived::default()
    }

    /// Folds one entry in; returns the subjects it may have changed.
    pub fn apply(&mut self, e: &Entry) -> Result<Vec<String>, String> {
        let mut touched = Vec::new();
        for fact in facts(e)? {
            match fact {
                Fact::Claim {
                    subject,
                    inc,
                    state,
                } => {
                    let claim = Claim {
                        inc,
                        state,
                        entry: e.id,
                    };
                    let s = self.subjects.entry(subject.clone()).or_default();
                    if s.claim.as_ref().is_none_or(|c| claim.beats(c)) {
                        s.claim = Some(claim);
                        touched.push(subject);
                    }
                }
                Fact::Profile { addr, meta } => {
                    let s = self.subjects.entry(e.author.clone()).or_default();
                    if s.profile.as_ref().is_none_or(|p| e.seq > p.0) {
                        s.profile = Some((e.seq, addr, meta, e.id));
                        touched.push(e.author.clone());
                    }
                }
            }
        }
        touched.dedup();
        Ok(touched)
    }

    /// The winning claim about a subject.
    pub fn claim(&self, id: &str) -> Option<&Claim> {
        self.subjects.get(id)?.claim.as_ref()
    }

    /// A member, if its own profile is known (a member appears once the
    /// node has one entry the member wrote itself).
    pub fn member(&self, id: &str) -> Option<Member> {
        let s = self.subjects.get(id)?;
        let (_, addr, meta, _) = s.profile.as_ref()?;
        let (state, inc) = s
            .claim
            .as_ref()
            .map_or((PeerState::Alive, 0), |c| (c.state, c.inc));
        Some(Member {
            id: id.to_string(),
            address: addr.clone(),
            state,
            incarnation: inc,
            metadata: meta.clone(),
        })
    }

    /// The id of the entry behind a member's current appearance.
    pub fn entry_of(&self, id: &str) -> Option<Hash> {
        let s = self.subjects.get(id)?;
        s.claim
            .as_ref()
            .map(|c| c.entry)
            .or(s.profile.as_ref().map(|p| p.3))
    }

    /// Every member, sorted by id.
    pub fn members(&self) -> Vec<Member> {
        self.subjects
            .keys()
            .filter_map(|id| self.member(id))
            .collect()
    }
}

/// The view of a set of entries: a pure function, used by tests and
/// tools. Entries with invalid bodies are skipped.
pub fn derive_view<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Vec<Member> {
    let mut d = Derived::new();
    for e in entries {
        let _ = d.apply(e);
    }
    d.members()
}

/// Compact JSON of a body.
pub fn body<T: Serialize>(b: &T) -> Vec<u8> {
    serde_json::to_vec(b).expect("bodies serialise")
}
