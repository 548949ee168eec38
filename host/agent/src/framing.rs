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
//! Anything else (empty, truncated, oversized, wrong version, bad address)
//! is rejected with a [`WireError`] and never reaches the component.

use std::net::SocketAddr;

use nodeplane_runtime::MAX_MESSAGE_BYTES;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The wire format version this agent speaks.
pub const WIRE_VERSION: u8 = 1;
/// Largest payload sent as a UDP datagram (fits a 1500-byte MTU with
/// IP/UDP headers and the version byte); larger ones go over TCP.
pub const MAX_DATAGRAM_PAYLOAD: usize = 1400;
/// Largest sender address in a TCP frame (an IPv6 `[addr%scope]:port` fits).
pub const MAX_ADDRESS_LEN: usize = 64;
/// Largest TCP frame payload.
pub const MAX_FRAME_PAYLOAD: usize = MAX_MESSAGE_BYTES;

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
}

impl WireError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            WireError::Empty | WireError::BadAddress(_) => "malformed",
            WireError::WrongVersion(_) => "wrong-version",
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
