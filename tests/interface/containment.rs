//! Crash containment and fail-stop store faults in the host runtime
//! (`docs/interface.md` [host-4] to [host-6], issue 11 items 6 and 9): a
//! crash is rebuilt from the ledger without a new incarnation, rebuilds back
//! off, poison messages are quarantined, a memory blow-up and a crash in
//! `init` are contained, and a ledger store that fails stops the node before
//! it publishes anything it did not save.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use nodeplane_entry::Entry;
use nodeplane_interface::ControlError;
use nodeplane_runtime::{
    ComponentSource, LedgerStore, Limits, MemoryLedger, Node, NodeConfig, RecordingServices,
    Runtime, Services, StoreError, CRASH_STREAK_RESET_MS, REBUILD_BACKOFF_BASE_MS,
    REBUILD_BACKOFF_MAX_MS, REBUILD_TIMER,
};

/// One engine for every test here, so each component compiles once.
fn runtime() -> Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            Runtime::new(Limits {
                fuel_per_call: 200_000_000,
                // Small, so that the memory fixture reaches it quickly.
                memory_bytes: 64 << 20,
                ..Limits::default()
            })
            .expect("engine")
        })
        .clone()
}

fn config(id: &str) -> NodeConfig {
    NodeConfig {
        node_id: id.into(),
        address: "127.0.0.1:7001".into(),
        metadata: Vec::new(),
        tunables: Default::default(),
    }
}

fn start_with<S: Services>(rt: &Runtime, path: &str, services: S) -> Node<S> {
    let component = rt.load_file(std::path::Path::new(path)).expect("load");
    Node::start(rt, &component, config("a"), services).expect("start")
}

fn start(rt: &Runtime, path: &str) -> Node<RecordingServices> {
    start_with(rt, path, RecordingServices::new())
}

/// The event-log lines of `kind` recorded so far.
fn events(node: &Node<RecordingServices>, kind: &str) -> Vec<serde_json::Value> {
    node.services()
        .log()
        .iter()
        .filter(|e| e.kind == kind)
        .map(|e| serde_json::from_str(&e.detail).expect("json detail"))
        .collect()
}

fn advance(node: &mut Node<RecordingServices>, ms: u64) {
    let clock = &node.services().clock;
    clock.set_ms(clock.now_ms() + ms);
}

/// Fires every timer due now, as a driver does.
fn fire_due(node: &mut Node<RecordingServices>) {
    for timer in node.services_mut().take_due_timers() {
        let _ = node.fire_timer(timer);
    }
}

fn own_entries(node: &Node<RecordingServices>) -> usize {
    node.services()
        .ledger
        .entries()
        .iter()
        .filter(|e| e.author == "a")
        .count()
}

fn own_incarnation(node: &mut Node<RecordingServices>) -> u64 {
    let view = node.get_members().expect("serving");
    view.member("a").expect("lists itself").incarnation
}

#[test]
fn a_memory_blow_up_is_a_crash_named_as_such_and_the_host_goes_on() {
    let rt = runtime();
    let mut node = start(&rt, nodeplane_artifacts::FIXTURE_MEMORY_HOG_PATH);
    node.join(&[]).expect("join");
    let err = node.publish_heartbeat().expect_err("grows past the limit");
    assert!(
        matches!(err, ControlError::Unavailable(ref m) if m.contains("memory limit")),
        "{err}"
    );
    assert_eq!(node.crashes(), 1);
    let crash = &events(&node, "component-crashed")[0];
    assert_eq!(crash["call"], "publish-heartbeat");
    assert!(
        crash["reason"]
            .as_str()
            .is_some_and(|r| r.contains("memory limit")),
        "{crash}"
    );
    // Rebuilt at once (first crash of a streak): it serves again.
    assert_eq!(node.rebuilds(), 1);
    assert!(node.get_members().expect("serving").member("a").is_some());
}

#[test]
fn a_crash_in_init_fails_the_start_with_its_reason() {
    let rt = runtime();
    let component = rt
        .load_file(std::path::Path::new(
            nodeplane_artifacts::FIXTURE_INIT_CRASH_PATH,
        ))
        .expect("loads: it is a valid component");
    let err = Node::start(&rt, &component, config("a"), RecordingServices::new())
        .err()
        .expect("init crashes");
    let text = err.to_string();
    assert!(matches!(err, ControlError::Unavailable(_)), "{text}");
    assert!(text.contains("crashed in init"), "{text}");
    assert!(text.contains("deliberate crash in init"), "{text}");

    // Swapping it in is refused; the running component keeps serving.
    let mut node = start(&rt, nodeplane_artifacts::STUB_PATH);
    node.join(&[]).expect("join");
    let bytes = std::fs::read(nodeplane_artifacts::FIXTURE_INIT_CRASH_PATH).expect("read");
    let loaded = rt
        .load(&bytes, ComponentSource::File("init-crash.wasm".into()))
        .expect("loads");
    let err = node.swap(&loaded).expect_err("must not swap in");
    assert!(
        err.to_string().contains("deliberate crash in init"),
        "{err}"
    );
    assert_eq!(node.component_info().0, "stub");
    assert!(node.get_members().is_ok());
}

#[test]
fn crash_recovery_keeps_the_node_planes_incarnation() {
    let rt = runtime();
    let mut node = start(&rt, nodeplane_artifacts::NODEPLANE_PATH);
    node.join(&[]).expect("join");
    assert_eq!(own_incarnation(&mut node), 1);
    let entries = own_entries(&node);
    assert_eq!(entries, 1, "the join entry");
    for round in 0..5 {
        // Far apart: every crash starts a streak and is rebuilt at once.
        advance(&mut node, CRASH_STREAK_RESET_MS + 1);
        node.inject_crash();
        let err = node.get_members().expect_err("crashes");
        assert!(err.to_string().contains("fuel"), "{err}");
        assert_eq!(
            node.rebuild_due_ms(),
            None,
            "round {round}: rebuilt at once"
        );
        assert_eq!(own_incarnation(&mut node), 1, "round {round}");
        assert_eq!(own_entries(&node), entries, "round {round}: no new entry");
    }
    // Two crashes in a row: the second waits out its back-off, then the
    // rebuild still resumes at incarnation 1.
    advance(&mut node, CRASH_STREAK_RESET_MS + 1);
    node.inject_crash();
    let _ = node.get_members();
    node.inject_crash();
    let _ = node.get_members();
    assert!(node.rebuild_due_ms().is_some(), "backed off");
    advance(&mut node, REBUILD_BACKOFF_BASE_MS);
    fire_due(&mut node);
    assert_eq!(node.rebuild_due_ms(), None, "rebuilt by the host's timer");
    assert_eq!(node.crashes(), 7);
    assert_eq!(node.rebuilds(), 7);
    assert_eq!(own_incarnation(&mut node), 1);
    assert_eq!(own_entries(&node), entries);
    for replaced in events(&node, "component-replaced") {
        assert_eq!(replaced["start"], "resume", "{replaced}");
    }

    // A hot swap of the same process resumes too.
    let component = node.component().clone();
    node.swap(&component).expect("swap");
    assert_eq!(own_incarnation(&mut node), 1);
    assert_eq!(own_entries(&node), entries);

    // Only a new process on the same store raises the incarnation.
    let ledger = node.services().ledger.clone();
    drop(node);
    let services = RecordingServices::with(Default::default(), 0, ledger);
    let mut restarted = start_with(&rt, nodeplane_artifacts::NODEPLANE_PATH, services);
    restarted.join(&[]).expect("join");
    assert_eq!(own_incarnation(&mut restarted), 2);
    assert_eq!(own_entries(&restarted), entries + 1);
}

#[test]
fn rebuilds_back_off_instead_of_looping() {
    let rt = runtime();
    let mut node = start(&rt, nodeplane_artifacts::FIXTURE_POISON_PATH);
    node.join(&[]).expect("join");
    // Distinct poison messages (so none is quarantined) as fast as they
    // come, for ten minutes of virtual time: one every 10 ms.
    let step_ms = 10;
    let minutes = 10;
    let mut delivered = 0u64;
    for i in 0..(minutes * 60_000 / step_ms) {
        let payload = format!("poison-{i}");
        let _ = node.deliver_message("127.0.0.1:9", payload.as_bytes());
        delivered += 1;
        advance(&mut node, step_ms);
        fire_due(&mut node);
    }
    let crashes = node.crashes();
    let rebuilds = node.rebuilds();
    // 0, 0.1, 0.2, 0.4 ... 25.6 s, then 30 s each: about 27 in 10 minutes.
    let bound = 9 + minutes * 60_000 / REBUILD_BACKOFF_MAX_MS + 2;
    assert!(
        crashes <= bound,
        "{crashes} crashes out of {delivered} poison messages: the rebuild must back off (bound {bound})"
    );
    assert!(crashes >= bound - 4, "{crashes}: rebuilds were retried");
    assert!(
        rebuilds + 1 >= crashes,
        "{rebuilds} rebuilds, {crashes} crashes"
    );
    // The delays logged follow the back-off.
    let delays: Vec<u64> = events(&node, "component-crashed")
        .iter()
        .map(|e| e["rebuild_in_ms"].as_u64().expect("delay"))
        .collect();
    assert_eq!(
        &delays[..4],
        &[
            0,
            REBUILD_BACKOFF_BASE_MS,
            2 * REBUILD_BACKOFF_BASE_MS,
            4 * REBUILD_BACKOFF_BASE_MS
        ]
    );
    assert_eq!(delays.last(), Some(&REBUILD_BACKOFF_MAX_MS));
    // While down, calls say so and do not reach the component.
    if node.rebuild_due_ms().is_some() {
        let err = node.get_members().expect_err("down");
        assert!(err.to_string().contains("rebuilt in"), "{err}");
    }
    assert_eq!(node.crashes(), crashes);
    // Quiet for a while: the next crash is rebuilt at once again.
    advance(&mut node, CRASH_STREAK_RESET_MS + REBUILD_BACKOFF_MAX_MS);
    fire_due(&mut node);
    assert_eq!(node.rebuild_due_ms(), None);
    let _ = node.deliver_message("127.0.0.1:9", b"poison-late");
    assert_eq!(node.rebuild_due_ms(), None, "a new streak");
    assert!(node.get_members().is_ok());
}

#[test]
fn a_message_that_crashes_twice_is_quarantined() {
    let rt = runtime();
    let mut node = start(&rt, nodeplane_artifacts::FIXTURE_POISON_PATH);
    node.join(&[]).expect("join");
    let poison = b"poison-A";
    // The SHA-256 of the poison bytes, as the event log names them.
    let sha256 = "0d9eb27018ca1195b1b6625482068c2b5cca5a4bc5c062a67953eecf8976d1ed";

    let err = node
        .deliver_message("127.0.0.1:9", poison)
        .expect_err("first crash");
    assert!(err.to_string().contains("poison message"), "{err}");
    assert_eq!(node.quarantined(), 0, "one crash is not enough");
    node.deliver_message("127.0.0.1:9", b"harmless")
        .expect("rebuilt, serving");
    node.deliver_message("127.0.0.1:9", poison)
        .expect_err("second crash");
    assert_eq!(node.crashes(), 2);
    assert_eq!(node.quarantined(), 1);
    let logged = events(&node, "message-quarantined");
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0]["sha256"], sha256);
    assert_eq!(logged[0]["source"], "127.0.0.1:9");
    assert_eq!(logged[0]["bytes"], poison.len());
    let crashes = events(&node, "component-crashed");
    assert_eq!(crashes[1]["message_sha256"], sha256);

    // From now on the bytes are dropped before the component, down or up.
    for _ in 0..3 {
        let err = node
            .deliver_message("127.0.0.1:10", poison)
            .expect_err("dropped");
        assert!(
            matches!(err, ControlError::BadMessage(ref m) if m.contains("quarantined") && m.contains(sha256)),
            "{err}"
        );
    }
    advance(&mut node, REBUILD_BACKOFF_BASE_MS);
    fire_due(&mut node);
    node.deliver_message("127.0.0.1:9", b"harmless")
        .expect("serving");
    assert!(node.deliver_message("127.0.0.1:9", poison).is_err());
    assert_eq!(node.crashes(), 2, "quarantined bytes crash nothing");
    assert_eq!(node.quarantine_drops(), 4);
    // Other poison is still a crash of its own (and then quarantined).
    assert!(node.deliver_message("127.0.0.1:9", b"poison-B").is_err());
    assert_eq!(node.crashes(), 3);
}

#[test]
fn the_rebuild_timer_is_the_hosts() {
    // While the component runs, a component's own timer with that id is
    // delivered to it (the stub ignores timers); no rebuild is counted.
    let rt = runtime();
    let mut node = start(&rt, nodeplane_artifacts::STUB_PATH);
    node.join(&[]).expect("join");
    node.fire_timer(REBUILD_TIMER).expect("delivered");
    assert_eq!(node.rebuilds(), 0);
    assert_eq!(node.crashes(), 0);
}

// ----- fail-stop ledger appends ----------------------------------------

/// A ledger store that fails on demand: `failing` makes every append fail;
/// `fail_next` makes that many appends fail, after which a reopen heals it.
#[derive(Clone, Default)]
struct Flaky {
    failing: Arc<AtomicBool>,
    fail_next: Arc<AtomicU32>,
    reopens: Arc<AtomicU32>,
}

struct FlakyLedger {
    inner: MemoryLedger,
    flaky: Flaky,
}

impl LedgerStore for FlakyLedger {
    fn load(&self) -> Result<Vec<Entry>, StoreError> {
        self.inner.load()
    }
    fn reader(&self) -> Option<std::sync::Arc<dyn nodeplane_runtime::EntryReader>> {
        self.inner.reader()
    }
    fn append(&mut self, entry: &Entry) -> Result<(), StoreError> {
        if self.flaky.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Backend("disk full (injected)".into()));
        }
        let left = self.flaky.fail_next.load(Ordering::SeqCst);
        if left > 0 {
            self.flaky.fail_next.store(left - 1, Ordering::SeqCst);
            return Err(StoreError::Backend("write refused (injected)".into()));
        }
        self.inner.append(entry)
    }
    fn reopen(&mut self) -> Result<(), StoreError> {
        self.flaky.reopens.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn len(&self) -> usize {
        self.inner.len()
    }
}

/// Recording services over a [`FlakyLedger`].
struct FlakyServices {
    inner: RecordingServices,
    ledger: FlakyLedger,
}

impl Services for FlakyServices {
    fn now_ms(&mut self) -> u64 {
        self.inner.now_ms()
    }
    fn seed(&mut self) -> u64 {
        self.inner.seed()
    }
    fn send(&mut self, to: &str, payload: Vec<u8>) {
        self.inner.send(to, payload)
    }
    fn set_timer(&mut self, timer: u64, after_ms: u64) {
        self.inner.set_timer(timer, after_ms)
    }
    fn cancel_timer(&mut self, timer: u64) {
        self.inner.cancel_timer(timer)
    }
    fn cancel_all_timers(&mut self) {
        self.inner.cancel_all_timers()
    }
    fn ledger(&mut self) -> &mut dyn LedgerStore {
        &mut self.ledger
    }
    fn log_event(&mut self, kind: &str, detail: &str) {
        self.inner.log_event(kind, detail)
    }
    fn signer(&mut self, node_id: &str) -> std::sync::Arc<nodeplane_runtime::signing::NodeSigner> {
        self.inner.signer(node_id)
    }
}

fn flaky_node(rt: &Runtime) -> (Node<FlakyServices>, Flaky) {
    let flaky = Flaky::default();
    let services = FlakyServices {
        inner: RecordingServices::new(),
        ledger: FlakyLedger {
            inner: MemoryLedger::new(),
            flaky: flaky.clone(),
        },
    };
    let node = start_with(rt, nodeplane_artifacts::NODEPLANE_PATH, services);
    (node, flaky)
}

fn log_kinds(node: &Node<FlakyServices>) -> Vec<String> {
    node.services()
        .inner
        .log()
        .iter()
        .map(|e| e.kind.clone())
        .collect()
}

#[test]
fn a_failed_append_is_retried_once_after_reopening_the_store() {
    let rt = runtime();
    let (mut node, flaky) = flaky_node(&rt);
    flaky.fail_next.store(1, Ordering::SeqCst);
    node.join(&["127.0.0.1:7002".into()]).expect("join");
    assert_eq!(flaky.reopens.load(Ordering::SeqCst), 1);
    assert_eq!(node.failure(), None);
    assert_eq!(node.services().ledger.len(), 1, "the join entry is stored");
    let kinds = log_kinds(&node);
    assert!(kinds.contains(&"ledger-append-failed".to_string()));
    assert!(kinds.contains(&"ledger-append-recovered".to_string()));
    assert!(
        !node.services().inner.outbox().is_empty(),
        "it contacts the seed"
    );
}

#[test]
fn a_store_that_keeps_failing_stops_the_node_before_it_publishes() {
    let rt = runtime();
    let (mut node, flaky) = flaky_node(&rt);
    flaky.failing.store(true, Ordering::SeqCst);
    // join writes the join entry, then contacts the seed with it: the
    // entry is not saved, so the contact must not leave.
    let err = node
        .join(&["127.0.0.1:7002".into()])
        .expect_err("the join entry could not be saved");
    assert!(
        matches!(err, ControlError::Unavailable(ref m) if m.contains("disk full (injected)")),
        "{err}"
    );
    assert_eq!(flaky.reopens.load(Ordering::SeqCst), 1, "retried once");
    assert!(
        node.services().inner.outbox().is_empty(),
        "nothing after the failed append is sent: {:?}",
        node.services().inner.outbox()
    );
    assert_eq!(node.services().inner.next_due_ms(), None, "no timer left");
    let failure = node.failure().expect("failed").to_string();
    assert!(failure.contains("a#1"), "names the entry: {failure}");
    assert!(log_kinds(&node).contains(&"node-failed".to_string()));

    // Every later call answers `unavailable` naming the store error, even
    // once the store would work again: the node's state is ahead of it.
    flaky.failing.store(false, Ordering::SeqCst);
    let calls: Vec<Result<(), ControlError>> = vec![
        node.get_members().map(|_| ()),
        node.publish_heartbeat().map(|_| ()),
        node.deliver_message("127.0.0.1:7002", b"anything"),
        node.fire_timer(1),
        node.join(&[]).map(|_| ()),
        node.rebuild().map(|_| ()),
    ];
    for result in calls {
        let err = result.expect_err("stopped");
        assert!(
            matches!(err, ControlError::Unavailable(ref m) if m.contains("disk full (injected)")),
            "{err}"
        );
    }
    assert!(node.services().inner.outbox().is_empty());
    assert_eq!(node.services().ledger.len(), 0);
}
