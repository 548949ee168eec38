//! The stub control plane's logic, in plain Rust.
//!
//! Deterministic and network-free: `join` makes the seeds (named by their
//! address) and this node members, reports and `leave` apply the
//! transitions documented in `docs/interface.md`, and an update is emitted
//! for every change. It keeps no ledger: it is a test double.

use std::collections::{BTreeMap, BTreeSet};

use nodeplane_types::{
    ControlError, Member, MembershipUpdate, MembershipView, PeerState, UpdateCause,
};

/// A deliberate defect, used only by the conformance harness's fixtures.
#[derive(Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)]
pub enum Flaw {
    /// A correct stub.
    None,
    /// Updates caused by `report-peer-state` are never delivered.
    DropsUpdates,
    /// A report about an unknown peer returns `invalid-report`, not `unknown-peer`.
    WrongError,
    /// `publish-heartbeat` never returns.
    Spin,
    /// `get-peer-metadata` traps.
    Trap,
    /// `init` traps.
    InitCrash,
    /// `publish-heartbeat` grows linear memory until the host's limit
    /// stops it.
    MemoryHog,
    /// `deliver-message` traps on a payload starting with [`POISON`].
    Poison,
}

/// The payload prefix that crashes the `Poison` fixture.
pub const POISON: &[u8] = b"poison";

/// Where the stub sends its updates and event-log lines.
pub trait Sink {
    fn deliver(&mut self, subscriber: u64, update: &MembershipUpdate);
    fn log(&mut self, kind: &str, detail: String);
}

/// The stub's whole state.
pub struct Plane {
    flaw: Flaw,
    node_id: String,
    address: String,
    metadata: Vec<(String, String)>,
    joined: bool,
    has_left: bool,
    heartbeats: u64,
    version: u64,
    members: BTreeMap<String, Member>,
    subscribers: BTreeSet<u64>,
}

/// Grows linear memory 256 MiB at a time up to the 4 GiB a 32-bit memory
/// can address: a host limit below that stops it (a trap), and a failed
/// grow is a panic, so the call never returns.
fn grow_memory_without_bound() -> ! {
    const PAGES: usize = 4096; // 64 KiB pages: 256 MiB
    loop {
        #[cfg(target_arch = "wasm32")]
        let grown = core::arch::wasm32::memory_grow(0, PAGES);
        #[cfg(not(target_arch = "wasm32"))]
        let grown = usize::MAX;
        if grown == usize::MAX {
            panic!("fixture: memory.grow of {PAGES} pages failed");
        }
    }
}

/// Checks `ip:port`.
pub fn valid_address(address: &str) -> bool {
    address.parse::<core::net::SocketAddr>().is_ok()
}

/// Checks a node id: 1 to 64 bytes of `[A-Za-z0-9._-]`.
pub fn valid_node_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

impl Plane {
    /// A stub for this node's configuration.
    pub fn new(
        flaw: Flaw,
        node_id: String,
        address: String,
        metadata: Vec<(String, String)>,
    ) -> Result<Plane, ControlError> {
        if flaw == Flaw::InitCrash {
            panic!("fixture: deliberate crash in init");
        }
        if !valid_node_id(&node_id) {
            return Err(ControlError::InvalidConfig(format!(
                "node-id {node_id:?}: must be 1 to 64 characters of A-Z a-z 0-9 . _ -"
            )));
        }
        if !valid_address(&address) {
            return Err(ControlError::InvalidConfig(format!(
                "address {address:?}: expected ip:port"
            )));
        }
        Ok(Plane {
            flaw,
            node_id,
            address,
            metadata,
            joined: false,
            has_left: false,
            heartbeats: 0,
            version: 0,
            members: BTreeMap::new(),
            subscribers: BTreeSet::new(),
        })
    }

    fn view(&self) -> MembershipView {
        MembershipView {
            version: self.version,
            members: self.members.values().cloned().collect(),
        }
    }

    fn emit(
        &mut self,
        sink: &mut dyn Sink,
        peer: &str,
        previous: Option<PeerState>,
        cause: UpdateCause,
        deliver: bool,
    ) {
        self.version += 1;
        let update = MembershipUpdate {
            peer: peer.to_string(),
            previous,
            current: self.members[peer].clone(),
            cause,
            entry: None,
            version: self.version,
        };
        sink.log(
            "membership-update",
            format!(
                "{{\"peer\":\"{}\",\"cause\":\"{:?}\",\"version\":{}}}",
                peer, cause, self.version
            ),
        );
        if deliver {
            for subscriber in &self.subscribers {
                sink.deliver(*subscriber, &update);
            }
        }
    }

    fn require_active(&self) -> Result<(), ControlError> {
        if self.has_left {
            Err(ControlError::HasLeft)
        } else if !self.joined {
            Err(ControlError::NotJoined)
        } else {
            Ok(())
        }
    }

    /// `join`.
    pub fn join(
        &mut self,
        sink: &mut dyn Sink,
        seeds: &[String],
    ) -> Result<MembershipView, ControlError> {
        if self.has_left {
            return Err(ControlError::HasLeft);
        }
        if let Some(bad) = seeds.iter().find(|s| !valid_address(s)) {
            return Err(ControlError::InvalidAddress(bad.clone()));
        }
        if !self.joined {
            self.joined = true;
            let me = Member {
                id: self.node_id.clone(),
                address: self.address.clone(),
                state: PeerState::Alive,
                incarnation: 1,
                metadata: self.metadata.clone(),
            };
            self.members.insert(me.id.clone(), me);
            let id = self.node_id.clone();
            self.emit(sink, &id, None, UpdateCause::Joined, true);
        }
        for seed in seeds {
            if *seed == self.address || self.members.contains_key(seed) {
                continue;
            }
            let member = Member {
                id: seed.clone(),
                address: seed.clone(),
                state: PeerState::Alive,
                incarnation: 0,
                metadata: Vec::new(),
            };
            self.members.insert(seed.clone(), member);
            self.emit(sink, seed, None, UpdateCause::Joined, true);
        }
        Ok(self.view())
    }

    /// `leave`.
    pub fn leave(&mut self, sink: &mut dyn Sink) -> Result<(), ControlError> {
        self.require_active()?;
        self.has_left = true;
        let id = self.node_id.clone();
        self.members.get_mut(&id).expect("self is a member").state = PeerState::Left;
        self.emit(sink, &id, Some(PeerState::Alive), UpdateCause::Left, true);
        Ok(())
    }

    /// `get-members`.
    pub fn get_members(&self) -> Result<MembershipView, ControlError> {
        if !self.joined {
            return Err(ControlError::NotJoined);
        }
        Ok(self.view())
    }

    /// `publish-heartbeat`.
    pub fn publish_heartbeat(&mut self) -> Result<u64, ControlError> {
        self.require_active()?;
        if self.flaw == Flaw::Spin {
            let mut n: u64 = 0;
            loop {
                n = core::hint::black_box(n.wrapping_add(1));
            }
        }
        if self.flaw == Flaw::MemoryHog {
            grow_memory_without_bound();
        }
        self.heartbeats += 1;
        Ok(self.heartbeats)
    }

    /// `deliver-message`: the stub has no network protocol; messages are
    /// accepted and ignored.
    pub fn deliver_message(&self, payload: &[u8]) -> Result<(), ControlError> {
        if self.flaw == Flaw::Poison && payload.starts_with(POISON) {
            panic!("fixture: deliberate trap on a poison message");
        }
        Ok(())
    }

    /// `report-peer-state`: suspect/dead on alive → suspect; dead on suspect
    /// → dead (the stub's caller is its failure detector); alive on suspect
    /// → alive; nothing revives dead or left.
    pub fn report_peer_state(
        &mut self,
        sink: &mut dyn Sink,
        peer: &str,
        state: PeerState,
    ) -> Result<PeerState, ControlError> {
        self.require_active()?;
        if peer == self.node_id {
            return Err(ControlError::InvalidReport(
                "a node cannot report on itself".into(),
            ));
        }
        if state == PeerState::Left {
            return Err(ControlError::InvalidReport(
                "left can only be announced by the leaving node".into(),
            ));
        }
        let Some(member) = self.members.get(peer) else {
            return Err(match self.flaw {
                Flaw::WrongError => ControlError::InvalidReport(format!("no such peer {peer}")),
                _ => ControlError::UnknownPeer(peer.to_string()),
            });
        };
        let before = member.state;
        let (after, cause) = match (before, state) {
            (PeerState::Alive, PeerState::Suspect | PeerState::Dead) => {
                (PeerState::Suspect, Some(UpdateCause::Suspected))
            }
            (PeerState::Suspect, PeerState::Dead) => {
                (PeerState::Dead, Some(UpdateCause::ConfirmedDead))
            }
            (PeerState::Suspect, PeerState::Alive) => {
                (PeerState::Alive, Some(UpdateCause::Refuted))
            }
            (current, _) => (current, None),
        };
        if let Some(cause) = cause {
            let member = self.members.get_mut(peer).expect("checked above");
            member.state = after;
            if cause == UpdateCause::Refuted {
                member.incarnation += 1;
            }
            let deliver = self.flaw != Flaw::DropsUpdates;
            self.emit(sink, peer, Some(before), cause, deliver);
        }
        Ok(after)
    }

    /// `subscribe-membership-updates`.
    pub fn subscribe(&mut self, handler: u64) -> Result<(), ControlError> {
        if !self.subscribers.insert(handler) {
            return Err(ControlError::InvalidSubscriber(handler));
        }
        Ok(())
    }

    /// `unsubscribe-membership-updates`.
    pub fn unsubscribe(&mut self, handler: u64) -> Result<(), ControlError> {
        if !self.subscribers.remove(&handler) {
            return Err(ControlError::InvalidSubscriber(handler));
        }
        Ok(())
    }

    /// `get-peer-metadata`.
    pub fn get_peer_metadata(&self, peer: &str) -> Result<Vec<(String, String)>, ControlError> {
        if self.flaw == Flaw::Trap {
            panic!("fixture: deliberate trap in get-peer-metadata");
        }
        if !self.joined {
            return Err(ControlError::NotJoined);
        }
        self.members
            .get(peer)
            .map(|m| m.metadata.clone())
            .ok_or_else(|| ControlError::UnknownPeer(peer.to_string()))
    }
}
