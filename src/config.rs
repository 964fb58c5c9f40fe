//! Server configuration: owns the option table, parsing of CLI flags, `SIGYARD_*`
//! environment variables and the optional config file (precedence
//! CLI > env > file > default), the value parsers, validation, the `--help` text and
//! the Markdown configuration reference. Pure code: its only I/O is reading the config file.
//!
//! Adding an option: one row in [`OPTS`] and one arm in `set` (plus the field and its
//! default, which a test checks against the table). Repeatable options also get an arm
//! in `reset`; `listen` and `listen-tls` form one group: the highest source naming
//! either of them defines the whole listener list.
//!
//! Value formats: sizes are bytes or `B`, `KB`/`MB`/`GB` (x1000), `KiB`/`MiB`/`GiB`
//! (x1024), case-sensitive, e.g. `64KiB`. Durations are integers with `ms`, `s`, `m`,
//! `h`, or bare seconds. Booleans: true/false/1/0/yes/no/on/off. Addresses are
//! `IP:PORT` (no DNS). An empty environment variable counts as unset. The config file
//! has `name = value` lines, `#` comments, and `"double-quoted"` values (no escapes).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

pub use crate::ice::IceConfig;
pub use crate::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    pub addr: SocketAddr,
    pub tls: bool,
    /// Connections start with a PROXY protocol header (`--listen-proxy`).
    pub proxy: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// In declaration order, so `LEVELS[level as usize]` is that level.
const LEVELS: [(&str, LogLevel); 5] = [
    ("error", LogLevel::Error),
    ("warn", LogLevel::Warn),
    ("info", LogLevel::Info),
    ("debug", LogLevel::Debug),
    ("trace", LogLevel::Trace),
];

impl FromStr for LogLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let found = LEVELS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s.trim()));
        let msg = || format!("{s:?} is not a log level (use error, warn, info, debug, trace)");
        found.map(|&(_, level)| level).ok_or_else(msg)
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(LEVELS[*self as usize].0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_frame_size: usize,
    pub max_message_size: usize,
    pub max_outbound_bytes: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub ping_interval: Duration,
    pub http_keepalive_timeout: Duration,
    pub max_body_bytes: usize,
    pub http_body_timeout: Duration,
    pub buffer_size: usize,
    /// The read buffer of a pipe end whose reads keep filling a `buffer_size` one (bulk
    /// data); at most `buffer_size` turns that off.
    pub stream_buffer_size: usize,
    pub max_buffers_per_core: usize,
    pub pipe_hold_bytes: usize,
    pub pipe_hold_messages: usize,
    pub pipe_hold_timeout: Duration,
    /// New connections one address may open per second (twice that in a burst); 0 = no limit.
    pub max_new_connections_per_ip: usize,
    /// Plain HTTP requests (HTTP API, Socket.IO polling) one address may make per second
    /// (twice that in a burst); 0 = no limit.
    pub max_http_requests_per_ip: usize,
    /// Messages a WebSocket may send per second (twice that in a burst); 0 = no limit.
    pub max_messages_per_second: usize,
    /// Message bytes a WebSocket may send per second (twice that in a burst); 0 = no limit.
    pub max_message_bytes_per_second: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub listen: Vec<Listener>,
    pub threads: usize,
    pub echo: bool,
    /// Each loop turn's sends in one io_uring call where the kernel allows it.
    pub batch_sends: bool,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub log_level: LogLevel,
    pub shutdown_timeout: Duration,
    pub limits: Limits,
    pub ice: IceConfig,
    pub mew: MewOptions,
    /// Paths whose WebSocket upgrades are y-webrtc signaling (PROTOCOLS-beyond.md §8).
    pub ywebrtc_paths: Vec<String>,
    /// Paths whose WebSocket upgrades are the WebTorrent tracker (PROTOCOLS-beyond.md §9).
    pub webtorrent_paths: Vec<String>,
    /// The WebTorrent tracker's intervals, limits and allow-list.
    pub webtorrent: crate::proto::dialect::webtorrent::Options,
    /// Peerolator: the `serverInfo` string in every HELLO (omitted when `None`).
    pub peerolator_server_info: Option<String>,
    /// PeerJS (PROTOCOLS-beyond.md §7), the options users set on `peer`.
    pub peerjs: crate::proto::dialect::peerjs::Options,
    pub api: ApiConfig,
    pub sio: SioConfig,
    pub workspaces: WorkspacesOptions,
    pub mew_v1: MewV1Options,
    /// Peers whose forwarding headers are believed (`--trusted-proxies`).
    pub trusted_proxies: crate::proto::proxy::Cidrs,
    /// Web origins whose browsers may use the dialects (`--allowed-origins`).
    pub allowed_origins: crate::proto::origin::Origins,
    /// Per dialect family (`echo`, `cevitxe`, `mewconnect`, `peerolator`, `socketio`,
    /// `httpapi`): its own list instead (`--allowed-origins-for`).
    pub origin_overrides: Vec<(String, crate::proto::origin::Origins)>,
    /// `None`: one process on its own (no dependency).
    pub cluster: Option<ClusterConfig>,
    pub cluster_options: ClusterOptions,
}

/// Where the cluster's Redis is (`--cluster`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    pub url: crate::cluster::RedisUrl,
}

/// How the process behaves as a cluster node (used only with `--cluster`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOptions {
    /// `AUTH` password when the URL has none.
    pub password: Option<Secret>,
    /// A node silent for this long is gone: its clients' peers hear so.
    pub node_timeout: Duration,
    /// Wait for Redis at start instead of exiting with status 2.
    pub wait: bool,
    /// Prefix of every Redis key and channel (several clusters may share one Redis).
    pub prefix: String,
    /// How long a placement key stays claimed by its node after its last use.
    pub claim_ttl: Duration,
    /// `rediss://`: the certificates trusted for Redis's.
    pub ca_file: PathBuf,
}

/// Engine.IO 3 / Socket.IO 2 (`/socket.io/`, PROTOCOLS.md §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SioConfig {
    /// `pingInterval` announced in the open packet.
    pub ping_interval: Duration,
    /// `pingTimeout` for MewConnect v1 (and the test dialect).
    pub ping_timeout: Duration,
    /// `pingTimeout` for webRTWorkspaces (its original sets 12000).
    pub workspaces_ping_timeout: Duration,
    /// Largest polling POST body.
    pub max_http_buffer: usize,
    /// Sessions one core holds at most.
    pub max_sessions: usize,
}

// ---- Socket.IO dialects: webRTWorkspaces and MewConnect v1 ----

/// webRTWorkspaces options (PROTOCOLS.md §5.3, §5.5, §5.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspacesOptions {
    /// The JWT secret (`MAGICK_TOKEN`); `None`: a random per-process secret.
    pub secret: Option<Secret>,
    /// The pepper of every signing input (`SALT_STRING`); `None`: random per process.
    pub salt: Option<Secret>,
    /// Attendees per workspace, owner included (`max_capacity_of_workspace`).
    pub capacity: usize,
    pub disconnect_on_full: bool,
    pub untitled_name: String,
    pub anonymous_name: String,
    /// PBKDF2-HMAC-SHA256 iterations of a new workspace PIN hash.
    pub pin_iterations: usize,
    pub max_workspaces: usize,
    /// The original's `json_storage_file`; `None`: memory only.
    pub storage_file: Option<PathBuf>,
}

/// MewConnect v1 options (PROTOCOLS.md §1.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MewV1Options {
    pub pair_ttl: Duration,
    pub max_pairs: usize,
}

/// Environment variables of the original servers read for an option when its `SIGYARD_*`
/// variable is unset.
const ENV_ALIASES: &[(&str, &str)] = &[
    ("workspaces-secret", "MAGICK_TOKEN"),
    ("workspaces-salt", "SALT_STRING"),
];

fn set_sio_dialects(c: &mut Config, name: &str, v: &str) -> Result<(), String> {
    let w = &mut c.workspaces;
    let secret = || match v {
        "" => Err("empty secret".to_string()),
        t => Ok(Secret::new(t)),
    };
    match name {
        "workspaces-secret" => w.secret = Some(secret()?),
        "workspaces-salt" => w.salt = Some(secret()?),
        "workspaces-capacity" => w.capacity = parse_count(v)?,
        "workspaces-disconnect-on-full" => w.disconnect_on_full = parse_bool(v)?,
        "workspaces-untitled-name" => w.untitled_name = parse_text(v)?,
        "workspaces-anonymous-name" => w.anonymous_name = parse_text(v)?,
        "workspaces-pin-iterations" => w.pin_iterations = parse_count(v)?,
        "workspaces-max" => w.max_workspaces = parse_count(v)?,
        "workspaces-storage-file" => w.storage_file = Some(parse_path(v)?),
        "mew-v1-pair-ttl" => c.mew_v1.pair_ttl = parse_duration(v)?,
        "mew-v1-max-pairs" => c.mew_v1.max_pairs = parse_count(v)?,
        _ => {
            return Err(format!(
                "option {name:?} has no field (bug in the option table)"
            ))
        }
    }
    Ok(())
}

// ---- end of the Socket.IO dialects' options ----

/// MewConnect v2 options (PROTOCOLS.md §1.2, §1.6, §1.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MewOptions {
    /// Paths whose WebSocket upgrades are MewConnect v2 (plain GETs keep their own meaning).
    pub paths: Vec<String>,
    /// Close a socket that sent no message for this long (zero: off).
    pub idle_timeout: Duration,
    /// Close a socket this long after its upgrade (zero: off).
    pub max_lifetime: Duration,
    /// Answer bad frames with API Gateway's error frames.
    pub error_frames: bool,
}

/// The Lambda-style HTTP signaling API and its channel store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    pub enabled: bool,
    /// The API's path, or `*`: every path no other endpoint claims.
    pub path: String,
    /// `*`, `none`, or comma-separated origins.
    pub cors_origin: String,
    pub ttl: Duration,
    pub max_channels: usize,
    pub max_candidates: usize,
    pub max_bytes: usize,
    /// Durability: the directory of the append-only log; `None` = memory only.
    pub state_dir: Option<PathBuf>,
    pub state_sync_interval: Duration,
    pub state_fsync: bool,
    pub state_compact_interval: Duration,
}

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
const GIB: usize = 1024 * MIB;

impl Default for Config {
    /// Agrees with the `default` column of [`OPTS`] (checked by a test).
    fn default() -> Self {
        let secs = Duration::from_secs;
        Config {
            listen: vec![Listener {
                addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
                tls: false,
                proxy: false,
            }],
            threads: 0,
            echo: false,
            batch_sends: true,
            tls_cert: None,
            tls_key: None,
            log_level: LogLevel::Info,
            shutdown_timeout: secs(10),
            limits: Limits {
                max_header_bytes: 8 * KIB,
                max_headers: 64,
                max_frame_size: 256 * KIB,
                max_message_size: 256 * KIB,
                max_outbound_bytes: MIB,
                max_connections: 100_000,
                max_connections_per_ip: 10_000,
                handshake_timeout: secs(10),
                idle_timeout: secs(120),
                ping_interval: secs(30),
                http_keepalive_timeout: secs(30),
                max_body_bytes: 64 * KIB,
                http_body_timeout: secs(10),
                buffer_size: 16 * KIB,
                stream_buffer_size: 64 * KIB,
                max_buffers_per_core: 16384,
                pipe_hold_bytes: MIB,
                pipe_hold_messages: 1000,
                pipe_hold_timeout: Duration::ZERO,
                max_new_connections_per_ip: 200,
                max_http_requests_per_ip: 1000,
                max_messages_per_second: 1000,
                max_message_bytes_per_second: 16 * MIB,
            },
            ice: IceConfig::default(),
            mew: MewOptions {
                paths: vec!["/".into(), "/staging".into(), "/dev".into()],
                idle_timeout: secs(600),
                max_lifetime: secs(7200),
                error_frames: true,
            },
            ywebrtc_paths: vec!["/y-webrtc".into()],
            webtorrent_paths: vec!["/announce".into()],
            webtorrent: crate::proto::dialect::webtorrent::Options::default(),
            peerolator_server_info: None,
            peerjs: crate::proto::dialect::peerjs::Options::default(),
            sio: SioConfig {
                ping_interval: secs(25),
                ping_timeout: secs(5),
                workspaces_ping_timeout: secs(12),
                max_http_buffer: MIB,
                max_sessions: 100_000,
            },
            api: ApiConfig {
                enabled: true,
                path: "/".to_string(),
                cors_origin: "*".to_string(),
                ttl: secs(300),
                max_channels: 1_000_000,
                max_candidates: 256,
                max_bytes: 256 * MIB,
                state_dir: None,
                state_sync_interval: Duration::from_millis(100),
                state_fsync: true,
                state_compact_interval: secs(300),
            },
            workspaces: WorkspacesOptions {
                secret: None,
                salt: None,
                capacity: 5,
                disconnect_on_full: true,
                untitled_name: "Anonumous Workspace".to_string(),
                anonymous_name: "Anonumous".to_string(),
                pin_iterations: 100_000,
                max_workspaces: 100_000,
                storage_file: None,
            },
            mew_v1: MewV1Options {
                pair_ttl: secs(120),
                max_pairs: 100_000,
            },
            trusted_proxies: crate::proto::proxy::Cidrs::default(),
            allowed_origins: crate::proto::origin::Origins::any(),
            origin_overrides: Vec::new(),
            cluster: None,
            cluster_options: ClusterOptions {
                password: None,
                node_timeout: secs(3),
                wait: false,
                prefix: "sigyard".to_string(),
                claim_ttl: secs(3600),
                ca_file: "/etc/ssl/certs/ca-certificates.crt".into(),
            },
        }
    }
}

/// What the process should do. `Run` is large, but this is built once at startup.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Run(Config),
    Help(String),
    Version(String),
    /// `--print-config`: the effective configuration as a config file.
    PrintConfig(String),
    /// `--check-config`: the configuration to check further (its files) without serving.
    CheckConfig(Config),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

fn err(message: String) -> ConfigError {
    ConfigError { message }
}

/// One option. `kind` is the value kind, shown as the metavar in help; `BOOL` options
/// take no value on the CLI (`--echo`, or `--echo=false`).
struct Opt {
    name: &'static str,
    kind: &'static str,
    repeatable: bool,
    default: &'static str,
    help: &'static str,
}

type Str = &'static str;

const fn opt(name: Str, kind: Str, default: Str, help: Str) -> Opt {
    let repeatable = false;
    Opt {
        name,
        kind,
        repeatable,
        default,
        help,
    }
}

/// `--config`: CLI and env only, so it is not in [`OPTS`] (which the file parser accepts).
static CONFIG: Opt = opt(
    "config",
    "FILE",
    "none",
    "Config file of name = value lines.",
);

/// The option table: drives CLI, env and file parsing, `--help` and the Markdown reference.
#[rustfmt::skip]
static OPTS: &[Opt] = &[
    Opt { repeatable: true, ..opt("listen", "ADDR", "127.0.0.1:8080", "Plain (ws://) listen address; repeatable. The default is used only if no listener is given.") },
    Opt { repeatable: true, ..opt("listen-tls", "ADDR", "none", "TLS (wss://) listen address; repeatable. Needs --tls-cert and --tls-key.") },
    Opt { repeatable: true, ..opt("listen-proxy", "ADDR", "none", "Plain listen address whose connections start with a PROXY protocol v1 or v2 header (HAProxy, cloud balancers); repeatable. Needs --trusted-proxies.") },
    opt("trusted-proxies", "CIDRS", "none", "Proxies whose Forwarded / X-Forwarded-For headers and PROXY headers name the real client (e.g. 10.0.0.0/8); from any other peer they are ignored."),
    opt("tls-cert", "PATH", "none", "TLS certificate chain (PEM)."),
    opt("tls-key", "PATH", "none", "TLS private key (PEM)."),
    opt("threads", "N", "0", "Worker threads; 0 = number of available cores. At most 1024."),
    opt("echo", "BOOL", "false", "Enable the /echo WebSocket endpoint (conformance testing)."),
    opt("batch-sends", "BOOL", "true", "Make each loop turn's sends together, in one io_uring call, where the kernel allows it (Linux 5.6 or later, io_uring not blocked by seccomp); false = one send(2) each."),
    opt("log-level", "LEVEL", "info", "Log level: error, warn, info, debug, trace."),
    opt("shutdown-timeout", "DURATION", "10s", "Drain deadline after SIGTERM/SIGINT."),
    opt("max-header-bytes", "SIZE", "8KiB", "Largest HTTP request head; at most --buffer-size."),
    opt("max-headers", "N", "64", "Most header lines in one HTTP request."),
    opt("max-frame-size", "SIZE", "256KiB", "Largest WebSocket frame payload; at most --max-message-size (and 256MiB less one byte)."),
    opt("max-message-size", "SIZE", "256KiB", "Largest WebSocket message (all fragments together)."),
    opt("max-outbound-bytes", "SIZE", "1MiB", "Per-connection send queue; a slow reader past this is disconnected."),
    opt("max-connections", "N", "100000", "Most open connections in total (all cores)."),
    opt("max-connections-per-ip", "N", "10000", "Most open connections per client IP; 0 = unlimited."),
    opt("handshake-timeout", "DURATION", "10s", "Time allowed for the TLS and HTTP upgrade handshakes to finish."),
    opt("idle-timeout", "DURATION", "120s", "Close a connection that sent no byte for this long; 0 = off."),
    opt("ping-interval", "DURATION", "30s", "Send WebSocket pings to idle connections this often; 0 = off. Below --idle-timeout."),
    opt("http-keepalive-timeout", "DURATION", "30s", "Idle time allowed between HTTP requests on one connection."),
    opt("max-body-bytes", "SIZE", "64KiB", "Largest HTTP request body (the HTTP API); past it, 413."),
    opt("http-body-timeout", "DURATION", "10s", "Time allowed for a request body to arrive after its head; past it, 408."),
    opt("buffer-size", "SIZE", "16KiB", "Size of the pooled read/write buffers, 1KiB to 16MiB."),
    opt("stream-buffer-size", "SIZE", "64KiB", "Read buffer of a /connection pipe end whose reads keep filling a --buffer-size one (bulk data), counted as the pooled buffers it is worth (at most a quarter of --max-buffers-per-core goes to them); at most 16MiB; at most --buffer-size = off."),
    opt("max-buffers-per-core", "N", "16384", "Most pooled buffers per core (a streaming read buffer counts as the standard ones it is worth)."),
    opt("pipe-hold-bytes", "SIZE", "1MiB", "Bytes a /connection socket may send before its peer arrives; past it, close 1008."),
    opt("pipe-hold-messages", "N", "1000", "Messages a /connection socket may send before its peer arrives; past it, close 1008."),
    opt("pipe-hold-timeout", "DURATION", "0", "How long a /connection socket may wait for its peer; 0 = no limit. Past it, close 1008."),
    opt("max-new-connections-per-ip", "N", "200", "New connections one client address may open per second (bursts of twice that); past it, 429 on plain listeners, then close. 0 = no limit."),
    opt("max-http-requests-per-ip", "N", "1000", "Plain HTTP requests (the HTTP API, Socket.IO polling) one client address may make per second (bursts of twice that); past it, 429 with Retry-After. 0 = no limit."),
    opt("max-messages-per-second", "N", "1000", "Messages one WebSocket may send per second (bursts of twice that); past it, close 1008. 0 = no limit. Piped /connection data is not counted."),
    opt("max-message-bytes-per-second", "SIZE", "16MiB", "Message bytes one WebSocket may send per second (bursts of twice that); past it, close 1008. 0 = no limit."),
    Opt { repeatable: true, ..opt("ice-server", "URI", "none", "STUN/TURN server handed to clients (stun:, stuns:, turn:, turns: URI); repeatable. None given: the five Google STUN servers.") },
    Opt { repeatable: true, ..opt("turn-secret", "SECRET", "none", "TURN REST shared secret (coturn use-auth-secret) for the turn:/turns: servers; repeatable for rotation: the first mints.") },
    opt("turn-ttl", "DURATION", "86400", "Lifetime of TURN credentials (minted, and asked of the token provider); 1s to 7 days."),
    opt("turn-separator", "CHAR", ":", "Separator between expiry and user id in TURN usernames (coturn rest-api-separator)."),
    opt("twilio-account-sid", "SID", "none", "Twilio-compatible token provider: account SID. Enables the provider (needs --twilio-auth-token)."),
    opt("twilio-auth-token", "SECRET", "none", "Twilio-compatible token provider: auth token (HTTP basic auth password)."),
    opt("twilio-base-url", "URL", "https://api.twilio.com", "Twilio-compatible token provider: https:// base URL."),
    opt("twilio-ca-file", "PATH", "/etc/ssl/certs/ca-certificates.crt", "Twilio-compatible token provider: trusted CA certificates (PEM)."),
    opt("twilio-timeout", "DURATION", "5s", "Twilio-compatible token provider: connect timeout, then deadline for the whole request."),
    opt("ice-endpoint-token", "SECRET", "none", "Enables GET /ice-servers for requests with this bearer token (at least 16 characters)."),
    opt("mew-paths", "PATHS", "/,/staging,/dev", "MewConnect v2 WebSocket paths, comma-separated. Only upgrades go there: a plain GET / is still the status page."),
    opt("mew-idle-timeout", "DURATION", "10m", "Close a MewConnect socket that sent no message for this long (close 1001); 0 = off."),
    opt("mew-max-lifetime", "DURATION", "2h", "Close a MewConnect socket this long after its upgrade (close 1001); 0 = off."),
    opt("mew-error-frames", "BOOL", "true", "Answer bad MewConnect frames with API Gateway's error frames (Forbidden, Internal server error)."),
    opt("ywebrtc-paths", "PATHS", "/y-webrtc", "y-webrtc signaling WebSocket paths, comma-separated. Upgrades on a MewConnect path without role, connId or signed, and on any path no dialect claims, are y-webrtc or WebTorrent by their first frame (both clients connect to the bare URL)."),
    opt("webtorrent-paths", "PATHS", "/announce", "WebTorrent tracker WebSocket paths, comma-separated (see --ywebrtc-paths for the bare URL)."),
    opt("webtorrent-interval", "DURATION", "120s", "WebTorrent: the announce interval given to clients; scrapes' min_request_interval is five times it."),
    opt("webtorrent-peer-timeout", "DURATION", "20m", "WebTorrent: a peer that has not announced for this long leaves its swarm."),
    opt("webtorrent-max-peers-per-swarm", "N", "1000", "WebTorrent: peers per swarm at most; a new one evicts the one that announced least recently."),
    opt("webtorrent-max-peers-per-connection", "N", "1000", "WebTorrent: (torrent, peer id) entries one connection may announce at most; past it an announce for a new one gets a failure reason."),
    opt("webtorrent-max-offers", "N", "10", "WebTorrent: offers sent on per announce at most (the browser client sends 5)."),
    opt("webtorrent-full-scrape", "BOOL", "false", "WebTorrent: answer a scrape without info_hash with every swarm (refused otherwise); every swarm is then kept on one core and node."),
    opt("webtorrent-info-hashes", "PATH", "none", "WebTorrent: a file of allowed info hashes, 40 hex digits a line (# comments); others get \"Info hash not allowed\". Read at start."),
    opt("peerolator-server-info", "TEXT", "none", "Peerolator: serverInfo string sent in every HELLO; omitted when unset."),
    opt("peerjs-path", "PATH", "/", "PeerJS: the mount path (peer's --path): its WebSocket is PATHpeerjs, its ids PATH{key}/id."),
    opt("peerjs-key", "TEXT", "peerjs", "PeerJS: the key clients must give on the WebSocket (peer's --key)."),
    opt("peerjs-expire-timeout", "DURATION", "5s", "PeerJS: messages for an id that is not connected wait this long, then the sender gets EXPIRE (peer's --expire_timeout)."),
    opt("peerjs-alive-timeout", "DURATION", "60s", "PeerJS: close a client that sent nothing for this long (peer's --alive_timeout); 0 = off."),
    opt("peerjs-concurrent-limit", "N", "5000", "PeerJS: registered clients at most (peer's --concurrent_limit)."),
    opt("peerjs-allow-discovery", "BOOL", "false", "PeerJS: serve the list of registered ids at PATH{key}/peers (peer's --allow_discovery)."),
    opt("peerjs-queue-messages", "N", "64", "PeerJS: messages waiting for one id at most; more are dropped."),
    opt("peerjs-queue-bytes", "SIZE", "256KiB", "PeerJS: bytes waiting for one id at most; more are dropped."),
    opt("peerjs-max-queues", "N", "10000", "PeerJS: ids with waiting messages at most; messages for more are dropped."),
    opt("sio-ping-interval", "DURATION", "25s", "Socket.IO (Engine.IO 3) pingInterval: how often clients ping."),
    opt("sio-ping-timeout", "DURATION", "5s", "Socket.IO pingTimeout for MewConnect v1: a session with no packet for pingInterval + pingTimeout ends."),
    opt("sio-workspaces-ping-timeout", "DURATION", "12s", "Socket.IO pingTimeout for webRTWorkspaces (its original's value)."),
    opt("sio-max-http-buffer", "SIZE", "1MiB", "Largest Socket.IO polling POST body; past it, 413."),
    opt("sio-max-sessions", "N", "100000", "Most Socket.IO sessions on one core (all webRTWorkspaces sessions share one); past it, handshakes get 503."),
    opt("api", "BOOL", "true", "Serve the Lambda-style HTTP signaling API (POST with a JSON body)."),
    opt("api-path", "PATH", "/", "Path of the HTTP API; * = every path no other endpoint claims. GET / stays the status page."),
    opt("api-cors-origin", "ORIGINS", "*", "CORS for the HTTP API: *, none, or comma-separated origins (a listed request Origin is echoed)."),
    opt("api-ttl", "DURATION", "5m", "Lifetime of an HTTP API channel, from its creation."),
    opt("api-max-channels", "N", "1000000", "Most live HTTP API channels; past it, create_data_channel answers try again!."),
    opt("api-max-candidates", "N", "256", "Most candidates in one HTTP API channel."),
    opt("api-max-bytes", "SIZE", "256MiB", "Most bytes of offers, answers and candidates stored (each counted at its request's size)."),
    opt("state-dir", "PATH", "none", "Keep the HTTP API channels in an append-only log in this directory, replayed at start; none = memory only."),
    opt("state-sync-interval", "DURATION", "100ms", "How often the state log is written (and fsynced): the most a crash may lose."),
    opt("state-fsync", "BOOL", "true", "fsync the state log after each write (false: a process crash loses the same, a power loss more)."),
    opt("state-compact-interval", "DURATION", "5m", "How often the state log is rewritten from the live channels."),
    opt("workspaces-secret", "SECRET", "none", "webRTWorkspaces JWT secret (also read from MAGICK_TOKEN). Unset: random per process, so tokens die with it."),
    opt("workspaces-salt", "SECRET", "none", "webRTWorkspaces pepper of every token's signing input (also read from SALT_STRING). Unset: random per process."),
    opt("workspaces-capacity", "N", "5", "webRTWorkspaces attendees per workspace, owner included; one more gets full."),
    opt("workspaces-disconnect-on-full", "BOOL", "true", "Disconnect a webRTWorkspaces socket right after telling it full."),
    opt("workspaces-untitled-name", "TEXT", "Anonumous Workspace", "Name of a workspace created without one."),
    opt("workspaces-anonymous-name", "TEXT", "Anonumous", "Name of an attendee without one."),
    opt("workspaces-pin-iterations", "N", "100000", "PBKDF2-HMAC-SHA256 iterations of a new workspace PIN hash (checked on attend only)."),
    opt("workspaces-max", "N", "100000", "Most webRTWorkspaces workspaces; past it, create answers an alert."),
    opt("workspaces-storage-file", "PATH", "none", "Keep the workspaces in this JSON file (the original's json_storage_file), loaded at start; none = memory only."),
    opt("mew-v1-pair-ttl", "DURATION", "120s", "MewConnect v1: a pair expires this long after its initiator connected (REDIS_TIMOUT)."),
    opt("mew-v1-max-pairs", "N", "100000", "MewConnect v1: most live pairs; an initiator past it is disconnected."),
    opt("allowed-origins", "ORIGINS", "*", "Web origins whose pages may open WebSockets and call the HTTP endpoints (exact origins, https://*.example.org, null, or *); others get 403. Requests without Origin always pass."),
    Opt { repeatable: true, ..opt("allowed-origins-for", "NAME=ORIGINS", "none", "Per dialect (echo, cevitxe, mewconnect, peerolator, socketio, httpapi, ywebrtc, peerjs), its own space-separated origins instead of --allowed-origins; repeatable.") },
    opt("cluster", "URL", "none", "Be a node of the cluster kept in this Redis: redis://[:PASSWORD@]HOST:PORT[/DB]. none = one process on its own."),
    opt("cluster-password", "SECRET", "none", "Redis AUTH password when the --cluster URL has none (best from SIGYARD_CLUSTER_PASSWORD)."),
    opt("cluster-node-timeout", "DURATION", "3s", "A node without a heartbeat for this long is gone: its clients' peers are told, its keys are free. 1s to 60s."),
    opt("cluster-wait", "BOOL", "false", "At start, wait for Redis to answer instead of exiting with status 2."),
    opt("cluster-prefix", "TEXT", "sigyard", "Prefix of the cluster's Redis keys and channels (several clusters may share one Redis)."),
    opt("cluster-claim-ttl", "DURATION", "1h", "How long a node keeps a pair's or room's key after its last use (refreshed while used)."),
    opt("cluster-ca-file", "PATH", "/etc/ssl/certs/ca-certificates.crt", "rediss:// only: the certificates (PEM) trusted for Redis's."),
];

/// Maps one (option, value) to its `Config` field. Names always come from [`OPTS`].
#[rustfmt::skip]
fn set(c: &mut Config, name: &str, v: &str) -> Result<(), String> {
    let l = &mut c.limits;
    match name {
        "listen" => c.listen.push(Listener { addr: parse_addr(v)?, tls: false, proxy: false }),
        "listen-tls" => c.listen.push(Listener { addr: parse_addr(v)?, tls: true, proxy: false }),
        "listen-proxy" => c.listen.push(Listener { addr: parse_addr(v)?, tls: false, proxy: true }),
        "trusted-proxies" => c.trusted_proxies = match crate::proto::proxy::Cidrs::parse(v)? {
            list if list.is_empty() => return Err("no address block given".into()),
            list => list,
        },
        "tls-cert" => c.tls_cert = Some(parse_path(v)?),
        "tls-key" => c.tls_key = Some(parse_path(v)?),
        "threads" => c.threads = parse_count(v)?,
        "echo" => c.echo = parse_bool(v)?,
        "batch-sends" => c.batch_sends = parse_bool(v)?,
        "log-level" => c.log_level = v.parse()?,
        "shutdown-timeout" => c.shutdown_timeout = parse_duration(v)?,
        "max-header-bytes" => l.max_header_bytes = parse_size(v)?,
        "max-headers" => l.max_headers = parse_count(v)?,
        "max-frame-size" => l.max_frame_size = parse_size(v)?,
        "max-message-size" => l.max_message_size = parse_size(v)?,
        "max-outbound-bytes" => l.max_outbound_bytes = parse_size(v)?,
        "max-connections" => l.max_connections = parse_count(v)?,
        "max-connections-per-ip" => l.max_connections_per_ip = parse_count(v)?,
        "handshake-timeout" => l.handshake_timeout = parse_duration(v)?,
        "idle-timeout" => l.idle_timeout = parse_duration(v)?,
        "ping-interval" => l.ping_interval = parse_duration(v)?,
        "http-keepalive-timeout" => l.http_keepalive_timeout = parse_duration(v)?,
        "max-body-bytes" => l.max_body_bytes = parse_size(v)?,
        "http-body-timeout" => l.http_body_timeout = parse_duration(v)?,
        "buffer-size" => l.buffer_size = parse_size(v)?,
        "stream-buffer-size" => l.stream_buffer_size = parse_size(v)?,
        "max-buffers-per-core" => l.max_buffers_per_core = parse_count(v)?,
        "pipe-hold-bytes" => l.pipe_hold_bytes = parse_size(v)?,
        "pipe-hold-messages" => l.pipe_hold_messages = parse_count(v)?,
        "pipe-hold-timeout" => l.pipe_hold_timeout = parse_duration(v)?,
        "max-messages-per-second" => l.max_messages_per_second = parse_count(v)?,
        "max-new-connections-per-ip" => l.max_new_connections_per_ip = parse_count(v)?,
        "max-http-requests-per-ip" => l.max_http_requests_per_ip = parse_count(v)?,
        "max-message-bytes-per-second" => l.max_message_bytes_per_second = parse_size(v)?,
        ice if ice.starts_with("ice-") || ice.starts_with("turn-") || ice.starts_with("twilio-") => {
            set_ice(&mut c.ice, name, v)?
        }
        "mew-paths" => c.mew.paths = parse_paths(v)?,
        "ywebrtc-paths" => c.ywebrtc_paths = parse_paths(v)?,
        "webtorrent-paths" => c.webtorrent_paths = parse_paths(v)?,
        "webtorrent-interval" => c.webtorrent.interval_s = parse_secs(v)?,
        "webtorrent-peer-timeout" => c.webtorrent.peer_timeout_ms = parse_ms(v)?,
        "webtorrent-max-peers-per-swarm" => c.webtorrent.max_peers_per_swarm = parse_positive(v)?,
        "webtorrent-max-offers" => c.webtorrent.max_offers = parse_count(v)?,
        "webtorrent-max-peers-per-connection" => {
            c.webtorrent.max_peers_per_connection = parse_positive(v)?
        }
        "webtorrent-full-scrape" => c.webtorrent.full_scrape = parse_bool(v)?,
        "webtorrent-info-hashes" => {
            c.webtorrent.allowed = match v {
                "none" => None,
                path => Some(std::sync::Arc::new(read_info_hashes(path)?)),
            }
        }
        "mew-idle-timeout" => c.mew.idle_timeout = parse_duration(v)?,
        "mew-max-lifetime" => c.mew.max_lifetime = parse_duration(v)?,
        "mew-error-frames" => c.mew.error_frames = parse_bool(v)?,
        "peerolator-server-info" => c.peerolator_server_info = Some(parse_text(v)?),
        "peerjs-path" => c.peerjs.path = parse_mount(v)?,
        "peerjs-key" => c.peerjs.key = parse_text(v)?,
        "peerjs-expire-timeout" => c.peerjs.expire_timeout_ms = parse_ms(v)?,
        "peerjs-alive-timeout" => c.peerjs.alive_timeout_ms = parse_ms(v)?,
        "peerjs-concurrent-limit" => c.peerjs.concurrent_limit = parse_count(v)?,
        "peerjs-allow-discovery" => c.peerjs.allow_discovery = parse_bool(v)?,
        "peerjs-queue-messages" => c.peerjs.queue_messages = parse_count(v)?,
        "peerjs-queue-bytes" => c.peerjs.queue_bytes = parse_size(v)?,
        "peerjs-max-queues" => c.peerjs.max_queues = parse_count(v)?,
        "sio-ping-interval" => c.sio.ping_interval = parse_duration(v)?,
        "sio-ping-timeout" => c.sio.ping_timeout = parse_duration(v)?,
        "sio-workspaces-ping-timeout" => c.sio.workspaces_ping_timeout = parse_duration(v)?,
        "sio-max-http-buffer" => c.sio.max_http_buffer = parse_size(v)?,
        "sio-max-sessions" => c.sio.max_sessions = parse_count(v)?,
        "api" => c.api.enabled = parse_bool(v)?,
        "api-path" => c.api.path = parse_nonempty(v)?,
        "api-cors-origin" => c.api.cors_origin = parse_nonempty(v)?,
        "api-ttl" => c.api.ttl = parse_duration(v)?,
        "api-max-channels" => c.api.max_channels = parse_count(v)?,
        "api-max-candidates" => c.api.max_candidates = parse_count(v)?,
        "api-max-bytes" => c.api.max_bytes = parse_size(v)?,
        "state-dir" => c.api.state_dir = Some(parse_path(v)?),
        "state-sync-interval" => c.api.state_sync_interval = parse_duration(v)?,
        "state-fsync" => c.api.state_fsync = parse_bool(v)?,
        "state-compact-interval" => c.api.state_compact_interval = parse_duration(v)?,
        sio if sio.starts_with("workspaces-") || sio.starts_with("mew-v1-") => set_sio_dialects(c, name, v)?,
        "allowed-origins" => c.allowed_origins = crate::proto::origin::Origins::parse(v)?,
        "allowed-origins-for" => {
            let (name, list) = v
                .split_once('=')
                .ok_or_else(|| format!("{v:?} is not NAME=ORIGINS"))?;
            let name = name.trim();
            if !ORIGIN_FAMILIES.contains(&name) {
                return Err(format!(
                    "{name:?} is not a dialect ({})",
                    ORIGIN_FAMILIES.join(", ")
                ));
            }
            let list = crate::proto::origin::Origins::parse(list)?;
            c.origin_overrides.retain(|(n, _)| n != name);
            c.origin_overrides.push((name.to_string(), list));
        }
        "cluster" => c.cluster = match v.trim() {
            "none" => None,
            url => Some(ClusterConfig { url: crate::cluster::RedisUrl::parse(url)? }),
        },
        "cluster-password" => c.cluster_options.password = Some(match v {
            "" => return Err("empty password".to_string()),
            p => Secret::new(p),
        }),
        "cluster-node-timeout" => c.cluster_options.node_timeout = parse_duration(v)?,
        "cluster-wait" => c.cluster_options.wait = parse_bool(v)?,
        "cluster-prefix" => c.cluster_options.prefix = parse_nonempty(v)?,
        "cluster-claim-ttl" => c.cluster_options.claim_ttl = parse_duration(v)?,
        "cluster-ca-file" => c.cluster_options.ca_file = parse_path(v)?,
        _ => return Err(format!("option {name:?} has no field (bug in the option table)")),
    }
    Ok(())
}

/// The ICE options (`crate::ice`), kept apart from the server's own.
fn set_ice(c: &mut IceConfig, name: &str, v: &str) -> Result<(), String> {
    let secret = |what: &str| match v.trim() {
        "" => Err(format!("empty {what}")),
        t => Ok(Secret::new(t)),
    };
    match name {
        "ice-server" => c.servers.push(crate::ice::parse_uri(v)?.to_string()),
        "turn-secret" => c.turn_secrets.push(secret("secret")?),
        "turn-ttl" => c.turn_ttl = parse_duration(v)?,
        "turn-separator" => c.turn_separator = parse_separator(v)?,
        "twilio-account-sid" => {
            c.twilio_account_sid = Some(secret("account SID")?.expose().to_string())
        }
        "twilio-auth-token" => c.twilio_auth_token = Some(secret("auth token")?),
        "twilio-base-url" => c.twilio_base_url = crate::ice::twilio::BaseUrl::parse(v)?.to_string(),
        "twilio-ca-file" => c.twilio_ca_file = parse_path(v)?,
        "twilio-timeout" => c.twilio_timeout = parse_duration(v)?,
        "ice-endpoint-token" => c.endpoint_token = Some(secret("token")?),
        _ => {
            return Err(format!(
                "option {name:?} has no field (bug in the option table)"
            ))
        }
    }
    Ok(())
}

/// One ASCII punctuation character: digits would run into the expiry, letters into the user.
fn parse_separator(s: &str) -> Result<char, String> {
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_punctuation() => Ok(c),
        _ => Err(format!(
            "{s:?} is not a separator (use one ASCII punctuation character, e.g. :)"
        )),
    }
}

/// The names `--allowed-origins-for` takes: the dialect families of the routes.
pub const ORIGIN_FAMILIES: [&str; 9] = [
    "echo",
    "cevitxe",
    "mewconnect",
    "peerolator",
    "socketio",
    "httpapi",
    "ywebrtc",
    "peerjs",
    "webtorrent",
];

/// Empties a repeatable option before a source sets it: higher sources replace lower ones.
fn reset(c: &mut Config, name: &str) {
    match name {
        "allowed-origins-for" => c.origin_overrides.clear(),
        "listen" | "listen-tls" | "listen-proxy" => c.listen.clear(),
        "ice-server" => c.ice.servers.clear(),
        "turn-secret" => c.ice.turn_secrets.clear(),
        _ => {}
    }
}

fn find(name: &str) -> Option<&'static Opt> {
    OPTS.iter().find(|o| o.name == name)
}

fn env_name(name: &str) -> String {
    format!("SIGYARD_{}", name.to_ascii_uppercase().replace('-', "_"))
}

/// Splits `" 64 KiB "` into `("64", "KiB")`.
fn split_number(s: &str) -> (&str, &str) {
    let t = s.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    (num, unit.trim_start())
}

fn parse_size(s: &str) -> Result<usize, String> {
    let bad = || format!("{s:?} is not a size (use bytes or a suffix: 64KiB, 1MiB)");
    let (num, unit) = split_number(s);
    let n: usize = num.parse().map_err(|_| bad())?;
    let unit = match unit {
        "" | "B" => 1,
        "KB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => KIB,
        "MiB" => MIB,
        "GiB" => GIB,
        _ => return Err(bad()),
    };
    n.checked_mul(unit).ok_or(format!("{s:?} is too large"))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration (use 500ms, 10s, 2m, 1h; bare number = seconds)");
    let (num, unit) = split_number(s);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let unit_ms = match unit {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(bad()),
    };
    let ms = n.checked_mul(unit_ms).ok_or(format!("{s:?} is too long"))?;
    Ok(Duration::from_millis(ms))
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!(
            "{s:?} is not a boolean (use true/false, 1/0, yes/no, on/off)"
        )),
    }
}

fn parse_count(s: &str) -> Result<usize, String> {
    let n = match split_number(s) {
        (num, "") => num.parse().ok(),
        _ => None,
    };
    n.ok_or(format!("{s:?} is not a whole number"))
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let msg = || format!("{s:?} is not a socket address (use IP:PORT: 0.0.0.0:8080, [::1]:8080)");
    s.trim().parse().map_err(|_| msg())
}

/// A duration in milliseconds.
/// A duration in whole seconds, at least one.
fn parse_secs(s: &str) -> Result<u64, String> {
    let d = parse_duration(s)?;
    match d.as_secs() {
        0 => Err(format!("{s:?} is shorter than a second")),
        n => Ok(n),
    }
}

fn parse_positive(s: &str) -> Result<usize, String> {
    match parse_count(s)? {
        0 => Err("must be at least 1".into()),
        n => Ok(n),
    }
}

/// A file of info hashes, 40 hex digits a line; blank lines and `#` comments skipped.
fn read_info_hashes(path: &str) -> Result<std::collections::HashSet<[u8; 20]>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut out = std::collections::HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad = || format!("{path}:{}: {line:?} is not 40 hex digits", n + 1);
        if line.len() != 40 || !line.is_ascii() {
            return Err(bad());
        }
        let mut h = [0u8; 20];
        for (i, b) in h.iter_mut().enumerate() {
            *b = u8::from_str_radix(&line[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        out.insert(h);
    }
    Ok(out)
}

fn parse_ms(s: &str) -> Result<u64, String> {
    parse_duration(s).map(|d| d.as_millis() as u64)
}

/// A mount path: `/`, or `/a/b` given with or without its trailing `/` (stored with one).
fn parse_mount(s: &str) -> Result<String, String> {
    let p = s.trim();
    if !p.starts_with('/') || p.contains(['?', '#', ' ']) {
        return Err(format!("{p:?} is not a URL path (use / or /myapp)"));
    }
    Ok(format!("{}/", p.trim_end_matches('/')))
}

/// Comma-separated URL paths, each starting with `/`, none claimed by another endpoint.
fn parse_paths(s: &str) -> Result<Vec<String>, String> {
    let mut paths = Vec::new();
    for p in s.split(',').map(str::trim) {
        let taken = matches!(
            p,
            "/healthz" | "/metrics" | "/server" | "/echo" | "/socket.io" | "/socket.io/"
        ) || [
            "/client/",
            "/introduction/",
            "/connection/",
            "/connect/",
            "/echo/",
        ]
        .iter()
        .any(|prefix| p.starts_with(prefix));
        if !p.starts_with('/') || p.contains(['?', '#', ' ']) {
            return Err(format!("{p:?} is not a URL path (use /, /staging, ...)"));
        }
        if taken {
            return Err(format!("{p:?} is already another endpoint's path"));
        }
        paths.push(p.to_owned());
    }
    Ok(paths)
}

fn parse_text(s: &str) -> Result<String, String> {
    match s {
        "" => Err("empty text".to_string()),
        t => Ok(t.to_owned()),
    }
}

fn parse_nonempty(s: &str) -> Result<String, String> {
    match s.trim() {
        "" => Err("empty value".to_string()),
        t => Ok(t.to_string()),
    }
}

fn parse_path(s: &str) -> Result<PathBuf, String> {
    match s.trim() {
        "" => Err("empty path".to_string()),
        t => Ok(PathBuf::from(t)),
    }
}

fn fmt_size(n: usize) -> String {
    let units = [(GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")];
    match units.iter().find(|(u, _)| n > 0 && n % u == 0) {
        Some((u, name)) => format!("{}{name}", n / u),
        None => n.to_string(),
    }
}

fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    let units = [(3_600_000, "h"), (60_000, "m"), (1000, "s")];
    match units.iter().find(|(u, _)| ms > 0 && ms % u == 0) {
        Some((u, name)) => format!("{}{name}", ms / u),
        None if ms == 0 => "0".to_string(),
        None => format!("{ms}ms"),
    }
}

/// One value from one source: (option, value, origin). The origin (flag, env var or
/// `file:line: name`) prefixes error messages.
type Setting = (&'static Opt, String, String);

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Parses `args` (without argv[0]), the environment as seen through `env`, and the config
/// file named by `--config` or `SIGYARD_CONFIG`; then validates the result.
pub fn parse(args: &[String], env: &dyn Fn(&str) -> Option<String>) -> Result<Parsed, ConfigError> {
    let mut cli: Vec<Setting> = Vec::new();
    let mut config_file = env("SIGYARD_CONFIG").map(|path| (path, "SIGYARD_CONFIG".to_string()));
    let (mut print, mut check) = (false, false);
    let mut args = args.iter().peekable();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help(help_text())),
            "--version" => return Ok(Parsed::Version(format!("sigyard {VERSION}"))),
            "--print-config" => {
                print = true;
                continue;
            }
            "--check-config" => {
                check = true;
                continue;
            }
            _ => {}
        }
        let Some(body) = arg.strip_prefix("--") else {
            let what = if arg.starts_with('-') {
                "unknown option"
            } else {
                "unexpected argument"
            };
            return Err(err(format!("{what} {arg:?} (see --help)")));
        };
        let (name, inline) = match body.split_once('=') {
            Some((name, v)) => (name, Some(v.to_string())),
            None => (body, None),
        };
        let flag = format!("--{name}");
        let opt = find(name).or((name == CONFIG.name).then_some(&CONFIG));
        let Some(opt) = opt else {
            return Err(err(format!("unknown option {flag:?} (see --help)")));
        };
        let value = match inline {
            Some(v) => v,
            None if opt.kind == "BOOL" => "true".to_string(),
            None => match args.next_if(|v| !v.starts_with('-')) {
                Some(v) => v.clone(),
                None => return Err(err(format!("{flag}: missing value ({flag} {})", opt.kind))),
            },
        };
        match name == CONFIG.name {
            true => config_file = Some((value, flag)),
            false => cli.push((opt, value, flag)),
        }
    }
    let file = match config_file {
        Some((path, origin)) if !path.is_empty() => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| err(format!("{origin}: cannot read {path:?}: {e}")))?;
            parse_file(&path, &text)?
        }
        _ => Vec::new(),
    };
    let mut cfg = Config::default();
    let sources = [file, env_settings(env), cli];
    for source in &sources {
        for (opt, _, _) in source.iter().filter(|s| s.0.repeatable) {
            reset(&mut cfg, opt.name);
        }
        for (opt, value, origin) in source {
            set(&mut cfg, opt.name, value).map_err(|m| err(format!("{origin}: {m}")))?;
        }
    }
    cfg.validate()?;
    match (print, check) {
        (true, _) => Ok(Parsed::PrintConfig(effective(&sources))),
        (false, true) => Ok(Parsed::CheckConfig(cfg)),
        (false, false) => Ok(Parsed::Run(cfg)),
    }
}

/// The configuration `sources` (file, environment, flags: lowest first) make, as a config
/// file: every option in `--help` order, where its value came from in a comment, options at
/// their default commented out. Secrets are never printed: their lines stay comments that say
/// a value is set and where (give them again through the environment or a file).
fn effective(sources: &[Vec<Setting>; 3]) -> String {
    let mut s = format!(
        "# sigyard {VERSION}: the effective configuration (--print-config), a config file.\n\
         # Options at their default are commented out; secrets are shown as <set>, commented.\n"
    );
    for o in OPTS {
        // The highest source that sets the option decides (for a repeatable one, all its
        // values from that source).
        let from = sources
            .iter()
            .rev()
            .find(|src| src.iter().any(|(opt, _, _)| opt.name == o.name));
        let Some(src) = from else {
            s += &format!("# {} = {}  (default)\n", o.name, o.default);
            continue;
        };
        for (_, value, origin) in src.iter().filter(|(opt, _, _)| opt.name == o.name) {
            let line = match (o.kind == "SECRET", value.contains('"')) {
                (true, _) => format!("# {} = <set>", o.name),
                (false, false) => format!("{} = \"{value}\"", o.name),
                // A quote cannot be written inside quotes: unquoted, it stops at a `#`.
                (false, true) => format!("{} = {value}", o.name),
            };
            s += &format!("{line}  # from {origin}\n");
        }
    }
    s
}

/// Values from `SIGYARD_*` variables; repeatable ones are comma-separated; empty = unset.
fn env_settings(env: &dyn Fn(&str) -> Option<String>) -> Vec<Setting> {
    let mut out = Vec::new();
    for opt in OPTS {
        let mut var = env_name(opt.name);
        let mut value = env(&var).unwrap_or_default();
        if let Some(&(_, alias)) = ENV_ALIASES.iter().find(|a| a.0 == opt.name) {
            if value.trim().is_empty() {
                (var, value) = (alias.to_string(), env(alias).unwrap_or_default());
            }
        }
        let values = match opt.repeatable {
            true => value.split(',').collect(),
            false => vec![value.as_str()],
        };
        for v in values.into_iter().filter(|v| !v.trim().is_empty()) {
            out.push((opt, v.to_string(), var.clone()));
        }
    }
    out
}

/// Parses config file text; `path` is used in error messages (`path:line: ...`).
fn parse_file(path: &str, text: &str) -> Result<Vec<Setting>, ConfigError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let at = format!("{path}:{}", i + 1);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, rest)) = line.split_once('=') else {
            return Err(err(format!(
                "{at}: expected \"name = value\", got {line:?}"
            )));
        };
        let name = name.trim();
        let opt = find(name).ok_or_else(|| err(format!("{at}: unknown option {name:?}")))?;
        let rest = rest.trim();
        let value = match rest.strip_prefix('"').map(|q| q.split_once('"')) {
            None => rest.split('#').next().unwrap_or_default().trim(),
            Some(None) => return Err(err(format!("{at}: {name}: unterminated quote"))),
            Some(Some((v, after))) => match after.trim() {
                "" => v,
                after if after.starts_with('#') => v,
                after => return Err(err(format!("{at}: {name}: {after:?} after the quotes"))),
            },
        };
        out.push((opt, value.to_string(), format!("{at}: {name}")));
    }
    Ok(out)
}

/// Returns the formatted error from the enclosing function unless `$ok` holds.
macro_rules! ensure {
    ($ok:expr, $($fmt:tt)+) => {
        if !$ok {
            return Err(err(format!($($fmt)+)));
        }
    };
}

// The Socket.IO dialects' rules (webRTWorkspaces, MewConnect v1).
impl Config {
    fn validate_sio_dialects(&self) -> Result<(), ConfigError> {
        let w = &self.workspaces;
        ensure!(
            w.capacity >= 1,
            "--workspaces-capacity: must be at least 1 (got 0)"
        );
        ensure!(
            w.max_workspaces >= 1,
            "--workspaces-max: must be at least 1 (got 0)"
        );
        let max = crate::proto::dialect::workspaces::token::MAX_PIN_ITERATIONS as usize;
        ensure!(
            (1..=max).contains(&w.pin_iterations),
            "--workspaces-pin-iterations: {} is out of range (1 to {max})",
            w.pin_iterations
        );
        let ttl = self.mew_v1.pair_ttl;
        ensure!(
            !ttl.is_zero() && ttl <= Duration::from_secs(24 * 3600),
            "--mew-v1-pair-ttl: {} is out of range (1ms to 24h)",
            fmt_duration(ttl)
        );
        ensure!(
            self.mew_v1.max_pairs >= 1,
            "--mew-v1-max-pairs: must be at least 1 (got 0)"
        );
        ensure!(
            !self.listen.iter().any(|l| l.proxy) || !self.trusted_proxies.is_empty(),
            "--listen-proxy needs --trusted-proxies (the balancers whose PROXY headers to believe)"
        );
        let k = &self.cluster_options;
        ensure!(
            self.cluster.is_none() || self.api.state_dir.is_none(),
            "--state-dir is for a process on its own: with --cluster the HTTP API's channels live in Redis"
        );
        ensure!(
            (Duration::from_secs(1)..=Duration::from_secs(60)).contains(&k.node_timeout),
            "--cluster-node-timeout: {} is out of range (1s to 60s)",
            fmt_duration(k.node_timeout)
        );
        ensure!(
            k.claim_ttl >= 3 * k.node_timeout && k.claim_ttl <= Duration::from_secs(7 * 86400),
            "--cluster-claim-ttl: {} is out of range (3 node timeouts to 7 days)",
            fmt_duration(k.claim_ttl)
        );
        ensure!(
            k.prefix.bytes().all(|b| b.is_ascii_graphic()),
            "--cluster-prefix: {:?} must be visible ASCII without spaces",
            k.prefix
        );
        Ok(())
    }
}

impl Limits {
    /// The limits the connection machine enforces.
    pub fn conn(&self) -> crate::proto::conn::Limits {
        crate::proto::conn::Limits {
            max_header_bytes: self.max_header_bytes,
            max_headers: self.max_headers,
            max_frame_size: self.max_frame_size,
            max_message_size: self.max_message_size,
            handshake_timeout: self.handshake_timeout,
            idle_timeout: self.idle_timeout,
            ping_interval: self.ping_interval,
            http_keepalive_timeout: self.http_keepalive_timeout,
            http_body_timeout: self.http_body_timeout,
        }
    }
}

impl Config {
    /// Worker threads to start: `threads`, or the number of available cores if it is 0.
    pub fn effective_threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// Checks ranges and cross-option rules; errors name the option and its value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        ensure!(
            !self.listen.is_empty(),
            "no listeners: give --listen or --listen-tls"
        );
        let tls = self.listen.iter().find(|x| x.tls);
        for (flag, path) in [("--tls-cert", &self.tls_cert), ("--tls-key", &self.tls_key)] {
            let msg = match (tls, path) {
                (Some(t), None) => format!("--listen-tls {} requires {flag}", t.addr),
                (None, Some(p)) => format!("{flag} {} given but no --listen-tls", p.display()),
                _ => continue,
            };
            return Err(err(msg));
        }
        ensure!(
            self.threads <= 1024,
            "--threads: {} is too many (at most 1024)",
            self.threads
        );
        let nonzero = [
            ("max-header-bytes", l.max_header_bytes),
            ("max-headers", l.max_headers),
            ("max-frame-size", l.max_frame_size),
            ("max-message-size", l.max_message_size),
            ("max-outbound-bytes", l.max_outbound_bytes),
            ("max-connections", l.max_connections),
            ("max-buffers-per-core", l.max_buffers_per_core),
            ("pipe-hold-messages", l.pipe_hold_messages),
            ("max-body-bytes", l.max_body_bytes),
            ("api-max-channels", self.api.max_channels),
            ("api-max-candidates", self.api.max_candidates),
            ("api-max-bytes", self.api.max_bytes),
            ("sio-max-http-buffer", self.sio.max_http_buffer),
            ("sio-max-sessions", self.sio.max_sessions),
        ];
        for (name, value) in nonzero {
            ensure!(value > 0, "--{name}: must be greater than 0 (got 0)");
        }
        let buf = fmt_size(l.buffer_size);
        let buf_ok = (KIB..=16 * MIB).contains(&l.buffer_size);
        ensure!(
            buf_ok,
            "--buffer-size: {buf} is out of range (1KiB to 16MiB)"
        );
        let stream = fmt_size(l.stream_buffer_size);
        ensure!(
            l.stream_buffer_size <= 16 * MIB,
            "--stream-buffer-size: {stream} is out of range (at most 16MiB)"
        );
        let (hdr, frame, msg) = (l.max_header_bytes, l.max_frame_size, l.max_message_size);
        let (why, hdr_s) = ("headers are parsed from one buffer", fmt_size(hdr));
        ensure!(
            hdr <= l.buffer_size,
            "--max-header-bytes ({hdr_s}) must not exceed --buffer-size ({buf}): {why}"
        );
        let (why, frame_s, msg_s) = ("a message may be one frame", fmt_size(frame), fmt_size(msg));
        ensure!(
            frame <= msg,
            "--max-frame-size ({frame_s}) must not exceed --max-message-size ({msg_s}): {why}"
        );
        let (max_frame, max_msg) = (
            crate::proto::ws::DecoderLimits::MAX_FRAME as usize,
            crate::proto::ws::DecoderLimits::MAX_MESSAGE as usize,
        );
        ensure!(
            frame <= max_frame && msg <= max_msg,
            "--max-frame-size ({frame_s}) / --max-message-size ({msg_s}): at most {} / {} \
             (the lengths a connection's decoder holds)",
            fmt_size(max_frame),
            fmt_size(max_msg)
        );
        let out_s = fmt_size(l.max_outbound_bytes);
        ensure!(
            l.max_outbound_bytes >= msg,
            "--max-outbound-bytes ({out_s}) must be at least --max-message-size ({msg_s}): \
             one whole message must fit in a connection's send queue"
        );
        let durations = [
            ("shutdown-timeout", self.shutdown_timeout, false),
            ("handshake-timeout", l.handshake_timeout, false),
            ("idle-timeout", l.idle_timeout, true),
            ("ping-interval", l.ping_interval, true),
            ("http-keepalive-timeout", l.http_keepalive_timeout, false),
            ("http-body-timeout", l.http_body_timeout, false),
            ("pipe-hold-timeout", l.pipe_hold_timeout, true),
            ("mew-idle-timeout", self.mew.idle_timeout, true),
            ("mew-max-lifetime", self.mew.max_lifetime, true),
            ("sio-ping-interval", self.sio.ping_interval, false),
            ("sio-ping-timeout", self.sio.ping_timeout, false),
            (
                "sio-workspaces-ping-timeout",
                self.sio.workspaces_ping_timeout,
                false,
            ),
            ("state-sync-interval", self.api.state_sync_interval, false),
            (
                "state-compact-interval",
                self.api.state_compact_interval,
                false,
            ),
        ];
        let day = Duration::from_secs(24 * 3600);
        for (name, d, zero_is_off) in durations {
            ensure!(
                zero_is_off || !d.is_zero(),
                "--{name}: must be greater than 0 (got 0)"
            );
            ensure!(
                d <= day,
                "--{name}: {} is too long (at most 24h)",
                fmt_duration(d)
            );
        }
        let path = &self.api.path;
        // (That no other endpoint uses it is the registry's check, at start.)
        let path_ok = path == "*" || (path.starts_with('/') && !path.contains('?'));
        ensure!(
            path_ok,
            "--api-path: {path:?} must be * or a path (starting with /) no other endpoint uses"
        );
        let cors = &self.api.cors_origin;
        ensure!(
            !cors.is_empty() && !cors.bytes().any(|b| b.is_ascii_control()),
            "--api-cors-origin: {cors:?} must be *, none or a list of origins"
        );
        ensure!(
            self.api.ttl >= Duration::from_secs(1)
                && self.api.ttl <= Duration::from_secs(7 * 24 * 3600),
            "--api-ttl: {} is out of range (1s to 168h)",
            fmt_duration(self.api.ttl)
        );
        let (ping, idle) = (l.ping_interval, l.idle_timeout);
        let (p, i) = (fmt_duration(ping), fmt_duration(idle));
        let why = "or idle clients are closed before they are pinged";
        let ping_ok = ping.is_zero() || idle.is_zero() || ping < idle;
        ensure!(
            ping_ok,
            "--ping-interval ({p}) must be shorter than --idle-timeout ({i}), {why}"
        );
        self.validate_sio_dialects()?;
        self.ice.validate()
    }
}

impl IceConfig {
    /// The ICE rules: TURN secrets need TURN servers, the provider needs both credentials,
    /// bounded lifetimes and timeouts, a bearer token long enough to resist guessing.
    fn validate(&self) -> Result<(), ConfigError> {
        let has_turn = self.servers.iter().any(|u| crate::ice::is_turn(u));
        ensure!(
            self.turn_secrets.is_empty() || has_turn,
            "--turn-secret given but no turn: or turns: --ice-server to use it with"
        );
        let ttl = self.turn_ttl;
        let ttl_s = fmt_duration(ttl);
        ensure!(
            ttl.subsec_nanos() == 0 && ttl >= Duration::from_secs(1),
            "--turn-ttl: {ttl_s} is not a whole number of seconds (at least 1s)"
        );
        ensure!(
            ttl <= Duration::from_secs(7 * 86_400),
            "--turn-ttl: {ttl_s} is too long (at most 7 days)"
        );
        match (&self.twilio_account_sid, &self.twilio_auth_token) {
            (Some(_), None) => {
                return Err(err(
                    "--twilio-account-sid requires --twilio-auth-token".into()
                ))
            }
            (None, Some(_)) => {
                return Err(err(
                    "--twilio-auth-token given but no --twilio-account-sid".into()
                ))
            }
            _ => {}
        }
        if let Some(sid) = &self.twilio_account_sid {
            ensure!(
                sid.bytes().all(|b| b.is_ascii_alphanumeric()),
                "--twilio-account-sid: {sid:?} is not an account SID (letters and digits only)"
            );
        }
        let t = self.twilio_timeout;
        ensure!(
            !t.is_zero() && t <= Duration::from_secs(300),
            "--twilio-timeout: {} is out of range (more than 0, at most 5m)",
            fmt_duration(t)
        );
        if let Some(token) = &self.endpoint_token {
            ensure!(
                token.expose().chars().count() >= 16,
                "--ice-endpoint-token: too short (at least 16 characters)"
            );
            ensure!(
                token.expose().bytes().all(|b| b.is_ascii_graphic()),
                "--ice-endpoint-token: only visible ASCII characters (it travels in a header)"
            );
        }
        Ok(())
    }
}

/// How an option is written in help and the reference, e.g. `--threads N`, `--echo[=BOOL]`.
fn usage(o: &Opt) -> String {
    match o.kind {
        "BOOL" => format!("--{}[=BOOL]", o.name),
        kind => format!("--{} {kind}", o.name),
    }
}

/// The full `--help` text: every option with its default and environment variable.
pub fn help_text() -> String {
    let mut s = format!(
        "sigyard {VERSION} - WebRTC signaling server\n\nUsage: sigyard [OPTIONS]\n\n\
         Every option can also be set by an environment variable or by a `name = value`\n\
         line in the config file (`#` comments, \"quoted\" values, repeat a line to repeat\n\
         an option). Precedence: flags > environment > config file > default. A repeatable\n\
         option from a higher source replaces all values from lower ones; in the\n\
         environment its values are comma-separated.\n\nOptions:\n"
    );
    for o in std::iter::once(&CONFIG).chain(OPTS) {
        let (flag, help, default, env) = (usage(o), o.help, o.default, env_name(o.name));
        s += &format!("  {flag}\n        {help}\n        [default: {default}] [env: {env}]\n");
    }
    s + "  --print-config\n        Print the effective configuration (flags, environment, file and\n        \
         defaults) as a config file, each value's origin in a comment, and exit.\n  \
         --check-config\n        Check the configuration, its TLS files, state directory and workspace\n        \
         store, without binding any port; exit 0, or 2 with the problem.\n  \
         -h, --help\n        Print this help.\n  --version\n        Print the version.\n\n\
         Values:\n  \
         SIZE      bytes, or with a suffix: B, KB/MB/GB (x1000), KiB/MiB/GiB (x1024)\n  \
         DURATION  whole number with ms, s, m or h (500ms, 10s, 2m); bare number = seconds\n  \
         BOOL      true/false, 1/0, yes/no, on/off\n  \
         ADDR      IP:PORT, e.g. 0.0.0.0:8080 or [::1]:8080\n  \
         URI       stun:, stuns:, turn: or turns: host[:port], e.g. turn:h:3478?transport=tcp\n  \
         SECRET    a secret: prefer the environment or the config file (flags show in ps)\n"
}

/// The configuration reference as a Markdown table (option, env var, default, meaning).
pub fn markdown_reference() -> String {
    let mut s = String::from("| Option | Env var | Default | Meaning |\n|---|---|---|---|\n");
    for o in std::iter::once(&CONFIG).chain(OPTS) {
        let (flag, env, default) = (usage(o), env_name(o.name), o.default);
        let help = o.help.replace('|', "\\|");
        s += &format!("| `{flag}` | `{env}` | `{default}` | {help} |\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses a space-separated command line with the given environment.
    pub(super) fn run(line: &str, env: &[(&str, &str)]) -> Result<Config, String> {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        let lookup = |k: &str| Some(env.iter().find(|e| e.0 == k)?.1.to_string());
        match parse(&args, &lookup).map_err(|e| e.message)? {
            Parsed::Run(c) => Ok(c),
            other => Err(format!("unexpected {other:?}")),
        }
    }

    /// Each case is `"command line => expected start of the error"`.
    fn check_errors(cases: &[&str]) {
        for case in cases {
            let (line, want) = case.split_once(" => ").unwrap();
            let e = run(line, &[]).expect_err(line);
            assert!(e.starts_with(want), "{line}: got {e:?}, want {want:?}");
        }
    }

    fn temp_file(name: &str, text: &str) -> String {
        let path = std::env::temp_dir().join(format!("sigyard-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }

    fn addrs(c: &Config) -> String {
        let tls = |l: &Listener| if l.tls { "tls:" } else { "" };
        let each = c.listen.iter().map(|l| format!("{}{}", tls(l), l.addr));
        each.collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn table_defaults_match_default_impl_and_every_row_has_a_field() {
        let mut c = Config::default();
        c.listen.clear();
        for o in OPTS.iter().filter(|o| o.default != "none") {
            set(&mut c, o.name, o.default).unwrap();
        }
        assert_eq!(c, Config::default());
        assert_eq!(run("", &[]), Ok(Config::default()));
        for o in OPTS {
            let e = set(&mut c, o.name, "").unwrap_err();
            assert!(!e.contains("no field"), "{}", o.name);
        }
    }

    #[test]
    fn precedence_scalar_and_repeatable() {
        let text = "threads = 2\nlisten = 10.0.0.1:1\nlisten = 10.0.0.2:2\nidle-timeout = 5m\n";
        let f = temp_file("prec.conf", text);
        let c = run(&format!("--config {f}"), &[]).unwrap();
        assert_eq!(
            (c.threads, addrs(&c).as_str()),
            (2, "10.0.0.1:1 10.0.0.2:2")
        );
        let env = [
            ("SIGYARD_CONFIG", f.as_str()),
            ("SIGYARD_THREADS", "3"),
            ("SIGYARD_LISTEN", "[::1]:3, 10.0.0.4:4"),
        ];
        let c = run("", &env).unwrap();
        assert_eq!((c.threads, addrs(&c).as_str()), (3, "[::1]:3 10.0.0.4:4"));
        assert_eq!(c.limits.idle_timeout, Duration::from_secs(300)); // from the file
        let c = run(
            "--threads 4 --listen-tls=10.0.0.5:5 --tls-cert c --tls-key k",
            &env,
        );
        let c = c.unwrap();
        assert_eq!((c.threads, addrs(&c).as_str()), (4, "tls:10.0.0.5:5"));
        assert_eq!(
            run("--threads=5 --threads 6", &[]).map(|c| c.threads),
            Ok(6)
        );
        std::fs::remove_file(f).unwrap();
    }

    #[test]
    fn sizes() {
        let ok = "123=123 7B=7 2KB=2000 64KiB=65536 3MB=3000000 1MiB=1048576 1GiB=1073741824";
        for case in ok.split(' ') {
            let (s, n) = case.split_once('=').unwrap();
            assert_eq!(parse_size(s), Ok(n.parse().unwrap()), "{s}");
        }
        assert_eq!(parse_size(" 1 GB "), Ok(1_000_000_000));
        for bad in "12x KiB -1 +1 1.5MiB 64kib 99999999999999999999GiB".split(' ') {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert!(parse_size("").is_err());
        assert_eq!(
            [0, 1000, 2048, 3 * MIB].map(fmt_size),
            ["0", "1000", "2KiB", "3MiB"]
        );
    }

    #[test]
    fn durations() {
        for case in "500ms=500 10s=10000 2m=120000 1h=3600000 7=7000 0=0".split(' ') {
            let (s, ms) = case.split_once('=').unwrap();
            let want = Duration::from_millis(ms.parse().unwrap());
            assert_eq!(parse_duration(s), Ok(want), "{s}");
        }
        for bad in ["", "s", "1.5s", "10d", "-1s", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        let shown = [1500, 120_000, 0].map(|ms| fmt_duration(Duration::from_millis(ms)));
        assert_eq!(shown, ["1500ms", "2m", "0"]);
    }

    #[test]
    fn bools_counts_addrs_levels() {
        for s in ["true", "1", "yes", "ON", "false", "0", "no", "off"] {
            assert_eq!(
                parse_bool(s),
                Ok(["true", "1", "yes", "ON"].contains(&s)),
                "{s}"
            );
        }
        assert!(parse_bool("maybe").is_err());
        assert_eq!(parse_count(" 42 "), Ok(42));
        assert!(parse_count("4k").is_err() && parse_count("").is_err());
        assert_eq!(parse_addr("[::1]:8080").unwrap().to_string(), "[::1]:8080");
        assert_eq!(parse_addr("0.0.0.0:443").unwrap().port(), 443);
        for bad in ["localhost:80", "1.2.3.4", "::1:80", ""] {
            assert!(parse_addr(bad).is_err(), "{bad}");
        }
        assert_eq!("Debug".parse(), Ok(LogLevel::Debug));
        assert_eq!(LogLevel::Warn.to_string(), "warn");
        assert!("loud".parse::<LogLevel>().is_err());
    }

    #[test]
    fn cli_forms_and_errors() {
        let c = run(
            "--echo --max-frame-size=64KiB --log-level trace --idle-timeout=0",
            &[],
        );
        let c = c.unwrap();
        assert!(c.echo && c.log_level == LogLevel::Trace && c.limits.idle_timeout.is_zero());
        assert_eq!(c.limits.max_frame_size, 65536);
        assert!(!run("--echo --echo=false", &[]).unwrap().echo);
        assert!(run("", &[("SIGYARD_ECHO", "on")]).unwrap().echo);
        assert_eq!(
            run("--max-frame-size 12x", &[]),
            Err(
                "--max-frame-size: \"12x\" is not a size (use bytes or a suffix: 64KiB, 1MiB)"
                    .into()
            )
        );
        check_errors(&[
            "--bogus=1 => unknown option \"--bogus\" (see --help)",
            "stray => unexpected argument \"stray\" (see --help)",
            "-x => unknown option \"-x\" (see --help)",
            "--threads => --threads: missing value (--threads N)",
            "--threads --echo => --threads: missing value",
            "--echo=maybe => --echo: \"maybe\" is not a boolean",
            "--log-level=loud => --log-level: \"loud\" is not a log level",
            "--listen localhost:80 => --listen: \"localhost:80\" is not a socket address",
            "--config /nonexistent/x.conf => --config: cannot read \"/nonexistent/x.conf\"",
        ]);
        let e = run("", &[("SIGYARD_PING_INTERVAL", "soon")]).unwrap_err();
        assert!(
            e.starts_with("SIGYARD_PING_INTERVAL: \"soon\" is not a duration"),
            "{e}"
        );
    }

    #[test]
    fn help_and_version() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let Ok(Parsed::Help(h)) = parse(&args(&["--threads", "2", "-h"]), &|_| None) else {
            panic!("no help")
        };
        for o in std::iter::once(&CONFIG).chain(OPTS) {
            let entry = format!("[default: {}] [env: {}]", o.default, env_name(o.name));
            assert!(h.contains(&usage(o)) && h.contains(&entry), "{}", o.name);
        }
        let v = parse(&args(&["--version"]), &|_| None);
        assert!(matches!(v, Ok(Parsed::Version(v)) if v == format!("sigyard {VERSION}")));
    }

    #[test]
    fn markdown_reference_has_every_row() {
        let md = markdown_reference();
        for o in OPTS {
            let (flag, env, default) = (usage(o), env_name(o.name), o.default);
            let row = format!("| `{flag}` | `{env}` | `{default}` | {} |", o.help);
            assert!(md.contains(&row), "{row}");
        }
        assert_eq!(md.lines().count(), OPTS.len() + 3); // header, rule, --config
    }

    #[test]
    fn config_file_syntax() {
        let text = "# comment\n\n  echo = yes  # on\ntls-cert = \"/my certs/a#b.pem\" # c\n\
                    tls-key=/k.pem\nlisten-tls = [::1]:8443\n";
        let f = temp_file("ok.conf", text);
        let c = run(&format!("--config={f}"), &[]).unwrap();
        assert!(c.echo);
        assert_eq!(c.tls_cert, Some(PathBuf::from("/my certs/a#b.pem")));
        assert_eq!(addrs(&c), "tls:[::1]:8443");
        let bad = [
            ("echo = true\n\nbogus = 1\n", ":3: unknown option \"bogus\""),
            (
                "# x\nmax-headers = many\n",
                ":2: max-headers: \"many\" is not a whole number",
            ),
            (
                "threads 4",
                ":1: expected \"name = value\", got \"threads 4\"",
            ),
            ("tls-key = \"/k", ":1: tls-key: unterminated quote"),
            ("echo = \"1\"x", ":1: echo: \"x\" after the quotes"),
            ("config = x", ":1: unknown option \"config\""),
        ];
        for (i, (text, want)) in bad.into_iter().enumerate() {
            let f = temp_file(&format!("bad{i}.conf"), text);
            assert_eq!(
                run("", &[("SIGYARD_CONFIG", &f)]),
                Err(format!("{f}{want}"))
            );
            std::fs::remove_file(f).unwrap();
        }
        std::fs::remove_file(f).unwrap();
    }

    #[test]
    fn tls_rules() {
        check_errors(&[
            "--listen-tls 0.0.0.0:443 --tls-cert c.pem => --listen-tls 0.0.0.0:443 requires --tls-key",
            "--listen-tls 0.0.0.0:443 => --listen-tls 0.0.0.0:443 requires --tls-cert",
            "--tls-key k.pem => --tls-key k.pem given but no --listen-tls",
        ]);
        let c = run(
            "--listen-tls 0.0.0.0:443 --listen [::]:80 --tls-cert c --tls-key=k",
            &[],
        );
        assert_eq!(addrs(&c.unwrap()), "tls:0.0.0.0:443 [::]:80");
    }

    #[test]
    fn validation_rules() {
        check_errors(&[
            "--threads 2000 => --threads: 2000 is too many (at most 1024)",
            "--max-frame-size 1MiB => --max-frame-size (1MiB) must not exceed --max-message-size (256KiB)",
            "--max-headers 0 => --max-headers: must be greater than 0 (got 0)",
            "--buffer-size 512 => --buffer-size: 512 is out of range",
            "--buffer-size 32MiB => --buffer-size: 32MiB is out of range",
            "--stream-buffer-size 32MiB => --stream-buffer-size: 32MiB is out of range",
            "--max-header-bytes 32KiB => --max-header-bytes (32KiB) must not exceed --buffer-size (16KiB)",
            "--handshake-timeout 0 => --handshake-timeout: must be greater than 0",
            "--shutdown-timeout 25h => --shutdown-timeout: 25h is too long",
            "--ping-interval 2m => --ping-interval (2m) must be shorter than --idle-timeout (2m)",
            "--max-message-size 2MiB => --max-outbound-bytes (1MiB) must be at least --max-message-size (2MiB)",
            "--max-frame-size 256MiB --max-message-size 256MiB --max-outbound-bytes 256MiB => --max-frame-size (256MiB) / --max-message-size (256MiB): at most",
        ]);
        assert!(run(
            "--ping-interval 0 --idle-timeout=0 --max-connections-per-ip 0",
            &[]
        )
        .is_ok());
        let mut c = Config::default();
        c.listen.clear();
        assert!(c.validate().is_err());
        assert!(Config::default().effective_threads() >= 1);
    }
}

#[cfg(test)]
mod ice_tests {
    use super::tests::run;
    use super::*;

    #[test]
    fn ice_options_from_flags_env_and_file() {
        let c = run(
            "--ice-server stun:s.example:3478 --ice-server TURN:t.example?transport=tcp \
             --turn-secret a --turn-secret b --turn-ttl 1h --turn-separator=- \
             --twilio-account-sid AC0 --twilio-base-url https://127.0.0.1:9/x/ \
             --twilio-timeout 2s --twilio-ca-file /ca.pem",
            &[
                ("SIGYARD_TWILIO_AUTH_TOKEN", "tok"),
                ("SIGYARD_ICE_ENDPOINT_TOKEN", "0123456789abcdef"),
            ],
        )
        .unwrap()
        .ice;
        assert_eq!(
            c.servers,
            ["stun:s.example:3478", "turn:t.example?transport=tcp"]
        );
        assert_eq!(c.turn_secrets, [Secret::new("a"), Secret::new("b")]);
        assert_eq!(
            (c.turn_ttl, c.turn_separator),
            (Duration::from_secs(3600), '-')
        );
        assert_eq!(c.twilio_account_sid.as_deref(), Some("AC0"));
        assert_eq!(c.twilio_auth_token, Some(Secret::new("tok")));
        assert_eq!(c.twilio_base_url, "https://127.0.0.1:9/x");
        assert_eq!(c.twilio_ca_file, PathBuf::from("/ca.pem"));
        assert_eq!(c.twilio_timeout, Duration::from_secs(2));
        assert_eq!(
            c.endpoint_token.as_ref().map(Secret::expose),
            Some("0123456789abcdef")
        );
        assert!(
            !format!("{c:?}").contains("tok\""),
            "secrets stay out of Debug"
        );
        // Rotation list from the environment (comma-separated), replaced by flags.
        let env = [
            ("SIGYARD_TURN_SECRET", "new,old"),
            ("SIGYARD_ICE_SERVER", "turn:t"),
        ];
        let c = run("", &env).unwrap().ice;
        assert_eq!(c.turn_secrets, [Secret::new("new"), Secret::new("old")]);
        let c = run("--turn-secret x", &env).unwrap().ice;
        assert_eq!((c.turn_secrets.len(), c.servers.len()), (1, 1));
    }

    #[test]
    fn ice_errors() {
        let cases = [
            ("--ice-server stun.l.google.com:19302", "--ice-server: \"stun.l.google.com:19302\" is not an ICE server URI"),
            ("--ice-server http://x", "--ice-server: \"http://x\" is not an ICE server URI: the scheme"),
            ("--ice-server stun:h:99999", "--ice-server: \"stun:h:99999\" is not an ICE server URI: the port"),
            ("--turn-secret k", "--turn-secret given but no turn: or turns: --ice-server"),
            ("--ice-server stun:h --turn-secret k", "--turn-secret given but no turn:"),
            ("--ice-server turn:h --turn-ttl 0", "--turn-ttl: 0 is not a whole number of seconds"),
            ("--ice-server turn:h --turn-ttl 1500ms", "--turn-ttl: 1500ms is not a whole number"),
            ("--ice-server turn:h --turn-ttl 8d", "--turn-ttl: \"8d\" is not a duration"),
            ("--ice-server turn:h --turn-ttl 200h", "--turn-ttl: 200h is too long (at most 7 days)"),
            ("--turn-separator ab", "--turn-separator: \"ab\" is not a separator"),
            ("--turn-separator 7", "--turn-separator: \"7\" is not a separator"),
            ("--twilio-account-sid AC1", "--twilio-account-sid requires --twilio-auth-token"),
            ("--twilio-auth-token t", "--twilio-auth-token given but no --twilio-account-sid"),
            ("--twilio-account-sid A/C --twilio-auth-token t", "--twilio-account-sid: \"A/C\" is not an account SID"),
            ("--twilio-base-url http://api.twilio.com", "--twilio-base-url: \"http://api.twilio.com\" is not a base URL: it must start with https://"),
            ("--twilio-timeout 0", "--twilio-timeout: 0 is out of range"),
            ("--twilio-timeout 6m", "--twilio-timeout: 6m is out of range"),
            ("--ice-endpoint-token short", "--ice-endpoint-token: too short (at least 16 characters)"),
        ];
        for (line, want) in cases {
            let e = run(line, &[]).expect_err(line);
            assert!(e.starts_with(want), "{line}: got {e:?}, want {want:?}");
        }
        let e = run("", &[("SIGYARD_TURN_SECRET", " ")]);
        assert!(e.is_ok(), "an empty variable counts as unset");
        let f = std::env::temp_dir().join(format!("sigyard-{}-ice.conf", std::process::id()));
        std::fs::write(&f, "ice-server = turn:h\nturn-secret = \"\"\n").unwrap();
        let e = run(&format!("--config {}", f.display()), &[]).unwrap_err();
        assert!(e.ends_with(":2: turn-secret: empty secret"), "{e}");
        std::fs::remove_file(f).unwrap();
    }
}

#[cfg(test)]
mod info_hashes {
    #[test]
    fn the_allow_list_file_is_read_or_refused_with_its_line() {
        let f = std::env::temp_dir().join(format!("sigyard-{}-hashes", std::process::id()));
        let p = f.display().to_string();
        std::fs::write(
            &f,
            format!(
                "# torrents\n\n{}  # one\n{}\n",
                "68".repeat(20),
                "0A".repeat(20)
            ),
        )
        .unwrap();
        let set = super::read_info_hashes(&p).unwrap();
        assert!(set.contains(b"hhhhhhhhhhhhhhhhhhhh") && set.contains(&[10; 20]) && set.len() == 2);
        std::fs::write(&f, "68686868\n").unwrap();
        let e = super::read_info_hashes(&p).unwrap_err();
        assert_eq!(e, format!("{p}:1: \"68686868\" is not 40 hex digits"));
        std::fs::write(&f, "zz".repeat(20)).unwrap();
        assert!(super::read_info_hashes(&p).is_err());
        std::fs::remove_file(&f).unwrap();
        assert!(super::read_info_hashes(&p).unwrap_err().starts_with(&p));
    }
}

#[cfg(test)]
mod readme {
    /// The README's configuration reference is generated from the option table; this keeps
    /// them from drifting. To regenerate: `SIGYARD_PRINT_REFERENCE=1 cargo test --lib
    /// readme_has -- --nocapture` and paste the table between the markers.
    #[test]
    fn readme_has_the_configuration_reference() {
        let table = super::markdown_reference();
        if std::env::var_os("SIGYARD_PRINT_REFERENCE").is_some() {
            println!("{table}");
        }
        let readme = include_str!("../README.md");
        assert!(
            readme.contains(&table),
            "README.md's configuration reference is stale"
        );
    }
}

#[cfg(test)]
mod sio_dialect_tests {
    use super::*;

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Config, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let lookup = |k: &str| Some(env.iter().find(|e| e.0 == k)?.1.to_string());
        match parse(&args, &lookup).map_err(|e| e.message)? {
            Parsed::Run(c) => Ok(c),
            other => Err(format!("unexpected {other:?}")),
        }
    }

    #[test]
    fn the_original_secret_names_are_read_when_sigyard_ones_are_unset() {
        let env = [("MAGICK_TOKEN", "m1"), ("SALT_STRING", "s1")];
        let c = run(&[], &env).unwrap();
        assert_eq!(c.workspaces.secret, Some(Secret::new("m1")));
        assert_eq!(c.workspaces.salt, Some(Secret::new("s1")));
        let env = [
            ("MAGICK_TOKEN", "m1"),
            ("SIGYARD_WORKSPACES_SECRET", "m2"),
            ("SALT_STRING", ""),
        ];
        let c = run(&[], &env).unwrap();
        assert_eq!(c.workspaces.secret, Some(Secret::new("m2")));
        assert_eq!(c.workspaces.salt, None);
        let c = run(&["--workspaces-secret", "m3"], &[("MAGICK_TOKEN", "m1")]).unwrap();
        assert_eq!(c.workspaces.secret, Some(Secret::new("m3")));
        assert!(!format!("{c:?}").contains("m3"), "secrets are not printed");
    }

    #[test]
    fn the_options_parse_and_are_bounded() {
        let c = run(
            &[
                "--workspaces-capacity=4",
                "--workspaces-disconnect-on-full=false",
                "--workspaces-storage-file=/tmp/ws.json",
                "--mew-v1-pair-ttl=30s",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.workspaces.capacity, 4);
        assert!(!c.workspaces.disconnect_on_full);
        assert_eq!(
            c.workspaces.storage_file,
            Some(PathBuf::from("/tmp/ws.json"))
        );
        assert_eq!(c.mew_v1.pair_ttl, Duration::from_secs(30));
        for (args, want) in [
            (
                "--workspaces-capacity=0",
                "--workspaces-capacity: must be at least 1",
            ),
            ("--workspaces-max=0", "--workspaces-max: must be at least 1"),
            (
                "--workspaces-pin-iterations=0",
                "--workspaces-pin-iterations: 0 is out of range",
            ),
            (
                "--workspaces-pin-iterations=10000001",
                "--workspaces-pin-iterations: 10000001 is out of range",
            ),
            (
                "--mew-v1-pair-ttl=0",
                "--mew-v1-pair-ttl: 0 is out of range",
            ),
            (
                "--mew-v1-pair-ttl=25h",
                "--mew-v1-pair-ttl: 25h is out of range",
            ),
            (
                "--mew-v1-max-pairs=0",
                "--mew-v1-max-pairs: must be at least 1",
            ),
            ("--workspaces-secret=", "--workspaces-secret: empty secret"),
        ] {
            let e = run(&[args], &[]).unwrap_err();
            assert!(e.starts_with(want), "{args}: {e}");
        }
    }
}
