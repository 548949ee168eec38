// The stub control plane in JavaScript: a third-party implementation of the
// Control Plane Interface (world `control-plane`, wit/control.wit), built
// into a component with jco (ComponentizeJS).
//
// It follows the Rust stub's rules (guests/components/stub/src/plane.rs):
// deterministic and network-free; `join` makes the seeds (named by their
// address) and this node members; reports and `leave` apply the transitions
// documented in docs/interface.md; an update is emitted for every change. It
// keeps no ledger: it is a test double, and an example of how little a
// component needs.
//
// Build and check it (see README.md in this folder):
//
//   npm ci && npm run build && nodeplane conformance stub.wasm

import { deliverUpdate, logEvent } from 'nodeplane:control/events@0.2.1';
import { startedAs } from 'nodeplane:control/lifecycle@0.2.1';

const NAME = 'js-stub';
const VERSION = '0.1.0';

/// Returns `err(error)` from the current call: ComponentizeJS turns a thrown
/// value into the `err` case of a `result` (its `payload` if it has one).
function fail(tag, val) {
  const error = val === undefined ? { tag } : { tag, val };
  throw { payload: error, ...error };
}

/// `ip:port` (IPv4, or bracketed IPv6), as Rust's `SocketAddr` parses it.
function validAddress(address) {
  let host;
  let port;
  if (address.startsWith('[')) {
    const end = address.indexOf(']:');
    if (end < 0) return false;
    host = address.slice(1, end);
    port = address.slice(end + 2);
    if (!validIpv6(host)) return false;
  } else {
    const colon = address.lastIndexOf(':');
    if (colon < 0) return false;
    host = address.slice(0, colon);
    port = address.slice(colon + 1);
    if (!validIpv4(host)) return false;
  }
  return /^[0-9]{1,5}$/.test(port) && Number(port) <= 65535;
}

function validIpv4(host) {
  const parts = host.split('.');
  return parts.length === 4 && parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p) && Number(p) <= 255);
}

function validIpv6(host) {
  if (!/^[0-9A-Fa-f:.]+$/.test(host)) return false;
  const halves = host.split('::');
  if (halves.length > 2) return false;
  const groups = (s) => (s === '' ? [] : s.split(':'));
  const all = halves.flatMap(groups);
  let count = 0;
  for (let i = 0; i < all.length; i++) {
    const g = all[i];
    if (i === all.length - 1 && g.includes('.')) {
      if (!validIpv4(g)) return false;
      count += 2;
    } else if (/^[0-9A-Fa-f]{1,4}$/.test(g)) {
      count += 1;
    } else {
      return false;
    }
  }
  return halves.length === 2 ? count < 8 : count === 8;
}

/// 1 to 64 bytes of `[A-Za-z0-9._-]`.
function validNodeId(id) {
  return /^[A-Za-z0-9._-]{1,64}$/.test(id);
}

const copy = (m) => ({ ...m, metadata: m.metadata.map(([k, v]) => [k, v]) });

/// The stub's whole state (`undefined` until `driver.init`).
let plane;

function current() {
  if (plane === undefined) fail('internal', 'driver.init was not called');
  return plane;
}

function view(p) {
  const ids = [...p.members.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return { version: p.version, members: ids.map((id) => copy(p.members.get(id))) };
}

function emit(p, peer, previous, cause) {
  p.version += 1n;
  const update = {
    peer,
    previous,
    current: copy(p.members.get(peer)),
    cause,
    entry: undefined,
    version: p.version,
  };
  logEvent('membership-update', JSON.stringify({ peer, cause, version: Number(p.version) }));
  const subscribers = [...p.subscribers].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  for (const subscriber of subscribers) deliverUpdate(subscriber, update);
}

function requireActive(p) {
  if (p.hasLeft) fail('has-left');
  if (!p.joined) fail('not-joined');
}

export const driver = {
  info() {
    return { name: NAME, version: VERSION };
  },

  init(config) {
    if (!validNodeId(config.nodeId)) {
      fail('invalid-config', `node-id ${JSON.stringify(config.nodeId)}: must be 1 to 64 characters of A-Z a-z 0-9 . _ -`);
    }
    if (!validAddress(config.address)) {
      fail('invalid-config', `address ${JSON.stringify(config.address)}: expected ip:port`);
    }
    // The stub keeps no ledger and its own incarnation is always 1, so a
    // resumed instance keeps it, as [host-5] asks; it notes it.
    if (startedAs() === 'resume') logEvent('resumed', '{"incarnation":1}');
    plane = {
      nodeId: config.nodeId,
      address: config.address,
      metadata: config.metadata.map(([k, v]) => [k, v]),
      joined: false,
      hasLeft: false,
      heartbeats: 0n,
      version: 0n,
      members: new Map(),
      subscribers: new Set(),
    };
  },

  // No network protocol: messages are accepted and ignored.
  deliverMessage(_source, _payload) {
    current();
  },

  fireTimer(_timer) {},
};

export const control = {
  join(seedPeers) {
    const p = current();
    if (p.hasLeft) fail('has-left');
    for (const seed of seedPeers) {
      if (!validAddress(seed)) fail('invalid-address', seed);
    }
    if (!p.joined) {
      p.joined = true;
      p.members.set(p.nodeId, {
        id: p.nodeId,
        address: p.address,
        state: 'alive',
        incarnation: 1n,
        metadata: p.metadata,
      });
      emit(p, p.nodeId, undefined, 'joined');
    }
    for (const seed of seedPeers) {
      if (seed === p.address || p.members.has(seed)) continue;
      p.members.set(seed, { id: seed, address: seed, state: 'alive', incarnation: 0n, metadata: [] });
      emit(p, seed, undefined, 'joined');
    }
    return view(p);
  },

  leave() {
    const p = current();
    requireActive(p);
    p.hasLeft = true;
    p.members.get(p.nodeId).state = 'left';
    emit(p, p.nodeId, 'alive', 'left');
  },

  getMembers() {
    const p = current();
    if (!p.joined) fail('not-joined');
    return view(p);
  },

  publishHeartbeat() {
    const p = current();
    requireActive(p);
    p.heartbeats += 1n;
    return p.heartbeats;
  },

  reportPeerState(peer, state) {
    const p = current();
    requireActive(p);
    if (peer === p.nodeId) fail('invalid-report', 'a node cannot report on itself');
    if (state === 'left') fail('invalid-report', 'left can only be announced by the leaving node');
    const member = p.members.get(peer);
    if (member === undefined) fail('unknown-peer', peer);
    const before = member.state;
    let after = before;
    let cause;
    if (before === 'alive' && (state === 'suspect' || state === 'dead')) {
      after = 'suspect';
      cause = 'suspected';
    } else if (before === 'suspect' && state === 'dead') {
      after = 'dead';
      cause = 'confirmed-dead';
    } else if (before === 'suspect' && state === 'alive') {
      after = 'alive';
      cause = 'refuted';
    }
    if (cause !== undefined) {
      member.state = after;
      if (cause === 'refuted') member.incarnation += 1n;
      emit(p, peer, before, cause);
    }
    return after;
  },

  subscribeMembershipUpdates(handler) {
    const p = current();
    if (p.subscribers.has(handler)) fail('invalid-subscriber', handler);
    p.subscribers.add(handler);
  },

  unsubscribeMembershipUpdates(handler) {
    const p = current();
    if (!p.subscribers.has(handler)) fail('invalid-subscriber', handler);
    p.subscribers.delete(handler);
  },

  getPeerMetadata(peer) {
    const p = current();
    if (!p.joined) fail('not-joined');
    const member = p.members.get(peer);
    if (member === undefined) fail('unknown-peer', peer);
    return member.metadata.map(([k, v]) => [k, v]);
  },
};
