//! A harness that drives one dialect through the contract without sockets: a fake clock,
//! seeded randomness, and the outputs recorded per kind. The dialects' unit tests use it.

use super::sio::{Action, Raw, SioCx, SioDialect};
use super::{Answer, Cx, Dialect, Env, Handle, Kind, Locator, NoEnv, Output, Outputs, Placement};
use super::{Local, Message, Random, Seeded};
use crate::proto::http::{parse_request, HttpLimits, RequestHead, Response};

/// The head of a raw request.
pub fn head(raw: &str) -> RequestHead {
    let limits = HttpLimits {
        max_header_bytes: 64 * 1024,
        max_headers: 64,
    };
    parse_request(raw.as_bytes(), &limits)
        .expect("a valid request")
        .expect("a whole request")
        .0
}

/// A plain `GET` of `target` (a path with its query).
pub fn get(target: &str) -> RequestHead {
    head(&format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n"))
}

/// A valid WebSocket upgrade of `target`.
pub fn upgrade(target: &str) -> RequestHead {
    head(&format!(
        "GET {target} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ))
}

/// One dialect instance and what it asked of the shell.
pub struct Harness<D: Dialect> {
    pub d: D,
    /// The instance's clock (ms).
    pub now: u64,
    /// Wall-clock ms.
    pub unix_ms: u64,
    pub here: Locator,
    pub rand: Seeded,
    pub env: Box<dyn Env>,
    next_conn: u64,
    out: Outputs,
    pub sent: Vec<(Handle, Kind, Vec<u8>)>,
    pub closed: Vec<(Handle, u16, String)>,
    pub responded: Vec<(Handle, Response)>,
    pub piped: Vec<(Handle, Handle)>,
    /// Operations for the outside store, in order.
    pub stored: Vec<(Handle, Vec<u8>)>,
}

impl<D: Dialect> Harness<D> {
    pub fn new(d: D) -> Self {
        Harness {
            d,
            now: 1_000,
            unix_ms: 1_700_000_000_000,
            here: Locator(0),
            rand: Seeded(42),
            env: Box::new(NoEnv),
            next_conn: 0,
            out: Outputs::default(),
            sent: Vec::new(),
            closed: Vec::new(),
            responded: Vec::new(),
            piped: Vec::new(),
            stored: Vec::new(),
        }
    }

    pub fn with_env(mut self, env: impl Env + 'static) -> Self {
        self.env = Box::new(env);
        self
    }

    /// A handle for a new connection.
    pub fn conn(&mut self) -> Handle {
        self.next_conn += 1;
        Handle::from_raw(self.next_conn)
    }

    fn call<R>(&mut self, f: impl FnOnce(&mut D, &mut Cx<'_>) -> R) -> R {
        let r = self.call_alone(f);
        self.collect();
        r
    }

    /// `f` on the dialect with the harness's context; what it queues stays queued.
    fn call_alone<R>(&mut self, f: impl FnOnce(&mut D, &mut Cx<'_>) -> R) -> R {
        let mut cx = Cx {
            now: self.now,
            unix_ms: self.unix_ms,
            here: self.here,
            rand: &mut self.rand,
            env: &mut *self.env,
            out: &mut self.out,
            direct: None,
        };
        f(&mut self.d, &mut cx)
    }

    /// Records what the dialect asked for; tells and replies go back to it (one instance owns
    /// every key and serves every connection), until nothing is left.
    fn collect(&mut self) {
        loop {
            let local = self.out.take_local();
            self.record_outputs();
            if local.is_empty() {
                return;
            }
            for l in local {
                self.call_alone(|d, cx| match l {
                    Local::Tell { from, key, payload } => d.on_told(cx, from, &key, &payload),
                    Local::Reply { to, payload } => d.on_reply(cx, to, &payload),
                });
            }
        }
    }

    fn record_outputs(&mut self) {
        for (o, bytes) in self.out.iter() {
            match o {
                Output::Send { to, kind, .. } => self.sent.push((*to, *kind, bytes.to_vec())),
                Output::Close { conn, code, reason } => {
                    self.closed.push((*conn, *code, reason.to_string()))
                }
                Output::Respond { conn, response } => {
                    self.responded.push((*conn, (**response).clone()))
                }
                Output::Pipe { a, b } => self.piped.push((*a, *b)),
                Output::Store { conn, .. } => self.stored.push((*conn, bytes.to_vec())),
                Output::Tell { .. } | Output::Reply { .. } => {}
            }
        }
        self.out.clear();
    }

    pub fn place(&mut self, req: &RequestHead) -> Placement {
        self.d.place(req, &mut self.rand)
    }

    /// Place `req` (it must not be answered by placement) and hand it to the instance on a
    /// new connection.
    pub fn request(&mut self, req: &RequestHead) -> (Handle, Answer) {
        let key = match self.place(req) {
            Placement::Key(k) => Some(k),
            Placement::Here | Placement::At(_) => None,
            Placement::Answer(r) => panic!("answered at placement: {r:?}"),
        };
        let conn = self.conn();
        let a = self.call(|d, cx| d.on_request(cx, conn, key.as_deref(), req));
        (conn, a)
    }

    /// Hand `req` to the instance on `conn`, placed by `key`.
    pub fn call_request(&mut self, conn: Handle, key: Option<&str>, req: &RequestHead) -> Answer {
        self.call(|d, cx| d.on_request(cx, conn, key, req))
    }

    /// Upgrade `target`; panics unless the dialect accepts.
    pub fn open(&mut self, target: &str) -> Handle {
        let (conn, a) = self.request(&upgrade(target));
        assert!(matches!(a, Answer::Upgrade), "{target}: {a:?}");
        conn
    }

    pub fn body(&mut self, conn: Handle, req: &RequestHead, body: &[u8]) -> Answer {
        self.call(|d, cx| d.on_body(cx, conn, req, body))
    }

    /// The outside store's result for `conn`.
    pub fn stored_result(&mut self, conn: Handle, result: &[u8]) {
        self.call(|d, cx| d.on_stored(cx, conn, result))
    }

    /// A message of `kind` (text must be UTF-8, as the shell delivers nothing else).
    pub fn message(&mut self, conn: Handle, kind: Kind, payload: &[u8]) {
        let msg = match kind {
            Kind::Text => Message::Text(std::str::from_utf8(payload).expect("UTF-8 text")),
            Kind::Binary => Message::Binary(payload),
        };
        self.call(|d, cx| d.on_message(cx, conn, msg));
    }

    pub fn text(&mut self, conn: Handle, payload: &str) {
        self.call(|d, cx| d.on_message(cx, conn, Message::Text(payload)));
    }

    pub fn close(&mut self, conn: Handle) {
        self.call(|d, cx| d.on_close(cx, conn));
    }

    /// Let `ms` pass, running every deadline that falls due on the way, in order.
    pub fn advance(&mut self, ms: u64) {
        let end = self.now + ms;
        let mut rounds = 0;
        while let Some(t) = self.d.poll_timeout().filter(|&t| t <= end) {
            let t = t.max(self.now);
            self.unix_ms += t - self.now;
            self.now = t;
            self.call(|d, cx| d.on_timeout(cx));
            rounds += 1;
            assert!(rounds < 1_000_000, "a deadline stays due after on_timeout");
        }
        self.unix_ms += end - self.now;
        self.now = end;
    }

    pub fn take_sent(&mut self) -> Vec<(Handle, Kind, Vec<u8>)> {
        std::mem::take(&mut self.sent)
    }

    /// The text messages sent to `to`, taken out of the record.
    pub fn texts_to(&mut self, to: Handle) -> Vec<String> {
        let (mine, rest) = std::mem::take(&mut self.sent)
            .into_iter()
            .partition(|(h, _, _)| *h == to);
        self.sent = rest;
        mine.into_iter()
            .map(|(_, _, p)| String::from_utf8(p).expect("text"))
            .collect::<Vec<_>>()
    }

    pub fn take_closed(&mut self) -> Vec<(Handle, u16, String)> {
        std::mem::take(&mut self.closed)
    }

    /// Random bytes from the harness's generator.
    pub fn random(&mut self, buf: &mut [u8]) {
        self.rand.fill(buf)
    }
}

/// Drives a Socket.IO dialect ([`SioDialect`]) with a fake clock, seeded randomness and an
/// environment of the test's choosing; each call returns the actions it queued.
pub struct SioHarness<E: Env> {
    /// The layer's clock (ms).
    pub now: u64,
    /// Wall-clock ms.
    pub unix_ms: u64,
    pub rand: Seeded,
    pub env: E,
}

impl<E: Env> SioHarness<E> {
    pub fn new(env: E) -> Self {
        SioHarness {
            now: 0,
            unix_ms: 1_700_000_000_000,
            rand: Seeded(42),
            env,
        }
    }

    fn call(&mut self, f: impl FnOnce(&mut SioCx<'_>)) -> Vec<Action> {
        let mut out = Vec::new();
        let mut cx = Cx {
            now: self.now,
            unix_ms: self.unix_ms,
            here: Locator(0),
            rand: &mut self.rand,
            env: &mut self.env,
            out: &mut out,
            direct: None,
        };
        f(&mut cx);
        out
    }

    pub fn connect(
        &mut self,
        d: &mut dyn SioDialect,
        sid: &str,
        query: &[(String, String)],
    ) -> Vec<Action> {
        self.call(|cx| d.on_connect(cx, sid, query))
    }

    pub fn event(
        &mut self,
        d: &mut dyn SioDialect,
        sid: &str,
        event: &str,
        args: &[serde_json::Value],
    ) -> Vec<Action> {
        let args: Vec<Raw> = args.iter().map(Raw::from_value).collect();
        self.call(|cx| d.on_event(cx, sid, event, &args))
    }

    /// An event whose arguments are the elements of the JSON array `args`, as written.
    pub fn event_text(
        &mut self,
        d: &mut dyn SioDialect,
        sid: &str,
        event: &str,
        args: &str,
    ) -> Vec<Action> {
        let args = Raw::elements(args).expect("a JSON array");
        self.call(|cx| d.on_event(cx, sid, event, &args))
    }

    pub fn disconnect(&mut self, d: &mut dyn SioDialect, sid: &str) -> Vec<Action> {
        self.call(|cx| d.on_disconnect(cx, sid))
    }

    /// `on_timeout` at `now` (the clock moves there first).
    pub fn timeout(&mut self, d: &mut dyn SioDialect, now: u64) -> Vec<Action> {
        self.now = now;
        self.call(|cx| d.on_timeout(cx))
    }
}

/// An environment with a fixed ICE list (and no TURN token).
pub struct StaticIce(pub serde_json::Value);

impl Env for StaticIce {
    fn ice_servers(&mut self, _user: &str) -> super::IceServers {
        super::IceServers {
            servers: self.0.clone(),
            token: serde_json::Value::Null,
        }
    }
}
