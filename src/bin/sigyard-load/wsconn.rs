//! The client connections of the dialect scenarios that hold many sockets in one mio poll
//! (`peerjs`, `ywebrtc`, `webtorrent`, `mewconnect`, `socketio`): a non-blocking TCP
//! [`Socket`] registered with the poll (bound to a `--source-ips` address if given), with what
//! came in and what is queued to go out; and on it a client WebSocket ([`Conn`]): its upgrade,
//! queued writes, and the server's whole text or binary messages read off it, pings answered.
//! The scenarios keep their own state per connection and only look at messages (or, on a bare
//! [`Socket`], at the bytes).

use crate::args::Opts;
use crate::engine;
use crate::phases;
use crate::ws::{self, Rng, Upgrade, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT};
use mio::net::TcpStream;
use mio::{Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Where a thread's clients connect: the server's address and `Host`, and the addresses to
/// bind to, round robin (`--source-ips`; empty: no explicit bind).
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
    pub sources: Vec<IpAddr>,
}

impl Target {
    /// The target of thread `t`: the URL's server, and its share of `--source-ips`.
    pub fn of(o: &Opts, t: u64) -> Target {
        Target {
            addr: o.addr,
            host: o.host.clone(),
            sources: phases::sources(o, t as usize),
        }
    }

    /// The server at `addr` called `host`, without an explicit bind.
    pub fn unbound(addr: SocketAddr, host: &str) -> Target {
        Target {
            addr,
            host: host.to_string(),
            sources: Vec::new(),
        }
    }

    /// The source address of a thread's `n`th connection.
    fn source(&self, n: usize) -> Option<IpAddr> {
        (!self.sources.is_empty()).then(|| self.sources[n % self.sources.len()])
    }

    /// A plain TCP connection, the thread's `n`th, registered with `poll` as `token`.
    pub fn socket(&self, poll: &Poll, token: Token, n: usize) -> Result<Socket, String> {
        Socket::connect(poll, token, self.addr, self.source(n))
    }

    /// A WebSocket to `path`, the thread's `n`th connection, registered with `poll` as
    /// `token`, its upgrade request queued.
    pub fn ws(
        &self,
        poll: &Poll,
        token: Token,
        n: usize,
        path: &str,
        rng: &mut Rng,
    ) -> Result<Conn, String> {
        let sock = self.socket(poll, token, n)?;
        Ok(Conn::upgrade(sock, &self.host, path, rng))
    }
}

/// A non-blocking TCP connection registered with a poll.
pub struct Socket {
    sock: TcpStream,
    /// What arrived and is not used yet.
    pub rx: Vec<u8>,
    /// What is queued to be written.
    pub tx: Vec<u8>,
}

impl Socket {
    /// Connect to `addr` (from `src` if given) and register with `poll` as `token`.
    fn connect(
        poll: &Poll,
        token: Token,
        addr: SocketAddr,
        src: Option<IpAddr>,
    ) -> Result<Socket, String> {
        let mut sock = engine::open_socket(addr, src).map_err(|e| engine::classify(&e).0)?;
        poll.registry()
            .register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| format!("register: {e}"))?;
        Ok(Socket {
            sock,
            rx: Vec::new(),
            tx: Vec::new(),
        })
    }

    /// Write what is queued, as far as the socket takes it.
    pub fn flush(&mut self) -> Result<(), String> {
        while !self.tx.is_empty() {
            match self.sock.write(&self.tx) {
                Ok(n) => {
                    self.tx.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // Still connecting: the writable event comes later.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("write: {}", engine::classify(&e).0)),
            }
        }
        Ok(())
    }

    /// Read once into `rx`: true if something came, false if nothing is there (yet). `Err`
    /// when the connection is over.
    pub fn fill(&mut self) -> Result<bool, String> {
        let mut buf = [0u8; 16384];
        loop {
            match self.sock.read(&mut buf) {
                Ok(0) => return Err("closed by the server".into()),
                Ok(n) => {
                    self.rx.extend_from_slice(&buf[..n]);
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read: {}", engine::classify(&e).0)),
            }
        }
    }

    pub fn deregister(&mut self, poll: &Poll) {
        let _ = poll.registry().deregister(&mut self.sock);
    }
}

/// A client WebSocket.
pub struct Conn {
    link: Socket,
    /// `Some(accept)` until the 101 arrived.
    accept: Option<String>,
    /// A fragmented message being put together.
    frag: Option<Vec<u8>>,
}

/// A scenario whose units are several clients that set up, exchange and fail together, one
/// a side (a pair of `peerjs` or `mewconnect` clients): how a unit's connections are flushed
/// and read, written once.
pub trait Sides {
    /// Unit `i`'s connections by side, and the generator for masks (`None` if not started).
    fn sides(&mut self, i: usize) -> Option<(&mut [Option<Conn>], &mut Rng)>;
    /// A whole message came on `side` of unit `i`.
    fn on_message(&mut self, poll: &Poll, i: usize, side: usize, text: &[u8], running: bool);
    /// Unit `i` failed (once; its connections closed).
    fn fail(&mut self, poll: &Poll, i: usize, why: &str);

    /// Write what is queued on unit `i`'s connections.
    fn flush(&mut self, poll: &Poll, i: usize) {
        if let Some(Err(e)) = self.sides(i).map(|(conns, _)| flush_all(conns)) {
            self.fail(poll, i, &e);
        }
    }

    /// A socket of unit `i` is ready: write what is queued, read every side ([`read_all`]),
    /// hand the messages over, and write what they queued.
    fn drive(&mut self, poll: &Poll, i: usize, running: bool) {
        self.flush(poll, i);
        let mut msgs = Vec::new();
        let read = self
            .sides(i)
            .map(|(conns, rng)| read_all(conns, &mut msgs, rng));
        for (side, m) in msgs {
            self.on_message(poll, i, side, &m, running);
        }
        match read {
            Some(Err(e)) => self.fail(poll, i, &e),
            _ => self.flush(poll, i),
        }
    }
}

/// Write what is queued on every connection of `conns` (a unit's, by side); the first error.
fn flush_all(conns: &mut [Option<Conn>]) -> Result<(), String> {
    conns.iter_mut().flatten().try_for_each(Conn::flush)
}

/// Read every connection of `conns` (a unit's, by side), in order, and append the whole
/// messages that came to `out`, each with its side. `Err` as soon as one is over (the
/// connections after it are not read).
fn read_all(
    conns: &mut [Option<Conn>],
    out: &mut Vec<(usize, Vec<u8>)>,
    rng: &mut Rng,
) -> Result<(), String> {
    let mut msgs = Vec::new();
    for (side, c) in conns.iter_mut().enumerate() {
        let Some(c) = c else { continue };
        let read = c.read(&mut msgs, rng);
        out.extend(msgs.drain(..).map(|m| (side, m)));
        read?;
    }
    Ok(())
}

/// A unit failed: count it in `failed`, note `why` in `errors`, and close its connections
/// (deregistered and dropped).
pub fn fail(
    conns: &mut [Option<Conn>],
    poll: &Poll,
    failed: &AtomicU64,
    errors: &mut Vec<String>,
    why: &str,
) {
    failed.fetch_add(1, Relaxed);
    errors.push(why.to_string());
    for c in conns {
        if let Some(mut c) = c.take() {
            c.deregister(poll);
        }
    }
}

impl Conn {
    /// A WebSocket on `link`: its upgrade request for `path` queued.
    fn upgrade(mut link: Socket, host: &str, path: &str, rng: &mut Rng) -> Conn {
        let (req, accept) = ws::upgrade_request(host, path, rng);
        link.tx.extend_from_slice(&req);
        Conn {
            link,
            accept: Some(accept),
            frag: None,
        }
    }

    /// The upgrade is done (messages may be sent).
    pub fn is_open(&self) -> bool {
        self.accept.is_none()
    }

    /// Queue one text message.
    pub fn send(&mut self, text: &[u8], rng: &mut Rng) {
        ws::encode_frame(&mut self.link.tx, OP_TEXT, text, rng);
    }

    /// Write what is queued, as far as the socket takes it.
    pub fn flush(&mut self) -> Result<(), String> {
        self.link.flush()
    }

    /// Read what arrived and append the server's whole messages to `out`; pings are answered
    /// (queued, flushed by the caller). `Err` when the connection is over or broke the
    /// protocol.
    pub fn read(&mut self, out: &mut Vec<Vec<u8>>, rng: &mut Rng) -> Result<(), String> {
        while self.link.fill()? {
            self.parse(out, rng)?;
        }
        Ok(())
    }

    fn parse(&mut self, out: &mut Vec<Vec<u8>>, rng: &mut Rng) -> Result<(), String> {
        if let Some(accept) = &self.accept {
            match ws::parse_upgrade(&self.link.rx, accept) {
                Upgrade::Partial => return Ok(()),
                Upgrade::Done(n) => {
                    self.link.rx.drain(..n);
                    self.accept = None;
                }
                Upgrade::Status(code) => {
                    let text = String::from_utf8_lossy(&self.link.rx);
                    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
                    let body: String = body.trim().chars().take(80).collect();
                    return Err(format!("upgrade refused: HTTP {code} {body}"));
                }
                Upgrade::Invalid(why) => return Err(why.into()),
            }
        }
        let mut used = 0;
        while let Some(f) = ws::parse_frame(&self.link.rx[used..])? {
            let payload = &self.link.rx[used + f.payload.start..used + f.payload.end];
            match (f.opcode, &mut self.frag) {
                (OP_PING, _) => ws::encode_frame(&mut self.link.tx, OP_PONG, payload, rng),
                (OP_PONG, _) => {}
                (OP_CLOSE, _) => {
                    let code = match payload {
                        [a, b, ..] => u16::from_be_bytes([*a, *b]).to_string(),
                        _ => "none".into(),
                    };
                    return Err(format!("closed by the server (code {code})"));
                }
                (OP_TEXT | OP_BINARY, None) if f.fin => out.push(payload.to_vec()),
                (OP_TEXT | OP_BINARY, None) => self.frag = Some(payload.to_vec()),
                (OP_CONT, Some(m)) => {
                    if m.len() + payload.len() > ws::MAX_FRAME as usize {
                        return Err("message too large".into());
                    }
                    m.extend_from_slice(payload);
                    if f.fin {
                        out.extend(self.frag.take());
                    }
                }
                _ => return Err("protocol error from the server: bad fragmentation".into()),
            }
            used += f.payload.end;
        }
        self.link.rx.drain(..used);
        Ok(())
    }

    pub fn deregister(&mut self, poll: &Poll) {
        self.link.deregister(poll);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connected pair: a `Conn` on one end (registered with `poll`), the server's end raw.
    fn pair(poll: &Poll) -> (Conn, std::net::TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut rng = Rng::new(7);
        let addr = l.local_addr().unwrap();
        let target = Target {
            addr,
            host: "h".into(),
            sources: Vec::new(),
        };
        let c = target.ws(poll, Token(0), 0, "/p", &mut rng).unwrap();
        let (s, _) = l.accept().unwrap();
        (c, s)
    }

    fn read_all(c: &mut Conn, out: &mut Vec<Vec<u8>>) -> Result<(), String> {
        let mut rng = Rng::new(3);
        for _ in 0..200 {
            c.read(out, &mut rng)?;
            if !out.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        Ok(())
    }

    #[test]
    fn upgrade_then_whole_messages_pings_answered() {
        let poll = Poll::new().unwrap();
        let (mut c, mut s) = pair(&poll);
        for _ in 0..100 {
            c.flush().unwrap();
            if c.link.tx.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let mut head = vec![0u8; 4096];
        let n = s.read(&mut head).unwrap();
        let head = String::from_utf8_lossy(&head[..n]).into_owned();
        assert!(head.starts_with("GET /p HTTP/1.1\r\n"), "{head}");
        let key = head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap();
        assert!(!c.is_open());
        // The 101, a ping, a message in two fragments and a whole one, in one write.
        let mut w = format!(
            "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            ws::accept_for(key)
        )
        .into_bytes();
        w.extend_from_slice(&[0x89, 2, b'h', b'i']);
        w.extend_from_slice(&[0x01, 3, b'a', b'b', b'c']);
        w.extend_from_slice(&[0x80, 2, b'd', b'e']);
        w.extend_from_slice(&[0x81, 1, b'f']);
        s.write_all(&w).unwrap();
        let mut out = Vec::new();
        read_all(&mut c, &mut out).unwrap();
        assert!(c.is_open());
        assert_eq!(out, vec![b"abcde".to_vec(), b"f".to_vec()]);
        // The pong is queued, masked, with the ping's payload.
        let f = c.link.tx.clone();
        assert_eq!((f[0], f[1]), (0x8A, 0x82));
        let mut body = f[6..8].to_vec();
        ws::mask(&mut body, [f[2], f[3], f[4], f[5]]);
        assert_eq!(body, b"hi");
        // A close frame ends it, naming the code.
        s.write_all(&[0x88, 2, 0x03, 0xe8]).unwrap();
        out.clear();
        let e = read_all(&mut c, &mut out).unwrap_err();
        assert!(e.contains("1000"), "{e}");
    }

    #[test]
    fn a_refused_upgrade_names_the_status() {
        let poll = Poll::new().unwrap();
        let (mut c, mut s) = pair(&poll);
        s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\n\r\nno!")
            .unwrap();
        let e = read_all(&mut c, &mut Vec::new()).unwrap_err();
        assert!(e.starts_with("upgrade refused: HTTP 400 no!"), "{e}");
    }
}
