//! State-by-state tests of the connection machine, in virtual time.

use super::driver::{self, Decide, Decision, Event, Outbox};
use super::*;
use crate::proto::ws::FrameHeader;

// ── fixture ────────────────────────────────────────────────────────────────────────────────

/// The decisions (through `driver`, as the shell takes them) and what was observed.
#[derive(Default)]
struct TestApp {
    /// Answer `/elsewhere` with `Relocate` while set.
    relocate: bool,
    handshakes: Vec<Event>,
    messages: Vec<(DataKind, Vec<u8>)>,
    closes: Vec<Option<u16>>,
    bodies: Vec<Vec<u8>>,
}

impl Decide for TestApp {
    fn route(&mut self, _now: Tick, head: &RequestHead) -> Decision {
        match head.path.as_str() {
            "/echo" => Decision::Upgrade,
            "/healthz" => Decision::Respond(Response::text(200, "ok")),
            "/elsewhere" if self.relocate => Decision::Relocate,
            "/elsewhere" => Decision::Upgrade,
            "/body" => Decision::Body { max: 64 },
            "/hold" => Decision::Hold {
                until: Tick(5000),
                fallback: Response::text(200, "fallback"),
            },
            _ => Decision::Respond(Response::text(404, "not found")),
        }
    }
    fn body(&mut self, _now: Tick, head: &RequestHead, body: &[u8]) -> Response {
        self.bodies.push(body.to_vec());
        let mut b = format!("{} ", head.path).into_bytes();
        b.extend_from_slice(body);
        Response::new(200, "text/plain", b)
    }
    fn message(&mut self, _now: Tick, kind: DataKind, payload: &[u8], out: &mut Outbox<'_>) {
        self.messages.push((kind, payload.to_vec()));
        out.send(kind, payload);
    }
    fn event(&mut self, e: Event) {
        match e {
            Event::Closed(code) => self.closes.push(code),
            e => self.handshakes.push(e),
        }
    }
}

struct T {
    conn: Conn,
    limits: Limits,
    now: Tick,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    counters: Counters,
    app: TestApp,
}

impl T {
    fn new() -> T {
        let limits = Limits::default();
        T {
            conn: Conn::new(Tick(0)),
            limits,
            now: Tick(0),
            inbuf: Vec::new(),
            out: Vec::new(),
            counters: Counters::default(),
            app: TestApp::default(),
        }
    }

    /// Fresh connection already upgraded on `/echo`, output cleared.
    fn open() -> T {
        let mut t = T::new();
        t.send(&upgrade("/echo"));
        assert!(t.take_out().starts_with(b"HTTP/1.1 101"));
        t
    }

    /// Deliver bytes as the shell would: anything not consumed stays for the next call.
    fn send(&mut self, bytes: &[u8]) -> usize {
        self.inbuf.extend_from_slice(bytes);
        let used = driver::read(
            &mut self.conn,
            self.now,
            &self.limits,
            &mut self.inbuf,
            &mut self.out,
            &mut self.counters,
            &mut self.app,
        );
        self.inbuf.drain(..used);
        used
    }

    fn advance(&mut self, d: Duration) {
        self.now = self.now.after(d);
        driver::timeout(
            &mut self.conn,
            self.now,
            &self.limits,
            &mut self.out,
            &mut self.counters,
            &mut self.app,
        );
    }

    fn eof(&mut self) {
        driver::eof(&mut self.conn, &self.counters, &mut self.app);
    }

    fn begin_close(&mut self, code: u16, reason: &str) {
        driver::close(
            &mut self.conn,
            self.now,
            code,
            reason,
            &mut self.out,
            &self.counters,
            &mut self.app,
        );
    }

    fn take_out(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Server frames written so far (and clears them).
    fn frames(&mut self) -> Vec<(OpCode, Vec<u8>)> {
        let out = self.take_out();
        let mut v = Vec::new();
        let mut pos = 0;
        while pos < out.len() {
            let (h, n) = FrameHeader::parse(&out[pos..])
                .expect("server frame parses")
                .expect("whole frame");
            assert!(h.mask.is_none(), "server frames are never masked");
            let end = pos + n + h.payload_len as usize;
            v.push((h.opcode, out[pos + n..end].to_vec()));
            pos = end;
        }
        v
    }
}

fn upgrade(path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: sigyard.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// A masked client frame.
fn cframe(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut f = vec![(u8::from(fin) << 7) | opcode.as_u8()];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

// ── ExpectRequest ──────────────────────────────────────────────────────────────────────────

#[test]
fn expect_request_partial_head_consumes_nothing() {
    let mut t = T::new();
    assert_eq!(t.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n"), 0);
    assert!(t.out.is_empty());
    assert!(t.conn.wants_read(0, 1));
}

#[test]
fn expect_request_pipelined_requests_each_answered_in_order() {
    let mut t = T::new();
    let two = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(t.send(two), two.len());
    let out = String::from_utf8(t.take_out()).unwrap();
    let first = out.find("200 OK").expect("first answered");
    let second = out.find("404 Not Found").expect("second answered");
    assert!(first < second);
    assert!(!t.conn.is_closed(), "keep-alive keeps the connection");
}

#[test]
fn expect_request_connection_close_closes_after_response() {
    let mut t = T::new();
    t.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(String::from_utf8(t.take_out())
        .unwrap()
        .starts_with("HTTP/1.1 200"));
    assert!(t.conn.is_closed());
}

#[test]
fn drain_closes_between_requests_and_answers_the_one_under_way() {
    // Between requests: closed at once, nothing written.
    let mut t = T::new();
    t.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    t.take_out();
    assert!(t.conn.drain());
    assert!(t.take_out().is_empty());
    // Part of a request read: it is answered, without keep-alive, then the connection closes.
    let mut t = T::new();
    t.send(b"GET /healthz HTTP/1.1\r\n");
    assert!(!t.conn.drain());
    t.send(b"Host: x\r\n\r\n");
    let out = String::from_utf8(t.take_out()).unwrap();
    assert!(
        out.starts_with("HTTP/1.1 200") && out.contains("Connection: close"),
        "{out}"
    );
    assert!(t.conn.is_closed());
    // A fresh connection whose request has not come yet waits for it.
    let mut t = T::new();
    assert!(!t.conn.drain());
    t.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(String::from_utf8(t.take_out())
        .unwrap()
        .contains("Connection: close"));
    assert!(t.conn.is_closed());
}

#[test]
fn expect_request_unread_body_closes_after_response() {
    let mut t = T::new();
    t.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
    assert!(t.conn.is_closed());
}

#[test]
fn expect_request_invalid_upgrade_is_rejected_and_closed() {
    let mut t = T::new();
    t.send(b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n");
    assert!(String::from_utf8(t.take_out())
        .unwrap()
        .starts_with("HTTP/1.1 400"));
    assert!(t.conn.is_closed());
    assert!(matches!(
        t.app.handshakes[..],
        [Event::Rejected { status: 400, .. }]
    ));
}

#[test]
fn expect_request_handshake_timeout_answers_408() {
    let mut t = T::new();
    t.send(b"GET /heal");
    t.advance(t.limits.handshake_timeout - Duration::from_millis(1));
    assert!(t.out.is_empty());
    t.advance(Duration::from_millis(1));
    assert!(String::from_utf8(t.take_out())
        .unwrap()
        .starts_with("HTTP/1.1 408"));
    assert!(t.conn.is_closed());
    assert_eq!(t.counters.handshake_timeouts, 1);
}

#[test]
fn expect_request_keepalive_timeout_closes_silently() {
    let mut t = T::new();
    t.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    t.take_out();
    assert_eq!(
        t.conn.poll_timeout(&t.limits),
        Some(Tick(0).after(t.limits.http_keepalive_timeout))
    );
    t.advance(t.limits.http_keepalive_timeout);
    assert!(t.out.is_empty());
    assert!(t.conn.is_closed());
}

// ── ExpectBody ─────────────────────────────────────────────────────────────────────────────

fn post(body: &str) -> String {
    format!(
        "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The responses in `out`, as (status, body) pairs (every response has a Content-Length).
fn responses(out: &[u8]) -> Vec<(u16, String)> {
    let mut v = Vec::new();
    let mut rest = out;
    while !rest.is_empty() {
        let text = String::from_utf8_lossy(rest);
        let end = text.find("\r\n\r\n").expect("a whole head") + 4;
        let head = &text[..end];
        let status: u16 = head[9..12].parse().unwrap();
        let len = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .map_or(0, |n| n.trim().parse().unwrap());
        v.push((status, text[end..end + len].to_string()));
        rest = &rest[end + len..];
    }
    v
}

#[test]
fn expect_body_content_length_in_one_read_is_answered_and_kept_alive() {
    let mut t = T::new();
    let req = post(r#"{"method":"echo"}"#);
    assert_eq!(t.send(req.as_bytes()), req.len());
    let out = t.take_out();
    assert_eq!(
        responses(&out),
        vec![(200, r#"/body {"method":"echo"}"#.to_string())]
    );
    assert!(String::from_utf8_lossy(&out).contains("Connection: keep-alive"));
    assert!(!t.conn.is_closed() && t.conn.wants_read(0, 1));
}

#[test]
fn expect_body_split_byte_by_byte_is_reassembled() {
    let mut t = T::new();
    for b in post("hello, body").bytes() {
        t.send(&[b]);
    }
    assert!(t.inbuf.is_empty(), "every byte consumed");
    assert_eq!(
        responses(&t.take_out()),
        vec![(200, "/body hello, body".to_string())]
    );
}

#[test]
fn expect_body_chunked_is_decoded() {
    let mut t = T::new();
    let req = "POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
               5\r\nhello\r\n6;ext=1\r\n, body\r\n0\r\n\r\n";
    assert_eq!(t.send(req.as_bytes()), req.len());
    assert_eq!(
        responses(&t.take_out()),
        vec![(200, "/body hello, body".to_string())]
    );
    assert!(!t.conn.is_closed());
}

#[test]
fn expect_body_pipelined_requests_in_one_read_are_answered_in_order() {
    let mut t = T::new();
    let mut all = post("one");
    all +=
        "POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n";
    all += "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    all += &post("");
    all += &post("four");
    assert_eq!(t.send(all.as_bytes()), all.len());
    let got = responses(&t.take_out());
    let want = [
        (200, "/body one"),
        (200, "/body two"),
        (200, "ok\n"),
        (200, "/body "),
        (200, "/body four"),
    ];
    let want: Vec<(u16, String)> = want.iter().map(|(s, b)| (*s, b.to_string())).collect();
    assert_eq!(got, want);
    assert_eq!(t.app.bodies.len(), 4);
}

#[test]
fn expect_body_without_length_is_empty() {
    let mut t = T::new();
    t.send(b"POST /body HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(responses(&t.take_out()), vec![(200, "/body ".to_string())]);
    assert!(!t.conn.is_closed());
}

#[test]
fn expect_body_too_large_content_length_is_413_before_reading() {
    let mut t = T::new();
    let used = t.send(b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 65\r\n\r\nabc");
    assert_eq!(
        used,
        3 + "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 65\r\n\r\n".len()
    );
    let out = String::from_utf8(t.take_out()).unwrap();
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    assert!(out.contains("Connection: close"));
    assert!(t.conn.is_closed() && t.app.bodies.is_empty());
    // 64 bytes exactly is fine.
    let mut t = T::new();
    t.send(post(&"x".repeat(64)).as_bytes());
    assert_eq!(responses(&t.take_out())[0].0, 200);
}

#[test]
fn expect_body_chunked_past_the_limit_is_413() {
    let mut t = T::new();
    t.send(b"POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    t.send(format!("20\r\n{}\r\n", "a".repeat(32)).as_bytes());
    assert!(t.out.is_empty() && !t.conn.is_closed());
    t.send(b"21\r\n");
    let out = String::from_utf8(t.take_out()).unwrap();
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    assert!(t.conn.is_closed());
}

#[test]
fn expect_body_bad_chunk_syntax_is_400() {
    let mut t = T::new();
    t.send(b"POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX");
    let out = String::from_utf8(t.take_out()).unwrap();
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(t.conn.is_closed() && t.app.bodies.is_empty());
}

#[test]
fn expect_body_slow_body_gets_408() {
    let mut t = T::new();
    t.send(b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
    let deadline = t.conn.poll_timeout(&t.limits).expect("a body deadline");
    assert_eq!(deadline, Tick(0).after(t.limits.http_body_timeout));
    t.advance(t.limits.http_body_timeout - Duration::from_millis(1));
    assert!(t.out.is_empty() && !t.conn.is_closed());
    t.advance(Duration::from_millis(1));
    let out = String::from_utf8(t.take_out()).unwrap();
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(t.conn.is_closed() && t.app.bodies.is_empty());
}

#[test]
fn expect_body_expect_continue_gets_100_first() {
    let mut t = T::new();
    t.send(b"POST /body HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
    assert_eq!(t.take_out(), b"HTTP/1.1 100 Continue\r\n\r\n");
    t.send(b"hi");
    assert_eq!(
        responses(&t.take_out()),
        vec![(200, "/body hi".to_string())]
    );
    // Body already sent with the head: no interim response.
    let mut t = T::new();
    t.send(
        b"POST /body HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
    );
    assert!(t.take_out().starts_with(b"HTTP/1.1 200"));
}

#[test]
fn expect_body_connection_close_closes_after_the_answer() {
    let mut t = T::new();
    t.send(b"POST /body HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi");
    assert!(String::from_utf8_lossy(&t.take_out()).contains("Connection: close"));
    assert!(t.conn.is_closed());
}

#[test]
fn expect_body_eof_midway_closes_unanswered() {
    let mut t = T::new();
    t.send(b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
    t.eof();
    assert!(t.conn.is_closed() && t.out.is_empty() && t.app.bodies.is_empty());
}

// ── Open ───────────────────────────────────────────────────────────────────────────────────

#[test]
fn open_frames_sent_with_the_upgrade_request_are_processed() {
    let mut t = T::new();
    let mut bytes = upgrade("/echo");
    bytes.extend(cframe(true, OpCode::Text, b"early"));
    assert_eq!(t.send(&bytes), bytes.len());
    let out = t.take_out();
    let head_end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    t.out = out[head_end..].to_vec();
    assert_eq!(t.frames(), vec![(OpCode::Text, b"early".to_vec())]);
}

#[test]
fn open_echo_preserves_kind() {
    let mut t = T::open();
    t.send(&cframe(true, OpCode::Binary, &[0, 1, 2]));
    t.send(&cframe(true, OpCode::Text, "héllo".as_bytes()));
    assert_eq!(
        t.frames(),
        vec![
            (OpCode::Binary, vec![0, 1, 2]),
            (OpCode::Text, "héllo".as_bytes().to_vec())
        ]
    );
    assert_eq!((t.counters.messages_in, t.counters.messages_out), (2, 2));
}

#[test]
fn open_fragmented_message_is_reassembled_with_interleaved_ping() {
    let mut t = T::open();
    t.send(&cframe(false, OpCode::Text, b"frag"));
    t.send(&cframe(true, OpCode::Ping, b"p"));
    t.send(&cframe(false, OpCode::Continuation, b"men"));
    t.send(&cframe(true, OpCode::Continuation, b"ted"));
    assert_eq!(
        t.frames(),
        vec![
            (OpCode::Pong, b"p".to_vec()),
            (OpCode::Text, b"fragmented".to_vec())
        ]
    );
    assert!(t.conn.partial.is_none(), "reassembly buffer released");
}

#[test]
fn open_frame_split_byte_by_byte_still_echoes() {
    let mut t = T::open();
    let f = cframe(true, OpCode::Text, b"one byte at a time");
    for b in &f {
        t.send(&[*b]);
    }
    assert_eq!(
        t.frames(),
        vec![(OpCode::Text, b"one byte at a time".to_vec())]
    );
}

#[test]
fn open_close_is_answered_with_same_code_then_closed() {
    let mut t = T::open();
    t.send(&cframe(true, OpCode::Close, &close_payload(1000, "bye")));
    assert_eq!(t.frames(), vec![(OpCode::Close, close_payload(1000, ""))]);
    assert!(t.conn.is_closed());
    assert_eq!(t.app.closes, vec![Some(1000)]);
}

#[test]
fn peer_done_only_when_its_close_was_the_last_input() {
    let mut t = T::open();
    t.send(&cframe(true, OpCode::Close, &close_payload(1000, "bye")));
    assert!(t.conn.is_closed() && t.conn.peer_done());

    // Bytes after the close frame (which the peer should not send): they are dropped, and
    // closing at once could answer them with a reset, so the shell lingers.
    let mut t = T::open();
    let mut input = cframe(true, OpCode::Close, &close_payload(1000, ""));
    input.extend(cframe(true, OpCode::Text, b"late"));
    t.send(&input);
    assert!(t.conn.is_closed() && !t.conn.peer_done());

    let mut t = T::open();
    t.eof();
    assert!(t.conn.peer_done());

    // Our own close (a timeout, a shutdown): the peer has not finished.
    let mut t = T::open();
    t.begin_close(1001, "bye");
    assert!(!t.conn.peer_done());
}

#[test]
fn open_empty_close_is_answered_with_1000() {
    let mut t = T::open();
    t.send(&cframe(true, OpCode::Close, b""));
    assert_eq!(t.frames(), vec![(OpCode::Close, close_payload(1000, ""))]);
}

#[test]
fn open_protocol_error_closes_1002_and_discards_the_rest() {
    let mut t = T::open();
    let mut bad = cframe(true, OpCode::Text, b"x");
    bad[0] |= 0x40; // RSV1 without an extension
    bad.extend(cframe(true, OpCode::Text, b"after"));
    t.send(&bad);
    let frames = t.frames();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].0, OpCode::Close);
    assert_eq!(&frames[0].1[..2], &1002u16.to_be_bytes());
    assert!(t.app.messages.is_empty());
    assert_eq!(t.counters.protocol_errors, 1);
    // Still waiting for the peer to go; the linger deadline ends it.
    assert!(!t.conn.is_closed());
    t.advance(CLOSE_LINGER);
    assert!(t.conn.is_closed());
}

#[test]
fn open_invalid_utf8_closes_1007() {
    let mut t = T::open();
    t.send(&cframe(true, OpCode::Text, &[0xce, 0xba, 0xff]));
    let frames = t.frames();
    assert_eq!(&frames[0].1[..2], &1007u16.to_be_bytes());
}

#[test]
fn text_is_checked_as_utf8_whole_or_in_pieces_and_while_closing() {
    let two = |a: &[u8], b: &[u8]| [a, b].concat();
    // Whole in one read (checked by the connection) or cut anywhere (by the decoder as it
    // comes): delivered the same.
    let text = "κόσμε 𝄞 ok".as_bytes();
    let whole = cframe(true, OpCode::Text, text);
    for cut in 0..whole.len() {
        let mut t = T::open();
        t.send(&whole[..cut]);
        t.send(&whole[cut..]);
        assert_eq!(
            t.app.messages,
            [(DataKind::Text, text.to_vec())],
            "cut at {cut}"
        );
    }
    // Not UTF-8 in one read: 1007, nothing delivered or counted but the error.
    let mut t = T::open();
    t.send(&cframe(true, OpCode::Text, &[b'a', 0xc0, 0x80]));
    assert_eq!(&t.frames()[0].1[..2], &1007u16.to_be_bytes());
    assert!(t.app.messages.is_empty());
    assert_eq!((t.counters.frames_in, t.counters.protocol_errors), (0, 1));
    // A frame's first bytes, already impossible: 1007 before the rest arrives.
    let mut t = T::open();
    let bad = cframe(true, OpCode::Text, &two(&[0xed, 0xa0], &[b'x'; 100]));
    t.send(&bad[..10]);
    assert_eq!(&t.frames()[0].1[..2], &1007u16.to_be_bytes());
    // A fragmented message whose second fragment is not UTF-8: 1007 at that fragment.
    let mut t = T::open();
    t.send(&cframe(false, OpCode::Text, "é".as_bytes()));
    t.send(&cframe(false, OpCode::Continuation, &[0xff]));
    assert_eq!(&t.frames()[0].1[..2], &1007u16.to_be_bytes());
    assert!(t.app.messages.is_empty());
    // After our close, text is dropped but still checked: bad UTF-8 is a protocol error.
    let mut t = T::open();
    t.begin_close(1001, "bye");
    t.take_out();
    t.send(&two(
        &cframe(true, OpCode::Text, "fine".as_bytes()),
        &cframe(true, OpCode::Text, &[0xf5]),
    ));
    assert!(t.out.is_empty() && t.app.messages.is_empty());
    assert_eq!((t.counters.frames_in, t.counters.protocol_errors), (1, 1));
}

#[test]
fn open_oversized_frame_closes_1009_before_the_payload_arrives() {
    let mut t = T::open();
    let f = cframe(true, OpCode::Binary, &vec![0; t.limits.max_frame_size + 1]);
    t.send(&f[..16]); // header only
    assert_eq!(&t.frames()[0].1[..2], &1009u16.to_be_bytes());
}

#[test]
fn open_silence_gets_a_ping_then_the_idle_close() {
    let mut t = T::open();
    t.limits.ping_interval = Duration::from_secs(30);
    t.limits.idle_timeout = Duration::from_secs(75);
    t.advance(Duration::from_secs(30));
    assert_eq!(t.frames(), vec![(OpCode::Ping, vec![])]);
    t.advance(Duration::from_secs(30));
    assert_eq!(t.frames(), vec![(OpCode::Ping, vec![])]);
    t.advance(Duration::from_secs(15));
    let f = t.frames();
    assert_eq!(f[0].0, OpCode::Close);
    assert_eq!(&f[0].1[..2], &1001u16.to_be_bytes());
    assert!(t.conn.is_closed());
    assert_eq!((t.counters.pings_sent, t.counters.idle_timeouts), (2, 1));
}

#[test]
fn open_traffic_postpones_ping() {
    let mut t = T::open();
    t.limits.ping_interval = Duration::from_secs(30);
    t.now = t.now.after(Duration::from_secs(20));
    t.send(&cframe(true, OpCode::Pong, b""));
    t.advance(Duration::from_secs(15));
    assert!(
        t.out.is_empty(),
        "no ping 35 s after upgrade when a pong came at 20 s"
    );
    t.advance(Duration::from_secs(15));
    assert_eq!(t.frames(), vec![(OpCode::Ping, vec![])]);
}

#[test]
fn open_back_pressure_above_high_water() {
    let t = T::open();
    assert!(t.conn.wants_read(100, 101));
    assert!(!t.conn.wants_read(101, 101));
}

// ── Closing ────────────────────────────────────────────────────────────────────────────────

#[test]
fn closing_begin_close_sends_1001_drops_data_and_ends_on_peer_close() {
    let mut t = T::open();
    t.begin_close(1001, "server shutting down");
    let f = t.frames();
    assert_eq!(f[0].0, OpCode::Close);
    assert_eq!(&f[0].1[2..], b"server shutting down");
    t.send(&cframe(true, OpCode::Text, b"ignored"));
    assert!(t.out.is_empty() && t.app.messages.is_empty());
    t.send(&cframe(true, OpCode::Close, &close_payload(1001, "")));
    assert!(t.out.is_empty(), "no second close frame");
    assert!(t.conn.is_closed());
}

#[test]
fn closing_linger_expires() {
    let mut t = T::open();
    t.begin_close(1001, "");
    t.advance(CLOSE_LINGER - Duration::from_millis(1));
    assert!(!t.conn.is_closed());
    t.advance(Duration::from_millis(1));
    assert!(t.conn.is_closed());
}

#[test]
fn eof_closes_from_any_state() {
    let mut t = T::open();
    t.eof();
    assert!(t.conn.is_closed() && !t.conn.wants_read(0, 1));
    assert_eq!(t.app.closes, vec![None]);
}

#[test]
fn conn_state_is_small() {
    // An idle connection's protocol state; the shell adds socket and buffer pointers.
    let size = std::mem::size_of::<Conn>();
    assert!(size <= 72, "Conn is {size} bytes");
}

// ── Open, piped ────────────────────────────────────────────────────────────────────────────

impl T {
    /// Feed piped input until it is all consumed; returns the forwarded bytes (headers and
    /// payload as the peer would receive them) and whether the side ended (with its code).
    fn pipe(&mut self, bytes: &[u8]) -> (Vec<u8>, Option<u16>) {
        self.inbuf.extend_from_slice(bytes);
        let mut fwd = Vec::new();
        loop {
            let (step, used) = self.conn.read(
                self.now,
                &self.limits,
                &mut self.inbuf,
                &mut self.out,
                &mut self.counters,
            );
            match step {
                Step::Forward {
                    header,
                    header_len,
                    payload,
                } => {
                    fwd.extend_from_slice(&header[..header_len as usize]);
                    fwd.extend_from_slice(&self.inbuf[payload]);
                    self.inbuf.drain(..used);
                }
                Step::Ended { code } => {
                    self.inbuf.drain(..used);
                    return (fwd, Some(code));
                }
                _ => {
                    self.inbuf.drain(..used);
                    return (fwd, None);
                }
            }
        }
    }
}

/// An unmasked frame, as the peer should receive it.
fn sframe(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    crate::proto::ws::encode_frame(fin, opcode, payload, &mut v);
    v
}

#[test]
fn piped_frames_are_forwarded_with_type_fin_and_continuations() {
    let mut t = T::open();
    assert!(t.conn.start_piping());
    let mut input = cframe(false, OpCode::Text, b"he");
    input.extend(cframe(true, OpCode::Continuation, b"llo"));
    input.extend(cframe(true, OpCode::Binary, &[1, 2, 3]));
    let (fwd, ended) = t.pipe(&input);
    let mut want = sframe(false, OpCode::Text, b"he");
    want.extend(sframe(true, OpCode::Continuation, b"llo"));
    want.extend(sframe(true, OpCode::Binary, &[1, 2, 3]));
    assert_eq!(fwd, want);
    assert_eq!(ended, None);
    assert!(
        t.app.messages.is_empty(),
        "nothing is reassembled for the App"
    );
}

#[test]
fn piped_frame_split_across_reads_keeps_one_header() {
    let mut t = T::open();
    t.conn.start_piping();
    let f = cframe(true, OpCode::Binary, &(0..200u8).collect::<Vec<_>>());
    let (mut fwd, _) = t.pipe(&f[..50]);
    assert!(t.conn.mid_frame());
    let (rest, _) = t.pipe(&f[50..]);
    assert!(!t.conn.mid_frame());
    fwd.extend(rest);
    assert_eq!(
        fwd,
        sframe(true, OpCode::Binary, &(0..200u8).collect::<Vec<_>>())
    );
}

#[test]
fn piped_ping_is_answered_locally_and_close_ends_the_side() {
    let mut t = T::open();
    t.conn.start_piping();
    let mut input = cframe(true, OpCode::Ping, b"p");
    input.extend(cframe(true, OpCode::Text, b"last"));
    input.extend(cframe(true, OpCode::Close, &close_payload(4001, "done")));
    input.extend(cframe(true, OpCode::Text, b"after close"));
    let (fwd, ended) = t.pipe(&input);
    assert_eq!(fwd, sframe(true, OpCode::Text, b"last"));
    assert_eq!(ended, Some(4001));
    assert_eq!(
        t.frames(),
        vec![
            (OpCode::Pong, b"p".to_vec()),
            (OpCode::Close, close_payload(4001, ""))
        ]
    );
    assert!(t.conn.is_closed());
}

#[test]
fn piping_waits_for_a_message_boundary() {
    let mut t = T::open();
    t.send(&cframe(false, OpCode::Text, b"half"));
    assert!(
        !t.conn.start_piping(),
        "the message's start already went to reassembly"
    );
    let mut rest = cframe(true, OpCode::Continuation, b" done");
    let after = cframe(true, OpCode::Binary, b"next");
    rest.extend(&after);
    // The half-read message completes for the App; the machine switches right there and
    // leaves the next frame unconsumed for the piped path.
    assert_eq!(t.send(&rest), rest.len() - after.len());
    assert_eq!(
        t.app.messages,
        vec![(DataKind::Text, b"half done".to_vec())]
    );
    assert!(t.conn.is_piped());
    let (fwd, _) = t.pipe(b"");
    assert_eq!(fwd, sframe(true, OpCode::Binary, b"next"));
}

#[test]
fn piped_protocol_error_closes_this_side_and_ends_with_1001() {
    let mut t = T::open();
    t.conn.start_piping();
    let mut bad = cframe(true, OpCode::Text, b"x");
    bad[0] |= 0x20; // RSV2
    let (fwd, ended) = t.pipe(&bad);
    assert!(fwd.is_empty());
    assert_eq!(ended, Some(1001));
    assert_eq!(&t.frames()[0].1[..2], &1002u16.to_be_bytes());
}

// ── relocating a request ──────────────────────────────────────────────────────────────────

#[test]
fn relocate_consumes_nothing_and_parks_until_read_again() {
    let mut t = T::new();
    t.app.relocate = true;
    let mut bytes = upgrade("/elsewhere");
    bytes.extend_from_slice(&cframe(true, OpCode::Text, b"early"));
    assert_eq!(t.send(&bytes), 0, "the request stays in the input");
    assert!(t.take_out().is_empty() && t.app.handshakes.is_empty());
    assert!(t.conn.is_parked() && t.conn.is_handshaking());
    assert!(!t.conn.wants_read(0, 1 << 20));
    assert_eq!(t.conn.poll_timeout(&t.limits), None);
    assert!(!t.conn.is_websocket());
    // Nothing more is read while relocating.
    assert_eq!(t.send(b""), 0);
    // On the new core: unparked, the same bytes are read from the start and answered there.
    t.app.relocate = false;
    t.now = Tick(5000);
    t.conn.unpark(t.now);
    assert!(!t.conn.is_parked());
    assert_eq!(
        t.conn.poll_timeout(&t.limits),
        Some(Tick(5000).after(t.limits.handshake_timeout))
    );
    let used = t.send(b"");
    assert_eq!(used, bytes.len());
    let out = t.take_out();
    assert!(out.starts_with(b"HTTP/1.1 101"));
    assert_eq!(t.app.messages, vec![(DataKind::Text, b"early".to_vec())]);
}

#[test]
fn relocating_connection_closes_on_shutdown() {
    let mut t = T::new();
    t.app.relocate = true;
    t.send(&upgrade("/elsewhere"));
    t.begin_close(1001, "bye");
    assert!(t.conn.is_closed());
    assert!(t.take_out().is_empty());
}

// ── held requests (long-polls) ─────────────────────────────────────────────────────────────

#[test]
fn held_request_is_answered_later_then_keep_alive_continues() {
    let mut t = T::new();
    t.send(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(t.take_out().is_empty(), "nothing written while held");
    assert!(t.conn.is_held() && t.conn.wants_read(0, 1024));
    // A pipelined request is not read while the first is held.
    assert_eq!(t.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
    assert_eq!(t.conn.poll_timeout(&t.limits), Some(Tick(5000)));
    let now = t.now;
    assert!(t
        .conn
        .answer_held(now, &Response::text(200, "later"), &mut t.out));
    let out = String::from_utf8(t.take_out()).unwrap();
    assert!(
        out.starts_with("HTTP/1.1 200") && out.ends_with("later\n"),
        "{out}"
    );
    assert!(!t.conn.is_held());
    assert!(!t
        .conn
        .answer_held(now, &Response::text(200, "twice"), &mut t.out));
    // The waiting request is served next.
    assert!(t.send(b"") > 0);
    let out = String::from_utf8(t.take_out()).unwrap();
    assert!(out.contains("200") && out.ends_with("ok\n"), "{out}");
}

#[test]
fn held_request_gets_its_fallback_at_the_deadline_and_eof_drops_it() {
    let mut t = T::new();
    t.send(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
    t.advance(Duration::from_millis(4999));
    assert!(t.take_out().is_empty());
    t.advance(Duration::from_millis(1));
    let out = String::from_utf8(t.take_out()).unwrap();
    assert!(out.ends_with("fallback\n"), "{out}");
    assert!(!t.conn.is_held() && !t.conn.is_closed());

    let mut t = T::new();
    t.send(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
    t.eof();
    assert!(t.conn.is_closed() && !t.conn.is_held());
    assert!(!t
        .conn
        .answer_held(Tick(1), &Response::text(200, "x"), &mut t.out));
    assert!(t.take_out().is_empty());
}
