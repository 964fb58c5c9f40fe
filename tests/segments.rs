//! What the server's last bytes look like on the wire, read off the loopback interface with a
//! packet socket (which needs CAP_NET_RAW: run as root, as `./run-tests` is; otherwise the test
//! says SKIPPED). Its own test binary, so no other test's traffic crowds the capture.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tungstenite::Message;

/// One TCP segment seen on `lo`: its ports, flags and payload length.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Segment {
    from: u16,
    to: u16,
    fin: bool,
    payload: usize,
}

/// A TCP segment from an IPv4 packet (as an `AF_PACKET`, `SOCK_DGRAM` socket gives it: no
/// link-layer header), or `None` for anything else.
fn segment(ip: &[u8]) -> Option<Segment> {
    if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 6 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let tcp = ip.get(ihl..total.min(ip.len()))?;
    if tcp.len() < 20 {
        return None;
    }
    let header = usize::from(tcp[12] >> 4) * 4;
    Some(Segment {
        from: u16::from_be_bytes([tcp[0], tcp[1]]),
        to: u16::from_be_bytes([tcp[2], tcp[3]]),
        fin: tcp[13] & 0x01 != 0,
        payload: total.checked_sub(ihl + header)?,
    })
}

/// A packet socket reading every IPv4 packet on the machine's interfaces, `lo` among them.
struct Capture(socket2::Socket);

impl Capture {
    /// `None` (and a SKIPPED line) without CAP_NET_RAW.
    fn start() -> Option<Capture> {
        let protocol = i32::from((libc::ETH_P_IP as u16).to_be());
        let sock = match socket2::Socket::new(
            socket2::Domain::PACKET,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::from(protocol)),
        ) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("SKIPPED: no packet socket here ({e}): it needs CAP_NET_RAW");
                return None;
            }
        };
        sock.set_recv_buffer_size(4 << 20).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Some(Capture(sock))
    }

    /// The segments captured so far from port `from` to port `to` (each may appear twice on
    /// `lo`: sent, and received).
    fn segments(&self, from: u16, to: u16) -> Vec<Segment> {
        let mut found = Vec::new();
        let mut buf = vec![0; 1 << 16];
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match (&self.0).read(&mut buf) {
                Ok(n) => found.extend(segment(&buf[..n]).filter(|s| s.from == from && s.to == to)),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    break
                }
                Err(e) => panic!("capture: {e}"),
            }
        }
        found
    }
}

/// Every FIN in `sent` carries bytes (the last ones the server had), and there is one.
fn fin_comes_with_the_last_bytes(sent: &[Segment]) {
    assert!(sent.iter().any(|s| s.fin), "no FIN captured: {sent:?}");
    assert!(
        sent.iter().filter(|s| s.fin).all(|s| s.payload > 0),
        "the FIN came apart from the last bytes: {sent:?}"
    );
}

/// A client connection to `addr`, and its port.
fn connected(addr: SocketAddr) -> (TcpStream, u16) {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let port = s.local_addr().unwrap().port();
    (s, port)
}

/// Read the server's answer on `s` to its end: it has `status`, and came with the FIN.
fn answered_then_closed(
    capture: &Capture,
    addr: SocketAddr,
    (mut s, port): (TcpStream, u16),
    status: u16,
) {
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status} ")),
        "{answer}"
    );
    fin_comes_with_the_last_bytes(&capture.segments(addr.port(), port));
}

/// A WebSocket the client closes: the server's close frame and its FIN travel in one segment
/// (the close frame is sent with `MSG_MORE`, and the close right after it adds the FIN), not
/// in two.
#[test]
fn the_close_frame_and_the_fin_share_one_segment() {
    let Some(capture) = Capture::start() else {
        return;
    };
    let h = start(|b| b.threads(1));
    let addr = h.plain_addr().unwrap();
    let (s, client_port) = connected(addr);
    let mut ws = tungstenite::client::client(format!("ws://{addr}/echo"), s)
        .unwrap()
        .0;
    ws.send(Message::binary(&b"hello"[..])).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(&b"hello"[..]));
    ws.close(None).unwrap();
    loop {
        match ws.read() {
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("closing: {e}"),
        }
    }
    // The socket is at its end: the server's FIN has come.
    let mut rest = [0; 16];
    assert_eq!(ws.get_mut().read(&mut rest).unwrap(), 0);
    fin_comes_with_the_last_bytes(&capture.segments(addr.port(), client_port));
    stop(h);
}

/// A request the server refuses and closes on (it half-closes, then waits for the client's
/// end): the response and the FIN travel in one segment.
#[test]
fn a_refusal_and_the_fin_share_one_segment() {
    let Some(capture) = Capture::start() else {
        return;
    };
    let h = start(|b| b.threads(1));
    let addr = h.plain_addr().unwrap();
    let mut client = connected(addr);
    client.0.write_all(b"NOT HTTP\r\n\r\n").unwrap();
    answered_then_closed(&capture, addr, client, 400);
    stop(h);
}

/// A connection past `--max-connections`, refused at once: the 503 and the FIN travel in one
/// segment.
#[test]
fn a_503_and_the_fin_share_one_segment() {
    let Some(capture) = Capture::start() else {
        return;
    };
    let h = start(|b| b.threads(1).limits(|l| l.max_connections = 1));
    let addr = h.plain_addr().unwrap();
    let held = TcpStream::connect(addr).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    answered_then_closed(&capture, addr, connected(addr), 503);
    drop(held);
    stop(h);
}
