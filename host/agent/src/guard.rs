//! The control channel's guards against hostile or spoofed traffic, applied
//! by the host before the component sees a message and before a send leaves:
//!
//! - **Inbound rate limit** ([`RateLimiter`]): a token bucket per source. A
//!   member's control address has its own bucket; every other source is
//!   bucketed by IP (ports are free to spoof), and all non-member traffic
//!   together also shares one bucket, so many spoofed IPs cannot crowd out
//!   the members. A message costs one token per started
//!   [`MAX_DATAGRAM_PAYLOAD`] bytes, so large TCP frames cost more.
//! - **No amplification** ([`Credits`]): an address that is not a member's
//!   gets back at most as many bytes as it sent (wire bytes, both ways),
//!   until it is a member: a ping gets its ack, not the ledger.
//! - **Who is a member** ([`Members`]): the node's view, kept current from a
//!   membership subscription (drained when asked, never a call into the
//!   component per packet), plus the configured seeds.
//!
//! Every table here is bounded and pruned by age; every drop is counted in
//! [`Metrics`] and logged (throttled) to tracing and the event log.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use nodeplane_interface::{MembershipUpdate, MembershipView, PeerState, Subscription};
use serde_json::json;

use crate::events::{EventLog, Source};
use crate::framing::MAX_DATAGRAM_PAYLOAD;
use crate::metrics::Metrics;

/// Sustained messages per second (in datagram-sized tokens) accepted from
/// one member's control address. A member's steady traffic to one node is
/// a few messages per protocol period (pings, acks, gossip every 200 ms,
/// syncs); a catch-up is at most a handful of 56 KB frames per want. 500 is
/// two orders of magnitude above that, so a member is never throttled into
/// looking dead, while a flood spoofing one member's address is still cut.
pub const MEMBER_RATE_PER_SEC: f64 = 500.0;
/// Tokens a member's bucket holds (its burst): two seconds at the rate.
pub const MEMBER_BURST: f64 = 1_000.0;
/// Sustained tokens per second accepted from one IP that is not a member's
/// address. A joining node needs two messages (its gossip and a sync) before
/// it is a member; a stray restarted node a few per second.
pub const SOURCE_RATE_PER_SEC: f64 = 50.0;
/// Tokens a non-member IP's bucket holds (its burst): two seconds.
pub const SOURCE_BURST: f64 = 100.0;
/// Sustained tokens per second accepted from all non-members together, so
/// that a flood from many (spoofed) IPs, each within its own bucket, still
/// cannot fill the mailbox ahead of the members.
pub const NON_MEMBER_RATE_PER_SEC: f64 = 1_000.0;
/// Tokens the shared non-member bucket holds: two seconds.
pub const NON_MEMBER_BURST: f64 = 2_000.0;
/// Most sources with a rate bucket. Idle buckets (refilled to full) are
/// pruned first, then the least recently seen quarter; a pruned source comes
/// back with a full bucket, which the shared non-member bucket still caps.
pub const MAX_RATE_SOURCES: usize = 4_096;
/// Most non-member addresses holding a byte credit. Pruning loses credit,
/// which only makes the node answer less, never more.
pub const MAX_CREDIT_ADDRESSES: usize = 4_096;
/// A non-member's credit is forgotten after this long without traffic: a
/// reply is due within a protocol period, not minutes later.
pub const CREDIT_IDLE: Duration = Duration::from_secs(60);
/// At most one warning (tracing and event log) per kind of drop in this
/// interval, so that a flood does not become a flood of log lines; the
/// counters in `/metrics` count every drop.
pub const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Tokens a message of `wire_bytes` costs: one per started datagram-sized
/// chunk.
pub fn message_cost(wire_bytes: usize) -> f64 {
    (1 + wire_bytes / MAX_DATAGRAM_PAYLOAD) as f64
}

/// Removes the least recently seen quarter of `map` (at least one entry).
fn evict_oldest<K: Clone + Eq + Hash, V>(map: &mut HashMap<K, V>, seen: impl Fn(&V) -> Instant) {
    let mut ages: Vec<(Instant, K)> = map.iter().map(|(k, v)| (seen(v), k.clone())).collect();
    let cut = (ages.len() / 4).max(1).min(ages.len());
    if cut == 0 {
        return;
    }
    if cut < ages.len() {
        ages.select_nth_unstable_by_key(cut, |(t, _)| *t);
    }
    for (_, k) in ages.iter().take(cut) {
        map.remove(k);
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(burst);
        self.last = self.last.max(now);
    }

    /// Whether it would be full again by `now` (so forgetting it is free).
    fn refilled_by(&self, rate: f64, burst: f64, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + dt * rate >= burst
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    Member(SocketAddr),
    Ip(IpAddr),
}

impl Key {
    fn limits(self) -> (f64, f64) {
        match self {
            Key::Member(_) => (MEMBER_RATE_PER_SEC, MEMBER_BURST),
            Key::Ip(_) => (SOURCE_RATE_PER_SEC, SOURCE_BURST),
        }
    }
}

struct Buckets {
    by_source: HashMap<Key, Bucket>,
    non_members: Bucket,
}

/// Token buckets per source (see the module documentation).
pub struct RateLimiter {
    buckets: Mutex<Buckets>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter {
            buckets: Mutex::new(Buckets {
                by_source: HashMap::new(),
                non_members: Bucket::full(NON_MEMBER_BURST, Instant::now()),
            }),
        }
    }
}

impl RateLimiter {
    /// Takes `cost` tokens for a message from `source` (a member's control
    /// address when `member`); false if over the limit (nothing taken).
    pub fn admit(&self, source: SocketAddr, member: bool, cost: f64, now: Instant) -> bool {
        let key = if member {
            Key::Member(source)
        } else {
            Key::Ip(source.ip().to_canonical())
        };
        let (rate, burst) = key.limits();
        let mut b = lock(&self.buckets);
        if !b.by_source.contains_key(&key) && b.by_source.len() >= MAX_RATE_SOURCES {
            b.by_source.retain(|k, v| {
                let (rate, burst) = k.limits();
                !v.refilled_by(rate, burst, now)
            });
            if b.by_source.len() >= MAX_RATE_SOURCES {
                evict_oldest(&mut b.by_source, |v| v.last);
            }
        }
        let Buckets {
            by_source,
            non_members,
        } = &mut *b;
        let bucket = by_source
            .entry(key)
            .or_insert_with(|| Bucket::full(burst, now));
        bucket.refill(rate, burst, now);
        if member {
            if bucket.tokens < cost {
                return false;
            }
            bucket.tokens -= cost;
            return true;
        }
        non_members.refill(NON_MEMBER_RATE_PER_SEC, NON_MEMBER_BURST, now);
        if bucket.tokens < cost || non_members.tokens < cost {
            return false;
        }
        bucket.tokens -= cost;
        non_members.tokens -= cost;
        true
    }

    /// Sources with a bucket now.
    pub fn sources(&self) -> usize {
        lock(&self.buckets).by_source.len()
    }
}

#[derive(Clone, Copy, Debug)]
struct Credit {
    bytes: u64,
    last: Instant,
}

/// Byte credit of non-member addresses: bytes received from each minus
/// bytes sent to it.
#[derive(Default)]
pub struct Credits {
    by_addr: Mutex<HashMap<SocketAddr, Credit>>,
}

impl Credits {
    /// Adds `bytes` received from `addr`.
    pub fn earn(&self, addr: SocketAddr, bytes: usize, now: Instant) {
        let mut map = lock(&self.by_addr);
        if !map.contains_key(&addr) && map.len() >= MAX_CREDIT_ADDRESSES {
            map.retain(|_, c| now.saturating_duration_since(c.last) < CREDIT_IDLE);
            if map.len() >= MAX_CREDIT_ADDRESSES {
                evict_oldest(&mut map, |c| c.last);
            }
        }
        let c = map.entry(addr).or_insert(Credit {
            bytes: 0,
            last: now,
        });
        c.bytes = c.bytes.saturating_add(bytes as u64);
        c.last = c.last.max(now);
    }

    /// Takes `bytes` from `addr`'s credit; false (nothing taken) if it has
    /// less, or has been idle longer than [`CREDIT_IDLE`].
    pub fn spend(&self, addr: SocketAddr, bytes: usize, now: Instant) -> bool {
        let mut map = lock(&self.by_addr);
        let Some(c) = map.get_mut(&addr) else {
            return false;
        };
        if now.saturating_duration_since(c.last) >= CREDIT_IDLE {
            map.remove(&addr);
            return false;
        }
        match c.bytes.checked_sub(bytes as u64) {
            Some(left) => {
                c.bytes = left;
                true
            }
            None => false,
        }
    }

    /// The credit `addr` holds now.
    pub fn of(&self, addr: SocketAddr) -> u64 {
        lock(&self.by_addr).get(&addr).map_or(0, |c| c.bytes)
    }

    /// Addresses holding a credit.
    pub fn addresses(&self) -> usize {
        lock(&self.by_addr).len()
    }
}

#[derive(Default)]
struct Book {
    /// The version of the last full view applied; older updates are stale.
    view_version: u64,
    by_id: HashMap<String, (String, PeerState)>,
    addrs: HashSet<SocketAddr>,
}

impl Book {
    fn rebuild(&mut self) {
        self.addrs = self
            .by_id
            .values()
            .filter(|(_, state)| *state != PeerState::Left)
            .filter_map(|(addr, _)| addr.parse::<SocketAddr>().ok())
            .collect();
    }
}

/// The control addresses of the node's members, kept from its view.
///
/// Counted as members: every member in the view that has not left —
/// `alive`, `suspect` and also `dead`, because the core pings a dead
/// member's last address to heal a partition, and the far side of a healed
/// partition must get the ledger to learn it was declared dead and refute;
/// those addresses were members, not arbitrary victims. Also counted: the
/// configured seeds (a node contacts them before it has a view).
#[derive(Default)]
pub struct Members {
    subscription: Mutex<Option<Subscription>>,
    book: RwLock<Book>,
    seeds: HashSet<SocketAddr>,
}

impl Members {
    /// No members yet; `seeds` always count.
    pub fn new(seeds: &[SocketAddr]) -> Members {
        Members {
            seeds: seeds.iter().copied().collect(),
            ..Members::default()
        }
    }

    /// Takes membership updates from `subscription` from now on.
    pub fn attach(&self, subscription: Subscription) {
        *lock(&self.subscription) = Some(subscription);
    }

    /// Replaces the book with a whole view (the one `join` returned).
    /// Updates already queued that are newer than the view still apply.
    pub fn set_view(&self, view: &MembershipView) {
        {
            let mut book = self.book.write().unwrap_or_else(|p| p.into_inner());
            book.view_version = view.version;
            book.by_id = view
                .members
                .iter()
                .map(|m| (m.id.clone(), (m.address.clone(), m.state)))
                .collect();
            book.rebuild();
        }
        self.refresh();
    }

    fn apply(&self, updates: Vec<MembershipUpdate>) {
        if updates.is_empty() {
            return;
        }
        let mut book = self.book.write().unwrap_or_else(|p| p.into_inner());
        for u in updates {
            if u.version > book.view_version {
                book.by_id
                    .insert(u.current.id, (u.current.address, u.current.state));
            }
        }
        book.rebuild();
    }

    /// Applies the updates waiting in the subscription. Every update of a
    /// call is queued before the call returns, so a reply the component
    /// sent after admitting a new member is judged with that member known.
    pub fn refresh(&self) {
        let updates: Vec<MembershipUpdate> = {
            let sub = lock(&self.subscription);
            match sub.as_ref() {
                Some(s) => std::iter::from_fn(|| s.try_recv()).collect(),
                None => Vec::new(),
            }
        };
        self.apply(updates);
    }

    /// Whether `addr` is a member's control address or a seed.
    pub fn contains(&self, addr: &SocketAddr) -> bool {
        if self.seeds.contains(addr) {
            return true;
        }
        self.refresh();
        self.book
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .addrs
            .contains(addr)
    }
}

/// Kinds of drops the guard logs (throttled).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dropped {
    /// An inbound message over its source's rate.
    RateLimited,
    /// A send to a non-member beyond its byte credit.
    Amplification,
    /// A TCP frame whose claimed sender IP is not the connection's.
    ForgedSender,
    /// A TCP connection over the per-IP or total limit.
    ConnectionLimit,
    /// A TCP connection closed for idling.
    IdleTimeout,
    /// A send dropped because the outbox or the TCP send slots were full.
    SendOverload,
    /// An inbound message the cluster key refused (unsealed, sealed for an
    /// open agent, unknown key, failed authentication, stale, replayed),
    /// with its metrics reason: logged at most once per interval per reason.
    Seal(&'static str),
}

impl Dropped {
    fn kind(self) -> &'static str {
        match self {
            Dropped::RateLimited => "rate-limited",
            Dropped::Amplification => "amplification-dropped",
            Dropped::ForgedSender => "forged-sender",
            Dropped::ConnectionLimit => "tcp-connection-refused",
            Dropped::IdleTimeout => "tcp-idle-timeout",
            Dropped::SendOverload => "send-overload",
            Dropped::Seal(_) => "cluster-key-rejected",
        }
    }
}

/// The guards of one agent's control channel.
pub struct Guard {
    members: Members,
    limiter: RateLimiter,
    credits: Credits,
    metrics: Arc<Metrics>,
    events: Option<EventLog>,
    last_logged: Mutex<HashMap<Dropped, Instant>>,
}

impl Guard {
    /// Guards counting into `metrics` and logging to `events`; `seeds`
    /// count as members.
    pub fn new(seeds: &[SocketAddr], metrics: Arc<Metrics>, events: Option<EventLog>) -> Guard {
        Guard {
            members: Members::new(seeds),
            limiter: RateLimiter::default(),
            credits: Credits::default(),
            metrics,
            events,
            last_logged: Mutex::default(),
        }
    }

    /// The member book.
    pub fn members(&self) -> &Members {
        &self.members
    }

    /// The byte credits of non-members.
    pub fn credits(&self) -> &Credits {
        &self.credits
    }

    /// The rate limiter.
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// Logs a drop to tracing and the event log, at most once per
    /// [`DROP_LOG_INTERVAL`] per kind (the metrics count every one).
    pub fn log_drop(&self, what: Dropped, peer: &str, detail: &str) {
        let now = Instant::now();
        {
            let mut last = lock(&self.last_logged);
            if last
                .get(&what)
                .is_some_and(|t| now.saturating_duration_since(*t) < DROP_LOG_INTERVAL)
            {
                tracing::debug!(peer, detail, kind = what.kind(), "dropped");
                return;
            }
            last.insert(what, now);
        }
        tracing::warn!(
            peer,
            detail,
            kind = what.kind(),
            reason = match what {
                Dropped::Seal(reason) => reason,
                _ => "",
            },
            every = ?DROP_LOG_INTERVAL,
            "dropped (drops of this kind are logged at most once per interval; /metrics counts all)"
        );
        if let Some(events) = &self.events {
            events.record_value(
                Source::Agent,
                what.kind(),
                match what {
                    Dropped::Seal(reason) => {
                        json!({ "peer": peer, "reason": reason, "detail": detail })
                    }
                    _ => json!({ "peer": peer, "detail": detail }),
                },
            );
        }
    }

    /// Admits a message of `wire_bytes` from `source` (its control address)
    /// or drops it (counted as rejected, reason `rate-limited`). An admitted
    /// message from a non-member adds to its byte credit.
    pub fn admit(&self, source: SocketAddr, wire_bytes: usize) -> bool {
        let now = Instant::now();
        let member = self.members.contains(&source);
        if !self
            .limiter
            .admit(source, member, message_cost(wire_bytes), now)
        {
            self.metrics.rejected("rate-limited");
            self.log_drop(
                Dropped::RateLimited,
                &source.to_string(),
                "over the inbound rate",
            );
            return false;
        }
        if !member {
            self.credits.earn(source, wire_bytes, now);
        }
        true
    }

    /// Whether `wire_bytes` may go to `to`: always to a member, otherwise
    /// only within its credit (taken); a refused send is counted as
    /// dropped, reason `amplification`.
    pub fn may_send(&self, to: SocketAddr, wire_bytes: usize) -> bool {
        if self.members.contains(&to) || self.credits.spend(to, wire_bytes, Instant::now()) {
            return true;
        }
        self.metrics.send_dropped("amplification");
        self.log_drop(
            Dropped::Amplification,
            &to.to_string(),
            &format!("{wire_bytes} bytes to a non-member beyond what it sent"),
        );
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodeplane_interface::{Member, UpdateCause};

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_member_keeps_its_own_bucket_while_a_non_member_ip_is_limited() {
        let rl = RateLimiter::default();
        let now = Instant::now();
        let flood = addr("127.0.0.2:9");
        let admitted = (0..1_000)
            .filter(|i| rl.admit(SocketAddr::new(flood.ip(), *i), false, 1.0, now))
            .count();
        assert_eq!(
            admitted, SOURCE_BURST as usize,
            "ports share the IP's bucket"
        );
        let member = addr("127.0.0.2:7001");
        assert!((0..500).all(|_| rl.admit(member, true, 1.0, now)));
        // A second later the IP may send about its rate again.
        let later = now + Duration::from_secs(1);
        let again = (0..1_000)
            .filter(|_| rl.admit(flood, false, 1.0, later))
            .count();
        assert_eq!(again, SOURCE_RATE_PER_SEC as usize);
    }

    #[test]
    fn non_members_together_share_one_bucket() {
        let rl = RateLimiter::default();
        let now = Instant::now();
        let admitted = (0..10_000u32)
            .filter(|i| {
                let ip = IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, *i as u8]);
                rl.admit(SocketAddr::new(ip, 1), false, 1.0, now)
            })
            .count();
        assert_eq!(admitted, NON_MEMBER_BURST as usize);
        assert!(
            rl.admit(addr("10.9.9.9:1"), true, 1.0, now),
            "members unaffected"
        );
    }

    #[test]
    fn the_bucket_table_stays_bounded() {
        let rl = RateLimiter::default();
        let now = Instant::now();
        for i in 0..(3 * MAX_RATE_SOURCES as u32) {
            let ip = IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
            rl.admit(SocketAddr::new(ip, 1), true, 1.0, now);
        }
        assert!(rl.sources() <= MAX_RATE_SOURCES);
    }

    #[test]
    fn large_messages_cost_more() {
        assert_eq!(message_cost(10), 1.0);
        assert_eq!(message_cost(65_536), 47.0);
    }

    #[test]
    fn credit_is_what_was_received_minus_what_was_sent() {
        let c = Credits::default();
        let now = Instant::now();
        let a = addr("127.0.0.9:1");
        assert!(!c.spend(a, 1, now), "nothing received: nothing back");
        c.earn(a, 100, now);
        assert!(!c.spend(a, 101, now));
        assert!(c.spend(a, 60, now));
        assert!(c.spend(a, 40, now));
        assert!(!c.spend(a, 1, now));
        c.earn(a, 10, now);
        assert!(!c.spend(a, 10, now + CREDIT_IDLE), "idle credit expires");
        for i in 0..(2 * MAX_CREDIT_ADDRESSES as u32) {
            c.earn(SocketAddr::new(IpAddr::from(i.to_be_bytes()), 1), 1, now);
        }
        assert!(c.addresses() <= MAX_CREDIT_ADDRESSES);
    }

    fn member(id: &str, address: &str, state: PeerState) -> Member {
        Member {
            id: id.into(),
            address: address.into(),
            state,
            incarnation: 1,
            metadata: vec![],
        }
    }

    #[test]
    fn members_follow_the_view_and_its_updates() {
        let seed = addr("127.0.0.5:7001");
        let m = Members::new(&[seed]);
        assert!(m.contains(&seed));
        let (tx, sub) = Subscription::channel(1, |_| {});
        m.attach(sub);
        m.set_view(&MembershipView {
            version: 3,
            members: vec![
                member("a", "127.0.0.1:7001", PeerState::Alive),
                member("b", "127.0.0.2:7001", PeerState::Dead),
                member("c", "127.0.0.3:7001", PeerState::Left),
            ],
        });
        assert!(m.contains(&addr("127.0.0.1:7001")));
        assert!(m.contains(&addr("127.0.0.2:7001")), "dead members count");
        assert!(!m.contains(&addr("127.0.0.3:7001")), "left members do not");
        let update = |id: &str, address: &str, state, version| MembershipUpdate {
            peer: id.into(),
            previous: None,
            current: member(id, address, state),
            cause: UpdateCause::Changed,
            entry: None,
            version,
        };
        // Stale (older than the view) then current updates.
        assert!(tx.send(update("a", "127.0.0.1:7001", PeerState::Left, 2)));
        assert!(tx.send(update("d", "127.0.0.4:7001", PeerState::Alive, 4)));
        assert!(tx.send(update("b", "127.0.0.2:7001", PeerState::Left, 4)));
        assert!(m.contains(&addr("127.0.0.4:7001")));
        assert!(m.contains(&addr("127.0.0.1:7001")));
        assert!(!m.contains(&addr("127.0.0.2:7001")));
    }

    #[test]
    fn a_non_member_gets_back_at_most_what_it_sent() {
        let metrics = Arc::new(Metrics::default());
        let g = Guard::new(&[], Arc::clone(&metrics), None);
        let stranger = addr("127.0.0.9:5");
        assert!(g.admit(stranger, 8));
        assert!(g.may_send(stranger, 8));
        assert!(!g.may_send(stranger, 1));
        assert!(g.admit(stranger, 8));
        assert!(!g.may_send(stranger, 50_000), "not the ledger");
        assert_eq!(g.credits().of(stranger), 8);
        assert!(metrics
            .render(&Default::default())
            .contains("nodeplane_sends_dropped_total{reason=\"amplification\"} 2"));
    }
}
