//! The node's signing key: an Ed25519 key pair generated from OS
//! randomness in the data directory on first start (`signing.key`, mode
//! 0600) and read back on every later start. Its public half is what the
//! node's first `join` binds its id to in every ledger, so losing the file
//! means the id can no longer write (host/agent/README.md, "Signing key").

use std::io::Write;
use std::path::{Path, PathBuf};

use nodeplane_entry::signing::ed25519::KeyPair;
use rand::RngCore;

/// The key file in the data directory.
pub const SIGNING_KEY_FILE: &str = "signing.key";

/// What the key file holds: a label line, then the 32-byte secret seed as
/// 64 hex digits.
const HEADER: &str = "nodeplane ed25519 signing key v1";

/// Largest key file read: a key file is 98 bytes, so a larger one is the
/// wrong file, refused before it is read.
pub const MAX_KEY_FILE_BYTES: u64 = 1024;

/// Why the signing key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
#[error("signing key {path}: {problem}")]
pub struct IdentityError {
    /// The key file.
    pub path: String,
    /// What is wrong with it.
    pub problem: String,
}

/// Loads the node's key pair from `data_dir`, creating it on first start.
/// An existing file is never overwritten: a file that is unreadable,
/// readable by others, or not a key is an error naming it.
pub fn load_or_create(data_dir: &Path) -> Result<KeyPair, IdentityError> {
    let path = data_dir.join(SIGNING_KEY_FILE);
    let fail = |problem: String| IdentityError {
        path: path.display().to_string(),
        problem,
    };
    match std::fs::metadata(&path) {
        Ok(_) => load(&path).map_err(fail),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(&path).map_err(fail),
        Err(e) => Err(fail(format!("cannot read: {e}"))),
    }
}

fn load(path: &Path) -> Result<KeyPair, String> {
    check_private(path)?;
    let len = std::fs::metadata(path)
        .map_err(|e| format!("cannot read: {e}"))?
        .len();
    if len > MAX_KEY_FILE_BYTES {
        return Err(format!(
            "{len} bytes is not a key file (at most {MAX_KEY_FILE_BYTES})"
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(format!(
            "not a signing key file (first line is not {HEADER:?})"
        ));
    }
    let hex_seed = lines.next().unwrap_or_default().trim();
    let bytes = hex::decode(hex_seed).map_err(|e| format!("key is not hex: {e}"))?;
    let seed: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| format!("key is {} bytes, expected 32", bytes.len()))?;
    Ok(KeyPair::from_seed(&seed))
}

fn create(path: &Path) -> Result<KeyPair, String> {
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let pair = KeyPair::from_seed(&seed);
    let text = format!("{HEADER}\n{}\n", hex::encode(seed));
    // Written beside and renamed into place, so a crash never leaves half
    // a key; created 0600 from the start.
    let tmp: PathBuf = path.with_extension("key.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&tmp)
        .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot rename into place: {e}"))?;
    tracing::info!(path = %path.display(), public_key = %hex::encode(pair.public_key()), "generated this node's signing key");
    Ok(pair)
}

/// Refuses a key file that others may read.
fn check_private(path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| format!("cannot read: {e}"))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "mode {:o} lets others read the key; chmod 600 it",
                mode & 0o777
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    #[test]
    fn the_key_is_created_once_and_read_back() {
        let dir = TempDir::new("identity-create");
        let first = load_or_create(dir.path()).unwrap();
        let again = load_or_create(dir.path()).unwrap();
        assert_eq!(first.public_key(), again.public_key());
    }

    #[test]
    fn damaged_or_exposed_key_files_are_errors_naming_the_file() {
        let dir = TempDir::new("identity-bad");
        load_or_create(dir.path()).unwrap();
        let path = dir.path().join(SIGNING_KEY_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = load_or_create(dir.path()).unwrap_err().to_string();
            assert!(
                err.contains("signing.key") && err.contains("chmod 600"),
                "{err}"
            );
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        std::fs::write(&path, format!("{HEADER}\nabcd\n")).unwrap();
        let err = load_or_create(dir.path()).unwrap_err().to_string();
        assert!(err.contains("2 bytes, expected 32"), "{err}");
        std::fs::write(&path, "something else\n").unwrap();
        let err = load_or_create(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a signing key file"), "{err}");
        std::fs::write(&path, vec![b'x'; 4096]).unwrap();
        let err = load_or_create(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is not a key file"), "{err}");
    }
}
