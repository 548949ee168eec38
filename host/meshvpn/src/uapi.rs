//! A small client of the WireGuard cross-platform userspace API (UAPI).
//!
//! The UAPI is the text protocol `wg(8)` speaks to `wireguard-go` (and to
//! any other userspace implementation) over a unix socket,
//! `/var/run/wireguard/<ifname>.sock`, documented at
//! <https://www.wireguard.com/xplatform/>:
//!
//! - a **get** is `get=1\n\n`; the answer is `key=value` lines (device
//!   keys first, then each peer starting with `public_key=`), then
//!   `errno=N` and an empty line;
//! - a **set** is `set=1\n`, `key=value` lines, and an empty line; the
//!   answer is `errno=N` and an empty line (0 is success).
//!
//! Keys travel as lowercase hex of their 32 bytes, allowed IPs as
//! `ip/prefix`, endpoints as `ip:port` (`[ip]:port` for IPv6). One request
//! per connection. Every read and write has a deadline ([`UAPI_TIMEOUT`])
//! and an answer is bounded ([`MAX_UAPI_RESPONSE_BYTES`]), so a hung or
//! hostile daemon cannot block or exhaust the Mesh VPN.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::keys::{key_from_hex, key_to_hex, PrivateKey};
use crate::peer::PublicKey;

/// Where `wireguard-go` and `wg(8)` put the UAPI sockets (one per
/// interface, `<ifname>.sock`).
pub const UAPI_SOCKET_DIR: &str = "/var/run/wireguard";

/// Deadline on connecting, each write and each read of one UAPI request.
/// `wireguard-go` answers in well under a millisecond; 5 s only stops a
/// hung daemon from blocking the Mesh VPN's loop for ever.
pub const UAPI_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest UAPI answer read. A `get` costs about 300 bytes per peer, so
/// 4 MiB is over ten thousand peers, far beyond a mesh's size; a longer
/// answer is refused rather than buffered without bound.
pub const MAX_UAPI_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Errors talking to a WireGuard device.
#[derive(Debug, thiserror::Error)]
pub enum UapiError {
    /// The socket could not be reached, read or written.
    #[error("UAPI socket {socket}: {source}")]
    Io {
        /// The socket's path.
        socket: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The device refused the request (`errno=N`, N ≠ 0).
    #[error("UAPI socket {socket}: the device answered errno={errno}")]
    Errno {
        /// The socket's path.
        socket: PathBuf,
        /// The error number the device returned.
        errno: i64,
    },
    /// The answer does not follow the protocol (or is over the bound).
    #[error("UAPI socket {socket}: bad answer: {reason}")]
    Protocol {
        /// The socket's path.
        socket: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// One peer as the Mesh VPN configures it: one key, one endpoint, one
/// allowed host route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    /// The peer's public key.
    pub public_key: PublicKey,
    /// Where its WireGuard listens.
    pub endpoint: SocketAddr,
    /// Its overlay address, routed as /32 (IPv4) or /128 (IPv6).
    pub overlay_ip: IpAddr,
}

impl PeerConfig {
    /// The allowed IP as the UAPI writes it: `ip/32` or `ip/128`.
    pub fn allowed_ip(&self) -> String {
        match self.overlay_ip {
            IpAddr::V4(ip) => format!("{ip}/32"),
            IpAddr::V6(ip) => format!("{ip}/128"),
        }
    }
}

/// One incremental change of a device's peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerChange {
    /// Add the peer, or update its endpoint and replace its allowed IPs.
    Upsert(PeerConfig),
    /// Remove the peer with this key.
    Remove(PublicKey),
}

/// The device-level settings of a set request.
#[derive(Clone, Debug)]
pub struct DeviceSettings<'a> {
    /// The interface's private key.
    pub private_key: &'a PrivateKey,
    /// The UDP port WireGuard listens on.
    pub listen_port: u16,
}

/// Renders a UAPI set request: the device settings when given, then the
/// changes in order, then the terminating empty line.
///
/// An upsert writes `public_key`, `endpoint`, `replace_allowed_ips=true`
/// and one `allowed_ip`; a removal writes `public_key` and `remove=true`.
/// Every value comes from a validated type (keys are 32 bytes, addresses
/// parsed), so nothing from the network can add a line.
pub fn render_set(device: Option<&DeviceSettings<'_>>, changes: &[PeerChange]) -> String {
    let mut out = String::from("set=1\n");
    if let Some(device) = device {
        let _ = writeln!(out, "private_key={}", device.private_key.to_hex());
        let _ = writeln!(out, "listen_port={}", device.listen_port);
    }
    for change in changes {
        match change {
            PeerChange::Remove(key) => {
                let _ = writeln!(out, "public_key={}", public_key_hex(key));
                out.push_str("remove=true\n");
            }
            PeerChange::Upsert(peer) => {
                let _ = writeln!(out, "public_key={}", public_key_hex(&peer.public_key));
                let _ = writeln!(out, "endpoint={}", peer.endpoint);
                out.push_str("replace_allowed_ips=true\n");
                let _ = writeln!(out, "allowed_ip={}", peer.allowed_ip());
            }
        }
    }
    out.push('\n');
    out
}

/// The lowercase hex of a (validated) public key, as the UAPI writes it.
pub fn public_key_hex(key: &PublicKey) -> String {
    // `PublicKey::parse` guarantees 32 bytes of canonical base64.
    key_to_hex(&key.to_bytes())
}

/// A peer as a device reports it (`get`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DevicePeer {
    /// The peer's public key.
    pub public_key: Option<PublicKey>,
    /// Its endpoint, once known.
    pub endpoint: Option<SocketAddr>,
    /// Its allowed IPs as written (`ip/prefix`).
    pub allowed_ips: Vec<String>,
    /// Seconds since the epoch of the last handshake (0: never).
    pub last_handshake_time_sec: u64,
    /// Bytes received from the peer.
    pub rx_bytes: u64,
    /// Bytes sent to the peer.
    pub tx_bytes: u64,
}

/// A device as it reports itself (`get`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceState {
    /// Whether a private key is set (the key itself is not kept).
    pub has_private_key: bool,
    /// The listen port, when set.
    pub listen_port: Option<u16>,
    /// The peers in the device's order.
    pub peers: Vec<DevicePeer>,
}

impl DeviceState {
    /// The peer with `key`, if the device has it.
    pub fn peer(&self, key: &PublicKey) -> Option<&DevicePeer> {
        self.peers
            .iter()
            .find(|p| p.public_key.as_ref() == Some(key))
    }
}

/// Parses the `key=value` lines of a `get` answer (without the final
/// `errno` line, which [`UapiClient::get`] checks). Unknown keys are
/// ignored, as the protocol asks of clients.
pub fn parse_get(text: &str) -> Result<DeviceState, String> {
    let mut state = DeviceState::default();
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {} has no '=': {:?}", n + 1, line))?;
        let bad = |what: &str| format!("line {}: bad {what} {:?}", n + 1, value);
        match key {
            "public_key" => {
                let bytes = key_from_hex(value).ok_or_else(|| bad("public key"))?;
                state.peers.push(DevicePeer {
                    public_key: Some(PublicKey::from_bytes(&bytes)),
                    ..DevicePeer::default()
                });
            }
            "private_key" => {
                state.has_private_key = value.bytes().any(|b| b != b'0');
            }
            "listen_port" => state.listen_port = Some(value.parse().map_err(|_| bad("port"))?),
            _ => {
                let Some(peer) = state.peers.last_mut() else {
                    continue; // another device-level key
                };
                match key {
                    "endpoint" => peer.endpoint = Some(value.parse().map_err(|_| bad("endpoint"))?),
                    "allowed_ip" => peer.allowed_ips.push(value.to_owned()),
                    "last_handshake_time_sec" => {
                        peer.last_handshake_time_sec =
                            value.parse().map_err(|_| bad("handshake time"))?
                    }
                    "rx_bytes" => peer.rx_bytes = value.parse().map_err(|_| bad("rx_bytes"))?,
                    "tx_bytes" => peer.tx_bytes = value.parse().map_err(|_| bad("tx_bytes"))?,
                    _ => {}
                }
            }
        }
    }
    Ok(state)
}

/// A client of one interface's UAPI socket.
#[derive(Clone, Debug)]
pub struct UapiClient {
    socket: PathBuf,
}

impl UapiClient {
    /// The client of interface `ifname` under [`UAPI_SOCKET_DIR`].
    pub fn for_interface(ifname: &str) -> UapiClient {
        UapiClient::at(Path::new(UAPI_SOCKET_DIR).join(format!("{ifname}.sock")))
    }

    /// The client of the socket at `socket`.
    pub fn at(socket: impl Into<PathBuf>) -> UapiClient {
        UapiClient {
            socket: socket.into(),
        }
    }

    /// The socket's path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Reads the device's state.
    pub fn get(&self) -> Result<DeviceState, UapiError> {
        let body = self.request("get=1\n\n")?;
        parse_get(&body).map_err(|reason| self.protocol(reason))
    }

    /// Sends a set request rendered by [`render_set`].
    pub fn set(&self, request: &str) -> Result<(), UapiError> {
        let body = self.request(request)?;
        if body.trim().is_empty() {
            Ok(())
        } else {
            Err(self.protocol(format!("unexpected lines before errno: {body:?}")))
        }
    }

    fn protocol(&self, reason: String) -> UapiError {
        UapiError::Protocol {
            socket: self.socket.clone(),
            reason,
        }
    }

    /// Sends `request` and reads the answer up to its `errno=` line;
    /// returns the lines before it when errno is 0.
    fn request(&self, request: &str) -> Result<String, UapiError> {
        let io = |source| UapiError::Io {
            socket: self.socket.clone(),
            source,
        };
        let mut stream = UnixStream::connect(&self.socket).map_err(io)?;
        stream.set_read_timeout(Some(UAPI_TIMEOUT)).map_err(io)?;
        stream.set_write_timeout(Some(UAPI_TIMEOUT)).map_err(io)?;
        stream.write_all(request.as_bytes()).map_err(io)?;
        // One byte over the bound tells "too long" from "exactly the bound".
        let limit = u64::try_from(MAX_UAPI_RESPONSE_BYTES)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let mut reader = BufReader::new((&stream).take(limit));
        let mut body = String::new();
        let mut total = 0usize;
        loop {
            let mut line = String::new();
            let read = reader.read_line(&mut line).map_err(io)?;
            total = total.saturating_add(read);
            if total > MAX_UAPI_RESPONSE_BYTES {
                return Err(self.protocol(format!("answer over {MAX_UAPI_RESPONSE_BYTES} bytes")));
            }
            if read == 0 {
                return Err(self.protocol("connection closed before errno".into()));
            }
            if let Some(errno) = line.trim_end().strip_prefix("errno=") {
                let errno: i64 = errno
                    .parse()
                    .map_err(|_| self.protocol(format!("bad errno {errno:?}")))?;
                if errno != 0 {
                    return Err(UapiError::Errno {
                        socket: self.socket.clone(),
                        errno,
                    });
                }
                return Ok(body);
            }
            body.push_str(&line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    // RFC 7748 §6.1: Alice's private and public X25519 keys.
    const ALICE_PRIVATE_HEX: &str =
        "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
    const ALICE_PUBLIC_HEX: &str =
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
    const KEY_B64: &str = "YcFCSOOYGKPXKTWgh4CG5R2oBUbf3dpsl6dO5YjXpEA=";

    fn key(text: &str) -> PublicKey {
        PublicKey::parse(text).unwrap()
    }

    #[test]
    fn renders_device_settings_upserts_and_removals_in_order() {
        let private = PrivateKey::from_hex(ALICE_PRIVATE_HEX).unwrap();
        let alice = private.public_key();
        let request = render_set(
            Some(&DeviceSettings {
                private_key: &private,
                listen_port: 51820,
            }),
            &[
                PeerChange::Remove(alice.clone()),
                PeerChange::Upsert(PeerConfig {
                    public_key: key(KEY_B64),
                    endpoint: "10.77.0.2:51820".parse().unwrap(),
                    overlay_ip: "10.78.0.2".parse().unwrap(),
                }),
                PeerChange::Upsert(PeerConfig {
                    public_key: alice,
                    endpoint: "[fd00::1]:51821".parse().unwrap(),
                    overlay_ip: "fd01::2".parse().unwrap(),
                }),
            ],
        );
        let kb = "61c14248e39818a3d72935a0878086e51da80546dfddda6c97a74ee588d7a440";
        assert_eq!(
            request,
            format!(
                "set=1\n\
                 private_key={ALICE_PRIVATE_HEX}\n\
                 listen_port=51820\n\
                 public_key={ALICE_PUBLIC_HEX}\n\
                 remove=true\n\
                 public_key={kb}\n\
                 endpoint=10.77.0.2:51820\n\
                 replace_allowed_ips=true\n\
                 allowed_ip=10.78.0.2/32\n\
                 public_key={ALICE_PUBLIC_HEX}\n\
                 endpoint=[fd00::1]:51821\n\
                 replace_allowed_ips=true\n\
                 allowed_ip=fd01::2/128\n\
                 \n"
            )
        );
    }

    #[test]
    fn a_request_without_changes_is_one_line_and_the_terminator() {
        assert_eq!(render_set(None, &[]), "set=1\n\n");
    }

    #[test]
    fn parses_a_get_answer() {
        let text = format!(
            "private_key={ALICE_PRIVATE_HEX}\nlisten_port=51820\n\
             public_key={ALICE_PUBLIC_HEX}\nendpoint=10.77.0.2:51820\n\
             last_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\n\
             tx_bytes=92\nrx_bytes=180\npersistent_keepalive_interval=0\n\
             allowed_ip=10.78.0.2/32\nprotocol_version=1\n"
        );
        let state = parse_get(&text).unwrap();
        assert!(state.has_private_key);
        assert_eq!(state.listen_port, Some(51820));
        assert_eq!(state.peers.len(), 1);
        let alice = PrivateKey::from_hex(ALICE_PRIVATE_HEX)
            .unwrap()
            .public_key();
        let peer = state.peer(&alice).expect("alice");
        assert_eq!(peer.endpoint, Some("10.77.0.2:51820".parse().unwrap()));
        assert_eq!(peer.allowed_ips, vec!["10.78.0.2/32".to_string()]);
        assert_eq!(
            (peer.last_handshake_time_sec, peer.rx_bytes, peer.tx_bytes),
            (1_700_000_000, 180, 92)
        );
    }

    #[test]
    fn a_bad_get_answer_is_a_typed_error() {
        for bad in [
            "public_key=zz\n",
            "no equals sign\n",
            "listen_port=99999\n",
            "public_key=8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a\nendpoint=somewhere\n",
        ] {
            assert!(parse_get(bad).is_err(), "{bad:?} is refused");
        }
    }

    /// A fake device answering one connection with `answer`; returns what
    /// it received.
    fn fake_device(answer: &'static [u8]) -> (UapiClient, std::thread::JoinHandle<String>) {
        let dir = std::env::temp_dir().join(format!(
            "meshvpn-uapi-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("wgtest.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let handle = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut got = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line == "\n" {
                    break;
                }
                got.push_str(&line);
            }
            stream.write_all(answer).unwrap();
            let _ = std::fs::remove_dir_all(&dir);
            got
        });
        (UapiClient::at(socket), handle)
    }

    #[test]
    fn a_set_reports_the_device_errno() {
        let (client, device) = fake_device(b"errno=0\n\n");
        client.set("set=1\nlisten_port=1\n\n").unwrap();
        assert_eq!(device.join().unwrap(), "set=1\nlisten_port=1\n");
        let (client, device) = fake_device(b"errno=-22\n\n");
        let err = client.set("set=1\n\n").unwrap_err();
        assert!(matches!(err, UapiError::Errno { errno: -22, .. }), "{err}");
        device.join().unwrap();
    }

    #[test]
    fn a_get_goes_over_the_socket_and_a_truncated_answer_is_refused() {
        let (client, device) = fake_device(b"listen_port=7\nerrno=0\n\n");
        assert_eq!(client.get().unwrap().listen_port, Some(7));
        assert_eq!(device.join().unwrap(), "get=1\n");
        let (client, device) = fake_device(b"listen_port=7\n");
        let err = client.get().unwrap_err();
        assert!(err.to_string().contains("before errno"), "{err}");
        device.join().unwrap();
    }

    #[test]
    fn a_missing_socket_is_an_io_error_naming_it() {
        let err = UapiClient::for_interface("np-no-such-if")
            .get()
            .unwrap_err();
        assert!(matches!(err, UapiError::Io { .. }));
        assert!(err.to_string().contains("np-no-such-if.sock"), "{err}");
    }
}
