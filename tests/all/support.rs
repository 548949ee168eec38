//! Helpers shared by the tests that run real agent processes.

use std::net::{TcpListener, UdpSocket};
use std::path::Path;

/// A port on `ip` that is free for both UDP and TCP (an agent's control
/// address uses both).
pub fn free_port(ip: &str) -> u16 {
    loop {
        let tcp = TcpListener::bind((ip, 0)).expect("bind tcp");
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind((ip, port)).is_ok() {
            return port;
        }
    }
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
