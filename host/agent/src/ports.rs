//! Free local ports for agents that a test or the demo is about to start.

use std::net::{TcpListener, UdpSocket};

/// How many ports [`free_port`] tries before giving up.
pub const FREE_PORT_ATTEMPTS: usize = 50;

/// A port on `ip` that is free for both UDP and TCP (an agent's control
/// address uses both; its API address only TCP). The port is released
/// before this returns, so another process may still take it first.
pub fn free_port(ip: &str) -> std::io::Result<u16> {
    for _ in 0..FREE_PORT_ATTEMPTS {
        let tcp = TcpListener::bind((ip, 0))?;
        let port = tcp.local_addr()?.port();
        if UdpSocket::bind((ip, port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrNotAvailable,
        format!("no port on {ip} free for both UDP and TCP after {FREE_PORT_ATTEMPTS} tries"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_is_free_for_both_protocols() {
        let port = free_port("127.0.0.1").unwrap();
        assert_ne!(port, 0);
        let _tcp = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let _udp = UdpSocket::bind(("127.0.0.1", port)).unwrap();
    }
}
