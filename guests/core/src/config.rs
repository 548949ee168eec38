//! Configuration, tunables and every protocol bound, each with its default
//! and the reason for it. This is the one place to look for a number.

use crate::error::Error;

pub use nodeplane_types::tunables::{
    DEFAULT_ANTI_ENTROPY_INTERVAL_MS, DEFAULT_DEATH_QUORUM, DEFAULT_INDIRECT_PROBES,
    DEFAULT_PROBE_INTERVAL_MS, DEFAULT_PROBE_TIMEOUT_MS, DEFAULT_RETRANSMIT_MULTIPLIER,
    DEFAULT_SUSPICION_MULTIPLIER,
};
pub use nodeplane_types::{NodeConfig, Tunables, MAX_MESSAGE_BYTES};

/// Maximum suspicion timeout as a multiple of the minimum (Lifeguard uses
/// 6; 3 keeps a lone suspicion from lingering while the quorum still gates
/// the verdict).
pub const SUSPICION_MAX_FACTOR: u64 = 3;
/// Interval of the gossip tick that pushes fresh entries to a few members
/// and applies the death rule to suspicions whose timeout has passed.
pub const GOSSIP_INTERVAL_MS: u64 = 200;
/// Members a gossip tick pushes fresh entries to.
pub const GOSSIP_FANOUT: usize = 3;
/// Members a leaving node announces its `left` entry to, in each of its two
/// announcement rounds.
pub const LEAVE_FANOUT: usize = 6;
/// Delay of the leaving node's second announcement round.
pub const LEAVE_REPEAT_MS: u64 = 150;
/// Highest local health score (Lifeguard's "local health multiplier").
pub const HEALTH_MAX: u32 = 8;
/// From this health score on the node withholds its own suspicions: its
/// failed probes more likely say something about itself than its peers.
pub const HEALTH_WITHHOLD_SUSPICION: u32 = 4;
/// Extra direct pings sent at the probe timeout, beside the indirect
/// probes. Under 20 % loss a round trip fails 36 % of the time; two more
/// tries make a false failure of the whole probe about 1 % (with three
/// helpers) instead of 7 %.
pub const DIRECT_RETRIES_AT_TIMEOUT: usize = 2;
/// A helper relaying an indirect probe answers `nack` after this share of
/// the requester's remaining period (interval - timeout), so the nack
/// arrives before the requester's verdict.
pub const NACK_WAIT_PERCENT: u64 = 80;
/// A probe still unanswered this far (percent) into the time left in the
/// period after the probe timeout asks a second, disjoint set of helpers.
/// When 10 % of node pairs cannot talk directly, three helpers all fail for
/// 0.7 % of indirect probes (each needs both of its links); six for
/// 0.005 %. Early enough for the second round trip to finish in the period.
pub const INDIRECT_RETRY_PERCENT: u64 = 40;
/// Suspected subjects this node re-probes per period to confirm or clear a
/// suspicion it learnt from others.
pub const CONFIRM_PROBES_PER_PERIOD: usize = 4;
/// Upper bound of the random delay added before writing `confirm-dead`, so
/// that usually one node writes the verdict and the others just receive it.
pub const CONFIRM_JITTER_MS: u64 = 600;
/// Minimum gap between two reconciliations started towards one address.
pub const SYNC_MIN_GAP_MS: u64 = 1_000;
/// Byte budget for entries in one message (leaves room for the envelope).
pub const ENTRY_BYTES_BUDGET: usize = 56_000;
/// Byte budget for entries piggybacked on a ping, ack or gossip push: keeps
/// probe traffic inside one ordinary UDP datagram.
pub const PIGGYBACK_BYTES_BUDGET: usize = 1_200;
/// Most entries in one message.
pub const MAX_ENTRIES_PER_MESSAGE: usize = 1_024;
/// Most reconciliation items (bucket digests or leaves) in one message.
pub const MAX_SYNC_ITEMS: usize = 256;
/// Most (author, seq) heads in one leaf item, and most authors in a want.
pub const MAX_HEADS: usize = 2_048;
/// Fan-out of the reconciliation tree over authors (one nibble per level).
pub const SYNC_FANOUT: usize = 16;
/// Deepest reconciliation path (nibbles of the author hash).
pub const MAX_SYNC_DEPTH: usize = 16;
/// A bucket with at most this many authors is sent as a leaf (its heads)
/// instead of its child digests.
pub const SYNC_LEAF_AUTHORS: usize = 8;
/// Entries messages sent in answer to one want; what does not fit is named
/// in the last message's `rest` and fetched with the next want.
pub const SYNC_BURST_MESSAGES: usize = 4;
/// A stream of one author's entries between two nodes (a burst answering a
/// want or a push, continued through `rest`) counts as in flight until it
/// has made no progress for this long. Meanwhile reconciliation rounds
/// neither ask for that author again nor send the peer what it already
/// streamed, so overlapping rounds (both sides start one on contact, and
/// again on every digest mismatch) and reordered burst messages do not ship
/// entries twice. A lost stream is picked up by the first round after it.
pub const STREAM_STALL_MS: u64 = 1_000;
/// Bytes of entries per second a node ships in answer to reconciliation
/// (`sync` pushes and `want`s), across all peers: a token bucket refilled
/// at this rate. A node that every other node reconciles with at once (the
/// seed of a mass start) would otherwise queue far more than its uplink
/// carries, and its streams would time out instead of arriving: at
/// N = 4 096 the seed's backlog grew without end and the cluster did not
/// converge (design §6, "Reconciliation's bandwidth budget"). 4 MB/s is a
/// third of a 100 Mbit/s uplink. Requests beyond it are not answered with
/// entries; the requester reconciles again a second later, with the seed
/// or with the members that got entries meanwhile, so the start spreads
/// over everyone's uplink instead of the seed's alone.
pub const RECONCILE_BYTES_PER_S: u64 = 4_000_000;
/// The bucket's depth: what a node that has been idle may ship at once
/// before the rate applies (half a second's worth).
pub const RECONCILE_BURST_BYTES: u64 = RECONCILE_BYTES_PER_S / 2;
/// The window over which requesters share [`RECONCILE_BYTES_PER_S`]
/// fairly: within it, a requester of reconciliation that was shipped more
/// than [`FAIR_SHARE_CAPACITY_BYTES`] divided by the requesters seen in it
/// is answered only from the bucket above [`FAIR_SHARE_RESERVE_BYTES`]
/// (design §6, "Fair shares"). Without it, one peer asking far more often
/// than the others took the whole bucket and the others were refused.
pub const FAIR_SHARE_WINDOW_MS: u64 = 1_000;
/// What the bucket can give in one [`FAIR_SHARE_WINDOW_MS`] at most (its
/// depth plus a window's refill): a requester alone in its window is never
/// held back by its share.
pub const FAIR_SHARE_CAPACITY_BYTES: u64 =
    RECONCILE_BURST_BYTES + RECONCILE_BYTES_PER_S * FAIR_SHARE_WINDOW_MS / 1_000;
/// The smallest fair share: one full answer, a burst of
/// [`SYNC_BURST_MESSAGES`] `entries` messages ([`ENTRY_BYTES_BUDGET`] each).
/// With thousands of requesters in a window (the seed of a mass start) an
/// even split would be a few entries each, and every answer a cut stream
/// that comes back as a new descent.
pub const FAIR_SHARE_MIN_BYTES: u64 = (SYNC_BURST_MESSAGES * ENTRY_BYTES_BUDGET) as u64;
/// The part of the bucket kept for requesters within their fair share:
/// what it holds above this goes to anyone, so an uncontended node answers
/// as if there were no shares, and a requester past its share cannot
/// drain the bucket below it (half the bucket).
pub const FAIR_SHARE_RESERVE_BYTES: u64 = RECONCILE_BURST_BYTES / 4;
/// Requesters whose shares are tracked one by one per window; beyond them,
/// requesters share one record, so the tracking stays bounded whatever the
/// number of senders (a seed of a mass start at N = 4 096 sees about
/// 4 000 requesters in its busiest second; the map costs about 60 bytes
/// a requester, on that node only, for one window).
pub const FAIR_SHARE_PEERS: usize = 8_192;
/// Most authors one `sync` answer pushes entries of: what one burst can
/// carry ([`SYNC_BURST_MESSAGES`] × [`MAX_ENTRIES_PER_MESSAGE`]) plus the
/// [`MAX_HEADS`] its `rest` can name. A peer that lacks more (a new node
/// asking a member of a large cluster) gets the others in its next rounds;
/// without the cap the answer listed every author the node holds, a
/// transient allocation growing with N (about 430 KB at N = 512).
pub const SYNC_PUSH_AUTHORS: usize = SYNC_BURST_MESSAGES * MAX_ENTRIES_PER_MESSAGE + MAX_HEADS;
/// Streams (messages larger than a datagram) the answers to one peer's
/// `sync` leaves may send at once in a window (from the first answer to
/// the next gossip tick with nothing held); once they have, later answers
/// are held and shipped on the tick as one push and one want (design §6,
/// "One push per descent"). The transport sets up at most 32 streams per
/// sender at once and drops the others; answers of datagrams (a few
/// entries each: a small difference over many authors) are never held.
/// A descent over up to about 2 000 authors (S1 up to N = 1 024) reaches
/// its leaves in at most 8 messages of [`SYNC_ITEMS_PER_MESSAGE`] and
/// waits for nothing; one over 10 000 (130 messages) is held after 16
/// streams. Half the transport's 32: the rest is left to the node's other
/// peers. A gossip tick's flush of what is held for a peer sends it at
/// most half as many streams, and asks it for at most as many streams'
/// worth (a burst per `want`), so that the two sides' flushes together
/// stay within this.
/// Holding from the second answer on delayed S1 at N = 256 by 0.15 s;
/// counting answers instead of streams delayed S6 at d = 100,
/// A = 10 000 by 0.2 s.
pub const SYNC_STREAMS_AT_ONCE: u64 = 16;
/// Authors per slice of a held push or want (design §6): what one
/// `sync` message of leaves names at most ([`SYNC_ITEMS_PER_MESSAGE`]
/// leaves of [`SYNC_LEAF_AUTHORS`]), so that a held answer's bursts and
/// their `rest` are no longer than an unheld one's. Shipping a held push
/// of many authors as one burst named the others in its `rest` and again
/// in each `want` that followed (S6 at d = 10 000, A = 1 024: 24 → 104 KB).
pub const SYNC_SLICE_AUTHORS: usize = SYNC_ITEMS_PER_MESSAGE * SYNC_LEAF_AUTHORS;
/// How long a held answer to a peer's `sync` descent (the push and the
/// want of its later leaves, shipped once per gossip tick: design §6,
/// "One push per descent") is kept after the last `sync` that added to
/// it. What is not shipped by then is forgotten; the peer's next round
/// finds it again. Long enough for a full held push
/// ([`SYNC_PUSH_AUTHORS`] authors, one burst per tick) to drain.
pub const SYNC_HELD_MS: u64 = 2_000;
/// Most authors held across all peers (pushes and wants together). A
/// `sync` that would hold more is answered at once, as an unheld one is:
/// peers sending leaves from many addresses cannot grow the held answers
/// beyond this (about 2.5 MB at 64-byte ids), while one peer's full
/// descent (a push and a want of [`SYNC_PUSH_AUTHORS`] each) fits twice.
pub const SYNC_HELD_AUTHORS: usize = 4 * SYNC_PUSH_AUTHORS;
/// Shortest gap between two `reconcile-throttled` log lines.
pub const THROTTLE_LOG_GAP_MS: u64 = 1_000;
/// Entries received ahead of their chain kept while the gap is fetched.
/// When full, the oldest buffered entry expires to make room: a sender of
/// entries whose gaps never fill cannot pin the buffer, and an honest entry
/// that expired is fetched again once its chain reaches it.
pub const MAX_PENDING_ENTRIES: usize = 8_192;
/// How long an entry stays on the gossip queue: infection-style spread
/// finishes in a few gossip ticks; after that the frontier-digest
/// anti-entropy delivers what gossip missed, so older entries stop costing
/// bandwidth.
pub const BROADCAST_MAX_AGE_MS: u64 = 1_500;
/// After this many consecutive pings and acks that carried our own
/// frontier digest (and no change of ours since), the node drops its gossip
/// queue: the members it hears from already hold everything it holds, and
/// digest anti-entropy covers any straggler.
pub const GOSSIP_QUIET_AFTER_AGREEING: u32 = 3;
/// Fresh entries queued for gossip; older ones are dropped first
/// (anti-entropy delivers whatever gossip misses).
pub const MAX_BROADCAST_QUEUE: usize = 2_048;
/// Addresses whose last frontier digest a node remembers (a digest only
/// saves gossip to a peer known to hold everything). Each ping or ack from
/// a new source address adds one, so without a bound a sender cycling
/// through source ports would grow it for ever; at the bound the smallest
/// address is forgotten (costing at most some gossip to it). Far above
/// any membership this build is measured at.
pub const MAX_PEER_DIGESTS: usize = 131_072;
/// Suspect entry ids cited in one `confirm-dead` body (the body also gives
/// the total number of distinct suspecting authors).
pub const MAX_EVIDENCE_IDS: usize = 40;
/// Most helpers one probe may ask (each costs a ping-req and a relay).
pub const MAX_INDIRECT_PROBES: u32 = 16;
/// Sync items per message when answering one level of the bucket tree
/// (32 node items are about 4.3 KB).
pub const SYNC_ITEMS_PER_MESSAGE: usize = 32;
/// Own entries (the newest) pushed to a seed when contacting it, so it
/// learns of this node before reconciliation completes.
pub const CONTACT_OWN_ENTRIES: usize = 8;
/// The probe timeout, stretched by local health, stays below this share of
/// the period so indirect probes still fit in it.
pub const PROBE_TIMEOUT_CAP_PERCENT: u64 = 90;
/// Longest accepted node id.
pub const MAX_NODE_ID_LEN: usize = 64;

/// Checks the tunables (defaults already filled in).
fn validate_tunables(t: &Tunables) -> Result<(), Error> {
    if t.probe_timeout_ms >= t.probe_interval_ms {
        return Err(Error::InvalidConfig(format!(
            "tunables.probe_timeout_ms ({}) must be below tunables.probe_interval_ms ({})",
            t.probe_timeout_ms, t.probe_interval_ms
        )));
    }
    if t.indirect_probes > MAX_INDIRECT_PROBES {
        return Err(Error::InvalidConfig(format!(
            "tunables.indirect_probes ({}) must be at most {MAX_INDIRECT_PROBES}",
            t.indirect_probes
        )));
    }
    Ok(())
}

/// Checks a node's configuration and returns it with the tunables'
/// defaults filled in.
pub fn validated(mut config: NodeConfig) -> Result<NodeConfig, Error> {
    validate_node_id(&config.node_id)
        .map_err(|why| Error::InvalidConfig(format!("node_id {:?}: {why}", config.node_id)))?;
    if !is_valid_address(&config.address) {
        return Err(Error::InvalidConfig(format!(
            "address {:?}: expected ip:port (IPv4 or bracketed IPv6)",
            config.address
        )));
    }
    // The profile (incarnation, address, metadata) travels in `join`
    // and `alive` bodies, which are bounded.
    let profile = crate::membership::body(&crate::membership::ProfileBody {
        inc: u64::MAX,
        addr: config.address.clone(),
        meta: config.metadata.clone(),
        signing_key: Some(hex::encode([0u8; 32])),
    });
    if profile.len() > crate::ledger::entry::MAX_BODY_LEN {
        return Err(Error::InvalidConfig(format!(
            "metadata: {} bytes as JSON, at most about {} allowed",
            profile.len(),
            crate::ledger::entry::MAX_BODY_LEN.saturating_sub(
                profile
                    .len()
                    .saturating_sub(serde_json::to_vec(&config.metadata).map_or(0, |v| v.len()))
            )
        )));
    }
    config.tunables = config.tunables.with_defaults();
    validate_tunables(&config.tunables)?;
    Ok(config)
}

/// Checks a node id: 1 to 64 bytes of `[A-Za-z0-9._-]`.
pub fn validate_node_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_NODE_ID_LEN {
        return Err(format!(
            "must be 1..={MAX_NODE_ID_LEN} bytes, is {}",
            id.len()
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!("character {c:?} is not one of [A-Za-z0-9._-]"));
    }
    Ok(())
}

/// Whether `addr` parses as `ip:port` (IPv4, or bracketed IPv6).
pub fn is_valid_address(addr: &str) -> bool {
    addr.parse::<core::net::SocketAddr>().is_ok()
}

/// An address in the canonical IPv4 form `a.b.c.d:port` (decimal, no
/// leading zeros, octets up to 255, port up to 65 535) as one number:
/// the four octets and the port, big-endian. Exactly one string has each
/// number, so keying by it is keying by the string. `None` for any other
/// string.
pub(crate) fn packed_v4(addr: &str) -> Option<u64> {
    let (ip, port) = addr.split_once(':')?;
    let mut octets = [0u8; 4];
    let mut parts = ip.split('.');
    for o in &mut octets {
        *o = u8::try_from(canonical_decimal(parts.next()?, 255)?).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    let [p0, p1] = u16::try_from(canonical_decimal(port, 65_535)?)
        .ok()?
        .to_be_bytes();
    let [a, b, c, d] = octets;
    Some(u64::from_be_bytes([0, 0, a, b, c, d, p0, p1]))
}

/// A decimal number written canonically (1 to 5 digits, no leading zero
/// unless it is `0`) that is at most `max`.
fn canonical_decimal(s: &str, max: u32) -> Option<u32> {
    let bytes = s.as_bytes();
    if bytes.is_empty() || bytes.len() > 5 || (bytes.len() > 1 && bytes.first() == Some(&b'0')) {
        return None;
    }
    let mut v: u32 = 0;
    for &c in bytes {
        let digit = c.checked_sub(b'0').filter(|d| *d <= 9)?;
        v = v.checked_mul(10)?.checked_add(u32::from(digit))?;
    }
    (v <= max).then_some(v)
}

/// The address [`packed_v4`] packed into `k`, written back (by hand, not
/// through `format!`: every probe and update writes one).
pub(crate) fn unpack_v4(k: u64) -> String {
    let [_, _, a, b, c, d, p0, p1] = k.to_be_bytes();
    let mut out = String::with_capacity(21);
    for (i, octet) in [a, b, c, d].into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        push_decimal(&mut out, u16::from(octet));
    }
    out.push(':');
    push_decimal(&mut out, u16::from_be_bytes([p0, p1]));
    out
}

/// Appends `v` in decimal, without leading zeros.
fn push_decimal(out: &mut String, v: u16) {
    let mut started = false;
    for div in [10_000u16, 1_000, 100, 10, 1] {
        let digit = v
            .checked_div(div)
            .and_then(|q| q.checked_rem(10))
            .unwrap_or(0);
        if digit != 0 || started || div == 1 {
            out.push(char::from_digit(u32::from(digit), 10).unwrap_or('0'));
            started = true;
        }
    }
}

/// Largest encoding of one checkpoint chunk, its 8- or 16-byte prefix
/// included (docs/design.md §13.3): a chunk is the unit a joining node
/// fetches and verifies against the Merkle root on its own, and must fit
/// one `checkpoint-chunk {id, index, bytes, path}` message. Postcard
/// framing of that message is at most 1 + 1 (version, tag) + 32 (id) + 5
/// (index varint) + 3 (length varint) + 1 + 32 × 32 (a path of at most 32
/// hashes, u32 chunks) = 1 067 bytes, so 56 000 + 1 067 < 60 000
/// (`MAX_MESSAGE_BYTES`), with about 2 900 bytes to spare for fields a
/// later wire version adds. About 325 typical records (172 bytes) a chunk.
pub const CHECKPOINT_CHUNK_BYTES: usize = 56_000;

/// Pending incarnations a checkpoint record keeps (docs/design.md §13.2,
/// rule 2): of the open claims at incarnations the subject has not
/// announced, only those at this many lowest incarnations survive a
/// checkpoint; claims far above are a hostile writer's.
pub const CHECKPOINT_PENDING_INCS: usize = 4;

/// Checkpoints a departed member's record outlives its departure
/// (docs/design.md §13.2, rule 3): a record `left` or `dead` since
/// checkpoint `d` is removed, with the claims it authored, at the first
/// checkpoint `n` with `n − d ≥ CHECKPOINT_EXPIRY`.
pub const CHECKPOINT_EXPIRY: u64 = 16;

/// Smallest tail that triggers a checkpoint proposal (docs/design.md
/// §13.4, `K`): linked entries after the previous cut, `checkpoint` and
/// `checkpoint-vote` entries not counted.
pub const CHECKPOINT_MIN_TAIL: u64 = 1_024;

/// Fewest voters a checkpoint 1 may have (design §13.9, "Two first
/// checkpoints"): a node alone in its own view (every other author it
/// holds without a profile, or none) neither proposes nor takes part in
/// a checkpoint 1, so that two nodes that each start on a large ledger
/// before they meet do not each agree one alone.
pub const CHECKPOINT_FIRST_MIN_VOTERS: usize = 2;

/// Tail entries per voter in the trigger (docs/design.md §13.4): `K =
/// max(CHECKPOINT_MIN_TAIL, CHECKPOINT_TAIL_PER_MEMBER × |C(n − 1)|)`.
pub const CHECKPOINT_TAIL_PER_MEMBER: u64 = 2;

/// How long a voter holds a proposal whose cut it cannot match (it holds
/// entries the proposer did not, or lacks some that reconciliation has
/// not brought) before it writes a skip (stage A's liveness rule,
/// docs/design.md §13.9): a skip never helps two ids to agreement.
pub const CHECKPOINT_VOTE_WAIT_MS: u64 = 10_000;

/// Shortest gap between two attempts of a voter to match a round's
/// proposals against its ledger (each reads every author's head back and
/// may search): an attempt is retried when the ledger changed, the gap
/// doubling after each attempt up to 64 times this.
pub const CHECKPOINT_RETRY_MS: u64 = 1_000;

/// Trailing entries per author a voter steps back over to find a
/// proposal's cut (those at or above the proposal's clock); a chain with
/// more does not match this time.
pub const CHECKPOINT_WALK_BACK: usize = 64;

/// A voter whose candidate cut misses a proposal's digest tries each
/// author's head up to this many entries lower (one author at a time):
/// one writer's concurrent entries with low clocks, a restarted node's
/// new `join` above all, are the usual difference.
pub const CHECKPOINT_SEARCH_DEPTH: u64 = 4;

/// Restarted members (authors whose head is a `join` above seq 1) a voter
/// puts below their new `join`, in every combination, when its candidate
/// cut misses a proposal's digest: 2^4 tries at most.
pub const CHECKPOINT_SEARCH_RESTARTS: usize = 4;

/// Largest cut (authors) that single-author search is tried on: each try
/// hashes the whole cut, so it costs authors² × depth hashed heads.
pub const CHECKPOINT_SEARCH_AUTHORS: usize = 256;

/// Rounds of the open checkpoint kept from the first open one on; entries
/// for rounds beyond are ignored (an honest voter is at most one round
/// ahead of another).
pub const MAX_OPEN_ROUNDS: usize = 8;

/// Candidate proposals kept per round of checkpoint 1 (whose proposer is
/// known only once its state is recomputed); for later checkpoints only
/// the round's proposer's is kept.
pub const MAX_PROPOSALS_PER_ROUND: usize = 4;

/// Log lines about ignored `checkpoint`/`checkpoint-vote` entries per
/// checkpoint (`checkpoint-ignored`): a hostile writer cannot flood the
/// event log.
pub const MAX_IGNORED_LOGS: u32 = 32;

/// Heads in one `cut-heads` page (the cut sync of docs/design.md §13.9):
/// at most 107 bytes each (a 64-byte author, a 10-byte varint, a 32-byte
/// id), so a full page stays under 28 KB, within [`MAX_MESSAGE_BYTES`].
pub const CUT_HEADS_PER_PAGE: usize = 256;

/// How long a voter waits for a page of a cut (or, once the cut is
/// verified, for the entries it asked for) before it asks the next peer.
pub const CHECKPOINT_CUT_TIMEOUT_MS: u64 = 1_000;

/// Peers a voter asks for a proposal's cut, one after the other, per
/// attempt to match it; the next attempt waits for the voter's retry gap
/// ([`CHECKPOINT_RETRY_MS`], doubling).
pub const CHECKPOINT_CUT_PEERS_PER_ATTEMPT: u32 = 4;

/// Heads beyond twice the authors a voter knows that a cut may state:
/// a page stating more is refused before anything is kept.
pub const CHECKPOINT_CUT_SLACK: usize = 256;

/// Agreed checkpoints whose cuts (the heads, about 40 bytes plus the
/// author per member each) a node keeps to answer `cut-get`: a node that
/// fell up to this many checkpoints behind (a minority cut off while the
/// majority agreed several) can still fetch each cut in turn. Further
/// behind needs the bootstrap of §13.6 (stage D).
pub const CHECKPOINT_CUT_HISTORY: usize = 4;

/// `cut-get` requests a node answers per second, from all peers together
/// (each answer decodes the held state once: O(members)); beyond, they are
/// dropped unanswered and the requester asks another peer.
pub const CHECKPOINT_CUT_SERVES_PER_S: u32 = 16;

/// The reserved metadata key of the test knob that lowers `K`
/// (docs/design.md §13.9): `nodeplane.checkpoint-min-tail=M` makes `K = M`
/// (the per-member term is dropped), for tests and small simulations. It
/// is taken out of the metadata (not offered to peers). The knob travels
/// in the metadata because `tunables` is a WIT record.
pub const CHECKPOINT_MIN_TAIL_KEY: &str = "nodeplane.checkpoint-min-tail";

/// Smallest and largest values of [`CHECKPOINT_MIN_TAIL_KEY`].
pub const CHECKPOINT_MIN_TAIL_RANGE: (u64, u64) = (1, 1_000_000);

/// Takes the test knob [`CHECKPOINT_MIN_TAIL_KEY`] out of `config`'s
/// metadata: `None` when absent; an error naming the key when it is
/// given twice, is not a decimal number, or is outside
/// [`CHECKPOINT_MIN_TAIL_RANGE`].
pub fn take_checkpoint_min_tail(config: &mut NodeConfig) -> Result<Option<u64>, Error> {
    let (knob, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut config.metadata)
        .into_iter()
        .partition(|(k, _)| k == CHECKPOINT_MIN_TAIL_KEY);
    config.metadata = rest;
    let (lo, hi) = CHECKPOINT_MIN_TAIL_RANGE;
    match knob.as_slice() {
        [] => Ok(None),
        [(_, v)] => match v.parse::<u64>() {
            Ok(m) if (lo..=hi).contains(&m) && !v.starts_with('+') => Ok(Some(m)),
            _ => Err(Error::InvalidConfig(format!(
                "metadata {CHECKPOINT_MIN_TAIL_KEY}={v:?}: expected a whole number from {lo} to {hi}"
            ))),
        },
        _ => Err(Error::InvalidConfig(format!(
            "metadata {CHECKPOINT_MIN_TAIL_KEY}: given {} times, at most once allowed",
            knob.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkpoint_knob_is_taken_out_of_the_metadata_and_checked() {
        let with = |pairs: &[(&str, &str)]| NodeConfig {
            node_id: "a".into(),
            address: "10.0.0.1:7000".into(),
            metadata: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            tunables: Tunables::default(),
        };
        let mut c = with(&[("overlay-ip", "x"), (CHECKPOINT_MIN_TAIL_KEY, "32")]);
        assert_eq!(take_checkpoint_min_tail(&mut c).unwrap(), Some(32));
        assert_eq!(
            c.metadata,
            vec![("overlay-ip".to_string(), "x".to_string())]
        );
        let mut c = with(&[("overlay-ip", "x")]);
        assert_eq!(take_checkpoint_min_tail(&mut c).unwrap(), None);
        for bad in ["0", "1000001", "-1", "+5", "x", "", "18446744073709551616"] {
            let mut c = with(&[(CHECKPOINT_MIN_TAIL_KEY, bad)]);
            assert!(
                matches!(take_checkpoint_min_tail(&mut c), Err(Error::InvalidConfig(s)) if s.contains(CHECKPOINT_MIN_TAIL_KEY)),
                "{bad:?}"
            );
        }
        let mut c = with(&[
            (CHECKPOINT_MIN_TAIL_KEY, "5"),
            (CHECKPOINT_MIN_TAIL_KEY, "5"),
        ]);
        assert!(take_checkpoint_min_tail(&mut c).is_err());
    }

    #[test]
    fn zero_fields_take_defaults() {
        let c = NodeConfig {
            node_id: "a".into(),
            address: "10.0.0.1:7000".into(),
            metadata: Vec::new(),
            tunables: Tunables::default(),
        };
        assert_eq!(validated(c).unwrap().tunables, Tunables::DEFAULTS);
        let t = Tunables {
            probe_interval_ms: 2000,
            ..Tunables::default()
        };
        assert_eq!(t.with_defaults().probe_interval_ms, 2000);
    }

    #[test]
    fn oversized_metadata_is_rejected() {
        let c = NodeConfig {
            node_id: "a".into(),
            address: "10.0.0.1:7000".into(),
            metadata: vec![("blob".into(), "x".repeat(5000))],
            tunables: Tunables::default(),
        };
        assert!(matches!(validated(c), Err(Error::InvalidConfig(s)) if s.starts_with("metadata")));
    }

    #[test]
    fn ids_and_addresses() {
        assert!(validate_node_id("node-1.a_b").is_ok());
        assert!(validate_node_id("").is_err());
        assert!(validate_node_id("a b").is_err());
        assert!(validate_node_id(&"x".repeat(65)).is_err());
        assert!(is_valid_address("10.0.0.1:7000"));
        assert!(is_valid_address("[::1]:7000"));
        assert!(!is_valid_address("10.0.0.1"));
        assert!(!is_valid_address("host:7000"));
    }

    mod packed {
        use proptest::prelude::*;

        use super::super::{packed_v4, unpack_v4};

        /// An address string near the canonical form: digits (with
        /// leading zeros, too many of them, signs, spaces), dots and
        /// colons, and now and then any character.
        fn near_address() -> impl Strategy<Value = String> {
            proptest::collection::vec(
                prop_oneof![
                    8 => proptest::char::range('0', '9'),
                    2 => Just('.'),
                    1 => Just(':'),
                    1 => prop_oneof![Just('+'), Just('-'), Just(' '), Just('a'), Just('\u{663}')],
                    1 => any::<char>(),
                ],
                0..24,
            )
            .prop_map(|cs| cs.into_iter().collect())
        }

        /// Four octets and a port, mostly in range, sometimes past it or
        /// a run of 0 to 6 digits (leading zeros, empty, too long),
        /// joined mostly by `.`, `.`, `.`, `:`, sometimes by the wrong
        /// separator or with one more: near misses of the canonical form
        /// and (about a third) hits.
        fn fielded() -> impl Strategy<Value = String> {
            let digits = || {
                proptest::collection::vec(proptest::char::range('0', '9'), 0..=6)
                    .prop_map(|cs| cs.into_iter().collect::<String>())
            };
            let field = |max: u32| {
                prop_oneof![
                    8 => (0..=max).prop_map(|v| v.to_string()),
                    1 => (max + 1..=max * 2).prop_map(|v| v.to_string()),
                    1 => digits(),
                ]
            };
            let fields = (
                field(255),
                field(255),
                field(255),
                field(255),
                field(65_535),
            )
                .prop_map(|(a, b, c, d, p)| vec![a, b, c, d, p]);
            let sep = prop_oneof![16 => Just(None), 1 => Just(Some('.')), 1 => Just(Some(':'))];
            (fields, proptest::collection::vec(sep, 5)).prop_map(|(fields, seps)| {
                let mut out = String::new();
                for (i, (f, alt)) in fields.iter().zip(&seps).enumerate() {
                    if i > 0 {
                        out.push(alt.unwrap_or(if i == 4 { ':' } else { '.' }));
                    }
                    out.push_str(f);
                }
                if let Some(Some(extra)) = seps.last() {
                    out.push(*extra);
                }
                out
            })
        }

        /// The address of `k` written independently of `unpack_v4`.
        fn written(k: u64) -> String {
            let [_, _, a, b, c, d, p0, p1] = k.to_be_bytes();
            format!("{a}.{b}.{c}.{d}:{}", u16::from_be_bytes([p0, p1]))
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

            /// Whatever string packs, unpacks to itself: keying by the
            /// number is keying by the string.
            #[test]
            fn a_packed_string_unpacks_to_itself(s in near_address()) {
                if let Some(k) = packed_v4(&s) {
                    prop_assert!(k < 1 << 48);
                    prop_assert_eq!(unpack_v4(k), s.clone());
                    prop_assert_eq!(written(k), s);
                }
            }

            /// The same over near misses of the form (a fair share of
            /// which are canonical and pack).
            #[test]
            fn a_fielded_string_packs_exactly_when_canonical(s in fielded()) {
                let canonical = packed_v4(&s).map(unpack_v4);
                if let Some(c) = &canonical {
                    prop_assert_eq!(c, &s);
                }
                // The canonical test, written independently: four octets
                // and a port, decimal, no leading zero, in range.
                let independent = s.split_once(':').is_some_and(|(ip, port)| {
                    let ok = |f: &str, max: u32| {
                        !f.is_empty()
                            && f.len() <= 5
                            && f.bytes().all(|b| b.is_ascii_digit())
                            && (f == "0" || !f.starts_with('0'))
                            && f.parse::<u32>().is_ok_and(|v| v <= max)
                    };
                    let octets: Vec<&str> = ip.split('.').collect();
                    octets.len() == 4 && octets.iter().all(|o| ok(o, 255)) && ok(port, 65_535)
                });
                prop_assert_eq!(canonical.is_some(), independent, "{}", s);
            }

            /// Arbitrary strings too.
            #[test]
            fn any_packed_string_unpacks_to_itself(s in any::<String>()) {
                if let Some(k) = packed_v4(&s) {
                    prop_assert_eq!(unpack_v4(k), s);
                }
            }

            /// Every number below 2^48 is one canonical address, which
            /// packs back to it; its variants with a leading zero or a
            /// sign do not pack.
            #[test]
            fn every_number_is_one_address(k in 0u64..(1 << 48)) {
                let s = unpack_v4(k);
                prop_assert_eq!(&s, &written(k));
                prop_assert_eq!(packed_v4(&s), Some(k));
                prop_assert_eq!(packed_v4(&format!("0{s}")), None);
                prop_assert_eq!(packed_v4(&format!("+{s}")), None);
                prop_assert_eq!(packed_v4(&s.replace(':', ":0")), None);
                prop_assert_eq!(packed_v4(&format!("{s} ")), None);
                prop_assert_eq!(packed_v4(&format!("{s}.0")), None);
            }

            /// Edges of every field: 0, 9, 10, 99, 100, 255 and the
            /// port's 65 535, and the first numbers past them.
            #[test]
            fn field_edges(
                octets in proptest::array::uniform4(prop_oneof![
                    Just(0u32), Just(9), Just(10), Just(99), Just(100), Just(255), Just(256), Just(999), Just(1000)
                ]),
                port in prop_oneof![Just(0u32), Just(65_535), Just(65_536), Just(99_999), Just(100_000)],
            ) {
                let [a, b, c, d] = octets;
                let s = format!("{a}.{b}.{c}.{d}:{port}");
                let fits = octets.iter().all(|o| *o <= 255) && port <= 65_535;
                prop_assert_eq!(packed_v4(&s).is_some(), fits, "{}", s);
                if let Some(k) = packed_v4(&s) {
                    prop_assert_eq!(unpack_v4(k), s);
                }
            }
        }
    }
}
