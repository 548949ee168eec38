//! Helpers shared by the tests that run real agent processes.

use std::path::Path;
use std::sync::Mutex;

/// Multi-process tests run one at a time: they share the two cores. Taken
/// by the agent processes of `tests/agent` and of the Mesh VPN's mode (d);
/// cargo runs the test binaries one after another.
pub static SERIAL: Mutex<()> = Mutex::new(());

/// A port on `ip` that is free for both UDP and TCP (an agent's control
/// address uses both): the agent's own helper, panicking on failure.
pub fn free_port(ip: &str) -> u16 {
    nodeplane_agent::ports::free_port(ip).expect("a free port")
}

/// The last `lines` lines of each agent's log file `<dir>/<id>.log`, for
/// failure messages.
pub fn log_tails<'a>(dir: &Path, ids: impl IntoIterator<Item = &'a str>, lines: usize) -> String {
    let mut out = String::new();
    for id in ids {
        let log = std::fs::read_to_string(dir.join(format!("{id}.log"))).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(lines).collect();
        out.push_str(&format!(
            "--- {id} ---\n{}\n",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    out
}
