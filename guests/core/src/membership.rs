//! The membership model: entry bodies, and the view as a pure function of
//! the entry set. (The vocabulary itself, [`PeerState`], [`Member`] and the
//! view and update types, is `nodeplane-types`, shared with every host.)
//!
//! Every state-changing entry is a *claim* `(subject, incarnation, state)`.
//! `alive` (kinds `join`, `alive`) and `left` count only when the subject
//! wrote them itself, and only the subject's own `join`/`alive` entries
//! announce an incarnation. A `suspect` takes effect only at an incarnation
//! its subject announced, and a `confirm-dead` only when the receiver
//! itself holds the quorum of suspicions the death rule asks for (see
//! [`Derived`]); claims that do not (yet) qualify are kept and replicated
//! but inert. Per subject the effective claim with the highest incarnation
//! wins; ties go to the higher precedence `left > dead > suspect > alive`.
//! The subject's address and metadata come from its own latest entry that
//! carries them. Every step is a function of the entry set, so equal entry
//! sets give equal views in any order.

use std::cmp::Reverse;
use std::collections::{btree_map, BTreeMap, BTreeSet};
use std::sync::Arc;

use hashbrown::HashTable;
use nodeplane_types::{Member, PeerState};
use serde::{Deserialize, Serialize};

use crate::authors::{AuthorId, Authors};
use crate::compact::{Pairs, Slots, SmallMap, SmallSet, U64Words, VecMap};
use crate::config::{is_valid_address, packed_v4, unpack_v4, validate_node_id};
use crate::ledger::{Entry, Hash, Ledger};
use nodeplane_entry::signing::{declared_key, PublicKey, BINDING_KIND};

mod checkpoint;

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
/// Entry kind: the author still suspects `subject` at `inc`, having held
/// that suspicion for `held_ms` (the time-based death rule, see
/// [`Derived`] and [`SUSPICION_LAPSE_MS`]). Readers that do not know the
/// kind ignore it, as any unknown kind.
pub const KIND_SUSPECT_HELD: &str = "suspect-held";

/// How long a suspicion must have been held before a `suspect-held` vote
/// counts toward the time-based quorum: 90 s. A partition of up to 60 s
/// (scenario S4) must heal without a death, and after a heal the
/// suspected side's refutations need a few seconds to spread (S4
/// converges in well under 10 s), so 90 s leaves 30 s of margin; a
/// failure that the strict majority can never confirm (half of the
/// cluster crashed at once) is decided within about this long.
pub const SUSPICION_LAPSE_MS: u64 = 90_000;

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
    /// On `join` only: the author's Ed25519 public key, 64 hex digits
    /// (`nodeplane_entry::signing`); the first `join` binds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
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

/// Body of `suspect-held`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldBody {
    /// The suspected member.
    pub subject: String,
    /// The incarnation the suspicion is about.
    pub inc: u64,
    /// How long the suspicion has been in effect, unrefuted, in the
    /// author's view, ms (its own clock: each author vouches only for its
    /// own vote).
    pub held_ms: u64,
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

/// The key an author's first entry declares, as its ledger bound it: the
/// ledger linked `e` at `seq` 1 under exactly the key `declared_key`
/// reads from its body (`Ledger::link`), so the body is not parsed a
/// second time for every author a node learns. `None` for any other
/// entry, or without the ledger (then the body is read).
fn first_key(e: &Entry, ledger: Option<&Ledger>) -> Option<PublicKey> {
    if e.seq != 1 || e.kind != BINDING_KIND {
        return None;
    }
    ledger?.bound_key(&e.author).copied()
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

/// A profile body in the plain form honest writers produce, read without
/// `serde_json` (`nodeplane_entry::plain`: the same fields as the
/// derived `Deserialize` gives); `None` for any other body.
fn plain_profile(body: &[u8]) -> Option<ProfileBody> {
    let mut meta = Vec::new();
    let plain = nodeplane_entry::plain::scan(body, |k, v| meta.push((k.to_owned(), v.to_owned())))?;
    Some(ProfileBody {
        inc: plain.inc,
        addr: plain.addr.to_owned(),
        meta,
        signing_key: plain.signing_key.map(str::to_owned),
    })
}

/// The body of a profile entry (`join`, `alive`, `metadata`), refused when
/// its author is not a valid node id or its address is not `ip:port`: such
/// a member could never be probed indirectly (no receiver accepts a
/// `ping-req` naming it) and would hand the Mesh VPN an unusable endpoint.
fn profile(e: &Entry) -> Result<ProfileBody, String> {
    validate_node_id(&e.author).map_err(|why| format!("author {:?}: {why}", e.author))?;
    let b: ProfileBody = plain_profile(&e.body).map_or_else(|| parse(e), Ok)?;
    if !is_valid_address(&b.addr) {
        return Err(format!(
            "{} by {:?}: address {:?} is not ip:port",
            e.kind, e.author, b.addr
        ));
    }
    Ok(b)
}

/// The membership facts of an entry. Unknown kinds carry none (so newer
/// writers stay readable); a known kind with a bad body is an error.
pub fn facts(e: &Entry) -> Result<Vec<Fact>, String> {
    let me = e.author.clone();
    Ok(match e.kind.as_str() {
        KIND_JOIN | KIND_ALIVE => {
            let b = profile(e)?;
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
            let b = profile(e)?;
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

/// The winning claim about a subject: its state and incarnation (the id
/// of the entry that made it is [`Derived::entry_of`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// Incarnation.
    pub inc: u64,
    /// State.
    pub state: PeerState,
}

/// Where the id of the entry behind a claim is kept: in the derivation,
/// or, for a subject's own `join`/`alive` entry in a node's derivation,
/// in the ledger that linked it (its chain's id at that sequence number).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EntryRef {
    /// The id itself.
    Id(Hash),
    /// The subject's own entry at this sequence number: the ledger holds
    /// its id ([`AliveId::Seq`]).
    Own(u32),
}

/// Distinct suspecting authors a verdict needs when `live` members are
/// counted live: a strict majority, or `floor` (the configured
/// `death_quorum`) if that is higher. The one definition the writer
/// (`suspicion::judge`) and every receiver ([`Derived`]) apply.
pub fn death_quorum(live: usize, floor: usize) -> usize {
    (live / 2).saturating_add(1).max(floor)
}

/// Distinct authors of long-held suspicions (`suspect-held` entries with
/// `held_ms ≥ SUSPICION_LAPSE_MS`) a verdict needs under the time-based
/// rule when `live` members are counted live: half of them, rounded up
/// (so exactly half of an even cluster, which the strict majority cannot
/// reach; never fewer than a majority of an odd one), or `floor` if that
/// is higher. A minority can never reach it.
pub fn lapse_quorum(live: usize, floor: usize) -> usize {
    live.div_ceil(2).max(floor).max(1)
}

/// Keeps the smaller of two entry ids in `slot`; true if it changed.
fn keep_min(slot: &mut Option<Hash>, id: Hash) -> bool {
    if slot.is_some_and(|old| old <= id) {
        return false;
    }
    *slot = Some(id);
    true
}

/// What a subject's own `join`/`alive` entries say at one incarnation
/// (an incarnation it named only in `leave` entries has one too, with no
/// id: its `leave` ids are in [`Others::left`], rare).
#[derive(Clone, Debug, Default)]
struct Own {
    /// Smallest id of its `join`/`alive` entries announcing it.
    alive: Option<AliveId>,
}

/// The id of a subject's own `join`/`alive` entry, 8 bytes on wasm32
/// instead of 32: in a node's derivation ([`Derived::apply_sharing`]) it
/// is the subject's own entry, so its chain in the ledger holds the id,
/// and the derivation keeps only its sequence number (the `join`'s id was
/// held twice, 32 bytes per member). A derivation without a ledger, or a
/// sequence number above `u32::MAX`, keeps the id, boxed.
#[derive(Clone, Debug, PartialEq, Eq)]
enum AliveId {
    /// The id the ledger holds at this sequence number of the subject's
    /// chain (chains only grow: it stays there).
    Seq(u32),
    /// The id itself.
    Id(Box<Hash>),
}

impl AliveId {
    /// The id kept for entry `id` of `subject` at `seq`: a reference into
    /// `ledger` when its chain holds exactly that entry there.
    fn new(subject: &str, seq: u64, id: Hash, ledger: Option<&Ledger>) -> AliveId {
        match (u32::try_from(seq), ledger) {
            (Ok(s), Some(l)) if l.id_at(subject, seq) == Some(&id) => AliveId::Seq(s),
            _ => AliveId::Id(Box::new(id)),
        }
    }

    /// Where the id is.
    fn entry(&self) -> EntryRef {
        match self {
            AliveId::Seq(s) => EntryRef::Own(*s),
            AliveId::Id(id) => EntryRef::Id(**id),
        }
    }
}

/// The id `r` stands for, `subject`'s entry (`ledger`: the one the
/// derivation's entries came through, if any). `None` only for a
/// reference without its ledger (a bug: a node's derivation is read with
/// its ledger).
fn resolve(r: EntryRef, subject: &str, ledger: Option<&Ledger>) -> Option<Hash> {
    match r {
        EntryRef::Id(id) => Some(id),
        EntryRef::Own(seq) => {
            let id = ledger
                .and_then(|l| l.id_at(subject, u64::from(seq)))
                .copied();
            debug_assert!(id.is_some(), "an own entry's id read without its ledger");
            id
        }
    }
}

/// The `suspect` entries about a subject at one incarnation.
#[derive(Clone, Debug, Default)]
struct Suspects {
    /// Author -> smallest id of its `suspect` entries here.
    authors: SmallMap<AuthorId, Hash>,
    /// Smallest id among all of them (the one a claim cites).
    first: Option<Hash>,
    /// How many of `authors` are counted live (see [`Derived`]).
    live: usize,
    /// Authors of `suspect-held` entries here with a held time of at
    /// least [`SUSPICION_LAPSE_MS`].
    held: SmallSet<AuthorId>,
    /// How many of `held` are counted live.
    held_live: usize,
}

/// A member's control-channel address as its profile entry wrote it:
/// one in the canonical IPv4 form `a.b.c.d:port` (every member's, in
/// practice) packed into a number ([`packed_v4`]: no allocation, and
/// written back exactly), any other as its string. Each string has one
/// form, so two addresses are equal exactly when their strings are.
/// 8 bytes on wasm32: the rare other address is a thin pointer to its
/// boxed string (a `Box<str>` inline would make it 12).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Address {
    /// A canonical IPv4 address, packed.
    V4(PackedV4),
    /// Any other address (boxed twice: a thin pointer).
    Other(Box<Box<str>>),
}

/// The 48-bit number [`packed_v4`] gives a canonical IPv4 address, kept as
/// three 16-bit words: 2-byte aligned, so an [`Address`] is 12 bytes on
/// wasm32 (a `u64` would align it to 8 and make it 16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PackedV4([u16; 3]);

impl PackedV4 {
    /// `k` as three words; `None` if it does not fit in 48 bits.
    fn new(k: u64) -> Option<PackedV4> {
        let [hi0, hi1, a, b, c, d, e, f] = k.to_be_bytes();
        if hi0 != 0 || hi1 != 0 {
            return None;
        }
        Some(PackedV4([
            u16::from_be_bytes([a, b]),
            u16::from_be_bytes([c, d]),
            u16::from_be_bytes([e, f]),
        ]))
    }

    /// The number.
    pub(crate) fn get(self) -> u64 {
        let [w0, w1, w2] = self.0;
        let ([a, b], [c, d], [e, f]) = (w0.to_be_bytes(), w1.to_be_bytes(), w2.to_be_bytes());
        u64::from_be_bytes([0, 0, a, b, c, d, e, f])
    }
}

impl Address {
    /// The address `s`.
    pub(crate) fn new(s: String) -> Address {
        match packed_v4(&s).and_then(PackedV4::new) {
            Some(k) => Address::V4(k),
            None => Address::Other(Box::new(s.into_boxed_str())),
        }
    }

    /// The address as text: what `to_string` gives, without writing it
    /// through a formatter (an IPv4 one is unpacked into its own string,
    /// which is the result; every update a node publishes carries one).
    pub(crate) fn text(&self) -> String {
        match self {
            Address::V4(k) => unpack_v4(k.get()),
            Address::Other(s) => String::from(&***s),
        }
    }

    /// Whether this is the address `s`.
    pub(crate) fn is(&self, s: &str) -> bool {
        match self {
            Address::V4(k) => packed_v4(s) == Some(k.get()),
            Address::Other(o) => ***o == *s,
        }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::V4(k) => f.write_str(&unpack_v4(k.get())),
            Address::Other(s) => f.write_str(s),
        }
    }
}

/// A member's own address and metadata, as its latest profile entry
/// (`join`, `alive`, `metadata`) gives them: one allocation per profile,
/// shared by the derived view and the roster's published member.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Profile {
    /// The control-channel address.
    pub(crate) addr: Address,
    /// The metadata, packed (one allocation for every pair).
    pub(crate) meta: Pairs,
}

// The layouts the per-member figures rest on, where they are measured:
// 32-bit targets (wasm32, i686). A profile with its metadata inline is
// one 48-byte chunk of the guest's allocator (44 bytes with the `Arc`
// counts; dlmalloc rounds to 16 with a 4-byte header).
#[cfg(target_pointer_width = "32")]
const _: () = {
    assert!(std::mem::size_of::<Address>() == 8);
    assert!(std::mem::size_of::<Pairs>() == 28);
    assert!(std::mem::size_of::<Profile>() == 36);
};

/// What others wrote about a subject at each incarnation, and the
/// subject's rare facts. Boxed and absent until the first such entry:
/// most subjects have none.
#[derive(Clone, Debug, Default)]
struct Others {
    /// The id of the entry that carried the subject's latest profile, only
    /// while the subject has no claim of its own ([`Derived::entry_of`]
    /// reads it then only; a claim, once there, never goes away): in a
    /// node's derivation a member's first entry is its `join`, which
    /// claims before it gives the profile, so this is for standalone
    /// derivations of entries in any order. Boxed: 33 bytes inline in
    /// every subject's box.
    profile_entry: Option<Box<Hash>>,
    /// The subject's `Subject::profile_seq` when it does not fit below
    /// `u32::MAX` (an author writes that many entries only in a forged or
    /// hostile chain). Boxed: rare.
    profile_seq: Option<Box<u64>>,
    /// Smallest id of the subject's own `leave` entries, by incarnation
    /// (each such incarnation is also in `Subject::own`). Boxed: rare.
    left: Option<Box<VecMap<u64, Hash>>>,
    /// Others' suspicions by incarnation (effective or not).
    suspects: VecMap<u64, Suspects>,
    /// Smallest verdict id by incarnation (effective or not).
    verdicts: VecMap<u64, Hash>,
    /// Live suspecters and live long-held suspecters of the subject's
    /// current verdict, while it is a candidate (it then has a verdict,
    /// so this record exists).
    candidate: Option<(usize, usize)>,
}

/// Each signing key with the first author bound to it.
#[derive(Clone, Debug)]
enum KeyIndex {
    /// A standalone derivation keeps the keys itself.
    Own(BTreeMap<PublicKey, AuthorId>),
    /// A node's derivation ([`Derived::for_node`]): the first authors,
    /// found by the hash of their key ([`key_hash`]); the key itself is
    /// read back from the ledger (the author's bound key), so it is
    /// stored once per node.
    Ledger(HashTable<AuthorId>),
}

impl Default for KeyIndex {
    fn default() -> KeyIndex {
        KeyIndex::Own(BTreeMap::new())
    }
}

/// The hash of a signing key in [`KeyIndex::Ledger`]: foldhash with a
/// fixed seed (deterministic; a ground collision costs probe time, not
/// correctness: a hit is confirmed on the whole key).
fn key_hash(key: &PublicKey) -> u64 {
    use std::hash::BuildHasher as _;
    let hash = foldhash::fast::FixedState::with_seed(0x6b65_7973_6f66_6e70).hash_one(key);
    #[cfg(test)]
    let hash = hash & tests::KEY_HASH_MASK.with(std::cell::Cell::get);
    hash
}

/// A subject's record: 32 bytes on wasm32 and i686 (72, then 60
/// before its own `join`'s id became a reference into the ledger,
/// [`AliveId`], and its profile's sequence number 4 bytes). Its flags are kept beside it, in [`Derived`]'s `flags`;
/// its `u64`s are 4-byte aligned ([`U64Words`]), so that nothing pads it
/// to a multiple of 8; its rare parts (`leave` ids, a profile's entry id)
/// are in `others`.
#[derive(Clone, Debug, Default)]
struct Subject {
    /// The author sequence number of the entry that carried `profile`
    /// ([`Subject::profile_seq`]): `u32::MAX` stands for the number in
    /// `Others::profile_seq`, so that 4 bytes hold it.
    profile_seq: u32,
    /// The latest profile the subject wrote itself.
    profile: Option<Arc<Profile>>,
    /// The subject's own state claims by incarnation.
    own: VecMap<U64Words, Own>,
    /// Others' suspicions and verdicts, once there is one (and the
    /// profile's entry id, while it is kept).
    others: Option<Box<Others>>,
}

// The layout the figure above rests on (32-bit targets: wasm32, i686).
#[cfg(target_pointer_width = "32")]
const _: () = {
    assert!(std::mem::size_of::<AliveId>() == 8);
    assert!(std::mem::size_of::<Subject>() == 32);
};

/// A subject's flags, one byte per handle beside `Derived::subjects`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Flags(u8);

impl Flags {
    /// The subject is filed: a handle is also issued to an author of
    /// suspicions alone, whose slot holds no subject (unset).
    const FILED: u8 = 1;
    /// The subject is counted live: it has a profile and its claim
    /// without verdicts is not `left`.
    const COUNTED_LIVE: u8 = 2;
    /// Another author declared the same signing key: such an author is
    /// not counted live, so one key is one voice in a quorum.
    const KEY_SHARED: u8 = 4;
    /// The subject's `join` entries declared a signing key (the key
    /// itself is `authors_of_key`'s key).
    const KEY_SEEN: u8 = 8;

    /// Whether `flag` is set.
    fn has(self, flag: u8) -> bool {
        self.0 & flag != 0
    }

    /// Sets or clears `flag`.
    fn set(&mut self, flag: u8, on: bool) {
        if on {
            self.0 |= flag;
        } else {
            self.0 &= !flag;
        }
    }

    /// Whether the subject is filed and has `flag`.
    fn filed_with(self, flag: u8) -> bool {
        self.has(Flags::FILED) && self.has(flag)
    }
}

impl Subject {
    /// The author sequence number of the entry that carried `profile`.
    fn profile_seq(&self) -> u64 {
        match self.profile_seq {
            u32::MAX => self
                .others
                .as_ref()
                .and_then(|o| o.profile_seq.as_deref().copied())
                .unwrap_or(u64::from(u32::MAX)),
            seq => u64::from(seq),
        }
    }

    /// Sets [`Subject::profile_seq`]; a number from `u32::MAX` up is kept
    /// in `others`.
    fn set_profile_seq(&mut self, seq: u64) {
        match u32::try_from(seq) {
            Ok(small) if small < u32::MAX => {
                self.profile_seq = small;
                if let Some(o) = self.others.as_mut() {
                    o.profile_seq = None;
                }
            }
            _ => {
                self.profile_seq = u32::MAX;
                self.others_mut().profile_seq = Some(Box::new(seq));
            }
        }
    }

    /// The suspicions of others at `inc`.
    fn suspects(&self, inc: u64) -> Option<&Suspects> {
        self.others.as_ref()?.suspects.get(&inc)
    }

    /// The suspicions of others at `inc`, mutably.
    fn suspects_mut(&mut self, inc: u64) -> Option<&mut Suspects> {
        self.others.as_mut()?.suspects.get_mut(&inc)
    }

    /// The smallest verdict id at `inc`.
    fn verdict(&self, inc: u64) -> Option<Hash> {
        self.others.as_ref()?.verdicts.get(&inc).copied()
    }

    /// The smallest id of its own `leave` entries at `inc`.
    fn left(&self, inc: u64) -> Option<&Hash> {
        self.others.as_ref()?.left.as_ref()?.get(&inc)
    }

    /// Its place among the candidates (see `Others::candidate`).
    fn candidate(&self) -> Option<(usize, usize)> {
        self.others.as_ref()?.candidate
    }

    /// Others' suspicions and verdicts, created empty if absent.
    fn others_mut(&mut self) -> &mut Others {
        self.others.get_or_insert_with(Box::default)
    }

    /// The claim without verdicts: the subject's own claims, and others'
    /// suspicions at an incarnation the subject announced. Only the
    /// subject's highest own incarnation can win (a suspicion at a lower
    /// one loses to the subject's own claim above it). Recomputed when
    /// asked (two lookups in one-element maps): caching it cost 48 bytes
    /// per member.
    fn base_claim(&self) -> Option<Claim> {
        self.base_claim_entry().map(|(c, _)| c)
    }

    /// [`Subject::base_claim`], with where the id of its entry is.
    fn base_claim_entry(&self) -> Option<(Claim, EntryRef)> {
        let (inc, own) = self.own.last_key_value()?;
        let inc = inc.get();
        if let Some(&entry) = self.left(inc) {
            let state = PeerState::Left;
            return Some((Claim { inc, state }, EntryRef::Id(entry)));
        }
        let alive = own.alive.as_ref()?;
        let suspect = self.suspects(inc).and_then(|s| s.first);
        Some(match suspect {
            Some(entry) => {
                let state = PeerState::Suspect;
                (Claim { inc, state }, EntryRef::Id(entry))
            }
            None => {
                let state = PeerState::Alive;
                (Claim { inc, state }, alive.entry())
            }
        })
    }

    /// Live suspecters and live long-held suspecters of the verdict that
    /// could make this subject dead: one at the incarnation of its claim
    /// without verdicts, while that claim is `alive` or `suspect`.
    fn candidate_count(&self) -> Option<(usize, usize)> {
        let base = self.base_claim()?;
        if !base.state.is_live() || self.verdict(base.inc).is_none() {
            return None;
        }
        Some(
            self.suspects(base.inc)
                .map_or((0, 0), |s| (s.live, s.held_live)),
        )
    }
}

impl Others {
    /// Whether it holds nothing (then the subject needs no box).
    fn is_empty(&self) -> bool {
        self.profile_entry.is_none()
            && self.profile_seq.is_none()
            && self.suspects.is_empty()
            && self.verdicts.is_empty()
            && self.left.is_none()
            && self.candidate.is_none()
    }
}

/// The view derived from a set of entries, maintained incrementally.
///
/// **Claims about what the subject said.** A member's own `join`/`alive`
/// entries *announce* incarnations. A `suspect(S, i)` takes effect only if
/// S announced `i`; until then it is kept but inert. Among the effective
/// claims the highest incarnation wins, then `left > suspect > alive`;
/// since a suspicion needs an announced incarnation, nothing but the
/// subject's own entries can raise its incarnation, and its next `alive`
/// always beats every claim about it.
///
/// **Verdicts every receiver checks.** A `confirm-dead(S, i)` takes effect
/// only if `i` is the incarnation of S's claim without verdicts (the one
/// above), that claim is `alive` or `suspect`, and S is in the set `V` of
/// members the death rule holds for:
///
/// - *counted live* (`C`): members whose claim without verdicts is
///   `alive` or `suspect` (a function of the entry set, verdicts aside)
///   and whose signing key no other author declared, so that a quorum of
///   distinct authors is one of distinct keys;
/// - the *suspecters* of S at `i`: distinct authors in `C` of
///   `suspect(S, i)` entries (the entry's `evidence` and `suspecters`
///   fields are not trusted);
/// - the *long-held suspecters* of S at `i`: distinct authors in `C` of
///   `suspect-held(S, i)` entries with `held_ms ≥ SUSPICION_LAPSE_MS`
///   (each author vouches for its own vote only);
/// - `V` is the least set such that every candidate S (a verdict at its
///   current incarnation) with `suspecters ≥ death_quorum(|C| − |V|)`
///   (the quorum rule) or `long-held suspecters ≥ lapse_quorum(|C| −
///   |V|)` (the time-based rule: half, when a strict majority cannot be
///   reached because half the cluster failed at once) is in `V`. It is
///   computed by repeatedly taking the candidate with the most
///   suspecters, or else the one with the most long-held suspecters,
///   while it meets its bar with the members not yet in `V`, so `L = |C|
///   − |V|` is exactly what the writer counts live (its published `alive`
///   and `suspect` members). A verdict can only lower `L`, and so the
///   bars, for later ones, never raise them, so the set is unique.
///
/// Every step is a function of the entry set alone, so equal entry sets
/// give equal views in any order. Cost per entry: O(log n), plus the
/// author's own suspicions when its being counted live changes (it joins
/// or leaves), plus O(|V| + 1) to recheck `V` when a candidate or `|C|`
/// changed.
#[derive(Clone, Debug, Default)]
pub struct Derived {
    /// The subjects and the authors of suspicions: a handle indexes
    /// `subjects`. Each id is allocated once and shared with the ledger
    /// (see [`Derived::apply_sharing`]), the roster and the probe order.
    authors: Authors,
    /// Each interned author's subject record, at its handle's index (one
    /// slot per handle; its `flags` tell whether it holds a subject).
    subjects: Slots<Subject>,
    /// Each handle's [`Flags`], at its index (in step with `subjects`).
    flags: Slots<Flags>,
    /// The configured `death_quorum` (a floor above the majority).
    quorum_floor: usize,
    /// `|C|`: subjects counted live.
    counted_live: usize,
    /// (subject, inc) of every `suspect` entry, by author.
    by_author: BTreeMap<AuthorId, SmallSet<(AuthorId, u64)>>,
    /// Subjects with a verdict at their current incarnation, by live
    /// suspecters (most first), then id.
    candidates: BTreeSet<(Reverse<usize>, Arc<str>)>,
    /// The same subjects by live long-held suspecters (most first), then id.
    held_candidates: BTreeSet<(Reverse<usize>, Arc<str>)>,
    /// `V`: the subjects the death rule holds for.
    dead: BTreeSet<String>,
    /// `V` may have changed since it was last computed.
    recheck: bool,
    /// The sticky verdicts (docs/design.md §13.8): subjects loaded `dead`
    /// from a checkpoint, with the incarnation they were dead at. Each is
    /// in `V` whatever the counts while its claim without verdicts is
    /// still `alive` or `suspect` at that incarnation (and the verdict is
    /// held). Empty, and so without effect, for a derivation not loaded
    /// from a checkpoint.
    sticky: BTreeMap<String, u64>,
    /// The first author bound to each key (the subject's shared id). An
    /// author sharing its key with another is not counted live: a quorum
    /// is one of distinct keys.
    authors_of_key: KeyIndex,
    /// The authors of each key more than one author declared, sorted
    /// (the first of them is also its `authors_of_key` entry).
    shared_keys: BTreeMap<PublicKey, Vec<Arc<str>>>,
    /// During [`Derived::apply_sharing`], the ledger's copy of the entry's
    /// author id: a subject first filed under that id shares it instead of
    /// allocating its own.
    lent: Option<Arc<str>>,
}

impl Derived {
    /// An empty derivation of a node's ledger (see
    /// [`Derived::apply_sharing`]): each signing key is read back from the
    /// ledger (the author's bound key), not stored again here. Every
    /// entry must come through [`Derived::apply_sharing`] with the ledger
    /// that linked it.
    pub(crate) fn for_node(floor: u32) -> Derived {
        Derived {
            authors_of_key: KeyIndex::Ledger(HashTable::new()),
            ..Derived::with_quorum_floor(floor)
        }
    }

    /// An empty derivation, with no quorum floor above the majority.
    pub fn new() -> Derived {
        Derived::default()
    }

    /// An empty derivation whose death rule needs at least `floor`
    /// suspecters (the `death_quorum` tunable; 0: the majority alone).
    pub fn with_quorum_floor(floor: u32) -> Derived {
        Derived {
            quorum_floor: usize::try_from(floor).unwrap_or(usize::MAX),
            ..Derived::default()
        }
    }

    /// Records the signing key a `join` declares (the ledger checked it
    /// is the author's bound key); authors found sharing a key stop being
    /// counted live. Returns the authors whose standing changed.
    fn note_key(&mut self, e: &Entry, ledger: Option<&Ledger>) -> Vec<String> {
        // An author whose key was seen already is done: its body need not
        // be parsed again (both ways out change nothing).
        if self
            .authors
            .find(&e.author)
            .is_some_and(|a| self.flags_of(a).filed_with(Flags::KEY_SEEN))
        {
            return Vec::new();
        }
        let Some(key) = first_key(e, ledger).or_else(|| declared_key(e).ok().flatten()) else {
            return Vec::new();
        };
        // A node's derivation gets every entry with its ledger
        // (`for_node`); without it, nothing can be confirmed, and the key
        // is left unseen so that the next entry with the ledger indexes it.
        if matches!(self.authors_of_key, KeyIndex::Ledger(_)) && ledger.is_none() {
            debug_assert!(false, "a node's derivation applied without its ledger");
            return Vec::new();
        }
        let Some(a) = self.handle(&e.author) else {
            return Vec::new();
        };
        if self.file(a).is_some() {
            self.set_flag(a, Flags::KEY_SEEN, true);
        }
        let first = match &mut self.authors_of_key {
            KeyIndex::Own(keys) => match keys.entry(key) {
                btree_map::Entry::Vacant(v) => {
                    v.insert(a);
                    return Vec::new();
                }
                btree_map::Entry::Occupied(o) => *o.get(),
            },
            KeyIndex::Ledger(index) => {
                // Checked above: a node's derivation has its ledger here.
                let Some(ledger) = ledger else {
                    return Vec::new();
                };
                let authors = &self.authors;
                // The key an author is bound to, read from the one place
                // it is kept. A hit is confirmed on the whole key.
                let key_of = |h: AuthorId| authors.name(h).and_then(|n| ledger.bound_key(n));
                let hash = key_hash(&key);
                match index.find(hash, |&h| key_of(h) == Some(&key)) {
                    Some(&first) => first,
                    None => {
                        index.insert_unique(hash, a, |&h| key_of(h).map_or(0, key_hash));
                        return Vec::new();
                    }
                }
            }
        };
        let (Some(first), Some(author)) = (
            self.authors.name(first).cloned(),
            self.authors.name(a).cloned(),
        ) else {
            return Vec::new();
        };
        let authors = self.shared_keys.entry(key).or_insert_with(|| vec![first]);
        if let Err(at) = authors.binary_search(&author) {
            authors.reserve_exact(1);
            authors.insert(at, author);
        }
        if authors.len() < 2 {
            return Vec::new();
        }
        let sharing: Vec<Arc<str>> = authors.to_vec();
        for name in &sharing {
            if let Some(h) = self.authors.find(name) {
                if self.file(h).is_some() {
                    self.set_flag(h, Flags::KEY_SHARED, true);
                }
            }
        }
        sharing.iter().map(|a| a.to_string()).collect()
    }

    /// The handle of `id`, interned if new (sharing the lent copy of the
    /// entry's author, else allocating the id), with an empty slot in
    /// `subjects`. `None` only past 2^32 authors.
    fn handle(&mut self, id: &str) -> Option<AuthorId> {
        if let Some(a) = self.authors.find(id) {
            return Some(a);
        }
        let a = match &self.lent {
            Some(lent) if **lent == *id => self.authors.intern_shared(lent)?,
            _ => self.authors.intern(id)?,
        };
        while self.subjects.len() <= a.index() {
            self.subjects.push(Subject::default());
        }
        while self.flags.len() <= a.index() {
            self.flags.push(Flags::default());
        }
        Some(a)
    }

    /// The flags of a handle (none for a handle without a slot).
    fn flags_of(&self, a: AuthorId) -> Flags {
        self.flags.get(a.index()).copied().unwrap_or_default()
    }

    /// Sets or clears a flag of a handle.
    fn set_flag(&mut self, a: AuthorId, flag: u8, on: bool) {
        if let Some(f) = self.flags.get_mut(a.index()) {
            f.set(flag, on);
        }
    }

    /// Whether the subject under a handle is filed and counted live.
    fn counted(&self, a: AuthorId) -> bool {
        self.flags_of(a).filed_with(Flags::COUNTED_LIVE)
    }

    /// The subject filed under `id`.
    fn subject(&self, id: &str) -> Option<&Subject> {
        self.subject_at(self.authors.find(id)?)
    }

    /// The subject filed under a handle.
    fn subject_at(&self, a: AuthorId) -> Option<&Subject> {
        if !self.flags_of(a).has(Flags::FILED) {
            return None;
        }
        self.subjects.get(a.index())
    }

    /// The subject under a handle, mutably, if filed.
    fn subject_at_mut(&mut self, a: AuthorId) -> Option<&mut Subject> {
        if !self.flags_of(a).has(Flags::FILED) {
            return None;
        }
        self.subjects.get_mut(a.index())
    }

    /// The subject under a handle, filed (empty) if it was not.
    fn file(&mut self, a: AuthorId) -> Option<&mut Subject> {
        let s = self.subjects.get_mut(a.index())?;
        self.flags.get_mut(a.index())?.set(Flags::FILED, true);
        Some(s)
    }

    /// The subject `id`, created empty if absent.
    fn subject_named(&mut self, id: &str) -> Option<&mut Subject> {
        let a = self.handle(id)?;
        self.file(a)
    }

    /// Every filed subject's handle and id, sorted by id.
    fn sorted_subjects(&self) -> impl Iterator<Item = (AuthorId, &Arc<str>)> + '_ {
        self.authors
            .sorted()
            .into_iter()
            .filter(|&a| self.subject_at(a).is_some())
            .filter_map(|a| Some((a, self.authors.name(a)?)))
    }

    /// [`Derived::apply`], a subject first filed under the entry's author
    /// sharing `author` (the ledger's copy of that id) rather than
    /// allocating another: one id allocation per member in the node.
    /// The entry must be linked in `ledger`, whose bound keys a derivation
    /// made by [`Derived::for_node`] reads.
    pub(crate) fn apply_sharing(
        &mut self,
        e: &Entry,
        ledger: &Ledger,
    ) -> Result<Vec<String>, String> {
        self.lent = ledger.shared_author(&e.author);
        let out = self.apply_with(e, Some(ledger));
        self.lent = None;
        out
    }

    /// Folds one entry in; returns the subjects it may have changed.
    pub fn apply(&mut self, e: &Entry) -> Result<Vec<String>, String> {
        self.apply_with(e, None)
    }

    /// [`Derived::apply`], with the ledger that linked the entry if any.
    fn apply_with(&mut self, e: &Entry, ledger: Option<&Ledger>) -> Result<Vec<String>, String> {
        let mut touched: BTreeSet<String> = self.note_key(e, ledger).into_iter().collect();
        let author_live = self
            .authors
            .find(&e.author)
            .is_some_and(|a| self.counted(a));
        if e.kind == KIND_SUSPECT_HELD {
            self.apply_held(e, author_live, &mut touched)?;
        }
        // Whether a profile's entry id was kept (its author had no claim):
        // dropped below if this entry gave it one.
        let mut profile_entry_kept = false;
        for fact in facts(e)? {
            match fact {
                Fact::Claim {
                    subject,
                    inc,
                    state,
                } => {
                    // A suspicion keeps its author for good, by handle.
                    let by = if state == PeerState::Suspect {
                        self.handle(&e.author)
                    } else {
                        None
                    };
                    let Some(sh) = self.handle(&subject) else {
                        continue;
                    };
                    let Some(s) = self.file(sh) else {
                        continue;
                    };
                    match state {
                        PeerState::Alive => {
                            let slot = &mut s.own.entry_or_default(U64Words::new(inc)).alive;
                            let held = slot
                                .as_ref()
                                .and_then(|a| resolve(a.entry(), &subject, ledger));
                            if held.is_none_or(|old| e.id < old) {
                                *slot = Some(AliveId::new(&subject, e.seq, e.id, ledger));
                            }
                        }
                        PeerState::Left => {
                            s.own.entry_or_default(U64Words::new(inc));
                            let left = s.others_mut().left.get_or_insert_with(Box::default);
                            let mut id = left.get(&inc).copied();
                            if keep_min(&mut id, e.id) {
                                if let Some(id) = id {
                                    left.insert(inc, id);
                                }
                            }
                        }
                        PeerState::Suspect => {
                            let Some(by) = by else {
                                continue;
                            };
                            let sus = s.others_mut().suspects.entry_or_default(inc);
                            let mut id = sus.authors.get(&by).copied();
                            let new_author = id.is_none();
                            if keep_min(&mut id, e.id) {
                                if let Some(id) = id {
                                    sus.authors.insert(by, id);
                                }
                            }
                            keep_min(&mut sus.first, e.id);
                            if new_author && author_live {
                                sus.live = sus.live.saturating_add(1);
                            }
                            self.by_author.entry(by).or_default().insert((sh, inc));
                        }
                        PeerState::Dead => {
                            let mut id = s.verdict(inc);
                            if keep_min(&mut id, e.id) {
                                if let Some(id) = id {
                                    s.others_mut().verdicts.insert(inc, id);
                                }
                            }
                        }
                    }
                    touched.insert(subject);
                }
                Fact::Profile { addr, meta } => {
                    let Some(s) = self.subject_named(&e.author) else {
                        continue;
                    };
                    if s.profile.is_none() || e.seq > s.profile_seq() {
                        let entry = s.own.last_key_value().is_none().then_some(e.id);
                        profile_entry_kept |= entry.is_some();
                        if entry.is_some() || s.others.is_some() {
                            s.others_mut().profile_entry = entry.map(Box::new);
                        }
                        s.set_profile_seq(e.seq);
                        s.profile = Some(Arc::new(Profile {
                            addr: Address::new(addr),
                            meta: Pairs::new(&meta),
                        }));
                        touched.insert(e.author.clone());
                    }
                }
            }
        }
        if profile_entry_kept {
            if let Some(s) = self
                .authors
                .find(&e.author)
                .and_then(|a| self.subjects.get_mut(a.index()))
            {
                if s.own.last_key_value().is_some() {
                    if let Some(o) = s.others.as_mut() {
                        o.profile_entry = None;
                    }
                    if s.others.as_deref().is_some_and(Others::is_empty) {
                        s.others = None;
                    }
                }
            }
        }
        for id in &touched {
            self.refresh(id);
        }
        self.settle(&mut touched);
        Ok(touched.into_iter().collect())
    }

    /// Folds in a `suspect-held` entry: a vote of the time-based rule once
    /// its `held_ms` reaches [`SUSPICION_LAPSE_MS`] (a shorter one is kept
    /// in the ledger but counts for nothing).
    fn apply_held(
        &mut self,
        e: &Entry,
        author_live: bool,
        touched: &mut BTreeSet<String>,
    ) -> Result<(), String> {
        let b: HeldBody = parse(e)?;
        if b.subject == e.author {
            return Err(format!(
                "entry {}#{}: a node cannot suspect itself",
                e.author, e.seq
            ));
        }
        if b.held_ms < SUSPICION_LAPSE_MS {
            return Ok(());
        }
        let (Some(by), Some(sh)) = (self.handle(&e.author), self.handle(&b.subject)) else {
            return Ok(());
        };
        let Some(s) = self.file(sh) else {
            return Ok(());
        };
        let sus = s.others_mut().suspects.entry_or_default(b.inc);
        if sus.held.insert(by) && author_live {
            sus.held_live = sus.held_live.saturating_add(1);
        }
        self.by_author.entry(by).or_default().insert((sh, b.inc));
        touched.insert(b.subject);
        Ok(())
    }

    /// Recomputes a subject's claim without verdicts, whether it is
    /// counted live (and with it its suspicions of others), and its place
    /// among the candidates.
    fn refresh(&mut self, id: &str) {
        if let Some(a) = self.authors.find(id) {
            self.refresh_at(a);
        }
    }

    /// [`Derived::refresh`] of a handle.
    fn refresh_at(&mut self, a: AuthorId) {
        let Some(s) = self.subject_at(a) else {
            return;
        };
        let flags = self.flags_of(a);
        let shares_key = flags.has(Flags::KEY_SHARED);
        let live = s.profile.is_some()
            && s.base_claim().is_none_or(|c| c.state != PeerState::Left)
            && !shares_key;
        let flipped = live != flags.has(Flags::COUNTED_LIVE);
        self.set_flag(a, Flags::COUNTED_LIVE, live);
        if flipped {
            self.counted_live = if live {
                self.counted_live.saturating_add(1)
            } else {
                self.counted_live.saturating_sub(1)
            };
            self.recheck = true;
            let targets: Vec<(AuthorId, u64)> = self
                .by_author
                .get(&a)
                .map(|t| t.iter().copied().collect())
                .unwrap_or_default();
            for (subject, inc) in targets {
                let Some(sus) = self
                    .subject_at_mut(subject)
                    .and_then(|t| t.suspects_mut(inc))
                else {
                    continue;
                };
                // `by_author` holds (subject, inc) for a `suspect` or a
                // `suspect-held` entry: count the author where it is one.
                if sus.authors.contains_key(&a) {
                    sus.live = if live {
                        sus.live.saturating_add(1)
                    } else {
                        sus.live.saturating_sub(1)
                    };
                }
                if sus.held.contains(&a) {
                    sus.held_live = if live {
                        sus.held_live.saturating_add(1)
                    } else {
                        sus.held_live.saturating_sub(1)
                    };
                }
                self.place(subject);
            }
        }
        self.place(a);
        if !self.sticky.is_empty()
            && self
                .authors
                .name(a)
                .is_some_and(|id| self.sticky.contains_key(&**id))
        {
            self.recheck = true;
        }
    }

    /// Keeps a subject's entry in `candidates` in step with its state.
    fn place(&mut self, a: AuthorId) {
        let Some(id) = self.authors.name(a) else {
            return;
        };
        if !self.flags_of(a).has(Flags::FILED) {
            return;
        }
        let Some(s) = self.subjects.get_mut(a.index()) else {
            return;
        };
        let new_pair = s.candidate_count();
        let old_pair = s.candidate();
        if new_pair == old_pair {
            return;
        }
        // Either is `Some`, so the subject has a verdict and `others`.
        if let Some(o) = s.others.as_mut() {
            o.candidate = new_pair;
        }
        let (old, old_held) = (old_pair.map(|p| p.0), old_pair.map(|p| p.1));
        let (new, new_held) = (new_pair.map(|p| p.0), new_pair.map(|p| p.1));
        if let Some(k) = old {
            self.candidates.remove(&(Reverse(k), id.clone()));
        }
        if let Some(k) = new {
            self.candidates.insert((Reverse(k), id.clone()));
        }
        if let Some(h) = old_held {
            self.held_candidates.remove(&(Reverse(h), id.clone()));
        }
        if let Some(h) = new_held {
            self.held_candidates.insert((Reverse(h), id.clone()));
        }
        self.recheck = true;
    }

    /// Recomputes `V` if needed; adds the subjects that entered or left it
    /// to `touched`.
    fn settle(&mut self, touched: &mut BTreeSet<String>) {
        if !std::mem::take(&mut self.recheck) {
            return;
        }
        let mut v: BTreeSet<String> = self.sticky_dead();
        let mut by_quorum = self.candidates.iter().peekable();
        let mut by_time = self.held_candidates.iter().peekable();
        loop {
            while by_quorum.peek().is_some_and(|(_, id)| v.contains(&**id)) {
                by_quorum.next();
            }
            while by_time.peek().is_some_and(|(_, id)| v.contains(&**id)) {
                by_time.next();
            }
            let live = self.counted_live.saturating_sub(v.len());
            if let Some((Reverse(k), id)) = by_quorum.peek() {
                if *k >= death_quorum(live, self.quorum_floor) {
                    v.insert(id.to_string());
                    continue;
                }
            }
            if let Some((Reverse(h), id)) = by_time.peek() {
                if *h >= lapse_quorum(live, self.quorum_floor) {
                    v.insert(id.to_string());
                    continue;
                }
            }
            break;
        }
        if v != self.dead {
            touched.extend(self.dead.symmetric_difference(&v).cloned());
            self.dead = v;
        }
    }

    /// The winning claim about a subject.
    pub fn claim(&self, id: &str) -> Option<Claim> {
        self.claim_entry(id).map(|(c, _)| c)
    }

    /// [`Derived::claim`], with where the id of its entry is.
    fn claim_entry(&self, id: &str) -> Option<(Claim, EntryRef)> {
        let s = self.subject(id)?;
        let (base, entry) = s.base_claim_entry()?;
        if self.dead.contains(id) {
            if let Some(verdict) = s.verdict(base.inc) {
                let (inc, state) = (base.inc, PeerState::Dead);
                return Some((Claim { inc, state }, EntryRef::Id(verdict)));
            }
        }
        Some((base, entry))
    }

    /// Members counted live now (`alive` or `suspect`): the `L` of the
    /// death rule.
    pub fn live_count(&self) -> usize {
        self.counted_live.saturating_sub(self.dead.len())
    }

    /// Distinct suspecters a verdict needs now.
    pub fn quorum_needed(&self) -> usize {
        death_quorum(self.live_count(), self.quorum_floor)
    }

    /// Distinct long-held suspecters a verdict needs now under the
    /// time-based rule ([`lapse_quorum`]).
    pub fn lapse_quorum_needed(&self) -> usize {
        lapse_quorum(self.live_count(), self.quorum_floor)
    }

    /// Distinct authors counted live whose `suspect-held(subject, inc)`
    /// reached [`SUSPICION_LAPSE_MS`].
    pub fn held_suspecters(&self, subject: &str, inc: u64) -> usize {
        self.subject(subject)
            .and_then(|s| s.suspects(inc))
            .map_or(0, |s| s.held_live)
    }

    /// Whether `author` wrote a `suspect-held(subject, inc)` that reached
    /// [`SUSPICION_LAPSE_MS`].
    pub fn held_by(&self, subject: &str, inc: u64, author: &str) -> bool {
        self.subject(subject)
            .and_then(|s| s.suspects(inc))
            .is_some_and(|s| {
                self.authors
                    .find(author)
                    .is_some_and(|a| s.held.contains(&a))
            })
    }

    /// Whether `id` announced incarnation `inc` itself (a `join` or
    /// `alive` entry of its own).
    pub fn announced(&self, id: &str, inc: u64) -> bool {
        self.subject(id)
            .and_then(|s| s.own.get(&U64Words::new(inc)))
            .is_some_and(|o| o.alive.is_some())
    }

    /// The highest incarnation `id` announced itself, if any.
    pub fn own_incarnation(&self, id: &str) -> Option<u64> {
        let s = self.subject(id)?;
        s.own
            .iter()
            .rev()
            .find(|(_, o)| o.alive.is_some())
            .map(|(inc, _)| inc.get())
    }

    /// Distinct authors counted live that suspect (subject, inc).
    pub fn live_suspecters(&self, subject: &str, inc: u64) -> usize {
        self.subject(subject)
            .and_then(|s| s.suspects(inc))
            .map_or(0, |s| s.live)
    }

    /// Whether `author` wrote a `suspect(subject, inc)`.
    pub fn suspected_by(&self, subject: &str, inc: u64, author: &str) -> bool {
        self.subject(subject)
            .and_then(|s| s.suspects(inc))
            .is_some_and(|s| {
                self.authors
                    .find(author)
                    .is_some_and(|a| s.authors.contains_key(&a))
            })
    }

    /// The ids of the `suspect(subject, inc)` entries of authors counted
    /// live, one per author, sorted.
    pub fn suspect_ids(&self, subject: &str, inc: u64) -> Vec<Hash> {
        let Some(sus) = self.subject(subject).and_then(|s| s.suspects(inc)) else {
            return Vec::new();
        };
        let mut ids: Vec<Hash> = sus
            .authors
            .iter()
            .filter(|(a, _)| self.counted(**a))
            .map(|(_, id)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Whether any `confirm-dead(subject, inc)` is held (effective or
    /// still waiting for its evidence).
    pub fn has_verdict(&self, subject: &str, inc: u64) -> bool {
        self.subject(subject)
            .is_some_and(|s| s.verdict(inc).is_some())
    }

    /// A member, if its own profile is known (a member appears once the
    /// node has one entry the member wrote itself).
    pub fn member(&self, id: &str) -> Option<Member> {
        let s = self.subject(id)?;
        let p = s.profile.as_ref()?;
        let (state, inc) = self
            .claim(id)
            .map_or((PeerState::Alive, 0), |c| (c.state, c.inc));
        Some(Member {
            id: id.to_string(),
            address: p.addr.text(),
            state,
            incarnation: inc,
            metadata: p.meta.to_vec(),
        })
    }

    /// A member as the roster keeps it, if its own profile is known: the
    /// shared id and profile, its state and incarnation (the parts of
    /// [`Derived::member`], without copying a string).
    pub(crate) fn record(&self, id: &str) -> Option<(AuthorId, Arc<Profile>, PeerState, u64)> {
        let a = self.authors.find(id)?;
        let s = self.subject_at(a)?;
        let p = s.profile.as_ref()?.clone();
        let (state, inc) = self
            .claim(id)
            .map_or((PeerState::Alive, 0), |c| (c.state, c.inc));
        Some((a, p, state, inc))
    }

    /// The table of handles this derivation files its subjects under (the
    /// roster and the probe order name members by these handles).
    pub(crate) fn authors(&self) -> &Authors {
        &self.authors
    }

    /// A member's address, if its own profile is known.
    pub(crate) fn address(&self, id: &str) -> Option<String> {
        self.subject(id)?.profile.as_ref().map(|p| p.addr.text())
    }

    /// The id of the entry behind a member's current appearance (the
    /// smallest id among equal winning claims). `ledger`: the one a
    /// node's derivation ([`Derived::for_node`]) got its entries with.
    pub fn entry_of(&self, id: &str, ledger: Option<&Ledger>) -> Option<Hash> {
        let s = self.subject(id)?;
        self.claim_entry(id)
            .and_then(|(_, r)| resolve(r, id, ledger))
            .or(s
                .profile
                .as_ref()
                .and(s.others.as_ref())
                .and_then(|o| o.profile_entry.as_deref().copied()))
    }

    /// Every member, sorted by id.
    pub fn members(&self) -> Vec<Member> {
        self.sorted_subjects()
            .filter_map(|(_, id)| self.member(id))
            .collect()
    }

    /// Asserts that the cached counts agree with a recount. O(entries):
    /// for tests.
    pub fn check_invariants(&self) {
        let live = self
            .flags
            .iter()
            .filter(|f| f.filed_with(Flags::COUNTED_LIVE))
            .count();
        assert_eq!(live, self.counted_live, "derived: counted live");
        for (a, id) in self.authors.iter() {
            let Some(s) = self.subject_at(a) else {
                continue;
            };
            let suspects = s.others.iter().flat_map(|o| o.suspects.iter());
            for (inc, sus) in suspects {
                let n = sus.authors.keys().filter(|a| self.counted(**a)).count();
                assert_eq!(n, sus.live, "derived: suspecters of {id}@{inc}");
                let h = sus.held.iter().filter(|a| self.counted(**a)).count();
                assert_eq!(h, sus.held_live, "derived: held suspecters of {id}@{inc}");
            }
            assert_eq!(
                s.candidate(),
                s.candidate_count(),
                "derived: candidate {id}"
            );
        }
        assert!(!self.recheck, "derived: verdicts left unsettled");
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
    // The bodies are plain structs of strings and integers, which always
    // serialise; an empty body would be rejected as invalid by `facts`.
    serde_json::to_vec(b).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::BTreeSet;

    use nodeplane_entry::signing::ed25519::{key_field, KeyPair, NativeVerifier};

    use super::*;
    use crate::ledger::{Insert, GENESIS_PREV};

    thread_local! {
        /// Test hook: [`key_hash`] keeps only these bits (all of them
        /// unless a test narrows it, on its own thread), so a test can
        /// make distinct keys collide in [`KeyIndex::Ledger`].
        pub(super) static KEY_HASH_MASK: Cell<u64> = const { Cell::new(u64::MAX) };
    }

    #[test]
    fn plain_profile_bodies_read_as_serde_json_reads_them() {
        let with_key = ProfileBody {
            inc: 3,
            addr: "10.0.0.1:7000".into(),
            meta: vec![
                ("k".into(), "v".into()),
                ("overlay-ip".into(), "10.1.0.3".into()),
            ],
            signing_key: Some("ab".repeat(32)),
        };
        let without = ProfileBody {
            inc: u64::MAX,
            addr: "[::1]:1".into(),
            meta: Vec::new(),
            signing_key: None,
        };
        for b in [with_key, without] {
            let bytes = body(&b);
            assert_eq!(plain_profile(&bytes), Some(b.clone()));
            assert_eq!(serde_json::from_slice::<ProfileBody>(&bytes).ok(), Some(b));
        }
        // Not plain (an escape, a space): left to serde_json.
        assert_eq!(
            plain_profile(br#"{"inc":1,"addr":"a\u0062","meta":[]}"#),
            None
        );
        assert_eq!(plain_profile(br#"{"inc":1, "addr":"a","meta":[]}"#), None);
    }

    /// `author`'s first `join`, declaring and signed by `signer`'s key.
    fn join(author: &str, signer: &str) -> Entry {
        let k = KeyPair::derived(b"key-index-tests", signer);
        let body = format!(
            "{{\"inc\":1,\"addr\":\"10.0.0.1:7000\",{}}}",
            key_field(&k.public_key())
        );
        k.sign(Entry::new(
            author,
            1,
            GENESIS_PREV,
            1,
            "join",
            body.into_bytes(),
        ))
    }

    /// Folds `entries` into a node's derivation (hash table confirmed on
    /// the ledger's keys) and into a standalone one (`BTreeMap` by key):
    /// every answer must be the same.
    fn same_sharing_as_a_map(entries: &[Entry]) {
        let mut ledger = Ledger::new();
        let mut node = Derived::for_node(0);
        let mut map = Derived::new();
        for e in entries {
            let Ok(Insert::Linked(linked)) = ledger.insert(e.clone(), &mut NativeVerifier) else {
                panic!("{} links", e.author);
            };
            for l in linked {
                let by_node: BTreeSet<String> = node
                    .apply_sharing(&l, &ledger)
                    .unwrap()
                    .into_iter()
                    .collect();
                let by_map: BTreeSet<String> = map.apply(&l).unwrap().into_iter().collect();
                assert_eq!(by_node, by_map, "touched by {}", l.author);
                assert_eq!(node.live_count(), map.live_count(), "after {}", l.author);
            }
        }
        assert_eq!(node.members(), map.members());
        assert_eq!(node.shared_keys, map.shared_keys);
        for e in entries {
            // The claim's entry: a reference into the ledger in the
            // node's derivation ([`AliveId::Seq`]), the id in the other.
            assert_eq!(node.claim(&e.author), map.claim(&e.author));
            assert!(node.entry_of(&e.author, Some(&ledger)).is_some());
            let kept = node
                .subject(&e.author)
                .and_then(|s| s.own.last_key_value())
                .and_then(|(_, o)| o.alive.as_ref());
            assert!(matches!(kept, Some(AliveId::Seq(_))), "{}", e.author);
            assert_eq!(
                node.entry_of(&e.author, Some(&ledger)),
                map.entry_of(&e.author, None),
                "entry of {}",
                e.author
            );
            let (n, m) = (node.authors.find(&e.author), map.authors.find(&e.author));
            assert_eq!(
                n.map(|a| node.flags_of(a)),
                m.map(|a| map.flags_of(a)),
                "{}",
                e.author
            );
        }
        node.check_invariants();
        map.check_invariants();
    }

    /// Five authors, three keys: `a`, `c` and `e` share one, `b` and `d`
    /// another, `f` has its own.
    fn authors() -> Vec<Entry> {
        [
            ("c", "k1"),
            ("b", "k2"),
            ("a", "k1"),
            ("f", "k3"),
            ("d", "k2"),
            ("e", "k1"),
        ]
        .iter()
        .map(|(a, k)| join(a, k))
        .collect()
    }

    #[test]
    fn key_index_sharing_matches_a_map_by_key() {
        same_sharing_as_a_map(&authors());
    }

    #[test]
    fn own_entry_ids_read_from_the_ledger_match_the_ids() {
        // `a` announces incarnation 2 twice (the smaller id wins), then
        // 3; `b` announces 1 only. Checked after each entry: the node's
        // derivation keeps sequence numbers, the standalone one ids.
        let k = KeyPair::derived(b"key-index-tests", "ka");
        let first = join("a", "ka");
        let mut entries = vec![first.clone(), join("b", "kb")];
        let mut prev = first.id;
        for (seq, inc) in [(2, 2), (3, 2), (4, 3)] {
            let body = body(&ProfileBody {
                inc,
                addr: format!("10.0.0.{seq}:7000"),
                meta: Vec::new(),
                signing_key: None,
            });
            let e = k.sign(Entry::new("a", seq, prev, seq, KIND_ALIVE, body));
            prev = e.id;
            entries.push(e);
        }
        for n in 1..=entries.len() {
            same_sharing_as_a_map(entries.get(..n).unwrap_or_default());
        }
    }

    #[test]
    fn profile_sequence_numbers_beyond_32_bits_still_order_profiles() {
        // Derivations do not check chains: a profile's sequence number is
        // whatever the entry says. The latest profile is the one with the
        // highest, across the 32-bit boundary where it moves to `others`.
        let mut d = Derived::new();
        let big = u64::from(u32::MAX);
        let steps = [
            (1, 1),
            (big - 1, 2),
            (big, 3),
            (big + 7, 4),
            (big + 3, 5), // lower: ignored
            (2, 6),       // lower: ignored
            (u64::MAX, 7),
        ];
        let mut latest = 0;
        for (seq, n) in steps {
            let body = body(&ProfileBody {
                inc: 1,
                addr: format!("10.0.0.{n}:7000"),
                meta: Vec::new(),
                signing_key: None,
            });
            d.apply(&Entry::new("a", seq, GENESIS_PREV, 1, KIND_ALIVE, body))
                .unwrap();
            if seq >= latest {
                latest = seq;
                assert_eq!(d.subject("a").map(Subject::profile_seq), Some(seq));
                assert_eq!(d.address("a"), Some(format!("10.0.0.{n}:7000")));
            }
        }
        assert_eq!(d.subject("a").map(Subject::profile_seq), Some(u64::MAX));
        assert_eq!(d.address("a").as_deref(), Some("10.0.0.7:7000"));
        d.check_invariants();
    }

    #[test]
    fn key_index_colliding_hashes_are_told_apart_by_the_whole_key() {
        // Every key hashes alike: each lookup meets every other key's
        // first author and must confirm on the bound key.
        KEY_HASH_MASK.with(|m| m.set(0));
        same_sharing_as_a_map(&authors());
        // Two buckets: some keys collide, some do not.
        KEY_HASH_MASK.with(|m| m.set(1));
        same_sharing_as_a_map(&authors());
        KEY_HASH_MASK.with(|m| m.set(u64::MAX));
    }

    #[test]
    fn key_index_growing_through_collisions_keeps_every_key_findable() {
        // 60 authors over 23 keys, in an order unlike author order: the
        // table grows (rehashing on the ledger's bound keys) with every
        // hash alike, in 4 buckets, and in full.
        let entries: Vec<Entry> = (0..60u32)
            .map(|i| {
                let n = (i * 37) % 60;
                join(&format!("n{n:02}"), &format!("k{}", n % 23))
            })
            .collect();
        for mask in [0, 3, u64::MAX] {
            KEY_HASH_MASK.with(|m| m.set(mask));
            same_sharing_as_a_map(&entries);
        }
        KEY_HASH_MASK.with(|m| m.set(u64::MAX));
    }

    #[test]
    fn packed_v4_words_round_trip_and_keep_addresses_apart() {
        for k in [0u64, 1, 0xffff, 0x1_0000, 0x0a00_0001_1f4a, (1 << 48) - 1] {
            assert_eq!(PackedV4::new(k).map(PackedV4::get), Some(k));
        }
        assert_eq!(PackedV4::new(1 << 48), None);
        for s in [
            "10.0.0.1:7000",
            "255.255.255.255:65535",
            "0.0.0.0:0",
            "[::1]:80",
        ] {
            let a = Address::new(s.to_string());
            assert_eq!(a.to_string(), s);
            assert!(a.is(s));
            assert!(!a.is("10.0.0.1:7001"));
        }
        assert!(matches!(
            Address::new("10.0.0.1:7000".into()),
            Address::V4(_)
        ));
        // At most 12 bytes on wasm32 (a `u64` inside made it 16).
        assert!(
            std::mem::size_of::<Address>()
                <= std::mem::size_of::<Box<str>>() + std::mem::size_of::<usize>()
        );
    }
}
