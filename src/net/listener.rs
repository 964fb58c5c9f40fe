//! Listening sockets: one per core per address, all bound with `SO_REUSEPORT` so the kernel
//! spreads incoming connections over the cores.
//!
//! Binding happens on the starting thread, before any reactor runs, so that a bad address is a
//! start-up error and so that port 0 resolves once: the first socket picks the port and the
//! others bind to the same one.
//!
//! A listener is watched *level-triggered* on its reactor's epoll ([`watch`]), unlike the
//! connections (mio registers everything edge-triggered): while its backlog holds connections
//! every poll reports it, so the reactor accepts what it expects to find ([`Burst`]) and never
//! has to drain the backlog down to the `accept` that only says `EAGAIN`.

use rustix::event::epoll::{self, EventData, EventFlags};
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;

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
        // Accepted sockets inherit TCP_NODELAY from their listener (Linux copies it into
        // each new connection): set once here, not with a setsockopt per connection.
        sock.set_tcp_nodelay(true)?;
        sock.bind(&bound.into())?;
        sock.listen(BACKLOG)?;
        let std_listener: std::net::TcpListener = sock.into();
        bound = std_listener.local_addr()?;
        out.push(std_listener);
    }
    Ok((out, bound))
}

/// Watch `listener` on `poll` for readability, level-triggered, as `token`.
pub fn watch(poll: &mio::Poll, listener: &impl AsFd, token: mio::Token) -> io::Result<()> {
    epoll::add(poll.registry(), listener, data(token), EventFlags::IN).map_err(io::Error::from)
}

/// Stop (`on == false`) or resume reporting a watched listener, while accepting is paused:
/// a level-triggered listener with a backlog would otherwise wake every poll.
pub fn set_watch(
    poll: &mio::Poll,
    listener: &impl AsFd,
    token: mio::Token,
    on: bool,
) -> io::Result<()> {
    let flags = if on {
        EventFlags::IN
    } else {
        EventFlags::empty()
    };
    epoll::modify(poll.registry(), listener, data(token), flags).map_err(io::Error::from)
}

/// mio reads an event's token from its 64-bit data.
fn data(token: mio::Token) -> EventData {
    EventData::new_u64(token.0 as u64)
}

/// How many connections to accept when a listener is reported. Starts at one: a server
/// that sees connections one at a time accepts each with one call, and never meets `EAGAIN`.
/// A listener reported again at the very next poll after a burst that found all it asked for
/// has a backlog that fills faster than that: the burst doubles (up to [`Burst::MAX`]). The
/// first `EAGAIN` sets it back to one. So a flood costs one `EAGAIN` per burst, not one per
/// poll, and a quiet listener none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Burst {
    size: u16,
    /// The poll (the reactor's loop count) whose burst found all it asked for.
    full_at: Option<u64>,
}

impl Burst {
    /// The most accepted in one report.
    pub const MAX: u16 = 64;

    pub const fn new() -> Self {
        Burst {
            size: 1,
            full_at: None,
        }
    }

    /// Accepts to try at this report, in poll `turn`.
    pub fn size(&mut self, turn: u64) -> u16 {
        if self.full_at.is_some_and(|t| t + 1 == turn) {
            self.size = (self.size * 2).min(Self::MAX);
        }
        self.size
    }

    /// Every accept tried in poll `turn` found a connection.
    pub fn all_found(&mut self, turn: u64) {
        self.full_at = Some(turn);
    }

    /// An accept said `EAGAIN`: the backlog is empty.
    pub fn drained(&mut self) {
        self.size = 1;
        self.full_at = None;
    }
}

impl Default for Burst {
    fn default() -> Self {
        Self::new()
    }
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

    #[test]
    fn accepted_sockets_inherit_nodelay() {
        let (mut socks, addr) = bind_reuseport("127.0.0.1:0".parse().unwrap(), 1).unwrap();
        let l = socks.pop().unwrap();
        let _c = std::net::TcpStream::connect(addr).unwrap();
        l.set_nonblocking(false).unwrap();
        let (s, _) = l.accept().unwrap();
        assert!(s.nodelay().unwrap());
    }

    #[test]
    fn burst_doubles_at_back_to_back_reports_and_resets_on_eagain() {
        let mut b = Burst::new();
        assert_eq!(b.size(10), 1);
        b.all_found(10);
        // Reported again later, not at the next poll: one at a time is still right.
        assert_eq!(b.size(12), 1);
        b.all_found(12);
        let mut turn = 13;
        for want in [2, 4, 8, 16, 32, 64, 64] {
            assert_eq!(b.size(turn), want);
            b.all_found(turn);
            turn += 1;
        }
        b.drained();
        assert_eq!(b.size(turn), 1);
    }

    /// A listener on a loopback port, watched on a fresh poll as `token`.
    fn watched(token: mio::Token) -> (mio::net::TcpListener, SocketAddr, mio::Poll) {
        let (mut socks, addr) = bind_reuseport("127.0.0.1:0".parse().unwrap(), 1).unwrap();
        let l = mio::net::TcpListener::from_std(socks.pop().unwrap());
        let poll = mio::Poll::new().unwrap();
        watch(&poll, &l, token).unwrap();
        (l, addr, poll)
    }

    #[test]
    fn a_watched_listener_is_reported_while_its_backlog_is_not_empty() {
        let token = mio::Token(7);
        let (l, addr, mut poll) = watched(token);
        let _a = std::net::TcpStream::connect(addr).unwrap();
        let _b = std::net::TcpStream::connect(addr).unwrap();
        let mut events = mio::Events::with_capacity(8);
        let mut reported = || {
            poll.poll(&mut events, Some(std::time::Duration::from_millis(500)))
                .unwrap();
            events.iter().any(|e| e.token() == token && e.is_readable())
        };
        // Level-triggered: reported again after one of two is accepted, not after both.
        assert!(reported());
        l.accept().unwrap();
        assert!(reported());
        l.accept().unwrap();
        assert!(!reported());
    }

    #[test]
    fn a_paused_listener_is_not_reported() {
        let token = mio::Token(3);
        let (l, addr, mut poll) = watched(token);
        let _a = std::net::TcpStream::connect(addr).unwrap();
        set_watch(&poll, &l, token, false).unwrap();
        let mut events = mio::Events::with_capacity(8);
        poll.poll(&mut events, Some(std::time::Duration::from_millis(100)))
            .unwrap();
        assert!(events.is_empty());
        set_watch(&poll, &l, token, true).unwrap();
        poll.poll(&mut events, Some(std::time::Duration::from_millis(500)))
            .unwrap();
        assert!(events.iter().any(|e| e.token() == token));
    }
}
