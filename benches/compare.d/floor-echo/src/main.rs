//! floor-echo: the least work a WebSocket echo server can do on epoll, as a floor for
//! benches/syscalls. Not a server to use: no limits, no timeouts, no UTF-8 check, one thread.
//!
//! Per connection: `accept4` (non-blocking, so no `fcntl`), one `epoll_ctl` add (level
//! triggered, input only), the head read and the `101` written, then per readiness one `recv`
//! into a shared buffer and one `send` of every answer it produced, and `close` after the
//! close frame is answered (no `epoll_ctl` delete: closing the last descriptor removes it).
//! `TCP_NODELAY` is set once, on the listener, and inherited by each accepted socket.
//! Payloads are copied into the answer and unmasked there, a word at a time.
//!
//! With `--uring` it runs on io_uring instead (src/uring.rs).
//!
//! Usage: `floor-echo [PORT] [--uring]` (port 0 or none: any free port); listens on 127.0.0.1
//! and prints `PORT=<n>` once listening.

mod uring;

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use base64::Engine as _;
use rustix::buffer::spare_capacity;
use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::net::{sockopt, SocketFlags};
use sha1::{Digest, Sha1};

const LISTENER: u64 = u64::MAX;
const READ_BUFFER: usize = 64 * 1024;
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

struct Conn {
    stream: TcpStream,
    upgraded: bool,
    /// Bytes of a head or frame not yet complete, from earlier reads.
    partial: Vec<u8>,
    /// Answer bytes the socket did not take yet (then `EPOLLOUT` is asked for).
    unsent: Vec<u8>,
    closing: bool,
}

impl Conn {
    fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            upgraded: false,
            partial: Vec::new(),
            unsent: Vec::new(),
            closing: false,
        }
    }
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port: u16 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(0);
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    listener.set_nonblocking(true)?;
    sockopt::set_tcp_nodelay(&listener, true)?;
    if args.iter().any(|a| a == "--uring") {
        return uring::run(listener);
    }
    println!("PORT={}", listener.local_addr()?.port());

    let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
    epoll::add(&ep, &listener, EventData::new_u64(LISTENER), EventFlags::IN)?;
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut events = Vec::with_capacity(256);
    let mut buf = vec![0u8; READ_BUFFER];
    let mut out = Vec::with_capacity(READ_BUFFER + 1024);
    loop {
        events.clear();
        epoll::wait(&ep, spare_capacity(&mut events), None)?;
        for ev in &events {
            let (flags, data) = (ev.flags, ev.data);
            let token = data.u64();
            if token == LISTENER {
                accept_all(&listener, &ep, &mut conns)?;
                continue;
            }
            let fd = token as usize;
            let Some(conn) = conns.get_mut(fd).and_then(Option::as_mut) else {
                continue;
            };
            let keep = if flags.contains(EventFlags::OUT) {
                flush(conn, &ep)
            } else {
                serve(conn, &ep, &mut buf, &mut out)
            };
            if !keep {
                // Dropping the stream closes it, which also leaves the epoll set.
                conns[fd] = None;
            }
        }
    }
}

fn accept_all(
    listener: &TcpListener,
    ep: &OwnedFd,
    conns: &mut Vec<Option<Conn>>,
) -> io::Result<()> {
    loop {
        let fd = match rustix::net::accept_with(
            listener,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::AGAIN) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let i = fd.as_raw_fd() as usize;
        epoll::add(ep, &fd, EventData::new_u64(i as u64), EventFlags::IN)?;
        if conns.len() <= i {
            conns.resize_with(i + 1, || None);
        }
        conns[i] = Some(Conn::new(TcpStream::from(fd)));
    }
}

/// One readiness: one `recv`, every complete frame answered, one `send`. False: close it.
fn serve(conn: &mut Conn, ep: &OwnedFd, buf: &mut [u8], out: &mut Vec<u8>) -> bool {
    let n = match conn.stream.read(buf) {
        Ok(0) => return false,
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
        Err(_) => return false,
    };
    out.clear();
    if !answer(conn, &buf[..n], out) {
        return false;
    }
    if out.is_empty() {
        return true;
    }
    match conn.stream.write(out) {
        Ok(w) if w == out.len() => !conn.closing,
        Ok(w) => {
            conn.unsent.extend_from_slice(&out[w..]);
            want_output(conn, ep, true)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            conn.unsent.extend_from_slice(out);
            want_output(conn, ep, true)
        }
        Err(_) => false,
    }
}

/// Answers what `data` completes (with the bytes kept from earlier reads) into `out`, and keeps
/// what is left of an incomplete head or frame. False for a head without a key.
fn answer(conn: &mut Conn, data: &[u8], out: &mut Vec<u8>) -> bool {
    let mut joined;
    let input: &[u8] = if conn.partial.is_empty() {
        data
    } else {
        joined = std::mem::take(&mut conn.partial);
        joined.extend_from_slice(data);
        &joined
    };
    let used = if conn.upgraded {
        frames(input, out, &mut conn.closing)
    } else {
        match handshake(input, out) {
            Some(Ok(head)) => {
                conn.upgraded = true;
                head + frames(&input[head..], out, &mut conn.closing)
            }
            Some(Err(())) => return false,
            None => 0,
        }
    };
    if used < input.len() && !conn.closing {
        conn.partial = input[used..].to_vec();
    }
    true
}

fn flush(conn: &mut Conn, ep: &OwnedFd) -> bool {
    match conn.stream.write(&conn.unsent) {
        Ok(w) => {
            conn.unsent.drain(..w);
            if conn.unsent.is_empty() {
                !conn.closing && want_output(conn, ep, false)
            } else {
                true
            }
        }
        Err(e) => e.kind() == io::ErrorKind::WouldBlock,
    }
}

fn want_output(conn: &Conn, ep: &OwnedFd, on: bool) -> bool {
    let flags = if on { EventFlags::OUT } else { EventFlags::IN };
    let data = EventData::new_u64(conn.stream.as_raw_fd() as u64);
    epoll::modify(ep, conn.stream.as_fd(), data, flags).is_ok()
}

/// The upgrade: `None` while the head is incomplete, else its length (the `101` appended to
/// `out`) or `Err` for a head without a key.
fn handshake(input: &[u8], out: &mut Vec<u8>) -> Option<Result<usize, ()>> {
    let end = input.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let key = input[..end].split(|&b| b == b'\n').find_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = line.split_at(colon);
        name.eq_ignore_ascii_case(b"sec-websocket-key")
            .then(|| value[1..].trim_ascii())
    });
    let Some(key) = key else {
        return Some(Err(()));
    };
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    let accept = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
    out.extend_from_slice(accept.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    Some(Ok(end))
}

/// Answers every complete frame of `input` into `out`; returns the bytes used. A data frame
/// goes back as it came (same first byte), a ping as a pong, a close as a close with the same
/// payload, after which nothing more is read.
fn frames(mut input: &[u8], out: &mut Vec<u8>, closing: &mut bool) -> usize {
    let total = input.len();
    while !*closing && input.len() >= 6 {
        let (b0, b1) = (input[0], input[1]);
        let (len, at): (usize, usize) = match b1 & 0x7f {
            126 if input.len() >= 8 => (u16::from_be_bytes([input[2], input[3]]) as usize, 4),
            127 if input.len() >= 14 => {
                let mut l = [0u8; 8];
                l.copy_from_slice(&input[2..10]);
                (u64::from_be_bytes(l) as usize, 10)
            }
            126 | 127 => break,
            l => (l as usize, 2),
        };
        let Some(frame_end) = (at + 4).checked_add(len).filter(|&e| e <= input.len()) else {
            break;
        };
        let key = [input[at], input[at + 1], input[at + 2], input[at + 3]];
        let payload = &input[at + 4..frame_end];
        let first = match b0 & 0x0f {
            0x8 => {
                *closing = true;
                0x88
            }
            0x9 => 0x8a,
            0xa => {
                input = &input[frame_end..];
                continue;
            }
            _ => b0,
        };
        out.push(first);
        match len {
            0..=125 => out.push(len as u8),
            126..=0xffff => {
                out.push(126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        unmask_into(payload, key, out);
        input = &input[frame_end..];
    }
    total - input.len()
}

/// Appends `payload` XORed with the mask `key`, eight bytes at a time.
fn unmask_into(payload: &[u8], key: [u8; 4], out: &mut Vec<u8>) {
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let start = out.len();
    out.extend_from_slice(payload);
    let body = &mut out[start..];
    let mut chunks = body.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes(c.try_into().unwrap()) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (b, k) in chunks.into_remainder().iter_mut().zip(key.iter()) {
        *b ^= k;
    }
}
