//! The shell's side of the protocol machine's [`App`] trait: routing, the operator endpoints
//! (`/`, `/healthz`, `/metrics`), the echo endpoint, and the hand-over of messages to the
//! dialects.
//!
//! A `Host` is built for one drive of one connection and borrows what it needs from the
//! reactor: the core's dialect tables, the queue of messages for other connections on this
//! core, and what the slot knows about itself (its [`ConnRef`], its route identity, its pipe
//! peer). What a message means is decided by the dialect modules in `proto::dialect`; this file
//! only dispatches.

use crate::metrics::ShellCounters;
use crate::net::Shared;
use crate::proto::conn::{App, Endpoint, Handshake, Outbox, Response, Routed};
use crate::proto::dialect::cevitxe::Introductions;
use crate::proto::dialect::mewconnect::{self, Pairs};
use crate::proto::dialect::peerolator::{Peers, Verdict};
use crate::proto::dialect::pipe::{HoldError, HoldLimits, PipeTable, Seek};
use crate::proto::dialect::{ConnRef, Outgoing};
use crate::proto::http::{Method, RequestHead};
use crate::proto::route::{self, Route};
use crate::proto::time::Tick;
use crate::proto::ws::DataKind;

mod sio;
pub(crate) use sio::{new_sessions, SioEnv};

/// Every introduction socket lives on the core owning this key, so one table sees all peers.
const INTRODUCTIONS_KEY: &str = "cevitxe/introductions";

/// What a dialect connection is, from its upgrade path; kept in its slot (boxed: only
/// dialect connections pay for it) and carried along when it moves to another core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ident {
    Introduction(Box<str>),
    Connection(Seek),
    /// MewConnect v2, on the core owning `mew/<connId>`.
    Mew {
        conn_id: Box<str>,
    },
    /// Peerolator server with its minted id, on the core owning `peer/<id>`.
    PeerServer(Box<str>),
    /// Peerolator client (minted `id`) of `server`, on the core owning `peer/<server>`.
    PeerClient {
        server: Box<str>,
        id: Box<str>,
    },
    /// A Socket.IO WebSocket (its own session, or probing to upgrade a polling one).
    Sio {
        sid: String,
    },
}

/// The core that owns a MewConnect pair: both members are placed there before their upgrade
/// is answered.
pub(crate) fn mew_key(conn_id: &str) -> String {
    format!("mew/{conn_id}")
}

/// The core that owns a Peerolator server and all its clients.
pub(crate) fn peer_key(server_id: &str) -> String {
    format!("peer/{server_id}")
}

/// MewConnect's options from the configuration.
pub(crate) fn mew_options(cfg: &crate::config::Config) -> mewconnect::Options {
    let nonzero = |d: std::time::Duration| (!d.is_zero()).then_some(d);
    mewconnect::Options {
        error_frames: cfg.mew.error_frames,
        idle_timeout: nonzero(cfg.mew.idle_timeout),
        max_lifetime: nonzero(cfg.mew.max_lifetime),
    }
}

/// An id shaped like API Gateway's `connectionId` / `requestId` (16 base64 characters), for
/// MewConnect's error frames; from the OS CSPRNG.
fn api_gateway_id() -> String {
    use base64::Engine;
    let mut b = [0u8; 11];
    crate::csprng::fill(&mut b);
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// What the MewConnect table asks of the shell: the ICE configuration (TURN REST usernames
/// carry the `connId`), and ids for error frames.
struct MewEnv<'a> {
    shared: &'a Shared,
    /// The list of the `tryturn` being answered, for its `turntoken`.
    ice: Option<crate::ice::IceList>,
}

impl mewconnect::Env for MewEnv<'_> {
    fn ice_servers(&mut self, conn_id: &str) -> serde_json::Value {
        let list = self.shared.ice.list(conn_id, crate::ice::unix_now());
        let servers = list.servers_json();
        self.ice = Some(list);
        servers
    }
    fn turn_token(&mut self, servers: &serde_json::Value) -> serde_json::Value {
        match &self.ice {
            Some(list) => list.token_json(),
            None => mewconnect::static_turn_token(servers),
        }
    }
    fn request_id(&mut self) -> String {
        api_gateway_id()
    }
}

/// The per-core tables of the dialects.
#[derive(Default)]
pub(crate) struct Dialects {
    pub intros: Introductions,
    pub pipes: PipeTable,
    pub mew: Pairs,
    pub peers: Peers,
    /// Engine.IO / Socket.IO sessions owned by this core.
    pub sio: crate::proto::eio::Sessions,
}

/// What the Host knows about the connection being driven, for dialect messages.
pub(crate) struct ConnCtx<'a> {
    pub me: ConnRef,
    /// The core's clock in milliseconds (what `now` is a wrapping view of).
    pub now_ms: u64,
    pub ident: Option<&'a Ident>,
    pub peer: Option<ConnRef>,
    pub dialects: &'a mut Dialects,
    pub deliveries: &'a mut Vec<Outgoing>,
}

pub(crate) struct Host<'a> {
    core: usize,
    shared: &'a Shared,
    shell: &'a mut ShellCounters,
    conn: Option<ConnCtx<'a>>,
    /// Set by `route` when the connection must move to another core after its upgrade.
    move_to: Option<usize>,
    /// Set by `route` for dialect connections.
    ident: Option<Box<Ident>>,
    /// Set by a dialect that wants this connection closed (code, reason).
    close_self: Option<(u16, &'static str)>,
    /// A MewConnect upgrade admitted by `route`, entered in the pair table once its 101 is
    /// written (`on_handshake`), with the time of the request.
    mew_pending: Option<(mewconnect::Params, Tick)>,
    /// A Socket.IO upgrade admitted by `route`, started once its 101 is written.
    sio_pending: Option<sio::SioPending>,
}

impl<'a> Host<'a> {
    /// A Host for calls that deliver no message (timeouts, EOF, shutdown).
    pub(crate) fn new(core: usize, shared: &'a Shared, shell: &'a mut ShellCounters) -> Self {
        Host {
            core,
            shared,
            shell,
            conn: None,
            move_to: None,
            ident: None,
            close_self: None,
            mew_pending: None,
            sio_pending: None,
        }
    }

    /// A Host for reading input: messages may go to dialects and other connections.
    pub(crate) fn with_conn(
        core: usize,
        shared: &'a Shared,
        shell: &'a mut ShellCounters,
        conn: ConnCtx<'a>,
    ) -> Self {
        Host {
            conn: Some(conn),
            ..Host::new(core, shared, shell)
        }
    }

    pub(crate) fn take_move(&mut self) -> Option<usize> {
        self.move_to.take()
    }

    pub(crate) fn take_ident(&mut self) -> Option<Box<Ident>> {
        self.ident.take()
    }

    pub(crate) fn take_close(&mut self) -> Option<(u16, &'static str)> {
        self.close_self.take()
    }

    /// Route an upgrade to a dialect endpoint that lives on the core owning `key`. Dialect
    /// connections always park after the 101, so the shell can register them (on this core or
    /// the owner) before any of their frames is read.
    fn dialect_upgrade(
        &mut self,
        head: &RequestHead,
        endpoint: Endpoint,
        key: &str,
        ident: Ident,
    ) -> Routed {
        if head.upgrade.is_none() {
            return Routed::Respond(upgrade_required());
        }
        let owner = route::owner(key, self.shared.mailboxes.len());
        self.move_to = (owner != self.core).then_some(owner);
        self.ident = Some(Box::new(ident));
        Routed::Upgrade {
            endpoint,
            park: true,
        }
    }

    /// A WebSocket upgrade on a MewConnect path (PROTOCOLS.md §1.3). Bad parameters are
    /// refused here with 500. Otherwise the request moves, unanswered, to the core owning its
    /// `connId`, where the pair table decides: 404 with the spec's text, or the 101 and the
    /// entry in the table within the same drive (no other connection runs in between).
    fn route_mew(&mut self, now: Tick, head: &RequestHead) -> Routed {
        let text = |status, body: &str| {
            Routed::Respond(Response::new(
                status,
                "text/plain; charset=utf-8",
                body.to_owned(),
            ))
        };
        let p = match mewconnect::parse_params(head.query.as_deref()) {
            Ok(p) => p,
            Err(e) => return text(mewconnect::PARAM_STATUS, e.text()),
        };
        let owner = route::owner(&mew_key(&p.conn_id), self.shared.mailboxes.len());
        if owner != self.core {
            self.move_to = Some(owner);
            return Routed::Relocate;
        }
        let Some(ctx) = self.conn.as_ref() else {
            return text(503, "not ready"); // routing always runs with a connection context
        };
        if let Err(r) = ctx.dialects.mew.check(&p) {
            return text(mewconnect::REFUSAL_STATUS, r.text());
        }
        self.ident = Some(Box::new(Ident::Mew {
            conn_id: p.conn_id.clone(),
        }));
        self.mew_pending = Some((p, now));
        Routed::Upgrade {
            endpoint: Endpoint::MewConnect,
            park: true,
        }
    }

    fn status_page(&self) -> Response {
        let s = self.shared;
        let body = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>sigyard</title></head><body>\
             <h1>sigyard {}</h1><p>WebRTC signaling server.</p>\
             <ul><li>reactor cores: {}</li><li>open connections: {}</li><li>uptime: {} s</li></ul>\
             <p><a href=\"/healthz\">/healthz</a> · <a href=\"/metrics\">/metrics</a></p></body></html>\n",
            env!("CARGO_PKG_VERSION"),
            s.mailboxes.len(),
            s.conns_total.load(std::sync::atomic::Ordering::Relaxed),
            s.started.elapsed().as_secs()
        );
        Response::new(200, "text/html; charset=utf-8", body)
    }
}

fn upgrade_required() -> Response {
    let mut r = Response::text(426, "this endpoint speaks WebSocket only");
    r.headers.push(("Upgrade", "websocket".into()));
    r
}

impl App for Host<'_> {
    fn route(&mut self, now: Tick, head: &RequestHead) -> Routed {
        if let Some(api) = &self.shared.api {
            if let Some(routed) = api.route(head, self.shared.cfg.limits.max_body_bytes) {
                return routed;
            }
        }
        let get = matches!(head.method, Method::Get | Method::Head);
        if head.upgrade.is_some() && route::is_mew_path(&head.path, &self.shared.cfg.mew.paths) {
            return self.route_mew(now, head);
        }
        match route::route(&head.path, self.shared.cfg.echo) {
            Route::SocketIo => self.route_sio(now, head),
            Route::Echo { key } => {
                if head.upgrade.is_none() {
                    return Routed::Respond(upgrade_required());
                }
                let cores = self.shared.mailboxes.len();
                let owner = key
                    .map(|k| route::owner(k, cores))
                    .filter(|&o| o != self.core);
                self.move_to = owner;
                Routed::Upgrade {
                    endpoint: Endpoint::Echo,
                    park: owner.is_some(),
                }
            }
            Route::Introduction { id } => self.dialect_upgrade(
                head,
                Endpoint::Introduction,
                INTRODUCTIONS_KEY,
                Ident::Introduction(id.into()),
            ),
            Route::Connection(seek) => {
                let key = seek.pair_key();
                self.dialect_upgrade(head, Endpoint::Connection, &key, Ident::Connection(seek))
            }
            Route::PeerServer => {
                let id = crate::csprng::hex_id::<16>();
                let key = peer_key(&id);
                let ident = Ident::PeerServer(id.into());
                self.dialect_upgrade(head, Endpoint::PeerServer, &key, ident)
            }
            Route::PeerClient { server } => {
                let key = peer_key(&server);
                let ident = Ident::PeerClient {
                    server: server.into(),
                    id: crate::csprng::hex_id::<16>().into(),
                };
                self.dialect_upgrade(head, Endpoint::PeerClient, &key, ident)
            }
            Route::Unpairable => {
                if head.upgrade.is_none() {
                    return Routed::Respond(upgrade_required());
                }
                self.close_self = Some((1008, "cannot pair: use /connection/:local/:remote/:key"));
                Routed::Upgrade {
                    endpoint: Endpoint::Connection,
                    park: false,
                }
            }
            Route::IceServers if self.shared.ice.endpoint_token().is_none() => {
                Routed::Respond(Response::text(404, "not found"))
            }
            Route::Healthz | Route::Metrics | Route::Status | Route::IceServers if !get => {
                let mut r = Response::text(405, "method not allowed");
                r.headers.push(("Allow", "GET, HEAD".into()));
                Routed::Respond(r)
            }
            Route::Healthz => Routed::Respond(Response::text(200, "ok")),
            Route::Metrics => {
                let mut body = crate::metrics::render(
                    &self.shared.cores,
                    self.shared.started.elapsed().as_secs_f64(),
                );
                if let Some(api) = &self.shared.api {
                    api.render_metrics(&mut body);
                }
                Routed::Respond(Response::new(
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    body,
                ))
            }
            Route::Status => Routed::Respond(self.status_page()),
            Route::IceServers => Routed::Respond(crate::ice::endpoint::respond(
                &self.shared.ice,
                head,
                crate::ice::unix_now(),
            )),
            // A MewConnect path without an upgrade (`/` is the status page, matched above).
            Route::NotFound if route::is_mew_path(&head.path, &self.shared.cfg.mew.paths) => {
                Routed::Respond(upgrade_required())
            }
            Route::NotFound => Routed::Respond(Response::text(404, "not found")),
        }
    }

    fn on_request_body(&mut self, _now: Tick, head: &RequestHead, body: &[u8]) -> Response {
        if sio::is_sio_path(&head.path) {
            return self.sio_body(head, body);
        }
        match &self.shared.api {
            Some(api) if api.claims(&head.path) => api.respond(head, body),
            _ => Response::text(404, "not found"),
        }
    }

    fn on_handshake(&mut self, outcome: Handshake) {
        match outcome {
            Handshake::Upgraded(_) => self.shell.handshakes_ok += 1,
            Handshake::Rejected { status, reason } => {
                self.shared.cores[self.core].handshake_failed(status, reason)
            }
        }
        if let Some(p) = self.sio_pending.take() {
            match outcome {
                Handshake::Upgraded(Endpoint::SocketIo) => self.sio_upgraded(p),
                _ => self.ident = None,
            }
            return;
        }
        let Some((p, now)) = self.mew_pending.take() else {
            return;
        };
        match (outcome, self.conn.as_mut()) {
            (Handshake::Upgraded(Endpoint::MewConnect), Some(ctx)) => {
                let admitted =
                    ctx.dialects
                        .mew
                        .admit(p, ctx.me, api_gateway_id().into(), now, ctx.deliveries);
                if let Err(r) = admitted {
                    // `route` checked on this thread a moment ago: nothing can have changed.
                    crate::warn!("mewconnect admission changed after routing: {r:?}");
                }
            }
            // The upgrade failed its header checks after routing: nothing was admitted.
            _ => self.ident = None,
        }
    }

    fn on_message(
        &mut self,
        now: Tick,
        endpoint: Endpoint,
        kind: DataKind,
        payload: &[u8],
        out: &mut Outbox<'_>,
    ) {
        if endpoint == Endpoint::SocketIo {
            self.sio_message(kind, payload);
            return;
        }
        let Some(ctx) = self.conn.as_mut() else {
            return;
        };
        match endpoint {
            Endpoint::Echo => out.send(kind, payload),
            Endpoint::MewConnect => {
                let opts = mew_options(&self.shared.cfg);
                let mut env = MewEnv {
                    shared: self.shared,
                    ice: None,
                };
                ctx.dialects.mew.message(
                    ctx.me,
                    now,
                    kind,
                    payload,
                    &opts,
                    &mut env,
                    ctx.deliveries,
                )
            }
            Endpoint::PeerServer | Endpoint::PeerClient => {
                if let Verdict::Close(why) =
                    ctx.dialects
                        .peers
                        .message(ctx.me, kind, payload, ctx.deliveries)
                {
                    // Gone from the relay now (its peers hear PEER_GONE at once), not when the
                    // close handshake ends.
                    ctx.dialects.peers.leave(ctx.me, ctx.deliveries);
                    self.close_self = Some((1008, why));
                }
            }
            Endpoint::SocketIo => {}
            Endpoint::Introduction => {
                ctx.dialects
                    .intros
                    .message(ctx.me, kind, payload, ctx.deliveries)
            }
            Endpoint::Connection => {
                if let Some(peer) = ctx.peer {
                    // Paired, but this side is still finishing a message it began before the
                    // pipe opened: forward it whole; cut-through starts at the next one.
                    ctx.deliveries.push(Outgoing {
                        to: peer,
                        kind,
                        payload: payload.to_vec(),
                    });
                    return;
                }
                let Some(Ident::Connection(seek)) = ctx.ident else {
                    return;
                };
                let l = &self.shared.cfg.limits;
                let limits = HoldLimits {
                    max_bytes: l.pipe_hold_bytes,
                    max_messages: l.pipe_hold_messages,
                };
                match ctx.dialects.pipes.hold(seek, ctx.me, kind, payload, limits) {
                    Ok(()) => {}
                    Err(HoldError::Full { .. }) => {
                        self.close_self =
                            Some((1008, "peer did not connect: pipe holding limit reached"))
                    }
                    // A socket replaced by a newer one for the same seek: nobody will read it.
                    Err(HoldError::NotWaiting) => {}
                }
            }
        }
    }
}
