//! The WireGuard-style configuration a data plane applies, and writing it
//! atomically.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::Path;

use crate::peer_set::PeerSet;

/// The conventional file name of the rendered peer configuration.
pub const CONFIG_FILE_NAME: &str = "wg-peers.conf";

/// Renders `set` as `[Peer]` blocks (PublicKey, AllowedIPs = overlay-ip as
/// a host route, Endpoint), in node id order. Skipped peers appear as
/// comments with the reason; the serial heads the text.
pub fn render_wireguard(set: &PeerSet) -> String {
    let plan = set.plan();
    let mut out = String::new();
    let _ = writeln!(out, "# nodeplane desired peer set, serial {}", set.serial);
    let _ = writeln!(
        out,
        "# {} peers rendered, {} skipped",
        plan.rendered.len(),
        plan.skipped.len()
    );
    for (peer, tunnel) in &plan.rendered {
        let prefix = match tunnel.overlay_ip {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        let _ = writeln!(out, "\n# node {:?} ({})", peer.node_id, peer.state);
        let _ = writeln!(out, "[Peer]");
        let _ = writeln!(out, "PublicKey = {}", tunnel.public_key.as_str());
        let _ = writeln!(out, "AllowedIPs = {}/{prefix}", tunnel.overlay_ip);
        let _ = writeln!(out, "Endpoint = {}", tunnel.endpoint);
    }
    for (peer, reason) in &plan.skipped {
        // `{:?}` escapes control characters: no value can start a new line.
        let _ = writeln!(
            out,
            "\n# skipped node {:?}: {}",
            peer.node_id,
            reason.escape_debug()
        );
    }
    out
}

/// Writes `text` to `path` atomically: a temporary file beside it, synced,
/// then renamed over `path`. A reader sees the old or the new file, never
/// a torn one.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no file name")
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodeplane_interface::{Member, PeerState};

    fn member(id: &str, meta: &[(&str, &str)]) -> Member {
        Member {
            id: id.into(),
            address: "192.0.2.1:51820".into(),
            state: PeerState::Alive,
            incarnation: 1,
            metadata: meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn renders_peer_blocks_and_skipped_peers_as_comments() {
        let mut set = PeerSet::default();
        set.apply_member(
            &member(
                "a",
                &[
                    ("overlay-ip", "fd00::1"),
                    ("public-key", "YcFCSOOYGKPXKTWgh4CG5R2oBUbf3dpsl6dO5YjXpEA="),
                ],
            ),
            None,
        );
        set.apply_member(
            &member("b\n[Peer]", &[("overlay-ip", "1.2.3.4\n[Peer]")]),
            None,
        );
        let text = render_wireguard(&set);
        assert!(text.starts_with("# nodeplane desired peer set, serial 2\n"));
        assert!(text.contains(
            "[Peer]\nPublicKey = YcFCSOOYGKPXKTWgh4CG5R2oBUbf3dpsl6dO5YjXpEA=\nAllowedIPs = fd00::1/128\nEndpoint = 192.0.2.1:51820\n"
        ));
        assert_eq!(
            text.matches("[Peer]\n").count(),
            1,
            "nothing injected:\n{text}"
        );
        assert!(
            text.contains("# skipped node \"b\\n[Peer]\": overlay-ip"),
            "{text}"
        );
    }

    #[test]
    fn writes_atomically_and_replaces() {
        let dir = std::env::temp_dir().join(format!("meshvpn-render-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(CONFIG_FILE_NAME);
        write_atomic(&path, "one").unwrap();
        write_atomic(&path, "two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary file left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
