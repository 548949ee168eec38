"""The stub control plane in Python: a third-party implementation of the
Control Plane Interface (world `control-plane`, `wit/control.wit`), built
into a component with componentize-py.

It follows the Rust stub's rules (guests/components/stub/src/plane.rs):
deterministic and network-free; `join` makes the seeds (named by their
address) and this node members; reports and `leave` apply the transitions
documented in docs/interface.md; an update is emitted for every change. It
keeps no ledger: it is a test double, and an example of how little a
component needs.

Build and check it (see README.md in this folder):

    componentize-py -d ../../wit -w control-plane componentize app -o stub.wasm
    nodeplane conformance stub.wasm
"""

import ipaddress
import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import events, lifecycle, types
from wit_world.imports.types import (
    ComponentInfo,
    Member,
    MembershipUpdate,
    MembershipView,
    PeerState,
    UpdateCause,
)

NAME = "python-stub"
VERSION = "0.1.0"


def valid_address(address: str) -> bool:
    """`ip:port` (IPv4, or bracketed IPv6), as Rust's `SocketAddr` parses it."""
    if address.startswith("["):
        host, sep, port = address[1:].partition("]:")
        if not sep:
            return False
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
    else:
        host, sep, port = address.rpartition(":")
        if not sep:
            return False
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return False
    return port.isascii() and port.isdigit() and int(port) <= 65535


def valid_node_id(node_id: str) -> bool:
    """1 to 64 bytes of `[A-Za-z0-9._-]`."""
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    return 0 < len(node_id.encode()) <= 64 and all(c in allowed for c in node_id)


class Plane:
    """The stub's whole state."""

    def __init__(self, config: types.NodeConfig):
        if not valid_node_id(config.node_id):
            raise Err(types.Error_InvalidConfig(
                f"node-id {config.node_id!r}: must be 1 to 64 characters of A-Z a-z 0-9 . _ -"))
        if not valid_address(config.address):
            raise Err(types.Error_InvalidConfig(
                f"address {config.address!r}: expected ip:port"))
        self.node_id = config.node_id
        self.address = config.address
        self.metadata = list(config.metadata)
        self.joined = False
        self.has_left = False
        self.heartbeats = 0
        self.version = 0
        self.members = {}
        self.subscribers = set()

    def view(self) -> MembershipView:
        members = [self.copy(self.members[k]) for k in sorted(self.members)]
        return MembershipView(version=self.version, members=members)

    @staticmethod
    def copy(m: Member) -> Member:
        return Member(m.id, m.address, m.state, m.incarnation, list(m.metadata))

    def emit(self, peer, previous, cause, deliver=True):
        self.version += 1
        update = MembershipUpdate(
            peer=peer,
            previous=previous,
            current=self.copy(self.members[peer]),
            cause=cause,
            entry=None,
            version=self.version,
        )
        events.log_event("membership-update", json.dumps(
            {"peer": peer, "cause": cause.name.lower(), "version": self.version}))
        if deliver:
            for subscriber in sorted(self.subscribers):
                events.deliver_update(subscriber, update)

    def require_active(self):
        if self.has_left:
            raise Err(types.Error_HasLeft())
        if not self.joined:
            raise Err(types.Error_NotJoined())


PLANE = None


def plane() -> Plane:
    if PLANE is None:
        raise Err(types.Error_Internal("driver.init was not called"))
    return PLANE


class Driver(exports.Driver):
    def info(self) -> ComponentInfo:
        return ComponentInfo(name=NAME, version=VERSION)

    def init(self, config: types.NodeConfig) -> None:
        global PLANE
        new = Plane(config)
        # The stub keeps no ledger and its own incarnation is always 1, so a
        # resumed instance keeps it, as [host-5] asks; it notes it.
        if lifecycle.started_as() == lifecycle.StartMode.RESUME:
            events.log_event("resumed", '{"incarnation":1}')
        PLANE = new

    def deliver_message(self, source: str, payload: bytes) -> None:
        # No network protocol: messages are accepted and ignored.
        plane()

    def fire_timer(self, timer: int) -> None:
        pass


class Control(exports.Control):
    def join(self, seed_peers):
        p = plane()
        if p.has_left:
            raise Err(types.Error_HasLeft())
        for seed in seed_peers:
            if not valid_address(seed):
                raise Err(types.Error_InvalidAddress(seed))
        if not p.joined:
            p.joined = True
            p.members[p.node_id] = Member(
                p.node_id, p.address, PeerState.ALIVE, 1, list(p.metadata))
            p.emit(p.node_id, None, UpdateCause.JOINED)
        for seed in seed_peers:
            if seed == p.address or seed in p.members:
                continue
            p.members[seed] = Member(seed, seed, PeerState.ALIVE, 0, [])
            p.emit(seed, None, UpdateCause.JOINED)
        return p.view()

    def leave(self):
        p = plane()
        p.require_active()
        p.has_left = True
        p.members[p.node_id].state = PeerState.LEFT
        p.emit(p.node_id, PeerState.ALIVE, UpdateCause.LEFT)

    def get_members(self):
        p = plane()
        if not p.joined:
            raise Err(types.Error_NotJoined())
        return p.view()

    def publish_heartbeat(self):
        p = plane()
        p.require_active()
        p.heartbeats += 1
        return p.heartbeats

    def report_peer_state(self, peer, state):
        p = plane()
        p.require_active()
        if peer == p.node_id:
            raise Err(types.Error_InvalidReport("a node cannot report on itself"))
        if state == PeerState.LEFT:
            raise Err(types.Error_InvalidReport(
                "left can only be announced by the leaving node"))
        member = p.members.get(peer)
        if member is None:
            raise Err(types.Error_UnknownPeer(peer))
        before = member.state
        after, cause = before, None
        if before == PeerState.ALIVE and state in (PeerState.SUSPECT, PeerState.DEAD):
            after, cause = PeerState.SUSPECT, UpdateCause.SUSPECTED
        elif before == PeerState.SUSPECT and state == PeerState.DEAD:
            after, cause = PeerState.DEAD, UpdateCause.CONFIRMED_DEAD
        elif before == PeerState.SUSPECT and state == PeerState.ALIVE:
            after, cause = PeerState.ALIVE, UpdateCause.REFUTED
        if cause is not None:
            member.state = after
            if cause == UpdateCause.REFUTED:
                member.incarnation += 1
            p.emit(peer, before, cause)
        return after

    def subscribe_membership_updates(self, handler):
        p = plane()
        if handler in p.subscribers:
            raise Err(types.Error_InvalidSubscriber(handler))
        p.subscribers.add(handler)

    def unsubscribe_membership_updates(self, handler):
        p = plane()
        if handler not in p.subscribers:
            raise Err(types.Error_InvalidSubscriber(handler))
        p.subscribers.remove(handler)

    def get_peer_metadata(self, peer):
        p = plane()
        if not p.joined:
            raise Err(types.Error_NotJoined())
        member = p.members.get(peer)
        if member is None:
            raise Err(types.Error_UnknownPeer(peer))
        return list(member.metadata)
