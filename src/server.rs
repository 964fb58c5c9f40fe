//! The embeddable server: build from a [`Config`], start, and control it through a [`Handle`].
//!
//! ```no_run
//! use std::time::Duration;
//! let server = sigyard::Server::builder()
//!     .listen("127.0.0.1:0".parse().unwrap())
//!     .threads(2)
//!     .echo(true)
//!     .build()
//!     .expect("valid configuration");
//! let handle = server.start().expect("bound and running");
//! println!("listening on {:?}", handle.local_addrs());
//! handle.shutdown(Duration::from_secs(5));
//! handle.join();
//! ```
//!
//! Starting binds every listener on the calling thread (so a bad address is an error you get
//! back, not a log line), then spawns one reactor thread per core. The library installs no
//! signal handlers; the `sigyard` binary does that and calls [`Handle::shutdown`] and
//! [`Handle::reload_tls`].

use crate::config::{ApiConfig, Config, Limits, Listener as ListenSpec};
use crate::metrics::CoreMetrics;
use crate::net::listener::bind_reuseport;
use crate::net::mailbox::{CoreMsg, Mailbox};
use crate::net::reactor::{Listener, Reactor, WAKER};
use crate::net::{tls, IpTable, Shared};
use crate::registry::api::{system_clock, Clock};
use crate::registry::Registry;
use crate::{info, warn};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Why a server could not start.
#[derive(Debug)]
pub enum StartError {
    Config(String),
    Tls(String),
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    Io(std::io::Error),
    /// What a dialect keeps outside the process cannot be used: the HTTP API's state
    /// directory, the webRTWorkspaces store file.
    State(String),
    /// The cluster's Redis does not answer (`--cluster`).
    Cluster(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(m) => write!(f, "configuration: {m}"),
            StartError::Tls(m) => write!(f, "TLS: {m}"),
            StartError::Bind { addr, error } => write!(f, "cannot listen on {addr}: {error}"),
            StartError::Io(e) => write!(f, "{e}"),
            StartError::State(m) => write!(f, "{m}"),
            StartError::Cluster(m) => write!(f, "cluster: {m}"),
        }
    }
}

impl std::error::Error for StartError {}

/// A validated configuration with its TLS material loaded, ready to start.
pub struct Server {
    cfg: Arc<Config>,
    tls: Option<Arc<rustls::ServerConfig>>,
    ice: crate::ice::Ice,
    wall_clock: Option<Clock>,
}

/// Builder for embedding: start from the defaults and change what you need.
pub struct Builder {
    cfg: Config,
    listen_set: bool,
    wall_clock: Option<Clock>,
}

impl Builder {
    /// Listen on a plain (ws://, http://) address. Repeatable; replaces the default listener.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.take_default_listen();
        self.cfg.listen.push(ListenSpec {
            addr,
            tls: false,
            proxy: false,
        });
        self
    }

    /// Listen on a TLS (wss://, https://) address; needs [`Builder::tls`].
    pub fn listen_tls(mut self, addr: SocketAddr) -> Self {
        self.take_default_listen();
        self.cfg.listen.push(ListenSpec {
            addr,
            tls: true,
            proxy: false,
        });
        self
    }

    pub fn tls(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.cfg.tls_cert = Some(cert.into());
        self.cfg.tls_key = Some(key.into());
        self
    }

    /// Reactor threads (0 = one per available core).
    pub fn threads(mut self, n: usize) -> Self {
        self.cfg.threads = n;
        self
    }

    /// Enable the `/echo` WebSocket endpoint.
    pub fn echo(mut self, on: bool) -> Self {
        self.cfg.echo = on;
        self
    }

    /// Adjust the ICE servers handed to clients (static list, TURN secrets, provider).
    pub fn ice(mut self, f: impl FnOnce(&mut crate::ice::IceConfig)) -> Self {
        f(&mut self.cfg.ice);
        self
    }

    /// Adjust limits and timeouts.
    pub fn limits(mut self, f: impl FnOnce(&mut Limits)) -> Self {
        f(&mut self.cfg.limits);
        self
    }

    /// Adjust any part of the configuration (dialect options, for example).
    pub fn configure(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.cfg);
        self
    }

    /// Adjust the HTTP API and its store.
    pub fn api(mut self, f: impl FnOnce(&mut ApiConfig)) -> Self {
        f(&mut self.cfg.api);
        self
    }

    /// The wall clock the dialects see (milliseconds since the UNIX epoch: channel expiry of
    /// the HTTP API, token times), instead of the system clock: for tests and simulations.
    pub fn wall_clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.wall_clock = Some(Arc::new(clock));
        self
    }

    pub fn build(self) -> Result<Server, StartError> {
        let mut server = Server::new(self.cfg)?;
        server.wall_clock = self.wall_clock;
        Ok(server)
    }

    fn take_default_listen(&mut self) {
        if !self.listen_set {
            self.cfg.listen.clear();
            self.listen_set = true;
        }
    }
}

impl Server {
    pub fn builder() -> Builder {
        Builder {
            cfg: Config::default(),
            listen_set: false,
            wall_clock: None,
        }
    }

    /// What `--check-config` checks beyond [`Server::new`]: the files the dialects will use
    /// (the HTTP API's state directory, the workspace store). Binds nothing.
    pub fn check_files(&self) -> Result<(), StartError> {
        Registry::check_files(&self.cfg).map_err(StartError::Config)
    }

    /// Validate `cfg` and load its TLS certificate, if any.
    pub fn new(cfg: Config) -> Result<Server, StartError> {
        cfg.validate()
            .map_err(|e| StartError::Config(e.to_string()))?;
        Registry::check(&cfg).map_err(StartError::Config)?;
        let tls = match (&cfg.tls_cert, &cfg.tls_key) {
            (Some(c), Some(k)) => {
                Some(tls::load_server_config(c, k).map_err(|e| StartError::Tls(e.to_string()))?)
            }
            _ => None,
        };
        let ice = crate::ice::Ice::new(&cfg.ice).map_err(StartError::Config)?;
        Ok(Server {
            cfg: Arc::new(cfg),
            tls,
            ice,
            wall_clock: None,
        })
    }

    /// Bind every listener and start the reactors.
    pub fn start(self) -> Result<Handle, StartError> {
        let n = self.cfg.effective_threads();
        let mut per_core: Vec<Vec<Listener>> = (0..n).map(|_| Vec::new()).collect();
        let mut addrs = Vec::new();
        for spec in &self.cfg.listen {
            let (socks, bound) =
                bind_reuseport(spec.addr, n).map_err(|error| StartError::Bind {
                    addr: spec.addr,
                    error,
                })?;
            addrs.push((bound, spec.tls));
            for (core, s) in socks.into_iter().enumerate() {
                per_core[core].push(Listener {
                    sock: mio::net::TcpListener::from_std(s),
                    tls: spec.tls,
                    proxy: spec.proxy,
                    burst: crate::net::listener::Burst::new(),
                });
            }
        }
        let mut polls = Vec::with_capacity(n);
        let mut mailboxes = Vec::with_capacity(n);
        let mut inboxes = Vec::with_capacity(n);
        for _ in 0..n {
            let poll = mio::Poll::new().map_err(StartError::Io)?;
            let waker = Arc::new(mio::Waker::new(poll.registry(), WAKER).map_err(StartError::Io)?);
            let (tx, rx) = mpsc::channel();
            mailboxes.push(Mailbox::new(tx, waker));
            inboxes.push(rx);
            polls.push(poll);
        }
        // A cluster node registers (and subscribes) before it serves anything.
        let mut bridge_threads = Vec::new();
        let cluster = match &self.cfg.cluster {
            None => None,
            Some(c) => {
                let joined = crate::cluster::join(&c.url, &self.cfg.cluster_options)
                    .map_err(StartError::Cluster)?;
                let a = &self.cfg.api;
                let api = crate::cluster::ApiLimits {
                    ttl_ms: a.ttl.as_millis() as u64,
                    max_channels: a.max_channels,
                    max_candidates: a.max_candidates,
                    max_bytes: a.max_bytes,
                };
                let (cluster, t) = crate::cluster::start(joined, mailboxes.clone(), api)
                    .map_err(|e| StartError::Cluster(format!("{}: {e}", c.url)))?;
                bridge_threads = t;
                Some(cluster)
            }
        };
        let wall = self.wall_clock.clone().unwrap_or_else(system_clock);
        // Replays the HTTP API's state log and loads the workspace store before any listener
        // serves a request.
        let registry =
            Registry::start(self.cfg.clone(), n, wall.clone()).map_err(StartError::State)?;
        let shared = Arc::new(Shared {
            cfg: self.cfg.clone(),
            limits: self.cfg.limits.conn(),
            registry: Arc::new(registry),
            cores: (0..n).map(|_| CoreMetrics::default()).collect(),
            mailboxes,
            conns_total: AtomicUsize::new(0),
            per_ip: IpTable::new(self.cfg.limits.max_connections_per_ip),
            conn_rates: crate::net::IpRates::new(self.cfg.limits.max_new_connections_per_ip),
            http_rates: crate::net::IpRates::new(self.cfg.limits.max_http_requests_per_ip),
            started: Instant::now(),
            ice: self.ice,
            wall,
            cluster,
        });
        let mut threads = Vec::with_capacity(n);
        for (core, ((poll, inbox), listeners)) in
            polls.into_iter().zip(inboxes).zip(per_core).enumerate()
        {
            let reactor = Reactor::new(
                core,
                poll,
                inbox,
                listeners,
                shared.clone(),
                self.tls.clone(),
            )
            .map_err(StartError::Io)?;
            let t = std::thread::Builder::new()
                .name(format!("sigyard-core-{core}"))
                .spawn(move || reactor.run())
                .map_err(StartError::Io)?;
            threads.push(t);
        }
        let served = Registry::served(&self.cfg);
        for ((addr, tls), l) in addrs.iter().zip(&self.cfg.listen) {
            info!(
                "listening on {addr} ({}{}) with {n} reactor threads: {served}",
                if *tls { "TLS" } else { "plain" },
                if l.proxy { ", PROXY protocol" } else { "" }
            );
        }
        log_limits(&self.cfg, n);
        shared.ice.start();
        Ok(Handle {
            addrs,
            shared,
            threads,
            bridge_threads,
        })
    }
}

/// The limits an operator checks first, and a warning when the process may not open as many
/// files as `--max-connections` needs.
fn log_limits(cfg: &Config, threads: usize) {
    let l = &cfg.limits;
    let per_ip = match l.max_connections_per_ip {
        0 => "no limit".to_string(),
        n => n.to_string(),
    };
    // One descriptor per connection, plus listeners, pollers, wakers and the cluster's sockets.
    let needed = l.max_connections + 64 + 4 * cfg.listen.len() * threads;
    match open_files_limit() {
        Some(limit) => {
            info!(
                "limits: --max-connections {} (per IP {per_ip}), open files {limit} (about {needed} needed)",
                l.max_connections
            );
            if limit < needed as u64 {
                warn!(
                    "the open-files limit ({limit}) is below what --max-connections {} needs \
                     (about {needed}): connections past it are refused when accept fails; raise \
                     it (ulimit -n, systemd LimitNOFILE) or lower --max-connections",
                    l.max_connections
                );
            }
        }
        None => info!(
            "limits: --max-connections {} (per IP {per_ip})",
            l.max_connections
        ),
    }
}

/// The soft limit on open files, from `/proc/self/limits` (Linux).
fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .strip_prefix("Max open files")?
        .split_whitespace()
        .next()?;
    match soft {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    }
}

/// A running server.
pub struct Handle {
    addrs: Vec<(SocketAddr, bool)>,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// The cluster's Redis threads (none on its own).
    bridge_threads: Vec<JoinHandle<()>>,
}

impl Handle {
    /// The bound addresses (ports resolved), in configuration order.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.iter().map(|(a, _)| *a).collect()
    }

    /// The first bound plain address, if any.
    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.addrs.iter().find(|(_, tls)| !tls).map(|(a, _)| *a)
    }

    /// The first bound TLS address, if any.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.addrs.iter().find(|(_, tls)| *tls).map(|(a, _)| *a)
    }

    /// Begin a graceful shutdown: stop accepting, send close 1001 to every WebSocket, and let
    /// the reactors drain until `timeout` has passed. Returns immediately; see [`Handle::join`].
    pub fn shutdown(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        self.shared.ice.stop();
        for m in &self.shared.mailboxes {
            let _ = m.send(CoreMsg::Shutdown { deadline });
        }
    }

    /// Reload the certificate and key from the configured paths and use them for new
    /// connections. Existing connections keep their sessions.
    pub fn reload_tls(&self) -> Result<(), StartError> {
        let cfg = &self.shared.cfg;
        let (Some(c), Some(k)) = (&cfg.tls_cert, &cfg.tls_key) else {
            return Err(StartError::Tls("no certificate configured".into()));
        };
        let new = tls::load_server_config(c, k).map_err(|e| StartError::Tls(e.to_string()))?;
        for m in &self.shared.mailboxes {
            let _ = m.send(CoreMsg::TlsConfig(new.clone()));
        }
        Ok(())
    }

    /// The Prometheus text the `/metrics` endpoint would serve now.
    pub fn metrics_text(&self) -> String {
        crate::net::endpoints::metrics_text(&self.shared)
    }

    /// Wait for every reactor thread to exit, then end what the dialects keep outside the
    /// process: the HTTP API's pending state records are written and fsynced (with
    /// `--state-dir`), a workspace store no core took writes its last snapshot.
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
        // Drained: what the reactors published is sent; now leave the cluster.
        if let Some(c) = &self.shared.cluster {
            c.leave();
        }
        for t in self.bridge_threads {
            let _ = t.join();
        }
        self.shared.registry.stop();
    }
}
