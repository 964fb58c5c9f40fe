//! The registry: every dialect sigyard speaks, in one place. It maps request routes to
//! dialects, configuration sections to dialects' options, and builds each core's instances;
//! the shell (`net`) knows dialects only through it and the contract
//! (`proto::dialect::Dialect`).
//!
//! Adding a WebSocket dialect: its module under `proto/dialect/`, one entry in [`DIALECTS`]
//! (and its routes in [`ROUTES`] and [`Registry::route`]), and its options in `config.rs`.
//! A Socket.IO dialect: its module, one entry in [`SioApps`], its options.
//!
//! What needs the outside world on a dialect's behalf also lives here: the HTTP API's shared
//! channel store with its state log ([`api`]), and the webRTWorkspaces store file
//! ([`workspace_store`]).

pub mod api;
pub mod workspace_store;

use crate::config::Config;
use crate::proto::dialect::anypath::{self, AnyPath};
use crate::proto::dialect::cevitxe::{self, IntroductionDialect};
use crate::proto::dialect::echo::{self, Echo};
use crate::proto::dialect::httpapi::{Cors, HttpApi};
use crate::proto::dialect::mewconnect::{self, MewConnect};
use crate::proto::dialect::mewv1::{self, MewV1, MewV1Config};
use crate::proto::dialect::peerjs::{self, PeerJs};
use crate::proto::dialect::peerolator::{self, PeerPath, Peerolator};
use crate::proto::dialect::pipe::{self, HoldLimits, PipeDialect, PipeOptions};
use crate::proto::dialect::sio::{Apps, Raw, SioCx, SioDialect};
use crate::proto::dialect::workspaces::{self, token, Workspaces, WorkspacesConfig};
use crate::proto::dialect::{Answer, Cx, Dialect, Handle, Metric, Placement, Random};
use crate::proto::eio::{self, Engine, EngineOptions};
use crate::proto::http::{Method, RequestHead, Response};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A route's index in [`ROUTES`].
pub type RouteId = usize;

/// One route: the label its WebSocket connections carry in metrics, and the dialect (an index
/// into [`DIALECTS`]) that serves it.
#[derive(Debug, Clone, Copy)]
pub struct RouteInfo {
    pub label: &'static str,
    pub dialect: usize,
    /// Whether its connections become WebSockets (and are counted by label).
    pub websocket: bool,
}

const ECHO: usize = 0;
const INTRODUCTION: usize = 1;
const PIPE: usize = 2;
const MEWCONNECT: usize = 3;
const PEEROLATOR: usize = 4;
const SOCKETIO: usize = 5;
const HTTPAPI: usize = 6;
const ANYPATH: usize = 7;
const PEERJS: usize = 8;

/// The dialects, in instance order: a name for logs, and the metrics it reports on `/metrics`
/// ([`Dialect::metrics`] fills them in this order). Several dialects may report series of one
/// name (with their own labels): `/metrics` writes a name's series together.
pub const DIALECTS: [(&str, &[Metric]); 9] = [
    ("echo", &[]),
    ("cevitxe-introduction", &[]),
    ("cevitxe-pipe", pipe::METRICS),
    ("mewconnect", mewconnect::METRICS),
    ("peerolator", &[]),
    ("socketio", SOCKETIO_METRICS),
    ("httpapi", &[]),
    ("ywebrtc-webtorrent", anypath::METRICS),
    (
        "peerjs",
        &[Metric::gauge(
            "sigyard_peerjs_clients",
            "PeerJS clients registered",
        )],
    ),
];

/// The Engine.IO layer's sessions, then MewConnect v1's metrics ([`SioApps::metrics`]).
const SOCKETIO_METRICS: &[Metric] = &[
    Metric::gauge(
        "sigyard_socketio_sessions",
        "Engine.IO / Socket.IO sessions (polling or WebSocket)",
    ),
    mewv1::METRICS[0],
    mewv1::METRICS[1],
    mewv1::METRICS[2],
    mewv1::METRICS[3],
    mewv1::METRICS[4],
];

/// The metrics of every dialect together, in [`DIALECTS`] order.
pub const DIALECT_METRICS: usize = METRICS_AT[DIALECTS.len()];

/// Where each dialect's metrics start among the [`DIALECT_METRICS`] slots, and (last) their
/// end.
const METRICS_AT: [usize; DIALECTS.len() + 1] = {
    let mut at = [0; DIALECTS.len() + 1];
    let mut i = 0;
    while i < DIALECTS.len() {
        let mut n = 0;
        let mut j = 0;
        while j < DIALECTS[i].1.len() {
            n += DIALECTS[i].1[j].slots();
            j += 1;
        }
        at[i + 1] = at[i] + n;
        i += 1;
    }
    at
};

const R_ECHO: RouteId = 0;
const R_INTRODUCTION: RouteId = 1;
const R_CONNECTION: RouteId = 2;
const R_MEWCONNECT: RouteId = 3;
const R_PEER_SERVER: RouteId = 4;
const R_PEER_CLIENT: RouteId = 5;
const R_SOCKETIO: RouteId = 6;
const R_HTTPAPI: RouteId = 7;
const R_YWEBRTC: RouteId = 8;
const R_PEERJS: RouteId = 9;
const R_WEBTORRENT: RouteId = 10;
const R_ANYPATH: RouteId = 11;

/// Every route, with its metrics label (indexed by the `R_*` constants).
pub const ROUTES: [RouteInfo; 12] = [
    route("echo", ECHO, true),
    route("cevitxe_introduction", INTRODUCTION, true),
    route("cevitxe_connection", PIPE, true),
    route("mewconnect", MEWCONNECT, true),
    route("peerolator_server", PEEROLATOR, true),
    route("peerolator_client", PEEROLATOR, true),
    route("socketio", SOCKETIO, true),
    route("httpapi", HTTPAPI, false),
    route("ywebrtc", ANYPATH, true),
    route("peerjs", PEERJS, true),
    route("webtorrent", ANYPATH, true),
    // An upgrade on a path no dialect claims: its first frame decides (PROTOCOLS-beyond.md).
    route("ywebrtc_or_webtorrent", ANYPATH, true),
];

const fn route(label: &'static str, dialect: usize, websocket: bool) -> RouteInfo {
    RouteInfo {
        label,
        dialect,
        websocket,
    }
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Dialect(RouteId),
    /// The operator endpoints, served by the shell.
    Status,
    Healthz,
    Metrics,
    IceServers,
    NotFound,
}

/// The registry of one server: its configuration, and what its dialects share.
pub struct Registry {
    cfg: Arc<Config>,
    /// The HTTP API's store (`--api`) and its maintenance thread.
    api: Option<Arc<api::SharedTable>>,
    maintenance: Mutex<Option<api::Maintenance>>,
    /// webRTWorkspaces when it has a store (built, and the store loaded, at start) until the
    /// instance that takes its sockets takes it at their first handshake.
    workspaces: Mutex<Option<Persisted>>,
    /// Each route's origin allow-list (`--allowed-origins`, or its family's override).
    origins: Vec<crate::proto::origin::Origins>,
}

impl Registry {
    /// Prepare what the dialects share: the HTTP API's store (its state log replayed and its
    /// thread started) and the webRTWorkspaces store file (loaded). `wall` is the wall clock
    /// the HTTP API's store expires channels by. Errors name the file and what is wrong.
    pub fn start(cfg: Arc<Config>, cores: usize, wall: api::Clock) -> Result<Registry, String> {
        let origins = ROUTES
            .iter()
            .map(|r| {
                // cevitxe_introduction → cevitxe, peerolator_client → peerolator.
                let family = r.label.split('_').next().unwrap_or(r.label);
                cfg.origin_overrides
                    .iter()
                    .find(|(n, _)| n == family)
                    .map_or(&cfg.allowed_origins, |(_, o)| o)
                    .clone()
            })
            .collect();
        let mut registry = Registry {
            cfg: cfg.clone(),
            api: None,
            maintenance: Mutex::new(None),
            workspaces: Mutex::new(None),
            origins,
        };
        if cfg.api.enabled {
            let table = Arc::new(api::SharedTable::new(&cfg.api, cores, wall));
            // Replays the state log before any listener serves a request.
            let m = api::Maintenance::start(table.clone(), &cfg.api).map_err(|e| {
                let dir = cfg
                    .api
                    .state_dir
                    .as_deref()
                    .unwrap_or(std::path::Path::new(""));
                format!("state directory {}: {e}", dir.display())
            })?;
            registry.api = Some(table);
            registry.maintenance = Mutex::new(Some(m));
        }
        // With a store, the dialect is built now so a store that does not load stops the start;
        // without one it is built at its first handshake.
        if cfg.workspaces.storage_file.is_some() {
            let w = build_workspaces(&cfg).map_err(|e| format!("workspace store {e}"))?;
            registry.workspaces = Mutex::new(Some(w));
        }
        Ok(registry)
    }

    /// End what the dialects share: write the HTTP API's pending records, and the last
    /// snapshot of a workspace store no instance took.
    pub fn stop(&self) {
        let m = self
            .maintenance
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(m) = m {
            m.stop();
        }
        drop(
            self.workspaces
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
    }

    /// The lines of `/metrics` for what the dialects share.
    pub fn render_metrics(&self, out: &mut String) {
        if let Some(api) = &self.api {
            api.render_metrics(out);
        }
    }

    /// Checks of the configuration that need the routes: the HTTP API's path must be free.
    pub fn check(cfg: &Config) -> Result<(), String> {
        let path = &cfg.api.path;
        let free = path == "*"
            || matches!(
                fixed_route(path, cfg.echo),
                Target::NotFound | Target::Status
            );
        if !free {
            return Err(format!(
                "--api-path: {path:?} must be * or a path (starting with /) no other endpoint uses"
            ));
        }
        Ok(())
    }

    /// What a listener serves, in one line for the start-up log: each dialect with its paths,
    /// and the optional parts on or off.
    pub fn served(cfg: &Config) -> String {
        let mut parts: Vec<String> = Vec::new();
        let mew = cfg.mew.paths.join(",");
        parts.push(format!(
            "MewConnect v2 on {mew} (upgrades naming role, connId or signed)"
        ));
        parts.push("cevitxe /introduction/:id and /connection/:a/:b/:key".into());
        parts.push("Peerolator /server, /client/:id".into());
        let p = &cfg.peerjs.path;
        let peers = if cfg.peerjs.allow_discovery {
            ", {key}/peers"
        } else {
            ""
        };
        parts.push(format!(
            "PeerJS {p}peerjs, {p}{{key}}/id{peers} (key {:?})",
            cfg.peerjs.key
        ));
        parts.push(format!("y-webrtc {}", cfg.ywebrtc_paths.join(",")));
        parts.push(format!("WebTorrent {}", cfg.webtorrent_paths.join(",")));
        parts.push("y-webrtc or WebTorrent by the first frame on any other upgrade".into());
        let echo = if cfg.echo { ", test rooms" } else { "" };
        parts.push(format!(
            "Socket.IO 2 /socket.io/ (webRTWorkspaces, MewConnect v1{echo})"
        ));
        parts.push(match cfg.api.enabled {
            true => format!(
                "HTTP API POST {}{}",
                cfg.api.path,
                cfg.api
                    .state_dir
                    .as_ref()
                    .map_or(String::new(), |d| format!(" (state in {})", d.display()))
            ),
            false => "HTTP API off".into(),
        });
        parts.push(format!("echo {}", if cfg.echo { "/echo" } else { "off" }));
        parts.push(match &cfg.cluster {
            Some(c) => format!("cluster over {}", c.url),
            None => "one process (no --cluster)".into(),
        });
        parts.join("; ")
    }

    /// Checks of the files the dialects will use, without starting anything (`--check-config`):
    /// the HTTP API's state directory can be created and written, the workspace store loads.
    pub fn check_files(cfg: &Config) -> Result<(), String> {
        if let (true, Some(dir)) = (cfg.api.enabled, cfg.api.state_dir.as_deref()) {
            let fail = |e: std::io::Error| format!("state directory {}: {e}", dir.display());
            std::fs::create_dir_all(dir).map_err(fail)?;
            let probe = dir.join(format!(".sigyard-check-{}", std::process::id()));
            std::fs::write(&probe, b"").map_err(fail)?;
            std::fs::remove_file(&probe).map_err(fail)?;
        }
        if cfg.workspaces.storage_file.is_some() {
            build_workspaces(cfg).map_err(|e| format!("workspace store {e}"))?;
        }
        Ok(())
    }

    /// Whether a request of `route` with this `Origin` may pass.
    pub fn origin_allowed(&self, route: RouteId, origin: &str) -> bool {
        self.origins.get(route).map_or(true, |o| o.allows(origin))
    }

    /// Which route (or operator endpoint) serves `head`.
    pub fn route(&self, head: &RequestHead) -> Target {
        let path = head.path.as_str();
        let upgrade = head.upgrade.is_some();
        let fixed = fixed_route(path, self.cfg.echo);
        // PeerJS first (PROTOCOLS-beyond.md, "Routing"): its socket, and its ids and peers
        // (plain requests only, so a WebSocket dialect's path keeps its upgrades); `GET /`
        // stays the status page.
        let peerjs_plain = matches!(head.method, Method::Get | Method::Head | Method::Options);
        if (upgrade || peerjs_plain)
            && fixed != Target::Status
            && peerjs::route(&self.cfg.peerjs.path, path, upgrade).is_some()
        {
            return Target::Dialect(R_PEERJS);
        }
        if self.api.is_some() && !upgrade {
            let api_path = match self.cfg.api.path.as_str() {
                "*" => matches!(fixed, Target::NotFound | Target::Status),
                p => p == path,
            };
            let status_page = matches!(head.method, Method::Get | Method::Head) && path == "/";
            if api_path && !status_page {
                return Target::Dialect(R_HTTPAPI);
            }
        }
        let mew_path = self.cfg.mew.paths.iter().any(|p| p == path);
        // Their own paths (a plain request gets the original's answer unless the path is
        // another endpoint's, such as the status page).
        let own = |paths: &[String]| {
            (upgrade || fixed == Target::NotFound) && paths.iter().any(|p| p == path)
        };
        match fixed {
            // A MewConnect client always says who it is (PROTOCOLS-beyond.md, "Routing").
            _ if upgrade && mew_path && mewconnect::names_itself(head.query.as_deref()) => {
                Target::Dialect(R_MEWCONNECT)
            }
            _ if own(&self.cfg.webtorrent_paths) => Target::Dialect(R_WEBTORRENT),
            _ if own(&self.cfg.ywebrtc_paths) => Target::Dialect(R_YWEBRTC),
            // The y-webrtc and WebTorrent clients connect to the bare URL: the first frame
            // tells them apart.
            Target::NotFound | Target::Status if upgrade => Target::Dialect(R_ANYPATH),
            _ if upgrade && mew_path => Target::Dialect(R_ANYPATH),
            // A MewConnect path without an upgrade: its dialect answers 426.
            Target::NotFound if mew_path => Target::Dialect(R_MEWCONNECT),
            t => t,
        }
    }

    /// A core's instance of every dialect, in [`DIALECTS`] order.
    pub fn instances(self: &Arc<Self>) -> Instances {
        let cfg = &self.cfg;
        let l = &cfg.limits;
        let nonzero_ms = |d: Duration| (!d.is_zero()).then_some(d.as_millis() as u64);
        let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
        let api: Box<dyn Dialect + Send> = match &self.api {
            // In a cluster the channels live in Redis; the table only counts the answers.
            Some(table) if cfg.cluster.is_some() => Box::new(HttpApi::outside(
                Box::new(table.clone()),
                Cors::parse(&cfg.api.cors_origin),
                l.max_body_bytes,
                2 * cfg.cluster_options.node_timeout.as_millis() as u64,
            )),
            Some(table) => Box::new(HttpApi::new(
                Box::new(table.clone()),
                Cors::parse(&cfg.api.cors_origin),
                l.max_body_bytes,
            )),
            None => Box::new(Unserved),
        };
        let ms = |d: Duration| d.as_millis() as u64;
        let list: Vec<Box<dyn Dialect + Send>> = vec![
            Box::new(Echo),
            Box::new(IntroductionDialect::default()),
            Box::new(PipeDialect::new(PipeOptions {
                hold: HoldLimits {
                    max_bytes: l.pipe_hold_bytes,
                    max_messages: l.pipe_hold_messages,
                },
                hold_timeout_ms: nonzero_ms(l.pipe_hold_timeout),
            })),
            Box::new(MewConnect::new(mewconnect::Options {
                error_frames: cfg.mew.error_frames,
                idle_timeout: nonzero(cfg.mew.idle_timeout),
                max_lifetime: nonzero(cfg.mew.max_lifetime),
            })),
            Box::new(Peerolator::new(cfg.peerolator_server_info.clone())),
            Box::new(Engine::new(
                EngineOptions {
                    sessions: eio::Options {
                        ping_interval_ms: ms(cfg.sio.ping_interval),
                        upgrade_timeout_ms: 10_000,
                        max_queued_bytes: l.max_outbound_bytes,
                        max_sessions: cfg.sio.max_sessions,
                    },
                    max_http_buffer: cfg.sio.max_http_buffer,
                },
                SioApps::new(self.clone()),
            )),
            api,
            Box::new(AnyPath::new(anypath::Options {
                ywebrtc_paths: cfg.ywebrtc_paths.clone(),
                webtorrent_paths: cfg.webtorrent_paths.clone(),
                tracker: cfg.webtorrent.clone(),
            })),
            Box::new(PeerJs::new(cfg.peerjs.clone())),
        ];
        Instances::new(list)
    }
}

/// The routes every request path may have, apart from the HTTP API and MewConnect (whose
/// paths are configured).
fn fixed_route(path: &str, echo: bool) -> Target {
    match path {
        "/" => Target::Status,
        "/healthz" => Target::Healthz,
        "/metrics" => Target::Metrics,
        "/ice-servers" => Target::IceServers,
        p if eio::claims(p) => Target::Dialect(R_SOCKETIO),
        p if echo && echo::claims(p) => Target::Dialect(R_ECHO),
        p if cevitxe::path_id(p).is_some() => Target::Dialect(R_INTRODUCTION),
        p if pipe::parse_path(p).is_some() => Target::Dialect(R_CONNECTION),
        p => match peerolator::parse_path(p) {
            Some(PeerPath::Server) => Target::Dialect(R_PEER_SERVER),
            Some(PeerPath::Client(_)) => Target::Dialect(R_PEER_CLIENT),
            None => Target::NotFound,
        },
    }
}

/// One core's dialect instances.
///
/// Only a call changes an instance, and every call goes through [`Instances::get`]: so an
/// instance's deadline and metrics are read again only after it was handed out, not for
/// every instance on every loop turn.
pub struct Instances {
    list: Vec<Box<dyn Dialect + Send>>,
    /// Each instance's [`Dialect::poll_timeout`] as last read.
    deadlines: [Option<u64>; DIALECTS.len()],
    /// One bit per instance handed out since its deadline was read.
    stale_deadlines: u16,
    /// One bit per instance handed out since its metrics were read.
    stale_metrics: u16,
}

const ALL_STALE: u16 = {
    assert!(DIALECTS.len() <= 16, "one bit per dialect");
    ((1u32 << DIALECTS.len()) - 1) as u16
};

impl Instances {
    fn new(list: Vec<Box<dyn Dialect + Send>>) -> Instances {
        assert_eq!(list.len(), DIALECTS.len(), "one instance per dialect");
        Instances {
            list,
            deadlines: [None; DIALECTS.len()],
            stale_deadlines: ALL_STALE,
            stale_metrics: ALL_STALE,
        }
    }

    pub fn get(&mut self, dialect: usize) -> &mut dyn Dialect {
        self.stale_deadlines |= 1 << dialect;
        self.stale_metrics |= 1 << dialect;
        &mut *self.list[dialect]
    }

    /// Whether instance `dialect` holds state for `key` (false for an index it does not have).
    pub fn holds(&self, dialect: usize, key: &str) -> bool {
        self.list.get(dialect).is_some_and(|d| d.holds(key))
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Instance `dialect`'s [`Dialect::poll_timeout`].
    pub fn deadline(&mut self, dialect: usize) -> Option<u64> {
        if self.stale_deadlines & 1 << dialect != 0 {
            self.stale_deadlines &= !(1 << dialect);
            self.deadlines[dialect] = self.list[dialect].poll_timeout();
        }
        self.deadlines[dialect]
    }

    /// The earliest of the instances' deadlines.
    pub fn next_deadline(&mut self) -> Option<u64> {
        (0..self.list.len()).filter_map(|d| self.deadline(d)).min()
    }

    /// The metrics of every instance handed out since this was last called (all of them the
    /// first time), each as `publish(first slot, values)`, in [`DIALECTS`] order.
    pub fn changed_metrics(&mut self, mut publish: impl FnMut(usize, &[u64])) {
        if self.stale_metrics == 0 {
            return;
        }
        let mut values = [0; DIALECT_METRICS];
        while self.stale_metrics != 0 {
            let d = self.stale_metrics.trailing_zeros() as usize;
            self.stale_metrics &= self.stale_metrics - 1;
            let (at, end) = (METRICS_AT[d], METRICS_AT[d + 1]);
            if at < end {
                let out = &mut values[at..end];
                self.list[d].metrics(out);
                publish(at, out);
            }
        }
    }
}

/// A dialect that is switched off: everything gets 404.
struct Unserved;

impl Dialect for Unserved {
    fn place(&self, _req: &RequestHead, _rand: &mut dyn Random) -> Placement {
        Placement::Answer(Response::text(404, "not found"))
    }
    fn on_request(
        &mut self,
        _cx: &mut Cx<'_>,
        _conn: Handle,
        _key: Option<&str>,
        _req: &RequestHead,
    ) -> Answer {
        Answer::Respond(Response::text(404, "not found"))
    }
}

// ── Socket.IO dialects ─────────────────────────────────────────────────────────────────────

/// The Socket.IO dialects of one instance of the Engine.IO layer, numbered as
/// [`Apps`] wants: 0 webRTWorkspaces, 1 MewConnect v1, 2 the test rooms dialect (`--echo`).
/// A handshake with `stage` in its query is MewConnect v1's, one with `echo` the test
/// dialect's (when enabled), any other webRTWorkspaces'.
pub struct SioApps {
    registry: Arc<Registry>,
    workspaces: Option<Persisted>,
    /// Set when building webRTWorkspaces failed (logged once; its handshakes get 400).
    workspaces_failed: bool,
    mewv1: MewV1,
    echo: Option<eio::echo::Echo>,
}

impl SioApps {
    fn new(registry: Arc<Registry>) -> SioApps {
        let cfg = &registry.cfg;
        let mewv1 = MewV1::new(MewV1Config {
            pair_ttl_ms: u64::try_from(cfg.mew_v1.pair_ttl.as_millis()).unwrap_or(u64::MAX),
            max_pairs: cfg.mew_v1.max_pairs,
        });
        let echo = cfg.echo.then_some(eio::echo::Echo);
        SioApps {
            registry,
            workspaces: None,
            workspaces_failed: false,
            mewv1,
            echo,
        }
    }
}

impl Apps for SioApps {
    fn count(&self) -> usize {
        3
    }

    fn pick(&self, query: &[(String, String)]) -> Option<(usize, String)> {
        if let Some(key) = mewv1::claims(query) {
            return Some((1, key));
        }
        if let Some(key) = self.echo.as_ref().and_then(|_| eio::echo::claims(query)) {
            return Some((2, key));
        }
        workspaces::claims(query).map(|key| (0, key))
    }

    fn ping_timeout_ms(&self, app: usize) -> u64 {
        let s = &self.registry.cfg.sio;
        let t = if app == 0 {
            s.workspaces_ping_timeout
        } else {
            s.ping_timeout
        };
        t.as_millis() as u64
    }

    fn get(&mut self, app: usize) -> Option<&mut dyn SioDialect> {
        if app == 0 && self.workspaces.is_none() && !self.workspaces_failed {
            // Built at the first handshake, so a server that never serves webRTWorkspaces
            // never warns about its secrets; the one built at start (with a store) is taken.
            let built = self
                .registry
                .workspaces
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            match built.map_or_else(|| build_workspaces(&self.registry.cfg), Ok) {
                Ok(w) => self.workspaces = Some(w),
                Err(e) => {
                    crate::error!("webRTWorkspaces: {e}");
                    self.workspaces_failed = true;
                }
            }
        }
        self.built(app)
    }

    fn built(&mut self, app: usize) -> Option<&mut dyn SioDialect> {
        match app {
            0 => self.workspaces.as_mut().map(|w| w as &mut dyn SioDialect),
            1 => Some(&mut self.mewv1),
            2 => self.echo.as_mut().map(|e| e as &mut dyn SioDialect),
            _ => None,
        }
    }

    fn poll_timeout(&self, app: usize) -> Option<u64> {
        match app {
            0 => self.workspaces.as_ref().and_then(|w| w.poll_timeout()),
            1 => self.mewv1.poll_timeout(),
            _ => None,
        }
    }

    fn metrics(&self, out: &mut [u64]) {
        self.mewv1.metrics(out);
    }
}

// ── webRTWorkspaces and its store ──────────────────────────────────────────────────────────

/// A burst of changes costs one snapshot per this many milliseconds.
pub const SAVE_EVERY_MS: u64 = 100;

/// webRTWorkspaces' configuration from the `workspaces-*` options. A missing secret or pepper
/// is replaced by 32 random bytes from the OS; the returned warnings say so.
pub fn workspaces_config(cfg: &Config) -> (WorkspacesConfig, Vec<String>) {
    let o = &cfg.workspaces;
    let mut warnings = Vec::new();
    let mut secret_or_random = |s: &Option<crate::secret::Secret>, what: &str| match s {
        Some(s) => s.expose().to_string(),
        None => {
            let mut why = "tokens stop working when the process ends".to_string();
            if let Some(f) = &o.storage_file {
                why = format!(
                    "workspaces kept in {} cannot be opened after a restart",
                    f.display()
                );
            }
            warnings.push(format!(
                "{what} is not set: using a random one for this process; {why}"
            ));
            crate::csprng::hex_id::<32>()
        }
    };
    let secret = secret_or_random(&o.secret, "workspaces-secret (MAGICK_TOKEN)");
    let salt = secret_or_random(&o.salt, "workspaces-salt (SALT_STRING)");
    let wc = WorkspacesConfig {
        secret: secret.into_bytes(),
        salt,
        capacity: o.capacity,
        disconnect_on_full: o.disconnect_on_full,
        untitled_workspace: o.untitled_name.clone(),
        anonymous_attendee: o.anonymous_name.clone(),
        pin_iterations: u32::try_from(o.pin_iterations).unwrap_or(token::MAX_PIN_ITERATIONS),
        max_workspaces: o.max_workspaces,
    };
    (wc, warnings)
}

/// webRTWorkspaces with its store, if one is configured: loaded at start (a file that does not
/// load stops the start), then written by the store's background writer at most every
/// [`SAVE_EVERY_MS`] while the table changes, and once more when dropped at shutdown.
pub struct Persisted {
    inner: Workspaces,
    store: Option<Store>,
}

struct Store {
    saved: u64,
    /// When the oldest unsaved change happened.
    dirty_since: Option<u64>,
    writer: workspace_store::Writer,
}

impl Persisted {
    fn changed(&mut self, now_ms: u64) {
        if let Some(s) = self.store.as_mut() {
            if self.inner.generation() != s.saved && s.dirty_since.is_none() {
                s.dirty_since = Some(now_ms);
            }
        }
    }

    fn save(&mut self) {
        if let Some(s) = self.store.as_mut() {
            let gen = self.inner.generation();
            if gen != s.saved {
                s.writer.submit(gen, self.inner.snapshot());
                s.saved = gen;
            }
            s.dirty_since = None;
        }
    }

    fn save_due(&self) -> Option<u64> {
        self.store
            .as_ref()
            .and_then(|s| s.dirty_since)
            .map(|d| d + SAVE_EVERY_MS)
    }
}

impl Drop for Persisted {
    /// Shutdown: what changed since the last snapshot is written (the writer finishes it).
    fn drop(&mut self) {
        self.save();
    }
}

impl SioDialect for Persisted {
    fn on_connect(&mut self, cx: &mut SioCx<'_>, sid: &str, query: &[(String, String)]) {
        self.inner.on_connect(cx, sid, query);
        self.changed(cx.now);
    }
    fn on_event(&mut self, cx: &mut SioCx<'_>, sid: &str, event: &str, args: &[Raw]) {
        self.inner.on_event(cx, sid, event, args);
        self.changed(cx.now);
    }
    fn on_disconnect(&mut self, cx: &mut SioCx<'_>, sid: &str) {
        self.inner.on_disconnect(cx, sid);
        self.changed(cx.now);
    }
    fn on_timeout(&mut self, cx: &mut SioCx<'_>) {
        if self.inner.poll_timeout().is_some_and(|d| d <= cx.now) {
            self.inner.on_timeout(cx);
            self.changed(cx.now);
        }
        if self.save_due().is_some_and(|t| t <= cx.now) {
            self.save();
        }
    }
    fn poll_timeout(&self) -> Option<u64> {
        match (self.inner.poll_timeout(), self.save_due()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Build webRTWorkspaces from the configuration, with its store loaded if one is configured.
fn build_workspaces(cfg: &Config) -> Result<Persisted, String> {
    let (wc, warnings) = workspaces_config(cfg);
    for w in warnings {
        crate::warn!("{w}");
    }
    let mut inner = Workspaces::new(wc);
    let Some(path) = cfg.workspaces.storage_file.clone() else {
        return Ok(Persisted { inner, store: None });
    };
    if let Some(snapshot) = workspace_store::load(&path)? {
        let n = inner
            .restore(snapshot)
            .map_err(|e| format!("the workspace store {} is corrupt: {e}", path.display()))?;
        crate::info!("loaded {n} workspaces from {}", path.display());
    }
    let writer = workspace_store::Writer::spawn(path.clone())
        .map_err(|e| format!("{}: cannot start its writer: {e}", path.display()))?;
    Ok(Persisted {
        store: Some(Store {
            saved: inner.generation(),
            dirty_since: None,
            writer,
        }),
        inner,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

    #[test]
    fn config_from_options_fills_missing_secrets_and_warns() {
        let mut cfg = Config::default();
        let (a, warnings) = workspaces_config(&cfg);
        assert_eq!(warnings.len(), 2);
        assert!(warnings[0].contains("MAGICK_TOKEN") && warnings[1].contains("SALT_STRING"));
        assert_eq!(a.secret.len(), 64);
        let (b, _) = workspaces_config(&cfg);
        assert_ne!(a.secret, b.secret);
        assert_ne!(a.salt, b.salt);
        assert_eq!(
            (a.capacity, a.pin_iterations, a.max_workspaces),
            (5, 100_000, 100_000)
        );
        assert_eq!(a.untitled_workspace, "Anonumous Workspace");
        cfg.workspaces.storage_file = Some("/var/lib/ws.json".into());
        cfg.workspaces.salt = Some(crate::secret::Secret::new("pepper"));
        let (c, warnings) = workspaces_config(&cfg);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("/var/lib/ws.json"), "{warnings:?}");
        assert_eq!(c.salt, "pepper");
        cfg.workspaces.secret = Some(crate::secret::Secret::new("magick"));
        let (d, warnings) = workspaces_config(&cfg);
        assert!(warnings.is_empty());
        assert_eq!(d.secret, b"magick");
    }

    /// A dialect whose deadline and metric value are set from outside (as a call would set
    /// them), counting how often they are read.
    struct Probe {
        at: Arc<AtomicU64>,
        value: Arc<AtomicU64>,
        reads: Arc<AtomicU64>,
    }

    impl Dialect for Probe {
        fn place(&self, req: &RequestHead, rand: &mut dyn Random) -> Placement {
            Unserved.place(req, rand)
        }
        fn on_request(
            &mut self,
            cx: &mut Cx<'_>,
            conn: Handle,
            key: Option<&str>,
            req: &RequestHead,
        ) -> Answer {
            Unserved.on_request(cx, conn, key, req)
        }
        fn poll_timeout(&self) -> Option<u64> {
            self.reads.fetch_add(1, SeqCst);
            Some(self.at.load(SeqCst))
        }
        fn metrics(&self, out: &mut [u64]) {
            self.reads.fetch_add(1, SeqCst);
            out.fill(self.value.load(SeqCst));
        }
    }

    #[test]
    fn instances_read_again_only_what_was_handed_out() {
        let reads = Arc::new(AtomicU64::new(0));
        let (ats, values): (Vec<_>, Vec<_>) = (0..DIALECTS.len() as u64)
            .map(|d| {
                (
                    Arc::new(AtomicU64::new(1000 + d)),
                    Arc::new(AtomicU64::new(d + 1)),
                )
            })
            .unzip();
        let list = ats
            .iter()
            .zip(&values)
            .map(|(at, value)| {
                Box::new(Probe {
                    at: at.clone(),
                    value: value.clone(),
                    reads: reads.clone(),
                }) as Box<dyn Dialect + Send>
            })
            .collect();
        let mut inst = Instances::new(list);
        let published = |inst: &mut Instances| {
            let mut got = Vec::new();
            inst.changed_metrics(|at, values| got.push((at, values.to_vec())));
            got
        };
        let has_metrics = |d: usize| METRICS_AT[d] < METRICS_AT[d + 1];
        // The first time: every dialect that has metrics, each at its own slots.
        let all = published(&mut inst);
        assert_eq!(
            all.len(),
            (0..DIALECTS.len()).filter(|&d| has_metrics(d)).count()
        );
        for (at, got) in &all {
            let d = (0..DIALECTS.len())
                .find(|&d| METRICS_AT[d] == *at && has_metrics(d))
                .unwrap();
            assert_eq!(got.len(), METRICS_AT[d + 1] - at);
            assert!(got.iter().all(|&v| v == d as u64 + 1), "{got:?}");
        }
        assert_eq!(inst.next_deadline(), Some(1000));
        let read = reads.load(SeqCst);
        // Nothing handed out: nothing read again, the same answers.
        for (at, value) in ats.iter().zip(&values) {
            at.store(1, SeqCst);
            value.store(99, SeqCst);
        }
        assert!(published(&mut inst).is_empty());
        assert_eq!(inst.next_deadline(), Some(1000));
        assert_eq!(reads.load(SeqCst), read);
        // One handed out: its deadline and metrics are read again, and only those.
        let d = (0..DIALECTS.len()).rfind(|&d| has_metrics(d)).unwrap();
        let _ = inst.get(d);
        assert_eq!(inst.next_deadline(), Some(1));
        assert_eq!(inst.deadline(d), Some(1));
        let again = published(&mut inst);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].0, METRICS_AT[d]);
        assert!(again[0].1.iter().all(|&v| v == 99));
        assert_eq!(reads.load(SeqCst), read + 2);
    }
}
