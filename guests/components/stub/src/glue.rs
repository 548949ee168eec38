//! Maps the WIT interface onto [`crate::plane::Plane`]. Shared, through
//! `#[path]`, by the stub and the broken fixtures; each crate defines
//! `FLAW` and generates its own bindings in `crate::bindings`.

use std::cell::RefCell;

use crate::bindings::exports::nodeplane::control::{control, driver};
use crate::bindings::nodeplane::control::{events, lifecycle, types};
use nodeplane_types::{ControlError, MembershipUpdate};

#[path = "../../support/included/wit_convert.rs"]
mod convert;
use convert::{state_from_wit, state_to_wit, update_to_wit, view_to_wit};

use crate::plane::{Flaw, Plane, Sink};

thread_local! {
    static PLANE: RefCell<Option<Plane>> = const { RefCell::new(None) };
}

struct HostSink;

impl Sink for HostSink {
    fn deliver(&mut self, subscriber: u64, update: &MembershipUpdate) {
        events::deliver_update(subscriber, &update_to_wit(update));
    }
    fn log(&mut self, kind: &str, detail: String) {
        events::log_event(kind, &detail);
    }
}

fn with_plane<T>(f: impl FnOnce(&mut Plane) -> Result<T, ControlError>) -> Result<T, types::Error> {
    PLANE.with(|cell| match cell.borrow_mut().as_mut() {
        Some(plane) => f(plane).map_err(to_wit_error),
        None => Err(types::Error::Internal("driver.init was not called".into())),
    })
}

fn to_wit_error(error: ControlError) -> types::Error {
    match error {
        ControlError::NotJoined => types::Error::NotJoined,
        ControlError::HasLeft => types::Error::HasLeft,
        ControlError::InvalidAddress(a) => types::Error::InvalidAddress(a),
        ControlError::UnknownPeer(p) => types::Error::UnknownPeer(p),
        ControlError::InvalidReport(r) => types::Error::InvalidReport(r),
        ControlError::InvalidSubscriber(s) => types::Error::InvalidSubscriber(s),
        ControlError::InvalidConfig(c) => types::Error::InvalidConfig(c),
        ControlError::BadMessage(m) => types::Error::BadMessage(m),
        ControlError::CorruptLedger(c) => types::Error::CorruptLedger(c),
        ControlError::Internal(i) => types::Error::Internal(i),
        // A host-side failure; a component has no WIT name for it.
        ControlError::Unavailable(u) => types::Error::Internal(u),
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

/// The exported component.
pub struct Component;

impl driver::Guest for Component {
    fn info() -> types::ComponentInfo {
        types::ComponentInfo {
            name: crate::NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    fn init(config: types::NodeConfig) -> Result<(), types::Error> {
        install_panic_hook();
        let flaw: Flaw = crate::FLAW;
        let plane = Plane::new(flaw, config.node_id, config.address, config.metadata)
            .map_err(to_wit_error)?;
        // The stub keeps no ledger and its own incarnation is always 1, so
        // a resumed instance (`lifecycle.started-as` is `resume`: the same
        // process rebuilding it) keeps it as [host-5] asks; it notes it.
        if lifecycle::started_as() == lifecycle::StartMode::Resume {
            events::log_event("resumed", "{\"incarnation\":1}");
        }
        PLANE.with(|cell| *cell.borrow_mut() = Some(plane));
        Ok(())
    }

    fn deliver_message(_source: types::Address, payload: Vec<u8>) -> Result<(), types::Error> {
        with_plane(|p| p.deliver_message(&payload))
    }

    fn fire_timer(_timer: u64) {}
}

impl control::Guest for Component {
    fn join(seed_peers: Vec<types::Address>) -> Result<types::MembershipView, types::Error> {
        with_plane(|p| p.join(&mut HostSink, &seed_peers)).map(|view| view_to_wit(&view))
    }

    fn leave() -> Result<(), types::Error> {
        with_plane(|p| p.leave(&mut HostSink))
    }

    fn get_members() -> Result<types::MembershipView, types::Error> {
        with_plane(|p| p.get_members()).map(|view| view_to_wit(&view))
    }

    fn publish_heartbeat() -> Result<u64, types::Error> {
        with_plane(|p| p.publish_heartbeat())
    }

    fn report_peer_state(
        peer: types::NodeId,
        state: types::PeerState,
    ) -> Result<types::PeerState, types::Error> {
        with_plane(|p| p.report_peer_state(&mut HostSink, &peer, state_from_wit(state)))
            .map(state_to_wit)
    }

    fn subscribe_membership_updates(handler: types::Subscriber) -> Result<(), types::Error> {
        with_plane(|p| p.subscribe(handler))
    }

    fn unsubscribe_membership_updates(handler: types::Subscriber) -> Result<(), types::Error> {
        with_plane(|p| p.unsubscribe(handler))
    }

    fn get_peer_metadata(peer: types::NodeId) -> Result<types::Metadata, types::Error> {
        with_plane(|p| p.get_peer_metadata(&peer))
    }
}
