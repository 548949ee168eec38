//! One peer of the VPN and the validation of its metadata.

use std::net::{IpAddr, SocketAddr};

use nodeplane_interface::{Address, Member, NodeId, PeerState};

/// Metadata key holding a peer's overlay (tunnel) IP address, e.g.
/// `10.42.0.7` or `fd00::7`.
pub const OVERLAY_IP_KEY: &str = "overlay-ip";

/// Metadata key holding a peer's WireGuard public key: standard base64 of
/// 32 bytes (44 characters ending in `=`).
pub const PUBLIC_KEY_KEY: &str = "public-key";

/// Metadata key holding the UDP port a peer's WireGuard listens on, e.g.
/// `51820`. The tunnel endpoint is the member's control IP with this port
/// (the control port is not the tunnel's); without the key the control
/// address itself is the endpoint.
pub const WG_PORT_KEY: &str = "wg-port";

/// A validated WireGuard public key (base64 of 32 bytes).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(String);

impl PublicKey {
    /// Validates `text` as base64 of exactly 32 bytes.
    pub fn parse(text: &str) -> Result<PublicKey, String> {
        const LEN: usize = 44;
        if text.len() != LEN {
            return Err(format!(
                "expected {LEN} base64 characters, got {}",
                text.len()
            ));
        }
        let bytes = text.as_bytes();
        if bytes[LEN - 1] != b'=' {
            return Err("expected one '=' of padding at the end".into());
        }
        let mut last = 0;
        for (i, &b) in bytes[..LEN - 1].iter().enumerate() {
            last = base64_value(b).ok_or_else(|| format!("character {i} is not base64"))?;
        }
        // 32 bytes use 256 of the 258 bits of 43 characters: the last
        // character's two low bits must be zero.
        if last & 0b11 != 0 {
            return Err("not the canonical encoding of 32 bytes".into());
        }
        Ok(PublicKey(text.to_owned()))
    }

    /// The key as base64.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key of these 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> PublicKey {
        use base64::Engine as _;
        PublicKey(base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    /// The key's 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        use base64::Engine as _;
        let mut out = [0u8; 32];
        // `parse` admitted only canonical base64 of 32 bytes, so this
        // decodes to exactly 32 bytes; anything else leaves zeros.
        if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(&self.0) {
            if let Ok(array) = <[u8; 32]>::try_from(bytes.as_slice()) {
                out = array;
            }
        }
        out
    }
}

fn base64_value(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// What the data plane needs to reach a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tunnel {
    /// The peer's tunnel endpoint: its control IP with the `wg-port`
    /// metadata port, or its control address without that key.
    pub endpoint: SocketAddr,
    /// The peer's overlay address; routed as a host route (/32 or /128).
    pub overlay_ip: IpAddr,
    /// The peer's WireGuard public key.
    pub public_key: PublicKey,
}

/// Why a peer is kept but cannot be rendered. Values are quoted with
/// `{:?}`, so a hostile value cannot inject lines into a configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Incomplete {
    /// A required metadata key is absent.
    #[error("metadata key {0:?} is missing")]
    MissingKey(&'static str),
    /// The `overlay-ip` value is not a usable IP address.
    #[error("overlay-ip {value:?} is invalid: {reason}")]
    InvalidOverlayIp {
        /// The offending value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The `public-key` value is not a WireGuard key.
    #[error("public-key {value:?} is invalid: {reason}")]
    InvalidPublicKey {
        /// The offending value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The member's address is not `ip:port`.
    #[error("endpoint {0:?} is not ip:port")]
    InvalidEndpoint(String),
    /// The `wg-port` value is not a port number 1..=65535.
    #[error("wg-port {0:?} is not a port number 1..=65535")]
    InvalidWgPort(String),
}

/// One peer of the desired set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VpnPeer {
    /// The peer's node id.
    pub node_id: NodeId,
    /// Its control address as the control plane reported it.
    pub address: Address,
    /// `alive` or `suspect`.
    pub state: PeerState,
    /// The tunnel, or why the peer cannot be rendered.
    pub tunnel: Result<Tunnel, Incomplete>,
}

impl VpnPeer {
    /// The peer for a member; `None` when the member is not a peer
    /// (`dead` or `left`).
    pub fn from_member(member: &Member) -> Option<VpnPeer> {
        // Live members (alive or suspect) are peers; a suspect may be back
        // any moment, and only a verdict or a leave removes a tunnel.
        member.state.is_live().then(|| VpnPeer {
            node_id: member.id.clone(),
            address: member.address.clone(),
            state: member.state,
            tunnel: tunnel_of(member),
        })
    }

    /// Whether the peer has a valid tunnel.
    pub fn is_complete(&self) -> bool {
        self.tunnel.is_ok()
    }
}

fn tunnel_of(member: &Member) -> Result<Tunnel, Incomplete> {
    let mut endpoint: SocketAddr = member
        .address
        .parse()
        .map_err(|_| Incomplete::InvalidEndpoint(member.address.clone()))?;
    if let Some(port_text) = member.metadata_value(WG_PORT_KEY) {
        let port = port_text
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| Incomplete::InvalidWgPort(port_text.to_owned()))?;
        endpoint.set_port(port);
    }
    let ip_text = member
        .metadata_value(OVERLAY_IP_KEY)
        .ok_or(Incomplete::MissingKey(OVERLAY_IP_KEY))?;
    let overlay_ip = parse_overlay_ip(ip_text).map_err(|reason| Incomplete::InvalidOverlayIp {
        value: ip_text.to_owned(),
        reason,
    })?;
    let key_text = member
        .metadata_value(PUBLIC_KEY_KEY)
        .ok_or(Incomplete::MissingKey(PUBLIC_KEY_KEY))?;
    let public_key = PublicKey::parse(key_text).map_err(|reason| Incomplete::InvalidPublicKey {
        value: key_text.to_owned(),
        reason,
    })?;
    Ok(Tunnel {
        endpoint,
        overlay_ip,
        public_key,
    })
}

fn parse_overlay_ip(text: &str) -> Result<IpAddr, String> {
    let ip: IpAddr = text.parse().map_err(|_| "not an IP address".to_owned())?;
    if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
        return Err(
            "unspecified, multicast and loopback addresses cannot be routed to a peer".into(),
        );
    }
    if let IpAddr::V4(v4) = ip {
        if v4.is_broadcast() {
            return Err("the broadcast address cannot be routed to a peer".into());
        }
    }
    Ok(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "YcFCSOOYGKPXKTWgh4CG5R2oBUbf3dpsl6dO5YjXpEA=";

    fn member(meta: &[(&str, &str)], state: PeerState) -> Member {
        Member {
            id: "n1".into(),
            address: "127.0.0.1:7001".into(),
            state,
            incarnation: 0,
            metadata: meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn a_complete_member_gives_a_tunnel() {
        let peer = VpnPeer::from_member(&member(
            &[("overlay-ip", "10.0.0.2"), ("public-key", KEY)],
            PeerState::Suspect,
        ))
        .unwrap();
        let tunnel = peer.tunnel.unwrap();
        assert_eq!(tunnel.overlay_ip, "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(tunnel.public_key.as_str(), KEY);
    }

    #[test]
    fn dead_and_left_members_are_not_peers() {
        assert!(VpnPeer::from_member(&member(&[], PeerState::Dead)).is_none());
        assert!(VpnPeer::from_member(&member(&[], PeerState::Left)).is_none());
    }

    #[test]
    fn bad_metadata_is_kept_with_a_reason() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("public-key", KEY)], "\"overlay-ip\" is missing"),
            (
                &[("overlay-ip", "not-an-ip"), ("public-key", KEY)],
                "not an IP",
            ),
            (
                &[("overlay-ip", "0.0.0.0"), ("public-key", KEY)],
                "unspecified",
            ),
            (&[("overlay-ip", "10.0.0.2")], "\"public-key\" is missing"),
            (
                &[("overlay-ip", "10.0.0.2"), ("public-key", "short")],
                "44 base64",
            ),
            (
                &[
                    ("overlay-ip", "10.0.0.2"),
                    (
                        "public-key",
                        "YcFCSOOYGKPXKTWgh4CG5R2oBUbf3dpsl6dO5Yj\nXpE=",
                    ),
                ],
                "not base64",
            ),
            (
                &[
                    ("overlay-ip", "10.0.0.2"),
                    ("public-key", "YcFCSOOYGKPXKTWgh4CG5R2oBUbf3dpsl6dO5YjXpEB="),
                ],
                "canonical",
            ),
        ];
        for (meta, expect) in cases {
            let peer = VpnPeer::from_member(&member(meta, PeerState::Alive)).expect("kept");
            let reason = peer.tunnel.expect_err("not renderable").to_string();
            assert!(
                reason.contains(expect),
                "{reason:?} should mention {expect:?}"
            );
            assert!(
                !reason.contains('\n'),
                "reasons never carry raw newlines: {reason:?}"
            );
        }
    }

    #[test]
    fn the_wg_port_gives_the_tunnel_endpoint() {
        let meta = [
            ("overlay-ip", "10.0.0.2"),
            ("public-key", KEY),
            ("wg-port", "51820"),
        ];
        let peer = VpnPeer::from_member(&member(&meta, PeerState::Alive)).unwrap();
        assert_eq!(
            peer.tunnel.unwrap().endpoint,
            "127.0.0.1:51820".parse::<SocketAddr>().unwrap()
        );
        for bad in ["0", "65536", "x", "-1", ""] {
            let meta = [
                ("overlay-ip", "10.0.0.2"),
                ("public-key", KEY),
                ("wg-port", bad),
            ];
            let peer = VpnPeer::from_member(&member(&meta, PeerState::Alive)).unwrap();
            assert_eq!(peer.tunnel, Err(Incomplete::InvalidWgPort(bad.into())));
        }
    }

    #[test]
    fn key_bytes_round_trip() {
        let key = PublicKey::parse(KEY).unwrap();
        assert_eq!(PublicKey::from_bytes(&key.to_bytes()), key);
    }

    #[test]
    fn a_bad_endpoint_is_incomplete() {
        let mut m = member(
            &[("overlay-ip", "10.0.0.2"), ("public-key", KEY)],
            PeerState::Alive,
        );
        m.address = "somewhere".into();
        let peer = VpnPeer::from_member(&m).unwrap();
        assert_eq!(
            peer.tunnel,
            Err(Incomplete::InvalidEndpoint("somewhere".into()))
        );
    }
}
