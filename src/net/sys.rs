//! The socket calls on the hot path, made directly (rustix's raw system calls): `recv`, `send`
//! and `writev` through libc are cancellation points, and each one pays libc's bookkeeping
//! for that (about 1.5 % of the server's CPU when echoing pipelined messages), which a
//! reactor that never cancels threads has no use for.

use mio::net::TcpStream;
use rustix::net::{RecvFlags, SendFlags};
use std::io::{self, IoSlice};
use std::os::fd::AsFd;

/// `recv(2)` into `buf`.
pub fn recv(sock: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    rustix::net::recv(sock, buf, RecvFlags::empty())
        .map(|(n, _)| n)
        .map_err(io::Error::from)
}

/// `send(2)` of `buf`, without SIGPIPE; with `MSG_MORE` when `more` (a partial segment waits
/// for what follows: the next send, or the FIN of a close).
pub fn send(sock: impl AsFd, buf: &[u8], more: bool) -> io::Result<usize> {
    let flags = if more {
        SendFlags::NOSIGNAL | SendFlags::MORE
    } else {
        SendFlags::NOSIGNAL
    };
    rustix::net::send(sock, buf, flags).map_err(io::Error::from)
}

/// `writev(2)` of `bufs`. (A closed peer gives EPIPE: Rust programs ignore SIGPIPE.)
pub fn writev(sock: &TcpStream, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    rustix::io::writev(sock, bufs).map_err(io::Error::from)
}
