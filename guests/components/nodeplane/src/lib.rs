//! The node plane component: a thin shell around `nodeplane-core`.
//!
//! Every export reads the host clock, calls the sans-IO core, and then
//! performs the core's effects through host imports (send, timers, ledger
//! append, update delivery, event log). The shell keeps only what the core
//! does not: the set of subscribed handles. The core reads the entries it
//! linked back through `ledger-store.get` ([`HostStore`]).

mod bindings {
    wit_bindgen::generate!({ path: "../../../wit", world: "control-plane" });
}
mod convert;

use std::cell::RefCell;
use std::collections::BTreeSet;

use bindings::exports::nodeplane::control::{control, driver};
use bindings::nodeplane::control::{
    clock, events, ledger_store, lifecycle, network, random, signing, timers, types,
};
use nodeplane_core::ledger::EntryStore;
use nodeplane_core::{Effect, EffectSink, Entry, Hash, Node, PublicKey, Signer, Timer, Verifier};

/// The host's `signing` service as the core's [`Signer`]: the private key
/// stays in the host; this only forwards ids and signatures.
#[derive(Debug)]
struct HostSigner {
    public_key: PublicKey,
}

impl HostSigner {
    /// Asks the host for the node's public key once. A host answering
    /// with something that is not 32 bytes gets all zeros, which no
    /// signature verifies under: the node's entries are then refused
    /// everywhere, visibly, rather than the component guessing.
    fn new() -> HostSigner {
        let key = signing::public_key();
        HostSigner {
            public_key: key.as_slice().try_into().unwrap_or([0; 32]),
        }
    }
}

impl Verifier for HostSigner {
    fn verify(&mut self, key: &PublicKey, id: &Hash, signature: &[u8]) -> bool {
        signing::verify_entry(key, id, signature)
    }
}

impl Signer for HostSigner {
    fn public_key(&self) -> PublicKey {
        self.public_key
    }

    fn sign(&mut self, id: &Hash) -> Vec<u8> {
        signing::sign_entry(id)
    }
}

/// The host's `ledger-store.get` as the core's [`EntryStore`]: the node
/// keeps no entry it linked before the current call; it reads them back.
/// An answer the host encodes wrongly ends the answer there (the core
/// checks the rest against its chain).
#[derive(Debug)]
struct HostStore;

impl EntryStore for HostStore {
    fn get(&self, author: &str, from_seq: u64, limit: u32) -> Vec<Entry> {
        ledger_store::get(author, from_seq, limit)
            .into_iter()
            .map_while(|e| convert::entry_from_wit(e).ok())
            .collect()
    }
}

struct Shell {
    node: Node,
}

thread_local! {
    static SHELL: RefCell<Option<Shell>> = const { RefCell::new(None) };
    /// The subscribed handles: outside [`Shell`], since the node's effect
    /// sink ([`perform_one`]) delivers updates during a call, while the
    /// shell is borrowed.
    static SUBSCRIBERS: RefCell<BTreeSet<u64>> = const { RefCell::new(BTreeSet::new()) };
}

/// Runs `f` on the initialised shell, then performs the core's effects.
fn with_node<T>(
    f: impl FnOnce(&mut Node, u64) -> Result<T, nodeplane_core::Error>,
) -> Result<T, types::Error> {
    SHELL.with(|cell| {
        let mut guard = cell.borrow_mut();
        let Some(shell) = guard.as_mut() else {
            return Err(types::Error::Internal("driver.init was not called".into()));
        };
        let now = clock::now_ms();
        let result = f(&mut shell.node, now);
        perform(shell);
        result.map_err(convert::error_to_wit)
    })
}

/// Performs what the node has not performed through its sink yet.
fn perform(shell: &mut Shell) {
    for effect in shell.node.drain_effects() {
        perform_one(effect);
    }
}

/// Performs one effect through the host imports (the node's effect sink,
/// and the drain after each call).
fn perform_one(effect: Effect<Timer, ()>) {
    match effect {
        Effect::Send { to, payload } => network::send(&to, &payload),
        Effect::SetTimer { timer, after_ms } => timers::set_timer(timer.id(), after_ms),
        Effect::CancelTimer { timer } => timers::cancel_timer(timer.id()),
        Effect::Append(entry) => ledger_store::append(&convert::entry_into_wit(entry)),
        Effect::Update { update, .. } => SUBSCRIBERS.with(|subscribers| {
            let subscribers = subscribers.borrow();
            // Converted only when someone is subscribed.
            if !subscribers.is_empty() {
                let update = convert::update_into_wit(update);
                for subscriber in subscribers.iter() {
                    events::deliver_update(*subscriber, &update);
                }
            }
        }),
        Effect::Log { kind, detail } => events::log_event(&kind, &detail),
    }
}

/// Reports a panic through the event log before the instance aborts, so the
/// host can name it in the crash reason (Rust's default hook would try to
/// print to stderr, which the host does not provide).
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        events::log_event("panic", &guest_support::panic_detail(info));
    }));
}

struct Component;

impl driver::Guest for Component {
    fn info() -> types::ComponentInfo {
        types::ComponentInfo {
            name: "nodeplane".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    fn init(config: types::NodeConfig) -> Result<(), types::Error> {
        install_panic_hook();
        let stored = ledger_store::load()
            .into_iter()
            .map(convert::entry_from_wit)
            .collect::<Result<Vec<_>, _>>()
            .map_err(types::Error::CorruptLedger)?;
        let seed = random::next_u64();
        let now = clock::now_ms();
        let config = convert::config_from_wit(config);
        // A rebuild of the same process (after a crash or a hot swap)
        // continues at the incarnation it already announced; only a new
        // process raises it.
        let node = match lifecycle::started_as() {
            lifecycle::StartMode::Resume => {
                Node::resume(config, stored, seed, now, Box::new(HostSigner::new()))
            }
            lifecycle::StartMode::Fresh => {
                Node::new(config, stored, seed, now, Box::new(HostSigner::new()))
            }
        }
        .map_err(convert::error_to_wit)?
        .with_entry_store(Box::new(HostStore));
        let mut shell = Shell { node };
        // A new shell has no subscribers yet (as when they lived in it).
        SUBSCRIBERS.with(|s| s.borrow_mut().clear());
        perform(&mut shell);
        // From now on each call performs its effects as they come (the
        // store is the host's, so the entries linked are appended before
        // the node reads them back); `perform` takes what is left.
        shell
            .node
            .set_effect_sink(EffectSink(Box::new(perform_one)));
        SHELL.with(|cell| *cell.borrow_mut() = Some(shell));
        Ok(())
    }

    fn deliver_message(source: types::Address, payload: Vec<u8>) -> Result<(), types::Error> {
        // The payload is dropped once decoded (the core's high-water mark).
        with_node(move |node, now| node.handle_message_owned(now, &source, payload))
    }

    fn fire_timer(timer: u64) {
        // Ids this node never set (say, from an older component before a
        // swap) are ignored, as the core always did.
        let _ = with_node(|node, now| {
            if let Some(timer) = Timer::from_id(timer) {
                node.handle_timer(now, timer);
            }
            Ok(())
        });
    }
}

impl control::Guest for Component {
    fn join(seed_peers: Vec<types::Address>) -> Result<types::MembershipView, types::Error> {
        with_node(|node, now| node.join(now, &seed_peers)).map(|v| convert::view_to_wit(&v))
    }

    fn leave() -> Result<(), types::Error> {
        with_node(|node, now| node.leave(now))
    }

    fn get_members() -> Result<types::MembershipView, types::Error> {
        with_node(|node, _| node.members()).map(|v| convert::view_to_wit(&v))
    }

    fn publish_heartbeat() -> Result<u64, types::Error> {
        with_node(|node, now| node.publish_heartbeat(now))
    }

    fn report_peer_state(
        peer: types::NodeId,
        state: types::PeerState,
    ) -> Result<types::PeerState, types::Error> {
        with_node(|node, now| node.report_peer_state(now, &peer, convert::state_from_wit(state)))
            .map(convert::state_to_wit)
    }

    fn subscribe_membership_updates(handler: types::Subscriber) -> Result<(), types::Error> {
        SHELL.with(|cell| match cell.borrow().as_ref() {
            Some(_) => {
                if SUBSCRIBERS.with(|s| s.borrow_mut().insert(handler)) {
                    Ok(())
                } else {
                    Err(types::Error::InvalidSubscriber(handler))
                }
            }
            None => Err(types::Error::Internal("driver.init was not called".into())),
        })
    }

    fn unsubscribe_membership_updates(handler: types::Subscriber) -> Result<(), types::Error> {
        SHELL.with(|cell| match cell.borrow().as_ref() {
            Some(_) => {
                if SUBSCRIBERS.with(|s| s.borrow_mut().remove(&handler)) {
                    Ok(())
                } else {
                    Err(types::Error::InvalidSubscriber(handler))
                }
            }
            None => Err(types::Error::Internal("driver.init was not called".into())),
        })
    }

    fn get_peer_metadata(peer: types::NodeId) -> Result<types::Metadata, types::Error> {
        with_node(|node, _| node.peer_metadata(&peer))
    }
}

/// The component's exports. The C ABI glue that wit-bindgen generates here
/// is the only unsafe code in the guests.
#[allow(unsafe_code)]
mod export {
    use super::{bindings, Component};
    bindings::export!(Component with_types_in bindings);
}
