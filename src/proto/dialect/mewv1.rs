//! MewConnect v1 pairing (PROTOCOLS.md §1.10, with the §1.12 recommendations) as a pure
//! [`SioDialect`] on the Socket.IO layer.
//!
//! Owns: the handshake query (`stage`, `connId`, `signed`, `message`), the pair table keyed
//! by `connId` (the original's Redis hash: initiator socket, message, initial `signed`,
//! receiver socket, TURN state) with its 120 s expiry counted from the initiator's connect,
//! the events of §1.10 and the lenient validation RECOMMENDed there.
//!
//! Does not own: sockets and rooms (the layer applies the [`Action`]s; the room of a pair is
//! named by its `connId`), the ICE servers handed out in `turnToken` (asked of the call's
//! environment).
//!
//! # Flow
//!
//! ```text
//! initiator connects            store entry (overwrites), join room connId; nothing sent
//! receiver connects             entry: S→R handshake {toSign}; none: S→R InvalidConnection
//! R signature {signed, connId}  none: S→R InvalidConnection; signed differs: S→R confirmationFailed;
//!                               else R joins the room and the others get
//!                               confirmation {connId, version?} (first receiver) or
//!                               confirmationFailedBusy (a receiver is already set)
//! offerSignal {data, connId}    S→room (sender included) offer {data}
//! answerSignal {data, connId}   S→room (sender included) answer {data, options?}
//! tryTurn {connId}              S→room attemptingTurn {data: null}; entry: S→room turnToken {data: [ICE]}
//! rtcConnected                  a member of the pair ends it: entry deleted, sender leaves the room
//! ```
//!
//! Validation (lenient, §1.10 RECOMMEND): `signature`, `offerSignal`, `answerSignal` and
//! `tryTurn` need an object argument whose `connId` is a string; byte fields are relayed in
//! whatever form they came (`{type, data}` or a plain array). Decisions beyond the original:
//! an event's `connId` must be the socket's own (from its handshake), so no socket can inject
//! into another pair; `rtcConnected` ends the sender's own pair whatever its argument (the web
//! client sends a key, Android nothing) and only if the sender is a member; a handshake
//! without a valid `stage`/`connId` is disconnected instead of left silent. Each of these,
//! and an unknown event, answers `44"invalid signal or paramaters"` (sic) where the original
//! would; no event the real clients send gets it.

use super::sio::{Action, Members, ObjectWriter, Raw, SioCx, SioDialect, To};
use super::{Latencies, Metric};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};

/// The Socket.IO error packet's data for a refused event (sic).
pub const INVALID_SIGNAL: &str = "invalid signal or paramaters";
/// Longest `connId` accepted in a handshake.
pub const MAX_CONN_ID_LEN: usize = 256;
/// Longest `signed` / `message` kept from a handshake.
pub const MAX_QUERY_VALUE_LEN: usize = 1024;

/// Options of the dialect.
#[derive(Debug, Clone)]
pub struct MewV1Config {
    /// A pair entry lives this long after its initiator connected (`REDIS_TIMOUT`, 120 s).
    pub pair_ttl_ms: u64,
    /// Pair entries kept at most; an initiator beyond it is disconnected.
    pub max_pairs: usize,
}

impl Default for MewV1Config {
    fn default() -> Self {
        MewV1Config {
            pair_ttl_ms: 120_000,
            max_pairs: 100_000,
        }
    }
}

/// The key a handshake's sessions are placed by, when it is MewConnect v1's (query `stage`):
/// both sides of a pair meet on one instance.
pub fn claims(query: &[(String, String)]) -> Option<String> {
    let q = Query(query);
    q.get("stage")?;
    Some(format!("mewv1/{}", q.get("connId").unwrap_or_default()))
}

/// A socket with a valid handshake: the pair it belongs to.
#[derive(Debug)]
struct Sock {
    conn_id: String,
}

#[derive(Debug)]
struct Pair {
    initiator: String,
    message: Option<String>,
    initial_signed: Option<String>,
    receiver: Option<String>,
    require_turn: bool,
    try_turn_count: u32,
    /// Key in [`MewV1::expiry`].
    expires: (u64, u64),
}

/// The pair table of one server (or of one core, if the layer places a `connId`'s sockets
/// on one core).
pub struct MewV1 {
    cfg: MewV1Config,
    pairs: HashMap<String, Pair>,
    expiry: BTreeMap<(u64, u64), String>,
    sockets: HashMap<String, Sock>,
    seq: u64,
    /// Receivers confirmed, and how long their initiator had waited.
    pairings: u64,
    pairing_time: Latencies,
    /// Receivers refused: `InvalidConnection`, `confirmationFailed`, `confirmationFailedBusy`.
    refusals: [u64; 3],
}

/// The metrics [`MewV1`] reports, in [`SioDialect::metrics`] order.
pub const METRICS: [Metric; 5] = [
    Metric::histogram("sigyard_pairing_seconds", "", r#"dialect="mewconnect_v1""#),
    Metric::counter(
        "sigyard_mewconnect_v1_pairings_total",
        "MewConnect v1 pairs made (a receiver's signature confirmed)",
    ),
    Metric::labelled(
        "sigyard_mewconnect_v1_refusals_total",
        "MewConnect v1 receivers refused, by reason",
        r#"reason="invalid_connection""#,
    ),
    Metric::labelled(
        "sigyard_mewconnect_v1_refusals_total",
        "",
        r#"reason="bad_signed""#,
    ),
    Metric::labelled(
        "sigyard_mewconnect_v1_refusals_total",
        "",
        r#"reason="busy""#,
    ),
];

impl MewV1 {
    pub fn new(cfg: MewV1Config) -> MewV1 {
        MewV1 {
            cfg,
            pairs: HashMap::new(),
            expiry: BTreeMap::new(),
            sockets: HashMap::new(),
            pairings: 0,
            pairing_time: Latencies::default(),
            refusals: [0; 3],
            seq: 0,
        }
    }

    /// Number of live pair entries.
    pub fn pairs(&self) -> usize {
        self.pairs.len()
    }

    /// Whether the pair `conn_id` asked for TURN, and how often (`requireTurn`,
    /// `tryTurnSignalCount`).
    pub fn turn_state(&self, conn_id: &str) -> Option<(bool, u32)> {
        self.pairs
            .get(conn_id)
            .map(|p| (p.require_turn, p.try_turn_count))
    }

    fn remove_pair(&mut self, conn_id: &str) {
        if let Some(p) = self.pairs.remove(conn_id) {
            self.expiry.remove(&p.expires);
        }
    }

    fn initiator(
        &mut self,
        now_ms: u64,
        sid: &str,
        conn_id: &str,
        q: &Query,
        out: &mut Vec<Action>,
    ) {
        if self.pairs.len() >= self.cfg.max_pairs && !self.pairs.contains_key(conn_id) {
            out.push(Action::Disconnect { sid: sid.into() });
            return;
        }
        self.remove_pair(conn_id);
        self.seq += 1;
        let expires = (now_ms.saturating_add(self.cfg.pair_ttl_ms), self.seq);
        self.expiry.insert(expires, conn_id.to_string());
        let pair = Pair {
            initiator: sid.to_string(),
            message: q.get("message"),
            initial_signed: q.get("signed"),
            receiver: None,
            require_turn: false,
            try_turn_count: 0,
            expires,
        };
        self.pairs.insert(conn_id.to_string(), pair);
        self.sockets.insert(
            sid.to_string(),
            Sock {
                conn_id: conn_id.to_string(),
            },
        );
        out.push(Action::Join {
            sid: sid.into(),
            room: conn_id.into(),
        });
    }

    fn receiver(&mut self, sid: &str, conn_id: &str, out: &mut Vec<Action>) {
        self.sockets.insert(
            sid.to_string(),
            Sock {
                conn_id: conn_id.to_string(),
            },
        );
        match self.pairs.get(conn_id) {
            Some(p) => {
                let mut m = Map::new();
                if let Some(msg) = &p.message {
                    m.insert("toSign".into(), msg.clone().into());
                }
                emit(
                    out,
                    To::Socket(sid.into()),
                    "handshake",
                    vec![Raw::from_value(&Value::Object(m))],
                );
            }
            None => {
                self.refusals[0] += 1;
                emit(out, To::Socket(sid.into()), "InvalidConnection", vec![])
            }
        }
    }

    fn signature(
        &mut self,
        sid: &str,
        conn_id: &str,
        data: &Members,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) {
        let Some(pair) = self.pairs.get_mut(conn_id) else {
            self.refusals[0] += 1;
            return emit(out, To::Socket(sid.into()), "InvalidConnection", vec![]);
        };
        let signed = data.str("signed");
        if signed.is_none() || signed != pair.initial_signed {
            self.refusals[1] += 1;
            return emit(out, To::Socket(sid.into()), "confirmationFailed", vec![]);
        }
        out.push(Action::Join {
            sid: sid.into(),
            room: conn_id.into(),
        });
        let to = To::RoomExcept {
            room: conn_id.into(),
            except: sid.into(),
        };
        if pair.receiver.is_some() {
            self.refusals[2] += 1;
            return emit(out, to, "confirmationFailedBusy", vec![]);
        }
        pair.receiver = Some(sid.to_string());
        // The pair was made `pair_ttl_ms` before its expiry.
        let created = pair.expires.0.saturating_sub(self.cfg.pair_ttl_ms);
        self.pairings += 1;
        self.pairing_time.observe_ms(now_ms.saturating_sub(created));
        let m = ObjectWriter::new()
            .value("connId", &conn_id.into())
            .raw("version", data.raw("version"))
            .finish();
        emit(out, to, "confirmation", vec![m]);
    }
}

impl SioDialect for MewV1 {
    fn metrics(&self, out: &mut [u64]) {
        let then = std::iter::once(self.pairings).chain(self.refusals);
        self.pairing_time.write_then(out, then);
    }

    fn on_connect(&mut self, cx: &mut SioCx<'_>, sid: &str, query: &[(String, String)]) {
        let (now_ms, out) = (cx.now, &mut *cx.out);
        let q = Query(query);
        let conn_id = q
            .get("connId")
            .filter(|c| c.len() <= MAX_CONN_ID_LEN && c.bytes().any(|b| b.is_ascii_hexdigit()));
        match (q.get("stage").as_deref(), conn_id) {
            (Some("initiator"), Some(c)) => self.initiator(now_ms, sid, &c, &q, out),
            (Some("receiver"), Some(c)) => self.receiver(sid, &c, out),
            _ => out.push(Action::Disconnect { sid: sid.into() }),
        }
    }

    fn on_event(&mut self, cx: &mut SioCx<'_>, sid: &str, event: &str, args: &[Raw]) {
        let now_ms = cx.now;
        let env = &mut *cx.env;
        let out = &mut *cx.out;
        let Some(own) = self.sockets.get(sid).map(|s| s.conn_id.clone()) else {
            return;
        };
        if event == "rtcConnected" {
            let member = self
                .pairs
                .get(&own)
                .is_some_and(|p| p.initiator == sid || p.receiver.as_deref() == Some(sid));
            if member {
                self.remove_pair(&own);
            }
            out.push(Action::Leave {
                sid: sid.into(),
                room: own,
            });
            return;
        }
        let data = args.first().map(Raw::members).unwrap_or_default();
        let known = matches!(
            event,
            "signature" | "offerSignal" | "answerSignal" | "tryTurn"
        );
        if !known || data.str("connId").as_deref() != Some(own.as_str()) {
            out.push(Action::Error {
                sid: sid.into(),
                data: Value::from(INVALID_SIGNAL),
            });
            return;
        }
        let room = To::Room(own.clone());
        match event {
            "signature" => self.signature(sid, &own, &data, now_ms, out),
            // The signal as sent; `{}` when there is none (§1.10).
            "offerSignal" => {
                let m = signal(&data).finish();
                emit(out, room, "offer", vec![m]);
            }
            "answerSignal" => {
                let m = signal(&data).raw("options", data.raw("options")).finish();
                emit(out, room, "answer", vec![m]);
            }
            // tryTurn
            _ => {
                emit(
                    out,
                    room.clone(),
                    "attemptingTurn",
                    vec![Raw::from_value(&json!({"data": null}))],
                );
                if let Some(p) = self.pairs.get_mut(&own) {
                    p.require_turn = true;
                    p.try_turn_count = p.try_turn_count.saturating_add(1);
                    let servers = env.ice_servers(&own).servers;
                    let token = Raw::from_value(&json!({ "data": servers }));
                    emit(out, room, "turnToken", vec![token]);
                }
            }
        }
    }

    fn on_disconnect(&mut self, _cx: &mut SioCx<'_>, sid: &str) {
        self.sockets.remove(sid);
    }

    fn on_timeout(&mut self, cx: &mut SioCx<'_>) {
        let now_ms = cx.now;
        while let Some((&key, _)) = self.expiry.first_key_value() {
            if key.0 > now_ms {
                break;
            }
            if let Some(conn_id) = self.expiry.remove(&key) {
                self.pairs.remove(&conn_id);
            }
        }
    }

    fn poll_timeout(&self) -> Option<u64> {
        self.expiry.first_key_value().map(|(k, _)| k.0)
    }
}

/// The handshake query; the first occurrence of a name wins.
struct Query<'a>(&'a [(String, String)]);

impl Query<'_> {
    fn get(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .filter(|v| v.len() <= MAX_QUERY_VALUE_LEN)
    }
}

/// `{data}` of an offer or answer: the sender's `data` as sent, `{}` when it has none.
fn signal(data: &Members) -> ObjectWriter {
    let mut m = ObjectWriter::new();
    match data.raw("data") {
        Some(d) => m.raw("data", Some(d)),
        None => m.value("data", &json!({})),
    };
    m
}

fn emit(out: &mut Vec<Action>, to: To, event: &str, args: Vec<Raw>) {
    out.push(Action::Emit {
        to,
        event: event.to_string(),
        args,
    });
}

#[cfg(test)]
mod tests;
