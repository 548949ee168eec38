//! The cluster key's seal: how every datagram and TCP frame is
//! authenticated and encrypted when the agent has a cluster key.
//!
//! An **envelope** is
//!
//! | bytes | field |
//! | --- | --- |
//! | 1 | seal version, [`SEAL_VERSION`] (`0x81`; never a plain wire version) |
//! | 2 | key id: the first two bytes of the key's fingerprint, a hint of which installed key sealed it |
//! | 8 | send time, milliseconds since the Unix epoch, big-endian |
//! | 24 | random nonce (OS randomness) |
//! | rest | ciphertext, then the 16-byte Poly1305 tag |
//!
//! The cipher is XChaCha20-Poly1305 (RustCrypto `chacha20poly1305`); the
//! first [`HEADER_LEN`] bytes (version, key id, send time, nonce) are its
//! associated data, so none of them can be changed without the tag failing.
//! The plaintext is the message as the open wire format has it
//! ([`crate::framing`]): a whole datagram (`version, payload`) or a whole
//! TCP frame (`version, sender, length, payload`). The envelope adds
//! [`SEAL_OVERHEAD`] = 51 bytes.
//!
//! A receiver opens an envelope with every installed key whose id matches
//! (ids are a hint: two keys sharing an id are both tried), then checks the
//! send time against [`REPLAY_WINDOW`] and the nonce against a
//! [`ReplayCache`]. Only an authenticated envelope ever reaches the cache,
//! so an outsider cannot fill it.

use std::collections::{HashMap, VecDeque};
use std::path::Path;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// First byte of every envelope. The plain wire format's version is 1;
/// `0x81` ("sealed, version 1") can never be mistaken for it, so a sealed
/// message to an open agent and a plain one to a keyed agent are both told
/// apart and named in the metrics.
pub const SEAL_VERSION: u8 = 0x81;
/// Bytes of a cluster key.
pub const KEY_LEN: usize = 32;
/// Bytes of the key id in the header.
pub const KEY_ID_LEN: usize = 2;
/// Bytes of the XChaCha20 nonce (random, so 192 bits make a repeat
/// negligible without any counter state).
pub const NONCE_LEN: usize = 24;
/// Bytes of the Poly1305 tag.
pub const TAG_LEN: usize = 16;
/// Bytes of the authenticated header: version, key id, send time, nonce.
pub const HEADER_LEN: usize = 1 + KEY_ID_LEN + 8 + NONCE_LEN;
/// Bytes an envelope adds to the message it seals (51).
pub const SEAL_OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Accepted distance between an envelope's send time and the receiver's
/// clock, either way. It must cover the hosts' clock disagreement plus the
/// time in transit (a datagram: milliseconds; a TCP frame: at most
/// [`crate::network::TCP_SEND_TIMEOUT`], 2 s). NTP keeps hosts within
/// milliseconds of each other; 30 s tolerates a host whose clock drifted
/// for a while, yet a captured message is useless after half a minute.
/// Hosts' clocks **must** agree within this window: a host further off is
/// dropped by everyone (reason `stale`) and would be suspected.
pub const REPLAY_WINDOW_MS: u64 = 30_000;
/// [`REPLAY_WINDOW_MS`] as a duration.
pub const REPLAY_WINDOW: std::time::Duration = std::time::Duration::from_millis(REPLAY_WINDOW_MS);
/// Most nonces remembered for replay detection. A nonce must be kept while
/// its envelope's send time is inside the window, at most
/// 2 × [`REPLAY_WINDOW_MS`] = 60 s; 65 536 covers over 1 000 authenticated
/// messages per second for that long (a node of a 100-node cluster
/// receives a few dozen), in about 3 MiB. When it is full of nonces still
/// inside the window, a new message is dropped (`replay-cache-full`)
/// rather than forgetting a nonce that could then be replayed: only key
/// holders can fill it.
pub const MAX_REPLAY_ENTRIES: usize = 65_536;

/// Why an envelope was not opened; [`SealError::reason`] is its metrics
/// label.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// Shorter than a header and a tag, or a wrong first byte.
    #[error("not an envelope: {0}")]
    Malformed(String),
    /// No installed key has the envelope's key id (a removed key, another
    /// cluster's key, or forged).
    #[error("sealed with an unknown key (key id {0})")]
    UnknownKey(String),
    /// The tag did not verify under any candidate key.
    #[error("failed authentication under every installed key with its id")]
    Unauthenticated,
    /// The send time is outside the replay window.
    #[error(
        "send time is {skew_ms} ms away from this host's clock (window ±{REPLAY_WINDOW_MS} ms)"
    )]
    Stale {
        /// Signed distance: positive when the envelope is from the past.
        skew_ms: i128,
    },
    /// The nonce was seen before within the window.
    #[error("nonce already seen within the replay window")]
    Replayed,
    /// The replay cache is full of nonces still inside the window.
    #[error("replay cache full ({MAX_REPLAY_ENTRIES} nonces inside the window)")]
    CacheFull,
}

impl SealError {
    /// A short label for `nodeplane_messages_rejected_total{reason=...}`.
    pub fn reason(&self) -> &'static str {
        match self {
            SealError::Malformed(_) => "bad-seal",
            SealError::UnknownKey(_) => "unknown-key",
            SealError::Unauthenticated => "unauthenticated",
            SealError::Stale { .. } => "stale",
            SealError::Replayed => "replayed",
            SealError::CacheFull => "replay-cache-full",
        }
    }
}

/// Why a key could not be read or decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// Not base64.
    #[error("not base64: {0}")]
    NotBase64(String),
    /// Decodes to the wrong number of bytes.
    #[error("decodes to {0} bytes, a cluster key is {KEY_LEN} (make one with `nodeplane keygen`)")]
    WrongLength(usize),
}

/// A 32-byte cluster key. Its `Debug` shows the fingerprint, never the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey([u8; KEY_LEN]);

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClusterKey({})", self.fingerprint())
    }
}

impl ClusterKey {
    /// A fresh key from OS randomness (what `nodeplane keygen` prints).
    pub fn generate() -> ClusterKey {
        let mut bytes = [0u8; KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        ClusterKey(bytes)
    }

    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> ClusterKey {
        ClusterKey(bytes)
    }

    /// Decodes standard base64 (surrounding whitespace ignored).
    pub fn from_base64(text: &str) -> Result<ClusterKey, KeyError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| KeyError::NotBase64(e.to_string()))?;
        let len = bytes.len();
        <[u8; KEY_LEN]>::try_from(bytes)
            .map(ClusterKey)
            .map_err(|_| KeyError::WrongLength(len))
    }

    /// Standard base64 with padding (44 characters).
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"nodeplane cluster key fingerprint v1\0");
        h.update(self.0);
        h.finalize().into()
    }

    /// The key's fingerprint: 16 hex digits of a domain-separated SHA-256
    /// of the key. Shown by `GET /admin/keys`; reveals nothing of the key.
    pub fn fingerprint(&self) -> String {
        hex::encode(self.digest().get(..8).unwrap_or_default())
    }

    /// The id in an envelope's header: the fingerprint's first two bytes.
    pub fn key_id(&self) -> [u8; KEY_ID_LEN] {
        let d = self.digest();
        [d[0], d[1]]
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }
}

/// Reads a key file: base64 of [`KEY_LEN`] bytes. On unix a file others
/// may read (mode `o+r`) is refused. The error names the file and what is
/// wrong; the caller adds the setting.
pub fn read_key_file(path: &Path) -> Result<ClusterKey, String> {
    check_private(path)?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    ClusterKey::from_base64(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Refuses a file others may read (unix mode `o+r`), or one that is not a
/// regular file.
pub fn check_private(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: not a regular file", path.display()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o004 != 0 {
            return Err(format!(
                "{} is readable by everyone (mode {mode:o}); `chmod 600` it",
                path.display()
            ));
        }
    }
    Ok(())
}

/// Writes `key` as a key file (base64 and a newline) with mode 0600,
/// refusing to overwrite. What `nodeplane keygen` users do by hand, and
/// what the demo and the tests do.
pub fn write_key_file(path: &Path, key: &ClusterKey) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(format!("{}\n", key.to_base64()).as_bytes())?;
    file.sync_all()
}

/// Seals `plaintext` under `key` with send time `sent_ms` and a random
/// nonce.
pub fn seal(key: &ClusterKey, sent_ms: u64, plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    seal_with_nonce(key, sent_ms, nonce, plaintext)
}

/// [`seal`] with a given nonce (tests; never reuse a nonce).
pub fn seal_with_nonce(
    key: &ClusterKey,
    sent_ms: u64,
    nonce: [u8; NONCE_LEN],
    plaintext: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(SEAL_OVERHEAD.saturating_add(plaintext.len()));
    out.push(SEAL_VERSION);
    out.extend_from_slice(&key.key_id());
    out.extend_from_slice(&sent_ms.to_be_bytes());
    out.extend_from_slice(&nonce);
    // Encryption of an in-memory buffer fails only beyond 2^38 bytes,
    // far above any message (MAX_MESSAGE_BYTES).
    let sealed = key
        .cipher()
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &out,
            },
        )
        .unwrap_or_default();
    out.extend_from_slice(&sealed);
    out
}

/// An opened envelope.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened {
    /// The message.
    pub plaintext: Vec<u8>,
    /// Its send time (ms since the epoch).
    pub sent_ms: u64,
    /// Its nonce.
    pub nonce: [u8; NONCE_LEN],
}

/// The header fields of an envelope, parsed without any key.
struct Header<'a> {
    key_id: [u8; KEY_ID_LEN],
    sent_ms: u64,
    nonce: [u8; NONCE_LEN],
    aad: &'a [u8],
    body: &'a [u8],
}

fn parse(envelope: &[u8]) -> Result<Header<'_>, SealError> {
    if envelope.len() < SEAL_OVERHEAD {
        return Err(SealError::Malformed(format!(
            "{} bytes, an envelope has at least {SEAL_OVERHEAD}",
            envelope.len()
        )));
    }
    let (aad, body) = envelope.split_at(HEADER_LEN);
    let (&version, rest) = aad
        .split_first()
        .ok_or_else(|| SealError::Malformed("empty".into()))?;
    if version != SEAL_VERSION {
        return Err(SealError::Malformed(format!(
            "seal version {version:#04x}, this agent speaks {SEAL_VERSION:#04x}"
        )));
    }
    let (id, rest) = rest.split_at(KEY_ID_LEN);
    let (time, nonce) = rest.split_at(8);
    let bad = |_| SealError::Malformed("header".into());
    Ok(Header {
        key_id: id.try_into().map_err(bad)?,
        sent_ms: u64::from_be_bytes(time.try_into().map_err(bad)?),
        nonce: nonce.try_into().map_err(bad)?,
        aad,
        body,
    })
}

/// Opens `envelope` with whichever of `keys` sealed it (only those whose
/// id matches the header's are tried). Checks authenticity only: the send
/// time and the nonce are the caller's ([`ReplayCache`]).
pub fn open<'k>(
    envelope: &[u8],
    keys: impl IntoIterator<Item = &'k ClusterKey>,
) -> Result<Opened, SealError> {
    let h = parse(envelope)?;
    let mut tried = false;
    for key in keys.into_iter().filter(|k| k.key_id() == h.key_id) {
        tried = true;
        if let Ok(plaintext) = key.cipher().decrypt(
            XNonce::from_slice(&h.nonce),
            Payload {
                msg: h.body,
                aad: h.aad,
            },
        ) {
            return Ok(Opened {
                plaintext,
                sent_ms: h.sent_ms,
                nonce: h.nonce,
            });
        }
    }
    if tried {
        Err(SealError::Unauthenticated)
    } else {
        Err(SealError::UnknownKey(hex::encode(h.key_id)))
    }
}

/// Nonces of authenticated envelopes seen within the window: a map for
/// lookup and a queue in arrival order for eviction.
///
/// Eviction: before each insert, entries whose send time has left the
/// window (older than `now - REPLAY_WINDOW_MS`) are removed — an envelope
/// that old is refused as `stale` anyway, so forgetting its nonce opens no
/// replay. Entries are pruned from the queue's front while they are out of
/// the window; an entry further back that is already out (one that arrived
/// later but was sent earlier) waits until the front reaches it, which only
/// keeps it longer. At [`MAX_REPLAY_ENTRIES`] with nothing out of the
/// window, the new envelope is refused ([`SealError::CacheFull`]).
#[derive(Debug, Default)]
pub struct ReplayCache {
    seen: HashMap<[u8; NONCE_LEN], u64>,
    order: VecDeque<([u8; NONCE_LEN], u64)>,
}

impl ReplayCache {
    /// Checks an authenticated envelope's send time against `now_ms` and
    /// remembers its nonce; an error if it is stale, replayed or the cache
    /// is full.
    pub fn check(&mut self, opened: &Opened, now_ms: u64) -> Result<(), SealError> {
        let skew = i128::from(now_ms) - i128::from(opened.sent_ms);
        if skew.unsigned_abs() > u128::from(REPLAY_WINDOW_MS) {
            return Err(SealError::Stale { skew_ms: skew });
        }
        let oldest_kept = now_ms.saturating_sub(REPLAY_WINDOW_MS);
        while let Some(&(nonce, sent)) = self.order.front() {
            if sent >= oldest_kept {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&nonce) == Some(&sent) {
                self.seen.remove(&nonce);
            }
        }
        if self.seen.contains_key(&opened.nonce) {
            return Err(SealError::Replayed);
        }
        if self.seen.len() >= MAX_REPLAY_ENTRIES || self.order.len() >= MAX_REPLAY_ENTRIES {
            return Err(SealError::CacheFull);
        }
        self.seen.insert(opened.nonce, opened.sent_ms);
        self.order.push_back((opened.nonce, opened.sent_ms));
        Ok(())
    }

    /// Nonces remembered now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    #[test]
    fn round_trip_and_layout() {
        let k = ClusterKey::generate();
        let env = seal(&k, NOW, b"hello");
        assert_eq!(env.len(), 5 + SEAL_OVERHEAD);
        assert_eq!(SEAL_OVERHEAD, 51);
        assert_eq!(env[0], SEAL_VERSION);
        assert_eq!(env[1..3], k.key_id());
        assert_eq!(env[3..11], NOW.to_be_bytes());
        let o = open(&env, [&k]).unwrap();
        assert_eq!((o.plaintext.as_slice(), o.sent_ms), (&b"hello"[..], NOW));
        assert_eq!(o.nonce[..], env[11..35]);
        assert_ne!(seal(&k, NOW, b"hello"), env, "random nonces");
    }

    #[test]
    fn any_installed_key_opens_and_others_do_not() {
        let (a, b, c) = (
            ClusterKey::generate(),
            ClusterKey::generate(),
            ClusterKey::generate(),
        );
        let env = seal(&b, NOW, b"m");
        assert!(open(&env, [&a, &b]).is_ok());
        assert_eq!(open(&env, [&a, &c]).unwrap_err().reason(), "unknown-key");
        assert_eq!(
            open(&env, std::iter::empty()).unwrap_err().reason(),
            "unknown-key"
        );
    }

    #[test]
    fn every_changed_byte_fails() {
        let k = ClusterKey::generate();
        let env = seal(&k, NOW, b"payload bytes");
        for i in 0..env.len() {
            let mut bad = env.clone();
            bad[i] ^= 0x01;
            let err = open(&bad, [&k]).unwrap_err();
            let want = match i {
                0 => "bad-seal",
                1 | 2 => "unknown-key",
                _ => "unauthenticated",
            };
            assert_eq!(err.reason(), want, "byte {i}: {err}");
        }
        for cut in 0..SEAL_OVERHEAD {
            assert_eq!(open(&env[..cut], [&k]).unwrap_err().reason(), "bad-seal");
        }
        // A key with the same id but other bytes: unauthenticated.
        let twin = loop {
            let t = ClusterKey::generate();
            if t.key_id() == k.key_id() {
                break t;
            }
        };
        assert_eq!(open(&env, [&twin]).unwrap_err().reason(), "unauthenticated");
        assert!(open(&env, [&twin, &k]).is_ok(), "ids are only a hint");
    }

    #[test]
    fn keys_decode_and_print_only_fingerprints() {
        let k = ClusterKey::generate();
        assert_eq!(ClusterKey::from_base64(&k.to_base64()).unwrap(), k);
        assert_eq!(
            ClusterKey::from_base64(&format!(" {}\n", k.to_base64())).unwrap(),
            k
        );
        assert_eq!(k.to_base64().len(), 44);
        assert!(matches!(
            ClusterKey::from_base64("not base64!"),
            Err(KeyError::NotBase64(_))
        ));
        assert_eq!(
            ClusterKey::from_base64("AAAA"),
            Err(KeyError::WrongLength(3))
        );
        let debug = format!("{k:?}");
        assert!(!debug.contains(&k.to_base64()) && debug.contains(&k.fingerprint()));
        assert_eq!(k.fingerprint().len(), 16);
        assert_eq!(hex::encode(k.key_id()), k.fingerprint()[..4]);
    }

    #[test]
    fn the_window_and_the_replay_cache() {
        let k = ClusterKey::generate();
        let mut cache = ReplayCache::default();
        let o = open(&seal(&k, NOW, b"m"), [&k]).unwrap();
        assert_eq!(cache.check(&o, NOW + 5), Ok(()));
        assert_eq!(cache.check(&o, NOW + 6), Err(SealError::Replayed));
        let old = open(&seal(&k, NOW - REPLAY_WINDOW_MS - 1, b"m"), [&k]).unwrap();
        assert_eq!(cache.check(&old, NOW).unwrap_err().reason(), "stale");
        let future = open(&seal(&k, NOW + REPLAY_WINDOW_MS + 1, b"m"), [&k]).unwrap();
        assert_eq!(cache.check(&future, NOW).unwrap_err().reason(), "stale");
        let edge = open(&seal(&k, NOW - REPLAY_WINDOW_MS, b"m"), [&k]).unwrap();
        assert_eq!(cache.check(&edge, NOW), Ok(()));
        // Once out of the window a nonce is forgotten: a replay then is stale.
        assert_eq!(
            cache.check(&o, NOW + REPLAY_WINDOW_MS + 1).unwrap_err(),
            SealError::Stale {
                skew_ms: i128::from(REPLAY_WINDOW_MS) + 1
            }
        );
        let fresh = open(&seal(&k, NOW + REPLAY_WINDOW_MS + 1, b"m"), [&k]).unwrap();
        assert_eq!(cache.check(&fresh, NOW + REPLAY_WINDOW_MS + 1), Ok(()));
        assert_eq!(cache.len(), 1, "the two older nonces were evicted");
    }

    #[test]
    fn the_replay_cache_is_bounded_and_refuses_rather_than_forgets() {
        let mut cache = ReplayCache::default();
        let opened = |i: u64, sent_ms| {
            let mut nonce = [0u8; NONCE_LEN];
            nonce[..8].copy_from_slice(&i.to_be_bytes());
            Opened {
                plaintext: vec![],
                sent_ms,
                nonce,
            }
        };
        for i in 0..MAX_REPLAY_ENTRIES as u64 {
            assert_eq!(cache.check(&opened(i, NOW), NOW), Ok(()));
        }
        assert_eq!(
            cache.check(&opened(u64::MAX, NOW), NOW),
            Err(SealError::CacheFull)
        );
        assert_eq!(
            cache.check(&opened(0, NOW), NOW),
            Err(SealError::Replayed),
            "a full cache still knows its nonces"
        );
        // Once they leave the window there is room again.
        let later = NOW + REPLAY_WINDOW_MS + 1;
        assert_eq!(cache.check(&opened(u64::MAX, later), later), Ok(()));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn key_files_are_checked() {
        let dir = std::env::temp_dir().join(format!("nodeplane-seal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let k = ClusterKey::generate();
        let path = dir.join("cluster.key");
        write_key_file(&path, &k).unwrap();
        assert_eq!(read_key_file(&path).unwrap(), k);
        assert!(write_key_file(&path, &k).is_err(), "never overwrites");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(read_key_file(&path)
                .unwrap_err()
                .contains("readable by everyone"));
        }
        assert!(read_key_file(&dir.join("missing")).is_err());
        assert!(read_key_file(&dir)
            .unwrap_err()
            .contains("not a regular file"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
