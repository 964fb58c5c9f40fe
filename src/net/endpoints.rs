//! The operator endpoints the shell serves itself: `/` (a status page), `/healthz`,
//! `/metrics` (Prometheus), `GET /ice-servers` (with `--ice-endpoint-token`), and 404 for
//! what no route claims.

use crate::net::Shared;
use crate::proto::http::{Method, RequestHead, Response};
use crate::registry::Target;
use std::sync::atomic::Ordering;

/// The answer of an operator endpoint (or 404).
pub(crate) fn respond(shared: &Shared, target: Target, head: &RequestHead) -> Response {
    let get = matches!(head.method, Method::Get | Method::Head);
    match target {
        Target::IceServers if shared.ice.endpoint_token().is_none() => not_found(),
        Target::Healthz | Target::Metrics | Target::Status | Target::IceServers if !get => {
            let mut r = Response::text(405, "method not allowed");
            r.headers.push(("Allow".into(), "GET, HEAD".into()));
            r
        }
        // A cluster node that cannot place requests (its Redis away, or refusing its
        // heartbeat) refuses most new clients: a load balancer should send them elsewhere.
        Target::Healthz => match &shared.cluster {
            Some(c) if !c.stats.ready() => Response::text(
                503,
                "not ready: this cluster node cannot reach its Redis (or Redis refuses its \
                 heartbeat); see /metrics",
            ),
            _ => Response::text(200, "ok"),
        },
        Target::Metrics => Response::new(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics_text(shared),
        ),
        Target::Status => status_page(shared),
        Target::IceServers => {
            crate::ice::endpoint::respond(&shared.ice, head, crate::ice::unix_now())
        }
        Target::NotFound | Target::Dialect(_) => not_found(),
    }
}

pub(crate) fn not_found() -> Response {
    Response::text(404, "not found")
}

/// What `/metrics` serves.
pub(crate) fn metrics_text(shared: &Shared) -> String {
    let mut body = crate::metrics::render(&shared.cores, shared.started.elapsed().as_secs_f64());
    shared.registry.render_metrics(&mut body);
    if let Some(c) = &shared.cluster {
        c.stats.render(c.node, &mut body);
    }
    body
}

fn status_page(s: &Shared) -> Response {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>sigyard</title></head><body>\
         <h1>sigyard {}</h1><p>WebRTC signaling server.</p>\
         <ul><li>reactor cores: {}</li><li>open connections: {}</li><li>uptime: {} s</li></ul>\
         <p><a href=\"/healthz\">/healthz</a> · <a href=\"/metrics\">/metrics</a></p></body></html>\n",
        env!("CARGO_PKG_VERSION"),
        s.mailboxes.len(),
        s.conns_total.load(Ordering::Relaxed),
        s.started.elapsed().as_secs()
    );
    Response::new(200, "text/html; charset=utf-8", body)
}
