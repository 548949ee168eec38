//! The cluster keyring, with Serf's semantics: several installed keys, one
//! primary; every message is sealed with the primary and opened with any
//! installed key ([`crate::seal`]), so a key is rotated without downtime:
//! install the new key everywhere, `use` it everywhere, remove the old one
//! everywhere.
//!
//! **Persistence.** The keyring is the file [`KEYRING_FILE`] in the data
//! directory: a JSON array of base64 keys, the primary first (the format of
//! Serf's keyring file), written atomically (a temporary file of mode 0600,
//! fsync, rename, fsync of the directory) on every change.
//!
//! **Start-up** (as Serf and Consul do):
//! - no keyring file, a `cluster_key_file` configured: the configured key
//!   becomes the keyring's only key and primary, and the file is written;
//! - a keyring file: it is the truth. A configured key that is not in it is
//!   **ignored** with a warning (tracing and the event log): after a
//!   rotation the old key is still in every node's configuration, and a
//!   restart must not bring a retired key back. The keyring file is used
//!   even without `cluster_key_file`: a node that once had a key never
//!   silently falls back to running open (to run open, stop the agent and
//!   delete the file);
//! - neither: the agent runs open (no sealing) and says so once.
//!
//! [`ClusterKeys`] is what the network tasks and the admin API share: the
//! keyring (or none), the replay cache, and the counters it keeps current.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::events::{epoch_ms, EventLog, Source};
use crate::metrics::Metrics;
use crate::seal::{self, ClusterKey, ReplayCache, SealError};

/// File name of the keyring inside the data directory.
pub const KEYRING_FILE: &str = "keyring.json";
/// Most keys installed at once. A rotation needs two; a few more allow
/// overlapping rotations. Each installed key with a matching id costs one
/// authentication attempt per message, and the file stays tiny.
pub const MAX_KEYS: usize = 16;
/// Largest keyring file read (16 keys of 44 characters need under 1 KiB).
pub const MAX_KEYRING_FILE_BYTES: u64 = 16 * 1024;

/// Why a keyring operation or the keyring's start-up failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyringError {
    /// The agent has no keyring (it runs open).
    #[error("this agent runs without a cluster key (no cluster_key_file and no {KEYRING_FILE}); there is no keyring to manage")]
    Open,
    /// The keyring file is unusable.
    #[error("keyring file {path}: {problem}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// The key given is not valid.
    #[error("bad key: {0}")]
    BadKey(String),
    /// No installed key matches.
    #[error("no installed key matches {0}")]
    NotInstalled(String),
    /// Removing the primary key.
    #[error("key {0} is the primary key and cannot be removed; `use` another installed key first")]
    RemovePrimary(String),
    /// [`MAX_KEYS`] keys are installed.
    #[error("{MAX_KEYS} keys are installed already; remove one first")]
    Full,
    /// Saving the keyring failed (nothing changed).
    #[error("saving the keyring to {path} failed, nothing changed: {problem}")]
    Save {
        /// The file.
        path: String,
        /// The I/O error.
        problem: String,
    },
}

/// Which installed key an operation means: the key itself (base64) or
/// its fingerprint (as `GET /admin/keys` lists it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRef {
    /// The key.
    Key(ClusterKey),
    /// A fingerprint.
    Fingerprint(String),
}

impl KeyRef {
    /// A key (44 base64 characters) or else a fingerprint (16 hex digits).
    pub fn parse(text: &str) -> Result<KeyRef, KeyringError> {
        let t = text.trim();
        if t.len() == 16 && t.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(KeyRef::Fingerprint(t.to_ascii_lowercase()));
        }
        ClusterKey::from_base64(t)
            .map(KeyRef::Key)
            .map_err(|e| KeyringError::BadKey(format!("neither a key nor a fingerprint: {e}")))
    }

    fn matches(&self, key: &ClusterKey) -> bool {
        match self {
            KeyRef::Key(k) => k == key,
            KeyRef::Fingerprint(f) => key.fingerprint() == *f,
        }
    }

    fn describe(&self) -> String {
        match self {
            KeyRef::Key(k) => k.fingerprint(),
            KeyRef::Fingerprint(f) => f.clone(),
        }
    }
}

/// Installed keys, the primary first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keyring {
    keys: Vec<ClusterKey>,
}

impl Keyring {
    /// A keyring of one key, its primary.
    pub fn new(primary: ClusterKey) -> Keyring {
        Keyring {
            keys: vec![primary],
        }
    }

    /// The installed keys, the primary first.
    pub fn keys(&self) -> &[ClusterKey] {
        &self.keys
    }

    /// The key messages are sealed with.
    pub fn primary(&self) -> Option<&ClusterKey> {
        self.keys.first()
    }

    fn position(&self, which: &KeyRef) -> Result<usize, KeyringError> {
        self.keys
            .iter()
            .position(|k| which.matches(k))
            .ok_or_else(|| KeyringError::NotInstalled(which.describe()))
    }

    /// Installs `key` (not primary); installing an installed key changes
    /// nothing. Returns whether it changed.
    pub fn install(&mut self, key: ClusterKey) -> Result<bool, KeyringError> {
        if self.keys.contains(&key) {
            return Ok(false);
        }
        if self.keys.len() >= MAX_KEYS {
            return Err(KeyringError::Full);
        }
        self.keys.push(key);
        Ok(true)
    }

    /// Makes an installed key the primary. Returns whether it changed.
    pub fn use_key(&mut self, which: &KeyRef) -> Result<bool, KeyringError> {
        let i = self.position(which)?;
        if i == 0 {
            return Ok(false);
        }
        let key = self.keys.remove(i);
        self.keys.insert(0, key);
        Ok(true)
    }

    /// Removes an installed key that is not the primary.
    pub fn remove(&mut self, which: &KeyRef) -> Result<bool, KeyringError> {
        let i = match self.position(which) {
            Ok(i) => i,
            // Removing what is not there: done already (idempotent, as Serf).
            Err(_) if matches!(which, KeyRef::Key(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        if i == 0 {
            return Err(KeyringError::RemovePrimary(which.describe()));
        }
        self.keys.remove(i);
        Ok(true)
    }

    /// Reads a keyring file (refusing one others may read).
    pub fn load(path: &Path) -> Result<Keyring, KeyringError> {
        let fail = |problem: String| KeyringError::File {
            path: path.display().to_string(),
            problem,
        };
        seal::check_private(path).map_err(fail)?;
        let len = std::fs::metadata(path)
            .map_err(|e| fail(e.to_string()))?
            .len();
        if len > MAX_KEYRING_FILE_BYTES {
            return Err(fail(format!(
                "{len} bytes, more than {MAX_KEYRING_FILE_BYTES}"
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let list: Vec<String> = serde_json::from_str(&text)
            .map_err(|e| fail(format!("not a JSON array of base64 keys: {e}")))?;
        if list.is_empty() {
            return Err(fail("no keys (the first is the primary)".into()));
        }
        if list.len() > MAX_KEYS {
            return Err(fail(format!("{} keys, at most {MAX_KEYS}", list.len())));
        }
        let mut keys: Vec<ClusterKey> = Vec::with_capacity(list.len());
        for (i, text) in list.iter().enumerate() {
            let key = ClusterKey::from_base64(text).map_err(|e| fail(format!("key {i}: {e}")))?;
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        Ok(Keyring { keys })
    }

    /// Writes the keyring file atomically with mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), KeyringError> {
        let fail = |e: std::io::Error| KeyringError::Save {
            path: path.display().to_string(),
            problem: e.to_string(),
        };
        let list: Vec<String> = self.keys.iter().map(ClusterKey::to_base64).collect();
        let text = serde_json::to_string_pretty(&list).unwrap_or_default();
        let tmp = path.with_extension("json.tmp");
        let _ = std::fs::remove_file(&tmp);
        {
            use std::io::Write;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(&tmp).map_err(fail)?;
            file.write_all(text.as_bytes()).map_err(fail)?;
            file.write_all(b"\n").map_err(fail)?;
            file.sync_all().map_err(fail)?;
        }
        std::fs::rename(&tmp, path).map_err(fail)?;
        if let Some(dir) = path.parent() {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

/// One operation of `POST /admin/keys`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KeyOpRequest {
    /// `install`, `use` or `remove`.
    pub op: String,
    /// The key (base64) or, for `use` and `remove`, its fingerprint.
    pub key: String,
}

/// An installed key as `GET /admin/keys` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key's fingerprint (never the key).
    pub fingerprint: String,
    /// Whether messages are sealed with it.
    pub primary: bool,
}

/// The answer of `GET /admin/keys` (and of a successful `POST`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyList {
    /// Installed keys, the primary first.
    pub keys: Vec<KeyInfo>,
    /// The primary's fingerprint.
    pub primary: String,
    /// Where the keyring is persisted.
    pub file: String,
    /// Whether the operation changed anything (`POST` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed: Option<bool>,
}

struct Ring {
    keyring: RwLock<Keyring>,
    /// Serialises changes (each a save then a swap).
    change: Mutex<()>,
    path: PathBuf,
}

/// The cluster-key state the network tasks and the admin API share.
pub struct ClusterKeys {
    ring: Option<Ring>,
    replay: Mutex<ReplayCache>,
    metrics: Arc<Metrics>,
    events: Option<EventLog>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ClusterKeys {
    /// No keyring: messages go and are taken unsealed.
    pub fn open(metrics: Arc<Metrics>) -> ClusterKeys {
        metrics.cluster_keys.store(0, Ordering::Relaxed);
        ClusterKeys {
            ring: None,
            replay: Mutex::default(),
            metrics,
            events: None,
        }
    }

    /// The keyring of the agent with data directory `data_dir` and the
    /// configured key, by the start-up rules of the module documentation;
    /// says what it did (tracing and `events`).
    pub fn start(
        data_dir: &Path,
        configured: Option<&ClusterKey>,
        metrics: Arc<Metrics>,
        events: &EventLog,
    ) -> Result<ClusterKeys, KeyringError> {
        let path = data_dir.join(KEYRING_FILE);
        let keyring = if path.exists() {
            let keyring = Keyring::load(&path)?;
            if let Some(k) = configured.filter(|k| !keyring.keys.contains(k)) {
                tracing::warn!(
                    configured = %k.fingerprint(),
                    keyring = %path.display(),
                    "the configured cluster key is not in the keyring file and is ignored: the keyring file is the truth (install the key with `nodeplane keys install` if it is wanted)"
                );
                events.record_value(
                    Source::Agent,
                    "cluster-key-ignored",
                    json!({ "fingerprint": k.fingerprint(), "keyring": path.display().to_string() }),
                );
            }
            Some(keyring)
        } else if let Some(k) = configured {
            let keyring = Keyring::new(k.clone());
            keyring.save(&path)?;
            Some(keyring)
        } else {
            None
        };
        let Some(keyring) = keyring else {
            tracing::warn!("no cluster key: this agent runs OPEN, its messages are neither authenticated nor encrypted, and it accepts anyone's (set cluster_key_file; see `nodeplane keygen`)");
            events.record_value(
                Source::Agent,
                "running-open",
                json!({ "reason": "no cluster_key_file and no keyring file" }),
            );
            let mut keys = ClusterKeys::open(metrics);
            keys.events = Some(events.clone());
            return Ok(keys);
        };
        let list: Vec<String> = keyring.keys.iter().map(ClusterKey::fingerprint).collect();
        tracing::info!(keys = ?list, keyring = %path.display(), "cluster key on: every message is sealed with the primary key (the first)");
        events.record_value(
            Source::Agent,
            "cluster-key-on",
            json!({ "keys": list, "keyring": path.display().to_string() }),
        );
        metrics
            .cluster_keys
            .store(keyring.keys.len() as u64, Ordering::Relaxed);
        Ok(ClusterKeys {
            ring: Some(Ring {
                keyring: RwLock::new(keyring),
                change: Mutex::new(()),
                path,
            }),
            replay: Mutex::default(),
            metrics,
            events: Some(events.clone()),
        })
    }

    /// Whether messages are sealed.
    pub fn is_keyed(&self) -> bool {
        self.ring.is_some()
    }

    /// Seals an encoded message (datagram or frame) with the primary key
    /// and the current time; unchanged when the agent runs open.
    pub fn seal(&self, message: Vec<u8>) -> Vec<u8> {
        let Some(ring) = &self.ring else {
            return message;
        };
        let primary = ring
            .keyring
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .primary()
            .cloned();
        match primary {
            Some(key) => seal::seal(&key, epoch_ms(), &message),
            // A keyring always holds its primary; never send unsealed.
            None => Vec::new(),
        }
    }

    /// Opens an envelope with any installed key, then checks its send time
    /// and nonce. Only for a keyed agent (an open one never calls it).
    pub fn open_envelope(&self, envelope: &[u8]) -> Result<Vec<u8>, SealError> {
        self.open_envelope_at(envelope, epoch_ms())
    }

    /// [`ClusterKeys::open_envelope`] at the given time (tests).
    pub fn open_envelope_at(&self, envelope: &[u8], now_ms: u64) -> Result<Vec<u8>, SealError> {
        let Some(ring) = &self.ring else {
            return Err(SealError::UnknownKey("none: this agent has no key".into()));
        };
        let opened = {
            let keyring = ring.keyring.read().unwrap_or_else(|p| p.into_inner());
            seal::open(envelope, keyring.keys())?
        };
        lock(&self.replay).check(&opened, now_ms)?;
        Ok(opened.plaintext)
    }

    /// Nonces in the replay cache now.
    pub fn replay_entries(&self) -> usize {
        lock(&self.replay).len()
    }

    /// The installed keys (fingerprints only).
    pub fn list(&self) -> Result<KeyList, KeyringError> {
        let ring = self.ring.as_ref().ok_or(KeyringError::Open)?;
        let keyring = ring.keyring.read().unwrap_or_else(|p| p.into_inner());
        Ok(KeyList {
            keys: keyring
                .keys
                .iter()
                .enumerate()
                .map(|(i, k)| KeyInfo {
                    fingerprint: k.fingerprint(),
                    primary: i == 0,
                })
                .collect(),
            primary: keyring
                .primary()
                .map(ClusterKey::fingerprint)
                .unwrap_or_default(),
            file: ring.path.display().to_string(),
            changed: None,
        })
    }

    /// Applies one operation (`install`, `use`, `remove`): the new keyring
    /// is saved first and only then used, so the file and the agent never
    /// disagree. Blocking (it writes a file).
    pub fn apply(&self, op: &str, key: &str) -> Result<KeyList, KeyringError> {
        let ring = self.ring.as_ref().ok_or(KeyringError::Open)?;
        let _change = lock(&ring.change);
        let mut next = ring
            .keyring
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let which = KeyRef::parse(key)?;
        let changed = match (op, &which) {
            ("install", KeyRef::Key(k)) => next.install(k.clone())?,
            ("install", KeyRef::Fingerprint(_)) => {
                return Err(KeyringError::BadKey(
                    "install needs the key itself (base64), not a fingerprint".into(),
                ))
            }
            ("use", _) => next.use_key(&which)?,
            ("remove", _) => next.remove(&which)?,
            // The handler checks the operation first; kept total here.
            (other, _) => {
                return Err(KeyringError::BadKey(format!(
                    "unknown operation {other:?} (install, use or remove)"
                )))
            }
        };
        if changed {
            next.save(&ring.path)?;
            let n = next.keys.len();
            *ring.keyring.write().unwrap_or_else(|p| p.into_inner()) = next;
            self.metrics.cluster_keys.store(n as u64, Ordering::Relaxed);
        }
        let mut list = self.list()?;
        list.changed = Some(changed);
        tracing::info!(op, key = %which.describe(), changed, primary = %list.primary, "keyring operation");
        if let Some(events) = &self.events {
            events.record_value(
                Source::Agent,
                "keyring-changed",
                json!({ "op": op, "key": which.describe(), "changed": changed,
                        "primary": list.primary, "keys": list.keys.len() }),
            );
        }
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn dir(tag: &str) -> Dir {
        let d =
            std::env::temp_dir().join(format!("nodeplane-keyring-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    #[test]
    fn install_use_remove_follow_serf() {
        let (a, b) = (ClusterKey::generate(), ClusterKey::generate());
        let mut ring = Keyring::new(a.clone());
        assert_eq!(ring.install(b.clone()), Ok(true));
        assert_eq!(ring.install(b.clone()), Ok(false), "idempotent");
        assert_eq!(
            ring.primary(),
            Some(&a),
            "install never changes the primary"
        );
        assert!(matches!(
            ring.remove(&KeyRef::Key(a.clone())),
            Err(KeyringError::RemovePrimary(_))
        ));
        assert_eq!(
            ring.use_key(&KeyRef::Fingerprint(b.fingerprint())),
            Ok(true)
        );
        assert_eq!(ring.primary(), Some(&b));
        assert_eq!(ring.remove(&KeyRef::Key(a.clone())), Ok(true));
        assert_eq!(ring.keys(), std::slice::from_ref(&b));
        assert_eq!(ring.remove(&KeyRef::Key(a.clone())), Ok(false));
        assert!(matches!(
            ring.use_key(&KeyRef::Key(a)),
            Err(KeyringError::NotInstalled(_))
        ));
        for _ in 1..MAX_KEYS {
            ring.install(ClusterKey::generate()).unwrap();
        }
        assert_eq!(
            ring.install(ClusterKey::generate()),
            Err(KeyringError::Full)
        );
    }

    #[test]
    fn the_file_round_trips_privately_and_bad_files_are_named() {
        let d = dir("file");
        let path = d.0.join(KEYRING_FILE);
        let mut ring = Keyring::new(ClusterKey::generate());
        ring.install(ClusterKey::generate()).unwrap();
        ring.save(&path).unwrap();
        assert_eq!(Keyring::load(&path).unwrap(), ring);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let text: Vec<String> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            text[0],
            ring.keys()[0].to_base64(),
            "primary first, as Serf"
        );
        for bad in ["[]", "{}", "[\"AAAA\"]", "not json"] {
            std::fs::write(&path, bad).unwrap();
            let err = Keyring::load(&path).unwrap_err().to_string();
            assert!(err.starts_with("keyring file"), "{bad}: {err}");
        }
    }

    #[test]
    fn start_up_follows_the_keyring_file() {
        let d = dir("start");
        let events = EventLog::open(&d.0).unwrap();
        let metrics = Arc::new(Metrics::default());
        let (a, b) = (ClusterKey::generate(), ClusterKey::generate());
        // No file, no key: open.
        let k = ClusterKeys::start(&d.0, None, Arc::clone(&metrics), &events).unwrap();
        assert!(!k.is_keyed());
        assert_eq!(k.list(), Err(KeyringError::Open));
        assert_eq!(k.seal(b"x".to_vec()), b"x");
        // The configured key initialises the file.
        let k = ClusterKeys::start(&d.0, Some(&a), Arc::clone(&metrics), &events).unwrap();
        assert_eq!(k.list().unwrap().primary, a.fingerprint());
        k.apply("install", &b.to_base64()).unwrap();
        k.apply("use", &b.fingerprint()).unwrap();
        k.apply("remove", &a.to_base64()).unwrap();
        // Restarted with the old key still configured: the file wins.
        let k = ClusterKeys::start(&d.0, Some(&a), Arc::clone(&metrics), &events).unwrap();
        let list = k.list().unwrap();
        assert_eq!(
            (list.primary.as_str(), list.keys.len()),
            (b.fingerprint().as_str(), 1)
        );
        // And without any configured key it still runs keyed.
        let k = ClusterKeys::start(&d.0, None, Arc::clone(&metrics), &events).unwrap();
        assert!(k.is_keyed());
        let log = std::fs::read_to_string(events.path()).unwrap();
        assert!(log.contains("running-open") && log.contains("cluster-key-ignored"));
    }

    #[test]
    fn sealing_and_opening_through_the_keyring() {
        let d = dir("seal");
        let events = EventLog::open(&d.0).unwrap();
        let metrics = Arc::new(Metrics::default());
        let (a, b) = (ClusterKey::generate(), ClusterKey::generate());
        let k = ClusterKeys::start(&d.0, Some(&a), Arc::clone(&metrics), &events).unwrap();
        let env = k.seal(b"hello".to_vec());
        assert_eq!(k.open_envelope(&env).unwrap(), b"hello");
        assert_eq!(k.open_envelope(&env), Err(SealError::Replayed));
        // Sealed with b before b is installed, after, and after its removal.
        let with_b = |t| seal::seal(&b, t, b"m");
        let now = epoch_ms();
        assert_eq!(
            k.open_envelope(&with_b(now)).unwrap_err().reason(),
            "unknown-key"
        );
        k.apply("install", &b.to_base64()).unwrap();
        assert!(k.open_envelope(&with_b(now)).is_ok());
        assert_eq!(
            k.open_envelope(&k.seal(b"m".to_vec())).map(|_| ()),
            Ok(()),
            "a is still the primary"
        );
        k.apply("use", &b.to_base64()).unwrap();
        assert!(
            seal::open(&k.seal(b"m".to_vec()), [&b]).is_ok(),
            "now sealed with b"
        );
        k.apply("remove", &a.to_base64()).unwrap();
        assert_eq!(
            k.open_envelope(&seal::seal(&a, now, b"m"))
                .unwrap_err()
                .reason(),
            "unknown-key",
            "a removed key opens nothing"
        );
        assert!(matches!(
            k.apply("remove", &b.fingerprint()),
            Err(KeyringError::RemovePrimary(_))
        ));
        assert_eq!(metrics.cluster_keys.load(Ordering::Relaxed), 1);
    }
}
