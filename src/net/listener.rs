//! Listening sockets: one per core per address, all bound with `SO_REUSEPORT` so the kernel
//! spreads incoming connections over the cores.
//!
//! Binding happens on the starting thread, before any reactor runs, so that a bad address is a
//! start-up error and so that port 0 resolves once: the first socket picks the port and the
//! others bind to the same one.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;

/// Backlog of each listening socket.
const BACKLOG: i32 = 4096;

/// Bind `count` listening sockets to `addr` with `SO_REUSEPORT`. Returns them and the address
/// they share (with the port resolved if `addr` asked for port 0).
pub fn bind_reuseport(
    addr: SocketAddr,
    count: usize,
) -> io::Result<(Vec<std::net::TcpListener>, SocketAddr)> {
    let mut out = Vec::with_capacity(count);
    let mut bound = addr;
    for _ in 0..count.max(1) {
        let sock = Socket::new(
            Domain::for_address(bound),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        if bound.is_ipv6() {
            sock.set_only_v6(true)?;
        }
        sock.set_reuse_address(true)?;
        #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
        sock.set_reuse_port(true)?;
        sock.set_nonblocking(true)?;
        sock.bind(&bound.into())?;
        sock.listen(BACKLOG)?;
        let std_listener: std::net::TcpListener = sock.into();
        bound = std_listener.local_addr()?;
        out.push(std_listener);
    }
    Ok((out, bound))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_resolves_once_for_all_sockets() {
        let (socks, addr) = bind_reuseport("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        assert_ne!(addr.port(), 0);
        for s in &socks {
            assert_eq!(s.local_addr().unwrap(), addr);
        }
    }
}
