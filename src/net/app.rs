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
use crate::proto::dialect::pipe::{HoldError, HoldLimits, PipeTable, Seek};
use crate::proto::dialect::{ConnRef, Outgoing};
use crate::proto::http::{Method, RequestHead};
use crate::proto::route::{self, Route};
use crate::proto::time::Tick;
use crate::proto::ws::DataKind;

/// Every introduction socket lives on the core owning this key, so one table sees all peers.
const INTRODUCTIONS_KEY: &str = "cevitxe/introductions";

/// What a dialect connection is, from its upgrade path; kept in its slot (boxed: only
/// dialect connections pay for it) and carried along when it moves to another core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ident {
    Introduction(Box<str>),
    Connection(Seek),
}

/// The per-core tables of the dialects.
#[derive(Default)]
pub(crate) struct Dialects {
    pub intros: Introductions,
    pub pipes: PipeTable,
}

/// What the Host knows about the connection being driven, for dialect messages.
pub(crate) struct ConnCtx<'a> {
    pub me: ConnRef,
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
    fn route(&mut self, _now: Tick, head: &RequestHead) -> Routed {
        if let Some(api) = &self.shared.api {
            if let Some(routed) = api.route(head, self.shared.cfg.limits.max_body_bytes) {
                return routed;
            }
        }
        let get = matches!(head.method, Method::Get | Method::Head);
        match route::route(&head.path, self.shared.cfg.echo) {
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
            Route::Healthz | Route::Metrics | Route::Status if !get => {
                let mut r = Response::text(405, "method not allowed");
                r.headers.push(("Allow", "GET, HEAD".into()));
                Routed::Respond(r)
            }
            Route::Healthz => Routed::Respond(Response::text(200, "ok")),
            Route::Metrics => {
                let body = crate::metrics::render(
                    &self.shared.cores,
                    self.shared.started.elapsed().as_secs_f64(),
                );
                Routed::Respond(Response::new(
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    body,
                ))
            }
            Route::Status => Routed::Respond(self.status_page()),
            Route::NotFound => Routed::Respond(Response::text(404, "not found")),
        }
    }

    fn on_request_body(&mut self, _now: Tick, head: &RequestHead, body: &[u8]) -> Response {
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
    }

    fn on_message(
        &mut self,
        _now: Tick,
        endpoint: Endpoint,
        kind: DataKind,
        payload: &[u8],
        out: &mut Outbox<'_>,
    ) {
        let Some(ctx) = self.conn.as_mut() else {
            return;
        };
        match endpoint {
            Endpoint::Echo => out.send(kind, payload),
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
