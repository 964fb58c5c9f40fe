//! The Host's side of Engine.IO / Socket.IO (`/socket.io/`): placing requests on the core
//! that owns their session, and handing them to the core's [`Sessions`] table.
//!
//! A request naming a session (`sid`) moves to the core the id names before it is read
//! further; a handshake moves to the core owning its dialect's key, where the session id is
//! minted. A poll GET with nothing to send is held ([`Routed::Hold`]) and answered by the
//! table through the reactor's [`crate::proto::eio::Wire`].

use super::{Host, Ident};
use crate::net::Shared;
use crate::proto::conn::{Response, Routed};
use crate::proto::dialect::sio::{Dialect, Env};
use crate::proto::eio::packet::EioError;
use crate::proto::eio::session::{error_response, http_response};
use crate::proto::eio::{self, Kind, Options, PollGet, Refused, Sessions};
use crate::proto::http::{Method, RequestHead};
use crate::proto::route;
use crate::proto::time::Tick;
use std::time::Duration;

/// How much longer than the session's own timeout a held poll may wait before the
/// connection machine answers it by itself (a safety net: the table answers first).
const HOLD_SLACK: Duration = Duration::from_secs(5);

/// What a Socket.IO upgrade does once its 101 is written.
pub(crate) enum SioPending {
    /// A new session on the WebSocket transport.
    Handshake {
        sid: String,
        kind: Kind,
        query: Vec<(String, String)>,
    },
    /// An upgrade probe of the polling session `sid`.
    Attach { sid: String },
}

/// The Socket.IO layer's options from the configuration.
pub(crate) fn sio_options(cfg: &crate::config::Config) -> Options {
    let ms = |d: Duration| d.as_millis() as u64;
    let s = &cfg.sio;
    Options {
        ping_interval_ms: ms(s.ping_interval),
        ping_timeout_ms: [
            ms(s.workspaces_ping_timeout),
            ms(s.ping_timeout),
            ms(s.ping_timeout),
        ],
        upgrade_timeout_ms: 10_000,
        max_queued_bytes: cfg.limits.max_outbound_bytes,
        max_sessions: s.max_sessions,
    }
}

/// The dialect of `kind` for this core, if this build serves it.
fn make_dialect(kind: Kind, shared: &Shared) -> Option<Box<dyn Dialect + Send>> {
    use crate::proto::dialect::mewv1::{MewV1, MewV1Config};
    let cfg = &shared.cfg;
    match kind {
        Kind::Echo if cfg.echo => Some(Box::new(eio::echo::Echo)),
        Kind::Echo => None,
        Kind::MewV1 => Some(Box::new(MewV1::new(MewV1Config::from_options(&cfg.mew_v1)))),
        // With a store, built at start (its file loaded); otherwise built at the first
        // handshake, so a server that never sees webRTWorkspaces never warns about its
        // secrets. Either way only the core owning every workspace socket installs it, once.
        Kind::Workspaces => {
            let built = shared
                .workspaces
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            built.or_else(|| match crate::net::workspaces_store::build(cfg) {
                Ok(d) => Some(d),
                Err(e) => {
                    crate::error!("webRTWorkspaces: {e}");
                    None
                }
            })
        }
    }
}

/// What the Socket.IO dialects may ask of the shell: the ICE configuration.
pub(crate) struct SioEnv<'a> {
    pub shared: &'a Shared,
}

impl Env for SioEnv<'_> {
    fn ice_servers(&mut self, user: &str) -> serde_json::Value {
        self.shared
            .ice
            .list(user, crate::ice::unix_now())
            .servers_json()
    }
}

fn refuse(e: EioError, head: &RequestHead) -> Routed {
    Routed::Respond(error_response(e, head.origin.as_deref()))
}

/// A handshake the table does not take: no such dialect here (a bad request), or the table is
/// full (503, so clients back off and retry).
fn refuse_handshake(r: Refused, head: &RequestHead) -> Routed {
    match r {
        Refused::Full => {
            let origin = head.origin.as_deref();
            let body = "too many Socket.IO sessions; try again later".to_string();
            Routed::Respond(http_response(
                503,
                "text/plain; charset=utf-8",
                body,
                origin,
            ))
        }
        Refused::NoDialect | Refused::Taken => refuse(EioError::BadRequest, head),
    }
}

/// A 20-character session id owned by `core`, from the CSPRNG.
fn mint_sid(core: usize) -> String {
    let mut b = [0u8; 18];
    crate::csprng::fill(&mut b);
    eio::mint_sid(core, &b)
}

impl Host<'_> {
    /// Route a `/socket.io/` request (PROTOCOLS.md §6).
    pub(super) fn route_sio(&mut self, now: Tick, head: &RequestHead) -> Routed {
        let origin = head.origin.as_deref();
        if head.method == Method::Options && head.upgrade.is_none() {
            // CORS preflight (clients with extra headers): any origin.
            let mut r = http_response(204, "text/plain", String::new(), origin);
            r.headers
                .push(("Access-Control-Allow-Methods", "GET, POST, OPTIONS".into()));
            r.headers.push((
                "Access-Control-Allow-Headers",
                "Content-Type, Authorization, X-Requested-With".into(),
            ));
            r.headers.push(("Access-Control-Max-Age", "86400".into()));
            return Routed::Respond(r);
        }
        let req = match eio::parse_request(head.query.as_deref()) {
            Ok(r) => r,
            Err(e) => return refuse(e, head),
        };
        let cores = self.shared.mailboxes.len();
        let owner = match &req.sid {
            Some(sid) => match eio::sid_core(sid).filter(|&c| c < cores) {
                Some(c) => c,
                None => return refuse(EioError::UnknownSid, head),
            },
            None => {
                // Not even HEAD: its answer would be dropped with the body it carries.
                if head.method != Method::Get {
                    return refuse(EioError::BadHandshakeMethod, head);
                }
                let (_, key) = eio::handshake_kind(&req.query, self.shared.cfg.echo);
                route::owner(&key, cores)
            }
        };
        if owner != self.core {
            self.move_to = Some(owner);
            return Routed::Relocate;
        }
        if req.websocket && head.upgrade.is_none() {
            return refuse(EioError::BadRequest, head);
        }
        let core = self.core;
        let shared = self.shared;
        let Some(ctx) = self.conn.as_mut() else {
            return Routed::Respond(Response::text(503, "not ready"));
        };
        let sessions = &mut ctx.dialects.sio;
        let now_ms = ctx.now_ms;
        match req.sid {
            Some(sid) if req.websocket => {
                if let Err(e) = sessions.can_upgrade(&sid) {
                    return refuse(e, head);
                }
                self.ident = Some(Box::new(Ident::Sio { sid: sid.clone() }));
                self.sio_pending = Some(SioPending::Attach { sid });
                Routed::Upgrade {
                    endpoint: crate::proto::conn::Endpoint::SocketIo,
                    park: false,
                }
            }
            Some(sid) => match head.method {
                // A poll's answer takes the queued packets: HEAD would lose them.
                Method::Get => match sessions.poll_get(&sid, ctx.me, origin) {
                    Ok(PollGet::Answer(r)) => Routed::Respond(r),
                    Ok(PollGet::Hold) => {
                        let o = sessions.options();
                        let wait =
                            o.ping_interval_ms + o.ping_timeout_ms.iter().max().unwrap_or(&0);
                        let until = now.after(Duration::from_millis(wait) + HOLD_SLACK);
                        let fallback =
                            http_response(200, "text/plain; charset=UTF-8", "1:6".into(), origin);
                        Routed::Hold { until, fallback }
                    }
                    Err(e) => refuse(e, head),
                },
                Method::Post => Routed::Body {
                    max: shared.cfg.sio.max_http_buffer,
                },
                _ => refuse(EioError::BadRequest, head),
            },
            None => {
                let (kind, _) = eio::handshake_kind(&req.query, shared.cfg.echo);
                if !sessions.has_dialect(kind) {
                    match make_dialect(kind, shared) {
                        Some(d) => sessions.install(kind, d),
                        None => return refuse(EioError::BadRequest, head),
                    }
                }
                if let Err(r) = sessions.can_create(kind) {
                    return refuse_handshake(r, head);
                }
                let sid = mint_sid(core);
                if req.websocket {
                    self.ident = Some(Box::new(Ident::Sio { sid: sid.clone() }));
                    self.sio_pending = Some(SioPending::Handshake {
                        sid,
                        kind,
                        query: req.query,
                    });
                    return Routed::Upgrade {
                        endpoint: crate::proto::conn::Endpoint::SocketIo,
                        park: false,
                    };
                }
                let mut env = SioEnv { shared };
                match sessions.handshake_polling(now_ms, &sid, kind, &req.query, origin, &mut env) {
                    Ok(r) => Routed::Respond(r),
                    Err(r) => refuse_handshake(r, head),
                }
            }
        }
    }

    /// The body of a poll POST (the request was routed here, on the session's core).
    pub(super) fn sio_body(&mut self, head: &RequestHead, body: &[u8]) -> Response {
        let origin = head.origin.as_deref();
        let sid = match eio::parse_request(head.query.as_deref()) {
            Ok(r) => r.sid,
            Err(e) => return error_response(e, origin),
        };
        let (Some(sid), Some(ctx)) = (sid, self.conn.as_mut()) else {
            return error_response(EioError::BadRequest, origin);
        };
        let mut env = SioEnv {
            shared: self.shared,
        };
        match ctx.dialects.sio.poll_post(ctx.now_ms, &sid, body, &mut env) {
            Ok(()) => http_response(200, "text/html", "ok".into(), origin),
            Err(e) => error_response(e, origin),
        }
    }

    /// A Socket.IO upgrade's 101 is written: start its session or its probe.
    pub(super) fn sio_upgraded(&mut self, pending: SioPending) {
        let shared = self.shared;
        let Some(ctx) = self.conn.as_mut() else {
            return;
        };
        let mut env = SioEnv { shared };
        let s = &mut ctx.dialects.sio;
        match pending {
            SioPending::Handshake { sid, kind, query } => {
                // Checked at routing a moment ago on this thread; a refusal closes the socket.
                let _ = s.handshake_ws(ctx.now_ms, &sid, kind, &query, ctx.me, &mut env);
            }
            SioPending::Attach { sid } => {
                s.ws_attach(ctx.now_ms, &sid, ctx.me);
            }
        }
    }

    /// A WebSocket message of a Socket.IO connection.
    pub(super) fn sio_message(&mut self, kind: crate::proto::ws::DataKind, payload: &[u8]) {
        let shared = self.shared;
        let pending = self.ident.as_deref();
        let Some(ctx) = self.conn.as_mut() else {
            return;
        };
        let Some(Ident::Sio { sid }) = pending.or(ctx.ident) else {
            return;
        };
        let mut env = SioEnv { shared };
        let s = &mut ctx.dialects.sio;
        match (kind, std::str::from_utf8(payload)) {
            (crate::proto::ws::DataKind::Text, Ok(text)) => {
                s.ws_text(ctx.now_ms, sid, ctx.me, text, &mut env)
            }
            _ => s.ws_binary(ctx.now_ms, sid, ctx.me),
        }
    }
}

/// True when `path` is the Socket.IO path.
pub(crate) fn is_sio_path(path: &str) -> bool {
    matches!(route::route(path, false), route::Route::SocketIo)
}

/// A fresh table for a core.
pub(crate) fn new_sessions(cfg: &crate::config::Config) -> Sessions {
    Sessions::new(sio_options(cfg))
}
