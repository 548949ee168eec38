//! The node's WireGuard key pair: X25519, generated from OS randomness and
//! kept in a file only its owner may read.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use curve25519_dalek::montgomery::MontgomeryPoint;
use rand::RngCore as _;

use crate::peer::PublicKey;

/// Most bytes read from a key file. A key file is 45 bytes (44 base64
/// characters and a newline); reading a bounded prefix keeps a wrong path
/// (a huge file, a device) cheap, and anything longer is not a key anyway.
pub const MAX_KEY_FILE_BYTES: u64 = 256;

/// Errors loading or creating a key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read, created or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file holds something other than a key, or others may read it.
    #[error("key file {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// A WireGuard (X25519) private key. `Debug` shows only the public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKey([u8; 32]);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey(public {})", self.public_key().as_str())
    }
}

impl PrivateKey {
    /// A fresh key from the operating system's randomness, clamped as
    /// `wg genkey` does.
    pub fn generate() -> PrivateKey {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        PrivateKey(clamp(bytes))
    }

    /// The key from 64 hex digits (the UAPI's form).
    pub fn from_hex(text: &str) -> Option<PrivateKey> {
        key_from_hex(text).map(PrivateKey)
    }

    /// The key from standard base64 of 32 bytes (`wg genkey`'s form).
    pub fn from_base64(text: &str) -> Option<PrivateKey> {
        let bytes = STANDARD.decode(text.trim()).ok()?;
        <[u8; 32]>::try_from(bytes.as_slice()).ok().map(PrivateKey)
    }

    /// The key as standard base64 (`wg genkey`'s form).
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// The key as 64 lowercase hex digits (the UAPI's form).
    pub fn to_hex(&self) -> String {
        key_to_hex(&self.0)
    }

    /// The matching public key (`wg pubkey`): X25519 of the base point.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_bytes(&MontgomeryPoint::mul_base_clamped(self.0).to_bytes())
    }

    /// Reads the key from `path`, or on first use generates one and writes
    /// it there (mode 0600, created exclusively). A file that others may
    /// read, or that is not a base64 key, is refused with an error naming
    /// it: a leaked or damaged key must not be used silently.
    pub fn load_or_generate(path: &Path) -> Result<PrivateKey, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        let invalid = |reason: &str| KeyError::Invalid {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        match std::fs::metadata(path) {
            Ok(meta) => {
                if meta.permissions().mode() & 0o077 != 0 {
                    return Err(invalid(
                        "readable by group or others; chmod 600 it (or delete it for a new key)",
                    ));
                }
                let mut text = String::new();
                std::io::Read::read_to_string(
                    &mut std::io::Read::take(
                        std::fs::File::open(path).map_err(io)?,
                        MAX_KEY_FILE_BYTES,
                    ),
                    &mut text,
                )
                .map_err(|_| invalid("not the base64 of a 32-byte key"))?;
                PrivateKey::from_base64(&text)
                    .ok_or_else(|| invalid("not the base64 of a 32-byte key"))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = PrivateKey::generate();
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(io)?;
                writeln!(file, "{}", key.to_base64()).map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok(key)
            }
            Err(e) => Err(io(e)),
        }
    }
}

fn clamp(mut bytes: [u8; 32]) -> [u8; 32] {
    bytes[0] &= 248;
    bytes[31] &= 127;
    bytes[31] |= 64;
    bytes
}

/// Lowercase hex of 32 bytes.
pub(crate) fn key_to_hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 32 bytes from exactly 64 hex digits.
pub(crate) fn key_from_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_key_is_x25519_of_the_base_point() {
        // RFC 7748 §6.1.
        let alice = PrivateKey::from_hex(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        )
        .unwrap();
        assert_eq!(
            key_to_hex(&alice.public_key().to_bytes()),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        assert!(
            !format!("{alice:?}").contains("77076d0a"),
            "Debug hides the key"
        );
    }

    #[test]
    fn a_key_file_is_created_once_private_and_read_back() {
        let dir = std::env::temp_dir().join(format!("meshvpn-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("wg.key");
        let first = PrivateKey::load_or_generate(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(PrivateKey::load_or_generate(&path).unwrap(), first);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = PrivateKey::load_or_generate(&path).unwrap_err();
        assert!(err.to_string().contains("readable"), "{err}");
        std::fs::write(&path, "garbage").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            PrivateKey::load_or_generate(&path),
            Err(KeyError::Invalid { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn generated_keys_are_clamped_and_distinct() {
        let a = PrivateKey::generate();
        let b = PrivateKey::generate();
        assert_ne!(a, b);
        assert_eq!(a.0[0] & 7, 0);
        assert_eq!(a.0[31] & 0xc0, 0x40);
        assert_eq!(PrivateKey::from_base64(&a.to_base64()), Some(a));
    }

    #[test]
    fn hex_is_exactly_64_digits() {
        assert!(key_from_hex(&"0".repeat(63)).is_none());
        assert!(key_from_hex(&"g".repeat(64)).is_none());
        assert!(key_from_hex(&"é".repeat(32)).is_none());
        assert_eq!(key_from_hex(&"ff".repeat(32)), Some([255; 32]));
    }
}
