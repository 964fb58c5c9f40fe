//! Command line of `sigyard-load`: the scenarios, their flags, the `--help` text, and
//! validation. Every error names the flag it is about; `main` turns it into exit status 2.

use crate::tls::Trust;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

pub const HELP: &str = "\
sigyard-load: load generator for sigyard (and any WebSocket server).

USAGE
    sigyard-load <SCENARIO> [OPTIONS]
    sigyard-load --help

SCENARIOS
    idle       open --connections WebSockets (at most --rate new per second), hold them for
               --hold seconds; reports established / failed / held and, with --server-pid, the
               server's RSS before, at N and per connection.
    relay      messages through the server for --duration seconds.
               --mode echo: each of --pairs connections to the URL's path (default /echo)
               sends a message and awaits its echo; latency = round trip.
               --mode pipe: --pairs pairs on the cevitxe pipe /connection/a{i}/b{i}/k and
               /connection/b{i}/a{i}/k; the a side sends, the b side receives; latency = one
               way through the server (send time is in the payload, one clock).
               Closed loop (one message in flight per pair) unless --rate is given.
    handshake  connect + upgrade + close, as many per second as --concurrency allows;
               latency = connect start to the 101 answer.
    churn      connect + upgrade + one --size message echoed + close cycles; latency = the
               whole cycle up to the echo.
    mewconnect MewConnect v2: --pairs pairs made (initiator, initiated, receiver, both
               confirmations; at most --concurrency in flight), then for --duration each pair
               loops offersignal -> offer -> answersignal -> answer with a --size-byte
               ciphertext. Reports pairings/s and the offer/answer round trip. The URL path is
               the MewConnect path (an empty one means /). No --workers.
    httpapi    --concurrency keep-alive HTTP connections to the HTTP API (URL path, default /),
               one request in flight each, for --duration seconds; each repeats the whole
               exchange (create_data_channel, create_offer with --size bytes, get_offer, two
               create_candidate, get_candidates, create_answer, get_answer); reports
               requests/s and per-request latency.
    socketio   Socket.IO 2 / Engine.IO 3 (socket.io-client 2.x's wire): --connections
               sessions opened (at most --concurrency in flight) on the test rooms dialect
               (the server needs --echo), then for --duration every session loops: emit
               42[\"echo\",<--size chars>] and await the echo. --transport websocket (one
               WebSocket per session) or polling (a held GET and a POST connection per
               session, keep-alive). Reports sessions/s, events/s and the emit-to-echo
               latency. The URL path is ignored (/socket.io/). No --workers.
    peerjs     PeerJS (npm peer's protocol): --pairs pairs of clients registered (ids and
               tokens random per run; both connect, both wait for OPEN; at most
               --concurrency pairs in flight), then for --duration each pair loops: A sends
               an OFFER whose SDP has --size bytes, B an ANSWER of the same size, then A a
               CANDIDATE and B one back. Reports messages relayed/s, offer/answer round
               trips/s and the OFFER-to-ANSWER latency. The URL path is the PeerJS mount
               (default /; the socket is {path}peerjs, key peerjs). ws:// only, no
               --workers.
    ywebrtc    y-webrtc signaling: --connections subscribers in topics of --fanout each
               (at most --concurrency setting up), each subscribed (subscribe, then a ping
               whose pong confirms it); then for --duration every topic has one publish of
               --size data characters in flight, sent by its subscribers in turn and
               delivered by the server to all of them. Reports deliveries/s, publishes/s and
               the latency from the publish to the last subscriber's receipt. The URL path
               defaults to /y-webrtc. ws:// only, no --workers.
    webtorrent WebTorrent tracker over WebSocket (bittorrent-tracker 11.2.3's wire):
               --connections peers (one WebSocket and one random 20-byte peer id each) in
               --torrents swarms (random info hashes), at most --concurrency setting up;
               each announces event \"started\" with --offers offers whose SDP has --size
               characters, and is set up when that announce's response came. Then for
               --duration every peer loops: an announce with new offers, its response and
               the answers to the offers the server relayed (to min(K, the swarm's other
               peers), by the response's counts), or --scrape-mix of the time a scrape of
               its torrent and its response; then the next one. Every peer answers every
               offer it gets (to_peer_id the offerer, offer_id as received). Every frame
               is checked against the original's exact shape and member order; a mismatch
               counts as an error. Reports announce responses/s, offers and answers
               received/s, the announce-to-response and offer-to-answer latencies. The URL
               path defaults to /announce. ws:// only, no --workers.

OPTIONS (all scenarios)
    --url URL            ws://HOST:PORT[/PATH] or wss://HOST:PORT[/PATH] (default
                         ws://127.0.0.1:8080; http:// too, for httpapi). An empty or \"/\"
                         path means /echo (httpapi: /). relay --mode pipe ignores the path.
    --ca FILE            wss://: trust the PEM certificates in FILE (default: the system
                         bundle, /etc/ssl/certs/ca-certificates.crt)
    --url tcp://HOST:PORT  relay --mode pipe only: the raw TCP baseline. No upgrade; each
                         connection first sends its pipe path and a newline, then unmasked
                         frames, to a byte-copying forwarder that pairs connections by path
                         (benches/compare.d/tcp-copy): what a plain TCP relay costs.
    --insecure           wss://: accept any server certificate (handshake signatures are
                         still checked; for loopback runs with a throw-away certificate)
    --threads N          event-loop threads in this process (default: available cores)
    --workers K          split the load over K child processes of this binary and sum
                         their results (default 1 = no children)
    --source-ips N       bind client sockets to 127.0.0.1 .. 127.0.0.N round-robin (loopback
                         targets; one source address gives ~28,000 connections to one
                         server address). Default 1 = no explicit bind.
    --timeout SECONDS    connect + upgrade deadline per connection (default 10)
    --server-pid PID     read the server's VmRSS and RssAnon from /proc/PID/status before and after
                         (idle, peerjs, ywebrtc, webtorrent: also with every connection set
                         up, and per connection); idle, relay, handshake and churn in one
                         process also report its user and kernel CPU time over the
                         measured window (/proc/PID/stat) and the TCP segments this host
                         sent in it (OutSegs of /proc/net/snmp: both ends over loopback)
    --perf-control FIFO  write `enable` to FIFO when the measured window starts and
                         `disable` when it ends: the control FIFO of `perf stat --delay=-1
                         --control fifo:FIFO`, so that perf counts the server's syscalls and
                         CPU over exactly the window the figures are for (set-up excluded).
                         Not with --workers.
    --json               print the summary as JSON on stdout (the readable summary goes to
                         stderr instead)
    --quiet              no progress line
    --spin               while the traffic runs, poll without sleeping: the load's threads stay
                         awake, so the server is not charged for waking them (over loopback a
                         send wakes its reader inside the sender's system call; over a network
                         that is the client machine's work). Each thread takes a whole core.
    --worker I/K         internal: set by --workers on its children (this is child I of K)
    -h, --help           this text

OPTIONS (per scenario)
    idle:      --connections N (required), --hold SECONDS (default 10), --rate R new
               connections per second (default unlimited), --concurrency C handshakes in
               flight at once (default 256), --stall head|frame: instead of an idle
               WebSocket, a connection that stalls mid-input: `head` sends the first 32
               bytes of its upgrade request and nothing more; `frame` upgrades, then sends
               the first 3 bytes of a frame header (what a slow or hostile peer leaves
               behind; the server's --handshake-timeout and --idle-timeout end them)
    relay:     --pairs P (default 10), --size BYTES (default 64, at least 16),
               --duration SECONDS (default 10), --mode echo|pipe (default echo),
               --rate MSGS_PER_SEC over all pairs (default: closed loop),
               --window W messages in flight per sender in closed loop (default 1),
               --peer-url URL: --mode pipe: the b sides connect there (another node of a
               cluster), the a sides to --url
    handshake: --duration SECONDS (default 10), --concurrency C (default 16)
    churn:     --duration SECONDS (default 10), --concurrency C (default 16),
               --size BYTES (default 64, at least 16)
    mewconnect: --pairs P (default 10), --duration SECONDS (default 10),
               --concurrency C pairings in flight (default 16), --size BYTES (default 64),
               --rate OFFERS_PER_SEC over all pairs, round robin, a pair still waiting for
               its answer skipped (default: closed loop, every pair always in flight),
               --peer-url URL: the receivers connect there (another node of a cluster), the
               initiators to --url
    httpapi:   --duration SECONDS (default 10), --concurrency C (default 16),
               --size BYTES of offer (default 64)
    socketio:  --connections N (default 100), --duration SECONDS (default 10),
               --concurrency C sessions opening at once (default 16), --size CHARS
               (default 64), --transport websocket|polling (default websocket),
               --peer-url URL: sessions in pairs across two servers (nodes), each pair
               playing ping-pong with `direct` events (latency = both legs)
    peerjs:    --pairs P (default 10), --duration SECONDS (default 10),
               --concurrency C pairs setting up at once (default 16), --size BYTES of SDP
               in OFFER and ANSWER (default 64), --rate EXCHANGES_PER_SEC over all pairs,
               round robin, a pair still exchanging skipped (default: closed loop)
    ywebrtc:   --connections N (default 100), --fanout M subscribers per topic (default
               10; the last topic takes the rest), --duration SECONDS (default 10),
               --concurrency C subscribers setting up at once (default 16), --size CHARS
               of publish data (default 64, at least 16: the send time is in it),
               --rate PUBLISHES_PER_SEC over all topics, round robin, a topic still
               waiting skipped (default: closed loop, one publish in flight per topic)
    webtorrent: --connections N peers (default 100), --torrents T (default 10; peer i is
               in torrent i mod T), --offers K per announce (default 5, at most 82; the
               real client sends at most 5, and a server relays each to one other peer of
               the swarm: the original to at most 82 peers, sigyard to at most
               --webtorrent-max-offers; K above a server's cap leaves exchanges waiting
               for answers that never come), --size CHARS of SDP in offers and answers
               (default 64), --duration SECONDS (default 10), --concurrency C peers
               setting up at once (default 16), --scrape-mix PERCENT of the loop's
               exchanges that are scrapes (default 0), --rate EXCHANGES_PER_SEC over all
               peers, round robin, a peer still exchanging skipped (default: closed loop,
               one exchange in flight per peer); an exchange unfinished after --timeout
               counts as an error

Durations are seconds, or take ms / s / m suffixes (500ms, 10s, 1m).

OUTPUT
    A progress line on stderr about once a second, then a summary. Latencies are
    p50 / p99 / p99.9 / max from a log-linear histogram (within 0.4%).

LIMITS
    At start the open-files limit (RLIMIT_NOFILE) is raised to its hard limit and printed.
    When the client runs out of file descriptors (EMFILE/ENFILE) or source ports
    (EADDRNOTAVAIL) the summary says that the CLIENT hit a limit, not the server; use
    --workers and --source-ips to go further.

EXIT STATUS
    0 the run completed (see the summary for failures), 1 the run could not be made (e.g.
    every connection failed), 2 bad usage.
";

/// Where an idle connection stalls (`--stall`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// Part of the request head, never finished.
    Head,
    /// Upgraded, then part of a frame header.
    Frame,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Idle,
    Relay,
    Handshake,
    Churn,
    /// MewConnect v2 pairings and offer/answer round trips (`mewconnect.rs`).
    MewConnect,
    HttpApi,
    /// Socket.IO sessions emitting events (`socketio.rs`).
    SocketIo,
    /// PeerJS pairs exchanging offer, answer and candidates (`peerjs.rs`).
    PeerJs,
    /// y-webrtc topics with publishes fanned out to their subscribers (`ywebrtc.rs`).
    YWebrtc,
    /// WebTorrent tracker peers announcing with offers and answering them (`webtorrent.rs`).
    WebTorrent,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Idle => "idle",
            Scenario::Relay => "relay",
            Scenario::Handshake => "handshake",
            Scenario::Churn => "churn",
            Scenario::MewConnect => "mewconnect",
            Scenario::HttpApi => "httpapi",
            Scenario::SocketIo => "socketio",
            Scenario::PeerJs => "peerjs",
            Scenario::YWebrtc => "ywebrtc",
            Scenario::WebTorrent => "webtorrent",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Echo,
    Pipe,
}

#[derive(Debug, Clone)]
pub struct Opts {
    pub scenario: Scenario,
    pub url: String,
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
    pub threads: usize,
    pub workers: u32,
    pub source_ips: u32,
    pub timeout: Duration,
    pub server_pid: Option<u32>,
    pub perf_control: Option<std::path::PathBuf>,
    pub json: bool,
    pub quiet: bool,
    /// `--spin`: poll without sleeping while the traffic runs.
    pub spin: bool,
    pub connections: u64,
    pub hold: Duration,
    pub rate: Option<f64>,
    pub concurrency: u64,
    pub pairs: u64,
    pub size: usize,
    pub duration: Duration,
    pub mode: Mode,
    /// `wss://`: the server name to verify (the URL's host).
    pub tls_name: Option<String>,
    /// `tcp://`: the raw TCP baseline (relay --mode pipe only).
    pub raw_tcp: bool,
    /// relay, closed loop: messages in flight per sender (`--window`).
    pub window: u32,
    /// idle: stall mid-input instead of idling (`--stall`).
    pub stall: Option<Stall>,
    /// `--ca FILE` or `--insecure` (default: the system CA bundle).
    pub trust: Trust,
    /// Hidden `--worker I/K`: this process is child I of K (set by the parent).
    pub worker: Option<(u32, u32)>,
    /// The arguments as given after the scenario (children get them again).
    pub raw: Vec<String>,
    /// socketio: the polling transport instead of WebSocket (`--transport`).
    pub polling: bool,
    /// relay pipe / mewconnect: where the second end of each pair connects (`--peer-url`;
    /// another node of a cluster), and its Host header.
    pub peer: Option<(SocketAddr, String)>,
    /// ywebrtc: subscribers per topic (`--fanout`).
    pub fanout: u64,
    /// webtorrent: swarms (`--torrents`).
    pub torrents: u64,
    /// webtorrent: offers per announce (`--offers`).
    pub offers: u64,
    /// webtorrent: percentage of the loop's requests that are scrapes (`--scrape-mix`).
    pub scrape_mix: u64,
}

pub enum Parsed {
    Help,
    Run(Box<Opts>),
}

fn flags_for(s: Scenario) -> &'static [&'static str] {
    match s {
        Scenario::Idle => &[
            "--connections",
            "--hold",
            "--rate",
            "--concurrency",
            "--stall",
        ],
        Scenario::Relay => &[
            "--pairs",
            "--size",
            "--duration",
            "--mode",
            "--rate",
            "--window",
            "--peer-url",
        ],
        Scenario::Handshake => &["--duration", "--concurrency"],
        Scenario::Churn => &["--duration", "--concurrency", "--size"],
        Scenario::MewConnect => &[
            "--pairs",
            "--duration",
            "--concurrency",
            "--size",
            "--rate",
            "--peer-url",
        ],
        Scenario::HttpApi => &["--duration", "--concurrency", "--size"],
        Scenario::SocketIo => &[
            "--connections",
            "--duration",
            "--concurrency",
            "--size",
            "--transport",
            "--peer-url",
        ],
        Scenario::PeerJs => &["--pairs", "--duration", "--concurrency", "--size", "--rate"],
        Scenario::YWebrtc => &[
            "--connections",
            "--fanout",
            "--duration",
            "--concurrency",
            "--size",
            "--rate",
        ],
        Scenario::WebTorrent => &[
            "--connections",
            "--torrents",
            "--offers",
            "--duration",
            "--concurrency",
            "--size",
            "--rate",
            "--scrape-mix",
        ],
    }
}

const COMMON: &[&str] = &[
    "--url",
    "--threads",
    "--workers",
    "--source-ips",
    "--timeout",
    "--server-pid",
    "--perf-control",
    "--ca",
    "--worker",
];
const SWITCHES: &[&str] = &["--json", "--quiet", "--insecure", "--spin"];

fn num<T>(flag: &str, v: &str, min: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    let n: T = v
        .parse()
        .map_err(|_| format!("{flag}: expected a number, got '{v}'"))?;
    if n < min {
        return Err(format!("{flag}: must be at least {min}, got '{v}'"));
    }
    Ok(n)
}

pub fn duration(flag: &str, v: &str) -> Result<Duration, String> {
    let (n, unit) = match v.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&v[..i], &v[i..]),
        None => (v, "s"),
    };
    let n: f64 = n
        .parse()
        .map_err(|_| format!("{flag}: expected a duration like 10, 10s or 500ms, got '{v}'"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("{flag}: unknown unit in '{v}' (ms, s, m)")),
    };
    if !(secs.is_finite() && secs > 0.0 && secs < 1e7) {
        return Err(format!("{flag}: must be positive, got '{v}'"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A parsed `--url`: where to connect, the Host header, the path, and for `wss://` the TLS
/// server name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
    pub tls_name: Option<String>,
    /// `tcp://`: the raw TCP baseline.
    pub raw: bool,
}

fn parse_url(v: &str) -> Result<Url, String> {
    let (rest, tls, raw, default_port) = if let Some(r) = v.strip_prefix("wss://") {
        (r, true, false, 443)
    } else if let Some(r) = v
        .strip_prefix("ws://")
        .or_else(|| v.strip_prefix("http://"))
    {
        // http:// names the same address and path (the httpapi scenario).
        (r, false, false, 80)
    } else if let Some(r) = v.strip_prefix("tcp://") {
        (r, false, true, 80)
    } else {
        return Err(format!(
            "--url: expected ws:// or wss://HOST:PORT[/PATH], got '{v}'"
        ));
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if hostport.is_empty() {
        return Err(format!("--url: no host in '{v}'"));
    }
    let with_port = if hostport.ends_with(']') || !hostport.contains(':') {
        format!("{hostport}:{default_port}")
    } else {
        hostport.to_string()
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("--url: cannot resolve '{hostport}': {e}"))?
        .next()
        .ok_or_else(|| format!("--url: '{hostport}' resolves to no address"))?;
    let path = if path.is_empty() || path == "/" {
        "/echo".to_string()
    } else {
        path.to_string()
    };
    let name = match with_port.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
        None => hostport,
    };
    Ok(Url {
        addr,
        host: hostport.to_string(),
        path,
        tls_name: tls.then(|| name.to_string()),
        raw,
    })
}

pub fn parse(args: &[String]) -> Result<Parsed, String> {
    if args.is_empty() {
        return Err(
            "missing scenario (idle, relay, handshake, churn, mewconnect, httpapi, socketio, peerjs, ywebrtc or webtorrent)"
                .into(),
        );
    }
    if args
        .iter()
        .any(|a| a == "--help" || a == "-h" || a == "help")
    {
        return Ok(Parsed::Help);
    }
    let scenario = match args[0].as_str() {
        "idle" => Scenario::Idle,
        "relay" => Scenario::Relay,
        "handshake" => Scenario::Handshake,
        "churn" => Scenario::Churn,
        "mewconnect" => Scenario::MewConnect,
        "httpapi" => Scenario::HttpApi,
        "socketio" => Scenario::SocketIo,
        "peerjs" => Scenario::PeerJs,
        "ywebrtc" => Scenario::YWebrtc,
        "webtorrent" => Scenario::WebTorrent,
        s if s.starts_with('-') => {
            return Err(format!(
                "{s}: a scenario must come first (idle, relay, handshake, churn, mewconnect, httpapi, socketio, peerjs, ywebrtc or webtorrent)"
            ))
        }
        s => {
            return Err(format!(
                "unknown scenario '{s}' (idle, relay, handshake, churn, mewconnect, httpapi, socketio, peerjs, ywebrtc or webtorrent)"
            ))
        }
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut o = Opts {
        scenario,
        url: "ws://127.0.0.1:8080".into(),
        addr: "127.0.0.1:8080".parse().expect("literal"),
        host: "127.0.0.1:8080".into(),
        path: "/echo".into(),
        threads: cores,
        workers: 1,
        source_ips: 1,
        timeout: Duration::from_secs(10),
        server_pid: None,
        perf_control: None,
        json: false,
        quiet: false,
        spin: false,
        connections: 0,
        hold: Duration::from_secs(10),
        rate: None,
        concurrency: if scenario == Scenario::Idle { 256 } else { 16 },
        pairs: 10,
        size: 64,
        duration: Duration::from_secs(10),
        mode: Mode::Echo,
        tls_name: None,
        raw_tcp: false,
        window: 1,
        stall: None,
        trust: Trust::Roots(crate::tls::SYSTEM_BUNDLE.into()),
        worker: None,
        raw: args[1..].to_vec(),
        polling: false,
        peer: None,
        fanout: 10,
        torrents: 10,
        offers: 5,
        scrape_mix: 0,
    };
    let mut seen_connections = false;
    let mut i = 1;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        if SWITCHES.contains(&flag) {
            if inline.is_some() {
                return Err(format!("{flag}: takes no value"));
            }
            match flag {
                "--json" => o.json = true,
                "--insecure" => o.trust = Trust::Anything,
                "--spin" => o.spin = true,
                _ => o.quiet = true,
            }
            continue;
        }
        if !flag.starts_with('-') {
            return Err(format!("unexpected argument '{arg}'"));
        }
        if !COMMON.contains(&flag) && !flags_for(scenario).contains(&flag) {
            let known = [
                COMMON,
                flags_for(Scenario::Idle),
                flags_for(Scenario::Relay),
            ]
            .iter()
            .any(|l| l.contains(&flag));
            return Err(if known {
                format!("{flag}: not an option of the {} scenario", scenario.name())
            } else {
                format!("{flag}: unknown flag")
            });
        }
        let v = match inline {
            Some(v) => v,
            None => {
                let v = args
                    .get(i)
                    .ok_or_else(|| format!("{flag}: missing value"))?
                    .clone();
                i += 1;
                v
            }
        };
        match flag {
            "--url" => {
                let u = parse_url(&v)?;
                o.url = v.clone();
                o.addr = u.addr;
                o.host = u.host;
                o.path = u.path;
                o.tls_name = u.tls_name;
                o.raw_tcp = u.raw;
            }
            "--window" => o.window = num(flag, &v, 1u32)?.min(1 << 16),
            "--peer-url" => {
                let u = parse_url(&v).map_err(|e| e.replacen("--url", "--peer-url", 1))?;
                if u.raw || u.tls_name.is_some() {
                    return Err("--peer-url: ws:// only".into());
                }
                o.peer = Some((u.addr, u.host));
            }
            "--stall" => {
                o.stall = Some(match v.as_str() {
                    "head" => Stall::Head,
                    "frame" => Stall::Frame,
                    _ => return Err(format!("--stall: '{v}' is not head or frame")),
                })
            }
            "--ca" => o.trust = Trust::Roots(v.clone()),
            "--threads" => o.threads = num(flag, &v, 1usize)?.min(1024),
            "--workers" => o.workers = num(flag, &v, 1u32)?.min(256),
            "--source-ips" => o.source_ips = num(flag, &v, 1u32)?.min(254),
            "--timeout" => o.timeout = duration(flag, &v)?,
            "--server-pid" => {
                let pid = num(flag, &v, 1u32)?;
                if crate::server_mem(pid).is_none() {
                    return Err(format!("{flag}: no readable /proc/{pid}/status"));
                }
                o.server_pid = Some(pid);
            }
            "--perf-control" => o.perf_control = Some(v.clone().into()),
            "--connections" => {
                o.connections = num(flag, &v, 1u64)?;
                seen_connections = true;
            }
            "--hold" => o.hold = duration(flag, &v)?,
            "--rate" => {
                let r: f64 = num(flag, &v, 0.0)?;
                if !(r > 0.0 && r.is_finite()) {
                    return Err(format!("{flag}: must be positive, got '{v}'"));
                }
                o.rate = Some(r);
            }
            "--concurrency" => o.concurrency = num(flag, &v, 1u64)?,
            "--pairs" => o.pairs = num(flag, &v, 1u64)?,
            "--fanout" => o.fanout = num(flag, &v, 1u64)?,
            "--torrents" => o.torrents = num(flag, &v, 1u64)?,
            "--offers" => {
                o.offers = num(flag, &v, 0u64)?;
                if o.offers > 82 {
                    return Err(format!("{flag}: at most 82, got '{v}'"));
                }
            }
            "--scrape-mix" => {
                o.scrape_mix = num(flag, &v, 0u64)?;
                if o.scrape_mix > 100 {
                    return Err(format!("{flag}: a percentage, at most 100, got '{v}'"));
                }
            }
            "--size" => {
                o.size = num(flag, &v, 16usize)?;
                if o.size > (16 << 20) {
                    return Err(format!("{flag}: at most 16 MiB, got '{v}'"));
                }
            }
            "--duration" => o.duration = duration(flag, &v)?,
            "--transport" => {
                o.polling = match v.as_str() {
                    "websocket" => false,
                    "polling" => true,
                    _ => return Err(format!("{flag}: expected websocket or polling, got '{v}'")),
                }
            }
            "--mode" => {
                o.mode = match v.as_str() {
                    "echo" => Mode::Echo,
                    "pipe" => Mode::Pipe,
                    _ => return Err(format!("{flag}: expected echo or pipe, got '{v}'")),
                }
            }
            "--worker" => {
                let bad = || format!("{flag}: expected I/K, got '{v}'");
                let (a, b) = v.split_once('/').ok_or_else(bad)?;
                let (a, b): (u32, u32) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if b == 0 || a >= b {
                    return Err(bad());
                }
                o.worker = Some((a, b));
            }
            _ => return Err(format!("{flag}: unknown flag")),
        }
    }
    if scenario == Scenario::Idle && !seen_connections {
        return Err("--connections: required for the idle scenario".into());
    }
    if matches!(
        scenario,
        Scenario::SocketIo | Scenario::YWebrtc | Scenario::WebTorrent
    ) && !seen_connections
    {
        o.connections = 100;
    }
    if o.raw_tcp && !(scenario == Scenario::Relay && o.mode == Mode::Pipe) {
        return Err("--url: tcp:// (the raw TCP baseline) is for relay --mode pipe only".into());
    }
    if o.perf_control.is_some()
        && (o.workers > 1 || matches!(scenario, Scenario::SocketIo | Scenario::HttpApi))
    {
        return Err(
            "--perf-control: one process only (not with --workers), and not for socketio or httpapi"
                .into(),
        );
    }
    if o.window > 1 && o.rate.is_some() {
        return Err("--window: closed loop only (not with --rate)".into());
    }
    Ok(Parsed::Run(Box::new(o)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Opts, String> {
        let args: Vec<String> = s.split_whitespace().map(String::from).collect();
        match parse(&args)? {
            Parsed::Run(o) => Ok(*o),
            Parsed::Help => Err("help".into()),
        }
    }

    #[test]
    fn flags_and_errors() {
        let o =
            p("relay --url ws://127.0.0.1:9/x --pairs=4 --size 100 --mode pipe --rate 50").unwrap();
        assert_eq!(
            (o.pairs, o.size, o.mode, o.rate),
            (4, 100, Mode::Pipe, Some(50.0))
        );
        assert_eq!(o.path, "/x");
        assert_eq!(p("idle --connections 5").unwrap().path, "/echo");
        assert!(p("idle").unwrap_err().starts_with("--connections"));
        assert!(p("idle --connections 5 --bogus 1")
            .unwrap_err()
            .starts_with("--bogus"));
        assert!(p("handshake --pairs 3").unwrap_err().starts_with("--pairs"));
        assert!(p("relay --size 3").unwrap_err().starts_with("--size"));
        assert!(p("relay --duration 0")
            .unwrap_err()
            .starts_with("--duration"));
        assert!(p("relay --url http://x:1")
            .unwrap_err()
            .starts_with("--url"));
        let o = p("relay --url wss://localhost:9443/e --insecure").unwrap();
        assert_eq!(o.tls_name.as_deref(), Some("localhost"));
        assert_eq!((o.host.as_str(), o.path.as_str()), ("localhost:9443", "/e"));
        assert_eq!(o.trust, Trust::Anything);
        assert!(!o.spin && p("webtorrent --spin").unwrap().spin);
        assert!(p("relay --spin=1").unwrap_err().starts_with("--spin"));
        let o = p("idle --connections 1 --url wss://[::1] --ca c.pem").unwrap();
        assert_eq!(o.tls_name.as_deref(), Some("::1"));
        assert_eq!(o.addr.port(), 443);
        assert_eq!(o.trust, Trust::Roots("c.pem".into()));
        assert_eq!(p("idle --connections 1").unwrap().tls_name, None);
        let o = p("relay --mode pipe --url tcp://127.0.0.1:9 --window 8").unwrap();
        assert!(o.raw_tcp && o.window == 8);
        assert!(p("relay --url tcp://127.0.0.1:9")
            .unwrap_err()
            .starts_with("--url"));
        assert!(p("relay --window 2 --rate 5")
            .unwrap_err()
            .starts_with("--window"));
        assert!(p("relay --window 0").unwrap_err().starts_with("--window"));
        assert!(p("relay --mode x").unwrap_err().starts_with("--mode"));
        assert_eq!(
            p("idle --connections 2 --stall head").unwrap().stall,
            Some(Stall::Head)
        );
        assert!(p("idle --connections 2 --stall x")
            .unwrap_err()
            .starts_with("--stall"));
        assert!(p("relay --stall head").unwrap_err().contains("--stall"));
        assert_eq!(
            duration("--d", "500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(duration("--d", "2m").unwrap(), Duration::from_secs(120));
        assert!(matches!(
            parse(&["churn".into(), "-h".into()]),
            Ok(Parsed::Help)
        ));
        let o = p("ywebrtc --fanout 5 --size 16 --rate 20").unwrap();
        assert_eq!((o.fanout, o.connections, o.rate), (5, 100, Some(20.0)));
        assert_eq!(p("ywebrtc").unwrap().fanout, 10);
        assert!(p("ywebrtc --fanout 0").unwrap_err().starts_with("--fanout"));
        assert!(p("peerjs --fanout 2").unwrap_err().starts_with("--fanout"));
        let o = p("peerjs --pairs 7 --url ws://127.0.0.1:9/app/").unwrap();
        assert_eq!(
            (o.scenario, o.pairs, o.path.as_str()),
            (Scenario::PeerJs, 7, "/app/")
        );
        assert!(p("peerjs --connections 4")
            .unwrap_err()
            .starts_with("--connections"));
        let o = p("webtorrent --torrents 3 --offers 4 --scrape-mix 20").unwrap();
        assert_eq!(
            (
                o.scenario,
                o.connections,
                o.torrents,
                o.offers,
                o.scrape_mix
            ),
            (Scenario::WebTorrent, 100, 3, 4, 20)
        );
        assert_eq!(
            (
                p("webtorrent").unwrap().offers,
                p("webtorrent").unwrap().torrents
            ),
            (5, 10)
        );
        assert!(p("webtorrent --offers 83")
            .unwrap_err()
            .starts_with("--offers"));
        assert!(p("webtorrent --scrape-mix 101")
            .unwrap_err()
            .starts_with("--scrape-mix"));
        assert!(p("webtorrent --torrents 0")
            .unwrap_err()
            .starts_with("--torrents"));
        assert!(p("ywebrtc --offers 2").unwrap_err().starts_with("--offers"));
    }
}
