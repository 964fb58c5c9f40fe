//! The shell's side of the protocol machine's [`App`] trait: routing, the operator endpoints
//! (`/`, `/healthz`, `/metrics`) and the echo endpoint.
//!
//! A `Host` is built for one drive of one connection and borrows what it needs from the
//! reactor. Dialects plug in here: the machine tells it which endpoint a message arrived on,
//! and the Host hands the message to that dialect.

use crate::metrics::ShellCounters;
use crate::net::Shared;
use crate::proto::conn::{App, Endpoint, Handshake, Outbox, Response, Routed};
use crate::proto::http::{Method, RequestHead};
use crate::proto::route::{self, Route};
use crate::proto::time::Tick;
use crate::proto::ws::DataKind;

pub(crate) struct Host<'a> {
    core: usize,
    shared: &'a Shared,
    shell: &'a mut ShellCounters,
    /// Set by `route` when the connection must move to another core after its upgrade.
    move_to: Option<usize>,
}

impl<'a> Host<'a> {
    pub(crate) fn new(core: usize, shared: &'a Shared, shell: &'a mut ShellCounters) -> Self {
        Host {
            core,
            shared,
            shell,
            move_to: None,
        }
    }

    pub(crate) fn take_move(&mut self) -> Option<usize> {
        self.move_to.take()
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

impl App for Host<'_> {
    fn route(&mut self, _now: Tick, head: &RequestHead) -> Routed {
        let get = matches!(head.method, Method::Get | Method::Head);
        match route::route(&head.path, self.shared.cfg.echo) {
            Route::Echo { key } => {
                if head.upgrade.is_none() {
                    let mut r = Response::text(426, "this endpoint speaks WebSocket only");
                    r.headers.push(("Upgrade", "websocket".into()));
                    return Routed::Respond(r);
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
        match endpoint {
            Endpoint::Echo => out.send(kind, payload),
        }
    }
}
