//! A fresh temporary directory for one test, removed when it is dropped.

use std::path::PathBuf;

/// A temporary directory; removed with everything in it on drop.
pub struct Dir(pub PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An empty directory `nodeplane-<area>-<tag>-<pid>` under the system's
/// temporary directory (whatever an earlier run left there is removed).
pub fn temp_dir(area: &str, tag: &str) -> Dir {
    let dir = std::env::temp_dir().join(format!("nodeplane-{area}-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Dir(dir)
}
