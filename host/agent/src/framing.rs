//! The control channel's wire format.
//!
//! - **UDP datagram** (messages of at most [`MAX_DATAGRAM_PAYLOAD`] bytes):
//!   `version: u8 = 1` then the payload. The sender is the datagram's
//!   source address (agents send from their bound control socket).
//! - **TCP frame** (larger messages, up to
//!   [`MAX_MESSAGE_BYTES`]):
//!   `version: u8 = 1`, `address length: u8` (1..=[`MAX_ADDRESS_LEN`]),
//!   the sender's control address as UTF-8 `ip:port`, `length: u32 BE`,
//!   then `length` payload bytes. A connection may carry several frames.
//!   The sender address's IP must be the connection's source IP (agents
//!   connect from their control IP); a frame claiming another is dropped
//!   and the connection closed (`reason="forged-sender"`), so a frame
//!   cannot make the node answer a third party.
//!
//! With a cluster key ([`crate::seal`], [`crate::keyring`]) each of them is
//! sealed whole into an envelope (plaintext: the datagram or frame above):
//!
//! - **sealed UDP datagram**: the envelope itself (first byte
//!   [`SEAL_VERSION`]), at most [`MAX_SEALED_DATAGRAM`] = 1 452 bytes for a
//!   1 400-byte payload (51 bytes of seal overhead), so a full datagram
//!   still fits a 1 500-byte MTU: 1 480 bytes of IPv4 packet, exactly
//!   1 500 of IPv6;
//! - **sealed TCP frame**: `SEAL_VERSION`, `length: u32 BE`
//!   (at most [`MAX_SEALED_FRAME`]), then the envelope. The sender address
//!   inside is authenticated too.
//!
//! A keyed agent refuses plain messages (`reason="unsealed"`) and an open
//! agent sealed ones (`reason="sealed"`).
//!
//! Anything else (empty, truncated, oversized, wrong version, bad address)
//! is rejected with a [`WireError`] and never reaches the component.

use std::net::SocketAddr;

use nodeplane_runtime::MAX_MESSAGE_BYTES;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::seal::SEAL_OVERHEAD;
pub use crate::seal::SEAL_VERSION;

/// The wire format version this agent speaks.
pub const WIRE_VERSION: u8 = 1;
/// Largest payload sent as a UDP datagram (fits a 1500-byte MTU with
/// IP/UDP headers and the version byte); larger ones go over TCP.
pub const MAX_DATAGRAM_PAYLOAD: usize = 1400;
/// Largest sender address in a TCP frame (an IPv6 `[addr%scope]:port` fits).
pub const MAX_ADDRESS_LEN: usize = 64;
/// Largest TCP frame payload.
pub const MAX_FRAME_PAYLOAD: usize = MAX_MESSAGE_BYTES;
/// Largest sealed datagram: a full plain datagram (version byte and
/// [`MAX_DATAGRAM_PAYLOAD`]) plus [`SEAL_OVERHEAD`]: 1 452 bytes.
pub const MAX_SEALED_DATAGRAM: usize = 1 + MAX_DATAGRAM_PAYLOAD + SEAL_OVERHEAD;
// A full sealed datagram plus UDP (8) and IPv6 (40) headers fits a
// 1 500-byte MTU: checked when compiling.
const _: () = assert!(MAX_SEALED_DATAGRAM + 8 + 40 <= 1500);
/// Largest envelope in a sealed TCP frame: the largest plain frame plus
/// [`SEAL_OVERHEAD`].
pub const MAX_SEALED_FRAME: usize = 6 + MAX_ADDRESS_LEN + MAX_FRAME_PAYLOAD + SEAL_OVERHEAD;

/// Why a datagram or frame was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// No bytes at all.
    #[error("empty message")]
    Empty,
    /// An unknown version byte.
    #[error("wire version {0} is not supported (this agent speaks {WIRE_VERSION})")]
    WrongVersion(u8),
    /// Larger than allowed.
    #[error("{what} of {len} bytes exceeds the limit of {max}")]
    Oversized {
        /// What was too large.
        what: &'static str,
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The stream ended inside a frame.
    #[error("truncated frame: stream ended in the {0}")]
    Truncated(&'static str),
    /// The sender address is not `ip:port`.
    #[error("bad sender address: {0}")]
    BadAddress(String),
    /// Reading failed.
    #[error("read failed: {0}")]
    Io(String),
    /// A plain message to an agent with a cluster key.
    #[error("an unsealed message, and this agent has a cluster key")]
    Unsealed,
}

impl WireError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            WireError::Empty | WireError::BadAddress(_) => "malformed",
            // A sealed message to an agent without a cluster key.
            WireError::WrongVersion(SEAL_VERSION) => "sealed",
            WireError::WrongVersion(_) => "wrong-version",
            WireError::Unsealed => "unsealed",
            WireError::Oversized { .. } => "oversized",
            WireError::Truncated(_) => "truncated",
            WireError::Io(_) => "io",
        }
    }
}

/// Encodes a UDP datagram.
pub fn encode_datagram(payload: &[u8]) -> Result<Vec<u8>, WireError> {
    if payload.len() > MAX_DATAGRAM_PAYLOAD {
        return Err(WireError::Oversized {
            what: "datagram payload",
            len: payload.len(),
            max: MAX_DATAGRAM_PAYLOAD,
        });
    }
    let mut out = Vec::with_capacity(payload.len() + 1);
    out.push(WIRE_VERSION);
    out.extend_from_slice(payload);
    Ok(out)
}

/// Decodes a UDP datagram into its payload.
pub fn decode_datagram(datagram: &[u8]) -> Result<&[u8], WireError> {
    let (&version, payload) = datagram.split_first().ok_or(WireError::Empty)?;
    if version != WIRE_VERSION {
        return Err(WireError::WrongVersion(version));
    }
    if payload.is_empty() {
        return Err(WireError::Empty);
    }
    if payload.len() > MAX_DATAGRAM_PAYLOAD {
        return Err(WireError::Oversized {
            what: "datagram payload",
            len: payload.len(),
            max: MAX_DATAGRAM_PAYLOAD,
        });
    }
    Ok(payload)
}

/// Encodes a TCP frame from `sender` (its control address).
pub fn encode_frame(sender: &str, payload: &[u8]) -> Result<Vec<u8>, WireError> {
    if sender.is_empty() || sender.len() > MAX_ADDRESS_LEN {
        return Err(WireError::BadAddress(format!(
            "{sender:?} must be 1..={MAX_ADDRESS_LEN} bytes"
        )));
    }
    if payload.len() > MAX_FRAME_PAYLOAD {
        return Err(WireError::Oversized {
            what: "frame payload",
            len: payload.len(),
            max: MAX_FRAME_PAYLOAD,
        });
    }
    let mut out = Vec::with_capacity(2 + sender.len() + 4 + payload.len());
    out.push(WIRE_VERSION);
    out.push(sender.len() as u8);
    out.extend_from_slice(sender.as_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Wraps an envelope (a sealed frame) for the stream.
pub fn encode_sealed_frame(envelope: &[u8]) -> Result<Vec<u8>, WireError> {
    if envelope.len() > MAX_SEALED_FRAME {
        return Err(WireError::Oversized {
            what: "sealed frame",
            len: envelope.len(),
            max: MAX_SEALED_FRAME,
        });
    }
    let mut out = Vec::with_capacity(5 + envelope.len());
    out.push(SEAL_VERSION);
    out.extend_from_slice(&(envelope.len() as u32).to_be_bytes());
    out.extend_from_slice(envelope);
    Ok(out)
}

/// Checks a datagram a keyed agent received: an envelope of a plausible
/// size (the envelope is opened by the caller).
pub fn check_sealed_datagram(datagram: &[u8]) -> Result<&[u8], WireError> {
    match datagram.first() {
        None => Err(WireError::Empty),
        Some(&WIRE_VERSION) => Err(WireError::Unsealed),
        Some(&SEAL_VERSION) if datagram.len() > MAX_SEALED_DATAGRAM => Err(WireError::Oversized {
            what: "sealed datagram",
            len: datagram.len(),
            max: MAX_SEALED_DATAGRAM,
        }),
        Some(&SEAL_VERSION) => Ok(datagram),
        Some(&other) => Err(WireError::WrongVersion(other)),
    }
}

/// Reads one sealed TCP frame (a keyed agent's stream): `Ok(None)` on a
/// clean end of stream between frames, otherwise the envelope (opened by
/// the caller, its plaintext then read with [`read_frame`]).
pub async fn read_sealed_frame<R: AsyncRead + Unpin>(
    r: &mut R,
) -> Result<Option<Vec<u8>>, WireError> {
    let mut version = [0u8; 1];
    match r.read(&mut version).await {
        Ok(0) => return Ok(None),
        Ok(_) => {}
        Err(e) => return Err(WireError::Io(e.to_string())),
    }
    match version[0] {
        SEAL_VERSION => {}
        WIRE_VERSION => return Err(WireError::Unsealed),
        other => return Err(WireError::WrongVersion(other)),
    }
    let mut len = [0u8; 4];
    read_part(r, &mut len, "sealed frame length").await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_SEALED_FRAME {
        return Err(WireError::Oversized {
            what: "sealed frame",
            len,
            max: MAX_SEALED_FRAME,
        });
    }
    if len < SEAL_OVERHEAD {
        return Err(WireError::Truncated("sealed frame (shorter than a seal)"));
    }
    let mut envelope = vec![0u8; len];
    read_part(r, &mut envelope, "sealed frame").await?;
    Ok(Some(envelope))
}

/// Bytes a frame from a sender address of `sender_len` bytes with a payload
/// of `payload_len` bytes takes on the wire.
pub fn frame_len(sender_len: usize, payload_len: usize) -> usize {
    sender_len.saturating_add(payload_len).saturating_add(6)
}

async fn read_part<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut [u8],
    part: &'static str,
) -> Result<(), WireError> {
    match r.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(WireError::Truncated(part)),
        Err(e) => Err(WireError::Io(e.to_string())),
    }
}

/// Reads one TCP frame: `Ok(None)` on a clean end of stream between frames,
/// otherwise the sender's address and the payload.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
) -> Result<Option<(String, Vec<u8>)>, WireError> {
    let mut version = [0u8; 1];
    match r.read(&mut version).await {
        Ok(0) => return Ok(None),
        Ok(_) => {}
        Err(e) => return Err(WireError::Io(e.to_string())),
    }
    if version[0] != WIRE_VERSION {
        return Err(WireError::WrongVersion(version[0]));
    }
    let mut len = [0u8; 1];
    read_part(r, &mut len, "address length").await?;
    let alen = len[0] as usize;
    if alen == 0 || alen > MAX_ADDRESS_LEN {
        return Err(WireError::BadAddress(format!(
            "length {alen} not in 1..={MAX_ADDRESS_LEN}"
        )));
    }
    let mut addr = vec![0u8; alen];
    read_part(r, &mut addr, "sender address").await?;
    let addr = String::from_utf8(addr).map_err(|_| WireError::BadAddress("not UTF-8".into()))?;
    if addr.parse::<SocketAddr>().is_err() {
        return Err(WireError::BadAddress(format!("{addr:?} is not ip:port")));
    }
    let mut plen = [0u8; 4];
    read_part(r, &mut plen, "payload length").await?;
    let plen = u32::from_be_bytes(plen) as usize;
    if plen > MAX_FRAME_PAYLOAD {
        return Err(WireError::Oversized {
            what: "frame payload",
            len: plen,
            max: MAX_FRAME_PAYLOAD,
        });
    }
    if plen == 0 {
        return Err(WireError::Empty);
    }
    let mut payload = vec![0u8; plen];
    read_part(r, &mut payload, "payload").await?;
    Ok(Some((addr, payload)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn datagrams_round_trip_and_bad_ones_are_rejected() {
        let d = encode_datagram(b"hello").unwrap();
        assert_eq!(decode_datagram(&d).unwrap(), b"hello");
        assert_eq!(decode_datagram(&[]), Err(WireError::Empty));
        assert_eq!(decode_datagram(&[WIRE_VERSION]), Err(WireError::Empty));
        assert_eq!(decode_datagram(&[2, 1, 2]), Err(WireError::WrongVersion(2)));
        let big = vec![0u8; MAX_DATAGRAM_PAYLOAD + 1];
        assert!(matches!(
            encode_datagram(&big),
            Err(WireError::Oversized { .. })
        ));
        let mut raw = vec![WIRE_VERSION];
        raw.extend_from_slice(&big);
        assert_eq!(decode_datagram(&raw).unwrap_err().reason(), "oversized");
    }

    #[test]
    fn sealed_frames_and_datagrams_are_told_from_plain_ones() {
        assert_eq!(MAX_SEALED_DATAGRAM, 1452);
        let plain = encode_datagram(b"x").unwrap();
        assert_eq!(check_sealed_datagram(&plain), Err(WireError::Unsealed));
        assert_eq!(WireError::Unsealed.reason(), "unsealed");
        assert_eq!(
            decode_datagram(&[SEAL_VERSION, 1, 2]).unwrap_err().reason(),
            "sealed"
        );
        let big = vec![SEAL_VERSION; MAX_SEALED_DATAGRAM + 1];
        assert_eq!(
            check_sealed_datagram(&big).unwrap_err().reason(),
            "oversized"
        );
        assert!(check_sealed_datagram(&big[..MAX_SEALED_DATAGRAM]).is_ok());
        let env = vec![9u8; 100];
        let mut bytes = encode_sealed_frame(&env).unwrap();
        bytes.extend(encode_sealed_frame(&env).unwrap());
        block_on(async {
            let mut r = bytes.as_slice();
            assert_eq!(read_sealed_frame(&mut r).await.unwrap(), Some(env.clone()));
            assert_eq!(read_sealed_frame(&mut r).await.unwrap(), Some(env.clone()));
            assert_eq!(read_sealed_frame(&mut r).await.unwrap(), None);
            let plain = encode_frame("127.0.0.1:1", b"x").unwrap();
            assert_eq!(
                read_sealed_frame(&mut plain.as_slice()).await,
                Err(WireError::Unsealed)
            );
            let huge = [&[SEAL_VERSION][..], &u32::MAX.to_be_bytes()].concat();
            assert_eq!(
                read_sealed_frame(&mut huge.as_slice())
                    .await
                    .unwrap_err()
                    .reason(),
                "oversized"
            );
            let tiny = [&[SEAL_VERSION][..], &3u32.to_be_bytes(), &[0, 0, 0]].concat();
            assert_eq!(
                read_sealed_frame(&mut tiny.as_slice())
                    .await
                    .unwrap_err()
                    .reason(),
                "truncated"
            );
        });
    }

    #[test]
    fn frames_round_trip_back_to_back() {
        let mut bytes = encode_frame("127.0.0.1:7001", &vec![7u8; 5000]).unwrap();
        assert_eq!(bytes.len(), frame_len("127.0.0.1:7001".len(), 5000));
        bytes.extend(encode_frame("[::1]:7002", b"x").unwrap());
        block_on(async {
            let mut r = bytes.as_slice();
            let (a, p) = read_frame(&mut r).await.unwrap().unwrap();
            assert_eq!((a.as_str(), p.len()), ("127.0.0.1:7001", 5000));
            let (a, p) = read_frame(&mut r).await.unwrap().unwrap();
            assert_eq!((a.as_str(), p), ("[::1]:7002", b"x".to_vec()));
            assert_eq!(read_frame(&mut r).await.unwrap(), None);
        });
    }

    #[test]
    fn bad_frames_are_rejected() {
        let good = encode_frame("127.0.0.1:7001", b"payload").unwrap();
        block_on(async {
            for cut in 1..good.len() {
                let err = read_frame(&mut &good[..cut]).await.unwrap_err();
                assert_eq!(err.reason(), "truncated", "cut at {cut}: {err}");
            }
            let mut wrong = good.clone();
            wrong[0] = 9;
            assert_eq!(
                read_frame(&mut wrong.as_slice()).await.unwrap_err(),
                WireError::WrongVersion(9)
            );
            let mut zero_addr = good.clone();
            zero_addr[1] = 0;
            assert!(matches!(
                read_frame(&mut zero_addr.as_slice()).await,
                Err(WireError::BadAddress(_))
            ));
            let not_addr = [&[WIRE_VERSION, 3][..], b"abc", &[0, 0, 0, 1, 0]].concat();
            assert!(matches!(
                read_frame(&mut not_addr.as_slice()).await,
                Err(WireError::BadAddress(_))
            ));
            let huge = [
                &[WIRE_VERSION, 9][..],
                b"1.2.3.4:5",
                &u32::MAX.to_be_bytes(),
            ]
            .concat();
            assert_eq!(
                read_frame(&mut huge.as_slice()).await.unwrap_err().reason(),
                "oversized"
            );
        });
        assert!(encode_frame("127.0.0.1:1", &vec![0; MAX_FRAME_PAYLOAD + 1]).is_err());
        assert!(encode_frame("", b"x").is_err());
    }
}
