//! The `eio_session` fuzz target: one Engine.IO 3 / Socket.IO 2 session table
//! ([`Sessions`]) with the test rooms dialect ([`Echo`]), driven by [`EioOp`]s the way the
//! shell drives it, against a model of the shell and of what the dialect asked for.
//!
//! Four session ids (slots) and small limits: 3 sessions, 2 KiB queued per session,
//! pingInterval 1 s, pingTimeout 0.5 s, upgrade timeout 0.3 s. Connections are fresh
//! [`Handle`]s. After every op the table is flushed and its outputs applied to a model of the
//! shell that keeps which GETs are held and which WebSockets are open; a WebSocket the table
//! closes, a client's close and a GET the client gives up on are reported back with
//! `conn_gone`, as the shell's `on_close` does, until the table has nothing left to flush.
//!
//! The dialect is [`Echo`] behind a recorder that notes, per session, every `echo` reply it
//! queues (the exact packet text). Checked:
//!
//! * nothing panics; handshakes are accepted or refused (`NoDialect`, `Full`, `Taken`) as the
//!   model says; `poll_get` / `poll_post` know exactly the sessions that exist; a WebSocket may
//!   attach exactly when `can_upgrade` says so;
//! * a held poll is answered at most once, and only while it waits (the model panics
//!   otherwise); every answer is a 200 v3 payload whose packets decode; nothing is sent on a
//!   closed WebSocket; a probing WebSocket gets nothing but `3probe` until its client sent `5`;
//! * the `echo` replies a session receives (by poll answers and WebSocket frames, across the
//!   probe and upgrade) are, in order, a prefix of those queued for it: none twice, none
//!   reordered, none skipped; a held poll never waits while a reply is undelivered; a session
//!   still in the table at the end receives all of its replies after one more GET;
//! * after time passes: no session outlives pingInterval + pingTimeout without a request from
//!   its client, no probe outlives the upgrade timeout without a `5`, and the next deadline is
//!   in the future;
//! * the table never holds more than its limit nor a session the model never created; rooms
//!   hold only live sessions; once every deadline has passed, the table, its rooms, the held
//!   polls and the open WebSockets are all empty.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use crate::proto::dialect::sio::{Apps, Raw, SioCx, SioDialect};
use crate::proto::dialect::{Cx, Handle, Locator, NoEnv, Output, Outputs, Seeded};
use crate::proto::eio::echo::Echo;
use crate::proto::eio::packet::{
    decode_packet, decode_payload, encode_payload, event_packet, EioError, Packet,
};
use crate::proto::eio::{Options, PollGet, Refused, Sessions};
use crate::proto::http::Response;

/// The dialect numbers of the table: 0 is not served, 1 is the recorder.
const UNSERVED: usize = 0;
const ECHO: usize = 1;

const SIDS: [&str; 4] = [
    "AAaaaaaaaaaaaaaaaaaa",
    "AAbbbbbbbbbbbbbbbbbb",
    "AAcccccccccccccccccc",
    "ABdddddddddddddddddd",
];
const INTERVAL: u64 = 1000;
const TIMEOUT: u64 = 500;
const UPGRADE: u64 = 300;
const MAX_SESSIONS: usize = 3;
const MAX_QUEUED: usize = 2048;
const MAX_OPS: usize = 256;

/// One step of the shell. `slot` picks one of 4 session ids (bit 7 has a meaning where said).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EioOp {
    /// A polling handshake (bit 7: for a dialect that is not installed).
    HsPoll {
        slot: u8,
    },
    /// A WebSocket handshake without sid (checked with `can_create` first, as the shell does).
    HsWs {
        slot: u8,
    },
    /// A poll GET on a fresh connection.
    Get {
        slot: u8,
    },
    /// A poll POST of packets from the menu (see [`menu`]).
    Post {
        slot: u8,
        items: Vec<u8>,
    },
    /// A poll POST of raw bytes.
    PostRaw {
        slot: u8,
        bytes: Vec<u8>,
    },
    /// A WebSocket attaches to upgrade (bit 7: without asking `can_upgrade` first).
    Attach {
        slot: u8,
    },
    /// A text frame of the menu on the slot's latest WebSocket.
    WsText {
        slot: u8,
        item: u8,
    },
    /// A text frame of raw bytes (UTF-8 with replacements) on the slot's latest WebSocket.
    WsRaw {
        slot: u8,
        bytes: Vec<u8>,
    },
    WsBinary {
        slot: u8,
    },
    /// The client closes the slot's latest WebSocket.
    WsClose {
        slot: u8,
    },
    /// Time passes (`ms`), then `tick`.
    Advance {
        ms: u16,
    },
    /// The client gives up on the slot's latest held GET.
    DropPoll {
        slot: u8,
    },
}

/// Hand-written layout: an op byte (`% 12`), a slot byte, then the op's fields: `Post` a count
/// byte (`% 9`) and that many items, `PostRaw` / `WsRaw` a length byte and the bytes,
/// `WsText` an item byte, `Advance` (no slot byte) one byte × 20 ms. Decoding stops at the
/// first incomplete op or after 256 ops.
pub fn decode_eio_ops(data: &[u8]) -> Vec<EioOp> {
    let mut ops = Vec::new();
    let mut i = 0;
    let mut next = || {
        let b = data.get(i).copied();
        i += 1;
        b
    };
    while ops.len() < MAX_OPS {
        let Some(code) = next() else { break };
        let code = code % 12;
        if code == 10 {
            let Some(ms) = next() else { break };
            ops.push(EioOp::Advance {
                ms: u16::from(ms) * 20,
            });
            continue;
        }
        let Some(slot) = next() else { break };
        let op = match code {
            0 => EioOp::HsPoll { slot },
            1 => EioOp::HsWs { slot },
            2 => EioOp::Get { slot },
            3 | 4 | 7 => {
                let Some(n) = next() else { break };
                let n = if code == 3 { n % 9 } else { n };
                let mut bytes = Vec::new();
                for _ in 0..n {
                    match next() {
                        Some(b) => bytes.push(b),
                        None => break,
                    }
                }
                if bytes.len() < usize::from(n) {
                    break;
                }
                match code {
                    3 => EioOp::Post { slot, items: bytes },
                    4 => EioOp::PostRaw { slot, bytes },
                    _ => EioOp::WsRaw { slot, bytes },
                }
            }
            5 => EioOp::Attach { slot },
            6 => {
                let Some(item) = next() else { break };
                EioOp::WsText { slot, item }
            }
            8 => EioOp::WsBinary { slot },
            9 => EioOp::WsClose { slot },
            _ => EioOp::DropPoll { slot },
        };
        ops.push(op);
    }
    ops
}

/// The bytes [`decode_eio_ops`] reads as `ops` (for writing seeds; `Advance` in 20 ms steps).
pub fn encode_eio_ops(ops: &[EioOp]) -> Vec<u8> {
    let mut out = Vec::new();
    for op in ops {
        match op {
            EioOp::HsPoll { slot } => out.extend([0, *slot]),
            EioOp::HsWs { slot } => out.extend([1, *slot]),
            EioOp::Get { slot } => out.extend([2, *slot]),
            EioOp::Post { slot, items } => {
                out.extend([3, *slot, items.len() as u8]);
                out.extend(items);
            }
            EioOp::PostRaw { slot, bytes } | EioOp::WsRaw { slot, bytes } => {
                let code = if matches!(op, EioOp::PostRaw { .. }) {
                    4
                } else {
                    7
                };
                out.extend([code, *slot, bytes.len() as u8]);
                out.extend(bytes);
            }
            EioOp::Attach { slot } => out.extend([5, *slot]),
            EioOp::WsText { slot, item } => out.extend([6, *slot, *item]),
            EioOp::WsBinary { slot } => out.extend([8, *slot]),
            EioOp::WsClose { slot } => out.extend([9, *slot]),
            EioOp::Advance { ms } => out.extend([10, (ms / 20).min(255) as u8]),
            EioOp::DropPoll { slot } => out.extend([11, *slot]),
        }
    }
    out
}

/// The packet text of menu item `b` (`n` makes numbered ones unique; the other session id is
/// picked by `b / 24`).
pub fn menu(b: u8, n: u64) -> String {
    let other = SIDS[usize::from(b / 24 % 4)];
    match b % 24 {
        0 => "2".into(),
        1 => "2probe".into(),
        2 => "3".into(),
        3 => "5".into(),
        4 => "6".into(),
        5 => "1".into(),
        6 => format!(r#"42["echo",{n}]"#),
        7 => r#"42["join","r"]"#.into(),
        8 => r#"42["leave","r"]"#.into(),
        9 => format!(r#"42["to","r",{n}]"#),
        10 => format!(r#"42["all","r",{n}]"#),
        11 => format!(r#"42["direct","{other}",{n}]"#),
        12 => r#"42["fail"]"#.into(),
        13 => r#"42["bye"]"#.into(),
        14 => "41".into(),
        15 => "40/x".into(),
        16 => "4garbage".into(),
        17 => "b4AQID".into(),
        18 => r#"42["join","watchers"]"#.into(),
        19 => format!(r#"42["echo","é😀{n}"]"#),
        20 => "40".into(),
        21 => "43[1]".into(),
        22 => format!(r#"42["echo",{n},"{}"]"#, "x".repeat(600)),
        _ => format!(r#"42["join","{other}"]"#),
    }
}

type Log = Rc<RefCell<Vec<(String, String)>>>;

/// A table of one dialect at index 1 (0 is not served), claiming every handshake as
/// `sio/echo`, with a fixed ping timeout: what the session tests and this target drive.
pub(crate) struct OneApp<D> {
    pub dialect: D,
    pub ping_timeout_ms: u64,
}

impl<D: SioDialect> Apps for OneApp<D> {
    fn count(&self) -> usize {
        2
    }
    fn pick(&self, _query: &[(String, String)]) -> Option<(usize, String)> {
        Some((ECHO, "sio/echo".into()))
    }
    fn ping_timeout_ms(&self, _app: usize) -> u64 {
        self.ping_timeout_ms
    }
    fn get(&mut self, app: usize) -> Option<&mut dyn SioDialect> {
        self.built(app)
    }
    fn built(&mut self, app: usize) -> Option<&mut dyn SioDialect> {
        (app == ECHO).then_some(&mut self.dialect as &mut dyn SioDialect)
    }
    fn poll_timeout(&self, _app: usize) -> Option<u64> {
        None
    }
}

type FuzzApps = OneApp<Recorder>;

/// [`Echo`], noting the packet of every `echo` reply it asks for.
struct Recorder {
    inner: Echo,
    log: Log,
}

impl SioDialect for Recorder {
    fn on_connect(&mut self, cx: &mut SioCx<'_>, sid: &str, query: &[(String, String)]) {
        self.inner.on_connect(cx, sid, query);
    }

    fn on_event(&mut self, cx: &mut SioCx<'_>, sid: &str, event: &str, args: &[Raw]) {
        if event == "echo" {
            self.log
                .borrow_mut()
                .push((sid.to_owned(), event_packet("echo", args)));
        }
        self.inner.on_event(cx, sid, event, args);
    }

    fn on_disconnect(&mut self, cx: &mut SioCx<'_>, sid: &str) {
        self.inner.on_disconnect(cx, sid);
    }
}

/// The shell's side: held GETs and open WebSockets.
#[derive(Default)]
struct FakeWire {
    held: HashSet<Handle>,
    open: HashSet<Handle>,
}

#[derive(Clone, Copy)]
enum Owner {
    Poll {
        slot: usize,
        gen: u32,
    },
    Ws {
        slot: usize,
        gen: u32,
        /// When it attached to a polling session (`None`: a WebSocket handshake).
        attached_at: Option<u64>,
        /// Its client sent `5`.
        upgraded: bool,
    },
}

#[derive(Default, Clone, Copy)]
struct Slot {
    /// Handshakes accepted for this sid so far (the current session's generation).
    gen: u32,
    /// The last op that named this sid (an over-estimate of the client's last packet).
    last_seen: u64,
    ws: Option<Handle>,
    poll: Option<Handle>,
}

struct Harness {
    t: Sessions<FuzzApps>,
    w: FakeWire,
    out: Outputs,
    rand: Seeded,
    log: Log,
    now: u64,
    next_conn: u32,
    counter: u64,
    slots: [Slot; 4],
    owners: HashMap<Handle, Owner>,
    /// Per (slot, generation): the `echo` replies queued, and how many arrived.
    recorded: HashMap<(usize, u32), Vec<String>>,
    delivered: HashMap<(usize, u32), usize>,
}

impl Harness {
    fn new() -> Harness {
        let log = Log::default();
        let t = Sessions::new(
            Options {
                ping_interval_ms: INTERVAL,
                upgrade_timeout_ms: UPGRADE,
                max_queued_bytes: MAX_QUEUED,
                max_sessions: MAX_SESSIONS,
            },
            OneApp {
                dialect: Recorder {
                    inner: Echo,
                    log: log.clone(),
                },
                ping_timeout_ms: TIMEOUT,
            },
        );
        Harness {
            t,
            w: FakeWire::default(),
            out: Outputs::default(),
            rand: Seeded(7),
            log,
            now: 1_000,
            next_conn: 0,
            counter: 0,
            slots: [Slot::default(); 4],
            owners: HashMap::new(),
            recorded: HashMap::new(),
            delivered: HashMap::new(),
        }
    }

    fn conn(&mut self) -> Handle {
        self.next_conn += 1;
        Handle::of(self.next_conn, 1)
    }

    /// Run `f` on the table with a context at the model's time.
    fn with_cx<R>(&mut self, f: impl FnOnce(&mut Sessions<FuzzApps>, &mut Cx<'_>) -> R) -> R {
        let mut env = NoEnv;
        let mut cx = Cx {
            now: self.now,
            unix_ms: 0,
            here: Locator(0),
            rand: &mut self.rand,
            env: &mut env,
            out: &mut self.out,
            direct: None,
        };
        f(&mut self.t, &mut cx)
    }

    fn slot_of(sid: &str) -> usize {
        SIDS.iter().position(|s| *s == sid).expect("one of ours")
    }

    /// Move what the recorder saw into `recorded`, under each session's current generation.
    fn take_log(&mut self) {
        let log = std::mem::take(&mut *self.log.borrow_mut());
        for (sid, packet) in log {
            let slot = Self::slot_of(&sid);
            let gen = self.slots[slot].gen;
            self.recorded.entry((slot, gen)).or_default().push(packet);
        }
    }

    fn deliver(&mut self, slot: usize, gen: u32, packet: &str) {
        decode_packet(packet).unwrap_or_else(|e| panic!("{packet:?} does not decode: {e:?}"));
        if !packet.starts_with(r#"42["echo""#) {
            return;
        }
        let recorded = self
            .recorded
            .get(&(slot, gen))
            .map_or(&[][..], Vec::as_slice);
        let at = self.delivered.entry((slot, gen)).or_default();
        assert!(
            recorded.get(*at).is_some_and(|p| p == packet),
            "slot {slot} gen {gen}: reply #{at} is {packet:?}, queued were {recorded:?}"
        );
        *at += 1;
    }

    fn answer(&mut self, slot: usize, gen: u32, resp: &Response) {
        assert_eq!(resp.status, 200);
        let body = std::str::from_utf8(&resp.body).expect("a UTF-8 payload");
        let packets = decode_payload(body).unwrap_or_else(|e| panic!("{body:?}: {e:?}"));
        for p in packets {
            self.deliver(slot, gen, p);
        }
    }

    /// Flush and report closes back until the table has nothing left to do.
    fn settle(&mut self) {
        self.take_log();
        for _ in 0..16 {
            self.with_cx(|t, cx| t.flush(cx));
            assert!(!self.t.wants_flush(), "work left after a flush");
            let events: Vec<(Output, Vec<u8>)> = self
                .out
                .iter()
                .map(|(o, b)| (o.clone(), b.to_vec()))
                .collect();
            self.out.clear();
            if events.is_empty() && !self.t.wants_flush() {
                break;
            }
            for ev in events {
                match ev {
                    (Output::Respond { conn: c, response }, _) => {
                        assert!(
                            self.w.held.remove(&c),
                            "answered a poll that is not waiting (twice, or never held): {c:?}"
                        );
                        match self.owners.get(&c) {
                            Some(&Owner::Poll { slot, gen }) => self.answer(slot, gen, &response),
                            _ => panic!("an answer to {c:?}, which is no GET"),
                        }
                    }
                    (Output::Send { to: c, .. }, bytes) => {
                        assert!(self.w.open.contains(&c), "a frame on a closed WebSocket");
                        let text = String::from_utf8(bytes).expect("text frames");
                        match self.owners.get(&c).copied() {
                            Some(Owner::Ws {
                                slot,
                                gen,
                                attached_at,
                                upgraded,
                            }) => {
                                if attached_at.is_some() && !upgraded {
                                    assert_eq!(text, "3probe", "on a probing WebSocket");
                                } else {
                                    self.deliver(slot, gen, &text);
                                }
                            }
                            _ => panic!("a frame to {c:?}, which is no WebSocket"),
                        }
                    }
                    (Output::Close { conn: c, .. }, _) => match self.owners.get(&c) {
                        // The shell closes what is open and tells the table it is gone.
                        Some(&Owner::Ws { .. }) => {
                            if self.w.open.remove(&c) {
                                self.with_cx(|t, cx| t.conn_gone(cx, c));
                            }
                        }
                        _ => panic!("closed {c:?}, which is no WebSocket"),
                    },
                    (Output::Pipe { .. }, _) => panic!("the layer never pipes"),
                    (Output::Store { .. }, _) => panic!("the layer keeps no outside store"),
                    (Output::Tell { .. } | Output::Reply { .. }, _) => {
                        panic!("the layer tells no other instance")
                    }
                }
            }
            self.take_log();
        }
        assert!(!self.t.wants_flush(), "flushing does not settle");
        self.check_bounds();
        // A held poll never waits while a reply of its session is undelivered.
        for c in &self.w.held {
            if let Some(&Owner::Poll { slot, gen }) = self.owners.get(c) {
                if gen == self.slots[slot].gen && self.t.contains(SIDS[slot]) {
                    let queued = self.recorded.get(&(slot, gen)).map_or(0, Vec::len);
                    let got = self.delivered.get(&(slot, gen)).copied().unwrap_or(0);
                    assert_eq!(
                        got, queued,
                        "slot {slot}: a held poll waits on queued replies"
                    );
                }
            }
        }
    }

    fn check_bounds(&self) {
        assert!(self.t.len() <= MAX_SESSIONS);
        let live: Vec<&str> = SIDS
            .iter()
            .copied()
            .filter(|s| self.t.contains(s))
            .collect();
        assert_eq!(
            live.len(),
            self.t.len(),
            "a session the model never created"
        );
        for (i, sid) in SIDS.iter().enumerate() {
            if self.t.contains(sid) {
                assert!(self.slots[i].gen > 0);
            }
        }
        for room in ["r", "watchers"].into_iter().chain(SIDS) {
            for m in self.t.room(ECHO, room) {
                assert!(self.t.contains(&m), "{m} in room {room} has no session");
            }
        }
    }

    fn touch(&mut self, slot: usize) {
        self.slots[slot].last_seen = self.now;
    }

    fn handshake(&mut self, slot: u8, websocket: bool) {
        let kind = if slot & 0x80 != 0 { UNSERVED } else { ECHO };
        let slot = usize::from(slot % 4);
        let sid = SIDS[slot];
        let want = if kind != ECHO {
            Err(Refused::NoDialect)
        } else if self.t.len() >= MAX_SESSIONS {
            Err(Refused::Full)
        } else if self.t.contains(sid) {
            Err(Refused::Taken)
        } else {
            Ok(())
        };
        let query = [("EIO".to_owned(), "3".to_owned())];
        if websocket {
            if self.t.can_create(kind).is_err() {
                assert!(want.is_err());
                return;
            }
            let conn = self.conn();
            self.w.open.insert(conn);
            let r = self.with_cx(|t, cx| t.handshake_ws(cx, sid, kind, &query, conn));
            assert_eq!(r, want);
            let gen = self.slots[slot].gen + u32::from(r.is_ok());
            self.owners.insert(
                conn,
                Owner::Ws {
                    slot,
                    gen,
                    attached_at: None,
                    upgraded: false,
                },
            );
            if r.is_ok() {
                self.slots[slot] = Slot {
                    gen,
                    last_seen: self.now,
                    ws: Some(conn),
                    poll: None,
                };
            }
        } else {
            let r = self.with_cx(|t, cx| t.handshake_polling(cx, sid, kind, &query, None));
            assert_eq!(r.as_ref().map(|_| ()).map_err(|e| *e), want);
            if let Ok(resp) = r {
                let gen = self.slots[slot].gen + 1;
                self.slots[slot] = Slot {
                    gen,
                    last_seen: self.now,
                    ws: None,
                    poll: None,
                };
                self.take_log();
                let body = String::from_utf8(resp.body.clone()).expect("UTF-8");
                let packets = decode_payload(&body).expect("a payload");
                assert!(packets[0].starts_with("0{") && packets[0].contains(sid));
                assert_eq!(packets.get(1), Some(&"40"));
                self.answer(slot, gen, &resp);
            }
        }
    }

    fn op(&mut self, op: &EioOp) {
        match op {
            EioOp::HsPoll { slot } => self.handshake(*slot, false),
            EioOp::HsWs { slot } => self.handshake(*slot, true),
            EioOp::Get { slot } => {
                let slot = usize::from(slot % 4);
                let sid = SIDS[slot];
                self.touch(slot);
                let existed = self.t.contains(sid);
                let conn = self.conn();
                let gen = self.slots[slot].gen;
                self.owners.insert(conn, Owner::Poll { slot, gen });
                match self.t.poll_get(sid, conn, None) {
                    Ok(PollGet::Answer(resp)) => {
                        self.take_log();
                        self.answer(slot, gen, &resp);
                    }
                    Ok(PollGet::Hold) => {
                        self.w.held.insert(conn);
                        self.slots[slot].poll = Some(conn);
                    }
                    Err(e) => assert!(
                        (e == EioError::UnknownSid) != existed,
                        "{e:?} for a session that exists: {existed}"
                    ),
                }
            }
            EioOp::Post { slot, items } => {
                let texts: Vec<String> = items
                    .iter()
                    .map(|&b| {
                        self.counter += 1;
                        menu(b, self.counter)
                    })
                    .collect();
                let body = encode_payload(texts.iter().map(String::as_str));
                self.post(*slot, body.as_bytes());
            }
            EioOp::PostRaw { slot, bytes } => self.post(*slot, bytes),
            EioOp::Attach { slot } => {
                let unchecked = slot & 0x80 != 0;
                let slot = usize::from(slot % 4);
                let sid = SIDS[slot];
                self.touch(slot);
                let can = self.t.can_upgrade(sid).is_ok();
                if !can && !unchecked {
                    return;
                }
                let conn = self.conn();
                self.w.open.insert(conn);
                self.owners.insert(
                    conn,
                    Owner::Ws {
                        slot,
                        gen: self.slots[slot].gen,
                        attached_at: Some(self.now),
                        upgraded: false,
                    },
                );
                self.slots[slot].ws = Some(conn);
                assert_eq!(self.t.ws_attach(self.now, sid, conn), can);
            }
            EioOp::WsText { slot, item } => {
                self.counter += 1;
                let text = menu(*item, self.counter);
                self.ws_text(*slot, &text);
            }
            EioOp::WsRaw { slot, bytes } => {
                let text = String::from_utf8_lossy(bytes).into_owned();
                self.ws_text(*slot, &text);
            }
            EioOp::WsBinary { slot } => {
                let slot = usize::from(slot % 4);
                if let Some(c) = self.slots[slot].ws.filter(|c| self.w.open.contains(c)) {
                    self.touch(slot);
                    self.with_cx(|t, cx| t.ws_message(cx, c, None));
                }
            }
            EioOp::WsClose { slot } => {
                let slot = usize::from(slot % 4);
                if let Some(c) = self.slots[slot].ws.filter(|c| self.w.open.contains(c)) {
                    self.touch(slot);
                    self.w.open.remove(&c);
                    self.with_cx(|t, cx| t.conn_gone(cx, c));
                }
            }
            EioOp::Advance { ms } => self.advance(u64::from(*ms)),
            EioOp::DropPoll { slot } => {
                if let Some(c) = self.slots[usize::from(slot % 4)].poll.take() {
                    if self.w.held.remove(&c) {
                        self.with_cx(|t, cx| t.conn_gone(cx, c));
                    }
                }
            }
        }
    }

    fn post(&mut self, slot: u8, body: &[u8]) {
        let slot = usize::from(slot % 4);
        let sid = SIDS[slot];
        self.touch(slot);
        let existed = self.t.contains(sid);
        if let Err(e) = self.with_cx(|t, cx| t.poll_post(cx, sid, body)) {
            assert!(
                (e == EioError::UnknownSid) != existed,
                "{e:?} for a session that exists: {existed}"
            );
        }
    }

    fn ws_text(&mut self, slot: u8, text: &str) {
        let slot = usize::from(slot % 4);
        let Some(c) = self.slots[slot].ws.filter(|c| self.w.open.contains(c)) else {
            return;
        };
        self.touch(slot);
        // An upgrade packet, whatever follows its type digit (the layer reads only the type).
        if matches!(decode_packet(text), Ok(Packet::Upgrade)) {
            if let Some(Owner::Ws { upgraded, .. }) = self.owners.get_mut(&c) {
                *upgraded = true;
            }
        }
        self.with_cx(|t, cx| t.ws_message(cx, c, Some(text)));
    }

    fn advance(&mut self, ms: u64) {
        self.now += ms;
        self.with_cx(|t, cx| t.tick(cx));
        self.settle();
        if let Some(d) = self.t.next_deadline() {
            assert!(d > self.now, "deadline {d} still due at {}", self.now);
        }
        for (i, s) in self.slots.iter().enumerate() {
            if self.t.contains(SIDS[i]) {
                assert!(
                    self.now < s.last_seen + INTERVAL + TIMEOUT,
                    "slot {i} silent since {} outlives its ping timeout at {}",
                    s.last_seen,
                    self.now
                );
            }
        }
        for c in &self.w.open {
            if let Some(&Owner::Ws {
                attached_at: Some(at),
                upgraded: false,
                ..
            }) = self.owners.get(c)
            {
                assert!(
                    self.now < at + UPGRADE,
                    "a probe from {at} still open at {}",
                    self.now
                );
            }
        }
    }

    /// One more GET for every live session: it then has every reply; then every deadline
    /// passes and everything is gone.
    fn finish(&mut self) {
        for (slot, sid) in SIDS.iter().enumerate() {
            if self.t.contains(sid) {
                self.op(&EioOp::Get { slot: slot as u8 });
                self.settle();
                let gen = self.slots[slot].gen;
                let queued = self.recorded.get(&(slot, gen)).map_or(0, Vec::len);
                let got = self.delivered.get(&(slot, gen)).copied().unwrap_or(0);
                assert_eq!(got, queued, "slot {slot}: replies lost");
            }
        }
        self.now += 1_000_000;
        self.with_cx(|t, cx| t.tick(cx));
        self.settle();
        assert_eq!(self.t.len(), 0, "sessions outlive every deadline");
        assert_eq!(self.t.next_deadline(), None);
        for room in ["r", "watchers"].into_iter().chain(SIDS) {
            assert!(self.t.room(ECHO, room).is_empty(), "room {room} kept");
        }
        assert!(self.w.held.is_empty(), "held polls never answered");
        assert!(self.w.open.is_empty(), "WebSockets never closed");
    }
}

/// Runs the checks in the module docs on `data`; panics when one fails.
pub fn check_eio_session(data: &[u8]) {
    let mut h = Harness::new();
    for op in decode_eio_ops(data) {
        h.op(&op);
        h.settle();
    }
    h.finish();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip_and_arbitrary_bytes_do_not_panic() {
        let ops = vec![
            EioOp::HsPoll { slot: 0 },
            EioOp::Post {
                slot: 0,
                items: vec![6, 7, 1],
            },
            EioOp::Attach { slot: 0 },
            EioOp::WsText { slot: 0, item: 1 },
            EioOp::Get { slot: 0 },
            EioOp::WsText { slot: 0, item: 3 },
            EioOp::WsRaw {
                slot: 0,
                bytes: b"42[\"echo\",1]".to_vec(),
            },
            EioOp::Advance { ms: 400 },
            EioOp::DropPoll { slot: 1 },
        ];
        assert_eq!(decode_eio_ops(&encode_eio_ops(&ops)), ops);
        check_eio_session(&encode_eio_ops(&ops));
        check_eio_session(b"");
        check_eio_session(&[0xff; 64]);
        check_eio_session(&(0..=255).collect::<Vec<u8>>());
    }

    /// The harness is not vacuous: replies queued before, during and after the upgrade are
    /// all seen, on the poll and on the WebSocket.
    #[test]
    fn replies_cross_the_upgrade() {
        let mut h = Harness::new();
        let ops = [
            EioOp::HsPoll { slot: 0 },
            EioOp::Post {
                slot: 0,
                items: vec![6],
            },
            EioOp::Attach { slot: 0 },
            EioOp::WsText { slot: 0, item: 1 },
            EioOp::Post {
                slot: 0,
                items: vec![19],
            },
            EioOp::WsText { slot: 0, item: 3 },
            EioOp::WsText { slot: 0, item: 6 },
        ];
        for op in &ops {
            h.op(op);
            h.settle();
        }
        assert_eq!(h.recorded.get(&(0, 1)).map(Vec::len), Some(3));
        // The poll got nothing before the probe (no GET), the WebSocket took all three.
        assert_eq!(h.delivered.get(&(0, 1)), Some(&3));
        h.finish();
    }
}
