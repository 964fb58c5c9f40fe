//! The cluster: sigyard processes (nodes) sharing one Redis, so that any client may connect to
//! any node (ARCHITECTURE.md, "The cluster").
//!
//! Redis keeps three things: the members (a sorted set of node ids scored by their last
//! heartbeat, on Redis's clock), the claims (which node owns each placement key: the first
//! node a request for it reached, for as long as that node lives), and one pub/sub channel per
//! node, which carries the nodes' records ([`crate::proto::cluster`]) to it.
//!
//! Two threads per node talk to Redis, each over its own blocking connection; reactors never
//! do. The *command* thread takes jobs from the reactors (publish a batch, claim a key),
//! pipelines them, reads the replies, sends each claim's answer to the core that asked, and
//! beats the heartbeat, which also tells it which nodes left. The *subscriber* thread reads the
//! node's channel and hands each core its records through the core's mailbox.
//!
//! What breaks is said once, to every core, as [`Gone`]: a node that left (no heartbeat for
//! `--cluster-node-timeout`, or a publish nobody received), or everything remote (Redis lost
//! for that long, or the channel dropped, so records may have been lost). Cores then end
//! every relationship with those nodes in the dialects' own terms.

mod redis;

use crate::config::ClusterOptions;
use crate::net::mailbox::{CoreMsg, Mailbox};
use crate::proto::cluster::{self as records, ANY_CORE};
use crate::proto::dialect::httpapi::{decode_call, Outcome};
use crate::proto::dialect::Handle;
use crate::secret::Secret;
use crate::{error, info, warn};
use redis::{int, Redis};
use redis_protocol::resp2::types::OwnedFrame;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The most node ids (they travel in 14 bits of a locator; 0 is a process on its own).
pub const MAX_NODE: u16 = (1 << 14) - 1;

/// Jobs the reactors may have queued for the command thread before new ones are refused
/// (and counted as failed deliveries): the bound on what waits for a slow Redis.
const JOB_QUEUE: usize = 8192;

/// The longest wait between two attempts to reach Redis again.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How often, at most, resets make every dialect tell its keys' owners again.
const RETELL_EVERY: Duration = Duration::from_secs(1);

/// Bytes of records that may wait for the command thread. Past half of it, connections whose
/// dialect lives on another node are not read ([`Cluster::pressed`]); past all of it, a batch
/// is refused (a failed delivery).
const MAX_QUEUED_BYTES: usize = 64 << 20;

/// `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`, or `rediss://` for TLS.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    pub host: String,
    pub port: u16,
    pub db: u32,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub tls: bool,
}

impl RedisUrl {
    pub fn parse(s: &str) -> Result<RedisUrl, String> {
        let (rest, tls) = if let Some(r) = s.strip_prefix("redis://") {
            (r, false)
        } else if let Some(r) = s.strip_prefix("rediss://") {
            (r, true)
        } else {
            return Err(format!("{s:?} is not a redis:// or rediss:// URL"));
        };
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((a, r)) => (Some(a), r),
            None => (None, rest),
        };
        let (hostport, db) = match rest.split_once('/') {
            Some((h, "")) => (h, 0),
            Some((h, d)) => (
                h,
                d.parse()
                    .map_err(|_| format!("{s:?}: {d:?} is not a database number"))?,
            ),
            None => (rest, 0),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h,
                p.parse()
                    .map_err(|_| format!("{s:?}: {p:?} is not a port"))?,
            ),
            _ => (hostport, 6379),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{s:?}: no host"));
        }
        let (user, password) = match auth.map(|a| a.split_once(':').unwrap_or(("", a))) {
            None => (None, None),
            Some((u, p)) => (
                (!u.is_empty()).then(|| u.to_string()),
                (!p.is_empty()).then(|| Secret::new(p)),
            ),
        };
        Ok(RedisUrl {
            host: host.to_string(),
            port,
            db,
            user,
            password,
            tls,
        })
    }
}

/// The URL as logs show it: no password.
impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = if self.password.is_some() { ":***@" } else { "" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let scheme = if self.tls { "rediss" } else { "redis" };
        write!(f, "{scheme}://{auth}{host}:{}/{}", self.port, self.db)
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What a reactor asks of the command thread.
pub(crate) enum Job {
    /// Records for one node, in order.
    Publish { node: u16, batch: Vec<u8> },
    /// Who owns `key`? (This node, unless a live node already does.) The answer goes to
    /// `core` as [`ClusterMsg::Claimed`] for the request waiting in slot `waiter` (slab key and
    /// generation), or as [`ClusterMsg::KeyClaimed`] for messages told to the key.
    Claim {
        core: u16,
        waiter: Option<(usize, u32)>,
        key: Box<str>,
    },
    /// Keep these claims of this node (keys with live connections) for another TTL; with
    /// `reclaim` (after a reconnection, or when this node may have been seen gone), make them
    /// again where Redis lost them. Keys another node took meanwhile go back to `core` as
    /// [`ClusterMsg::Taken`].
    Refresh {
        core: u16,
        keys: Vec<Box<str>>,
        reclaim: bool,
    },
    /// An HTTP API call ([`crate::proto::dialect::httpapi::Call::encode`]) on the channels in
    /// Redis, for the request `conn` of `core`; the outcome goes back as
    /// [`ClusterMsg::Stored`].
    Store {
        core: u16,
        conn: Handle,
        op: Vec<u8>,
    },
}

/// What the bridge tells a core.
pub enum ClusterMsg {
    /// Records for this core (a batch, in the order they were published).
    Records(Vec<u8>),
    /// The owner of the key the connection in `slot` waits for; `None`: Redis could not say.
    Claimed {
        slot: usize,
        gen: u32,
        node: Option<u16>,
    },
    /// The owner of a key messages were told to; `None`: Redis could not say.
    KeyClaimed {
        key: Box<str>,
        node: Option<u16>,
    },
    /// Redis is back after an outage that ended every relationship with other nodes, or other
    /// nodes were reset ([`Gone::Lost`]): the dialects tell their keys' owners again.
    Back,
    Gone(Gone),
    /// Time to send the keys in use for [`Job::Refresh`] (`reclaim` passed on to it).
    RefreshClaims {
        reclaim: bool,
    },
    /// Keys this core's connections or dialects still held that another live node claimed
    /// while this one was seen gone (or Redis lost the claims), with that node.
    Taken(Vec<(Box<str>, u16)>),
    /// The outcome of a [`Job::Store`] (empty: Redis could not say).
    Stored {
        conn: Handle,
        result: Vec<u8>,
    },
}

/// Relationships that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gone {
    Nodes(Vec<u16>),
    /// Every other node (Redis was lost, or records may have been).
    All,
    /// These nodes are live, but records between them and this node may have been lost (a
    /// publish failed, a subscription dropped): every relationship with them ends, on both
    /// sides ([`crate::proto::cluster::Record::Reset`]).
    Lost(Vec<u16>),
}

/// Nodes owed a [`crate::proto::cluster::Record::Reset`]: records for them may have been lost
/// here, or theirs for this node. The command thread publishes them before anything else.
#[derive(Default)]
pub(crate) struct Owed {
    nodes: BTreeSet<u16>,
    /// Every live node (this node's subscription dropped).
    everyone: bool,
}

/// Counters and gauges of the cluster, for `/metrics`.
#[derive(Default)]
pub struct ClusterStats {
    pub nodes: AtomicU64,
    pub redis_up: AtomicU64,
    /// 1 while this node is cut off: no heartbeat of its accepted for a node timeout.
    pub cut_off: AtomicU64,
    pub records_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub records_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub publishes: AtomicU64,
    pub failed_deliveries: AtomicU64,
    pub reconnects: AtomicU64,
    pub claims: AtomicU64,
    pub rtt_us: AtomicU64,
    pub nodes_gone: AtomicU64,
    /// Keys held here that another node had claimed meanwhile ([`ClusterMsg::Taken`]).
    pub keys_taken: AtomicU64,
    /// Records from other nodes for connections here that are gone.
    pub undeliverable: AtomicU64,
}

impl ClusterStats {
    /// Whether this node can place requests in the cluster now: Redis answers and takes its
    /// heartbeat. (Otherwise what needs a claim gets 503, and `/healthz` says so.)
    pub fn ready(&self) -> bool {
        self.redis_up.load(Ordering::Relaxed) == 1 && self.cut_off.load(Ordering::Relaxed) == 0
    }

    /// The Prometheus text of the cluster's figures.
    pub fn render(&self, node: u16, o: &mut String) {
        use std::fmt::Write;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut metric = |name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        metric(
            "sigyard_cluster_node_id",
            "gauge",
            "this process's node id in the cluster",
            u64::from(node),
        );
        metric(
            "sigyard_cluster_nodes",
            "gauge",
            "live nodes at the last heartbeat (this one included)",
            g(&self.nodes),
        );
        metric(
            "sigyard_cluster_redis_up",
            "gauge",
            "1 while the command connection to Redis works",
            g(&self.redis_up),
        );
        metric(
            "sigyard_cluster_ready",
            "gauge",
            "1 while this node can place requests in the cluster (Redis answers and takes its \
             heartbeat); /healthz answers 503 otherwise",
            u64::from(self.ready()),
        );
        metric(
            "sigyard_cluster_redis_rtt_microseconds",
            "gauge",
            "round trip of the last heartbeat (with the commands pipelined before it)",
            g(&self.rtt_us),
        );
        metric(
            "sigyard_cluster_records_out_total",
            "counter",
            "records sent to other nodes",
            g(&self.records_out),
        );
        metric(
            "sigyard_cluster_bytes_out_total",
            "counter",
            "bytes published to other nodes",
            g(&self.bytes_out),
        );
        metric(
            "sigyard_cluster_records_in_total",
            "counter",
            "records received from other nodes",
            g(&self.records_in),
        );
        metric(
            "sigyard_cluster_bytes_in_total",
            "counter",
            "bytes received from other nodes",
            g(&self.bytes_in),
        );
        metric(
            "sigyard_cluster_publishes_total",
            "counter",
            "batches published",
            g(&self.publishes),
        );
        metric(
            "sigyard_cluster_failed_deliveries_total",
            "counter",
            "batches that reached no node (it was gone) or could not be queued",
            g(&self.failed_deliveries),
        );
        metric(
            "sigyard_cluster_claims_total",
            "counter",
            "placement keys looked up or claimed in Redis",
            g(&self.claims),
        );
        metric(
            "sigyard_cluster_reconnects_total",
            "counter",
            "reconnections to Redis after a loss",
            g(&self.reconnects),
        );
        metric(
            "sigyard_cluster_nodes_gone_total",
            "counter",
            "nodes seen leaving (heartbeat lapsed or left)",
            g(&self.nodes_gone),
        );
        metric(
            "sigyard_cluster_keys_taken_total",
            "counter",
            "keys still in use here that another node had claimed while this one was seen gone \
             (their connections here are closed)",
            g(&self.keys_taken),
        );
        metric(
            "sigyard_cluster_undeliverable_total",
            "counter",
            "records from other nodes for connections here that were gone",
            g(&self.undeliverable),
        );
    }
}

/// What the reactors hold of the cluster.
pub(crate) struct Cluster {
    pub node: u16,
    jobs: SyncSender<Job>,
    /// The nodes seen gone (and not seen live since), one bit each.
    gone: Arc<Members>,
    /// Bytes of published batches queued and not yet sent.
    queued: Arc<std::sync::atomic::AtomicUsize>,
    pub stats: Arc<ClusterStats>,
    stop: Arc<AtomicBool>,
    /// How long a claim lasts unrefreshed (`--cluster-claim-ttl`), in ms.
    claim_ttl_ms: u64,
    owed: Arc<Mutex<Owed>>,
}

impl Cluster {
    /// Records for `nodes` were dropped here: they are told to end every relationship with
    /// this node (as this node's cores do with them).
    pub fn owe_reset(&self, nodes: &[u16]) {
        lock(&self.owed).nodes.extend(nodes.iter().copied());
    }

    /// How long a claim lasts unrefreshed, in ms: what another node's claim said is trusted
    /// that long.
    pub fn claim_ttl_ms(&self) -> u64 {
        self.claim_ttl_ms
    }

    /// Queue a job; false (and counted) when the queue is full: Redis is too slow or gone.
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        let bytes = match &job {
            Job::Publish { batch, .. } => batch.len(),
            _ => 0,
        };
        let before = self.queued.fetch_add(bytes, Ordering::Relaxed);
        let refused = |j| {
            self.queued.fetch_sub(bytes, Ordering::Relaxed);
            self.stats.failed_deliveries.fetch_add(1, Ordering::Relaxed);
            Err(j)
        };
        if bytes > 0 && before + bytes > MAX_QUEUED_BYTES {
            return refused(job);
        }
        match self.jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(j)) | Err(TrySendError::Disconnected(j)) => refused(j),
        }
    }

    /// Whether `node` was seen gone (then a request for it is answered 502 at once). A node
    /// this one has not heard of yet is not gone.
    pub fn is_gone(&self, node: u16) -> bool {
        self.gone.has(node)
    }

    /// Redis falls behind: what this node publishes waits (more than half of the bound). The
    /// reactors stop reading the connections whose messages would add to it.
    pub fn pressed(&self) -> bool {
        self.queued.load(Ordering::Relaxed) > MAX_QUEUED_BYTES / 2
    }
}

/// A node that registered in Redis and is ready to start its bridge.
pub(crate) struct Joined {
    node: u16,
    /// Marks this process's node id as its own in Redis.
    token: String,
    conn: Redis,
    shas: Shas,
    url: RedisUrl,
    opts: ClusterOptions,
}

// ── scripts ─────────────────────────────────────────────────────────────────────────────────
//
// All take the key prefix as ARGV[1] and compute their keys from it (so the cluster's Redis is
// one standalone server or primary, not a Redis Cluster). Time is Redis's own (TIME), so the
// nodes' clocks never meet.

const NOW: &str = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000) ";

/// ARGV: prefix, preferred id (0: any), timeout ms, this process's token. Returns {the node id
/// (0: none free), 1 if it is the preferred id and was still live under this token}. The token
/// marks whose the id is (see HEARTBEAT): a node coming back after its connection dropped finds
/// its id live and its own.
const REGISTER: &str = "local nodes = ARGV[1] .. ':nodes' \
    local tokens = ARGV[1] .. ':tokens' \
    local timeout = tonumber(ARGV[3]) \
    local function free(id) local s = redis.call('ZSCORE', nodes, id) \
      return (not s) or tonumber(s) <= now - timeout end \
    local function take(id) redis.call('ZADD', nodes, now, id) \
      redis.call('HSET', tokens, id, ARGV[4]) return id end \
    local prefer = tonumber(ARGV[2]) \
    if prefer > 0 then \
      if free(prefer) then return {take(prefer), 0} end \
      if redis.call('HGET', tokens, prefer) == ARGV[4] then return {take(prefer), 1} end \
    end \
    for i = 1, 16383 do \
      local id = (redis.call('INCR', ARGV[1] .. ':seq') - 1) % 16383 + 1 \
      if free(id) then return {take(id), 0} end \
    end \
    return {0, 0}";

/// ARGV: prefix, me, timeout ms, token. Returns {1 if I was live before this beat, live
/// ids...}, or {-1} when another process holds this id (its token is there: the id was handed
/// out again, e.g. after the Redis was flushed).
const HEARTBEAT: &str = "local nodes = ARGV[1] .. ':nodes' \
    local timeout = tonumber(ARGV[3]) \
    local tokens = ARGV[1] .. ':tokens' \
    local owner = redis.call('HGET', tokens, ARGV[2]) \
    if owner and owner ~= ARGV[4] then return {-1} end \
    redis.call('HSET', tokens, ARGV[2], ARGV[4]) \
    local mine = redis.call('ZSCORE', nodes, ARGV[2]) \
    local was = 0 \
    if mine and tonumber(mine) > now - timeout then was = 1 end \
    redis.call('ZADD', nodes, now, ARGV[2]) \
    redis.call('ZREMRANGEBYSCORE', nodes, '-inf', now - timeout) \
    local out = {was} \
    for _, id in ipairs(redis.call('ZRANGE', nodes, 0, -1)) do out[#out + 1] = tonumber(id) end \
    return out";

/// ARGV: prefix, me, key, ttl ms, timeout ms. Returns the owner's id.
const CLAIM: &str = "local nodes = ARGV[1] .. ':nodes' \
    local k = ARGV[1] .. ':k:' .. ARGV[3] \
    local o = redis.call('GET', k) \
    if o and o ~= ARGV[2] then \
      local s = redis.call('ZSCORE', nodes, o) \
      if s and tonumber(s) > now - tonumber(ARGV[5]) then \
        redis.call('PEXPIRE', k, ARGV[4]) return tonumber(o) end \
    end \
    redis.call('SET', k, ARGV[2], 'PX', ARGV[4]) \
    return tonumber(ARGV[2])";

/// The HTTP API's channels: a hash per channel (`offer`, `answer`) and a list of its
/// candidates, both expiring with it; a sorted set of channel expiries and a hash of bytes
/// charged, for the store-wide limits (swept as channels pass their time). ARGV: prefix, op,
/// channel key, cost, value, ttl ms, most channels, most candidates, most bytes.
const API: &str = "local p = ARGV[1] .. ':api:' \
    local op, id, cost = ARGV[2], ARGV[3], tonumber(ARGV[4]) \
    local k, cand = p .. 'c:' .. id, p .. 'l:' .. id \
    local expiry, charged, total = p .. 'expiry', p .. 'charged', p .. 'bytes' \
    for _, old in ipairs(redis.call('ZRANGEBYSCORE', expiry, '-inf', now, 'LIMIT', 0, 64)) do \
      local c = tonumber(redis.call('HGET', charged, old) or '0') \
      if c > 0 then redis.call('DECRBY', total, c) end \
      redis.call('HDEL', charged, old) \
      redis.call('ZREM', expiry, old) \
    end \
    local function charge() \
      if tonumber(redis.call('GET', total) or '0') + cost > tonumber(ARGV[9]) then return false end \
      redis.call('INCRBY', total, cost) \
      redis.call('HINCRBY', charged, id, cost) \
      return true \
    end \
    if op == 'create' then \
      if redis.call('EXISTS', k) == 1 then return 'exists' end \
      if redis.call('ZCARD', expiry) >= tonumber(ARGV[7]) then return 'full' end \
      redis.call('HSET', k, 'at', now) \
      redis.call('PEXPIRE', k, ARGV[6]) \
      redis.call('ZADD', expiry, now + tonumber(ARGV[6]), id) \
      return 'done' \
    end \
    if redis.call('EXISTS', k) == 0 then return 'missing' end \
    if op == 'get_offer' or op == 'get_answer' then \
      local v = redis.call('HGET', k, string.sub(op, 5)) \
      if v then return {'value', v} end \
      return 'none' \
    end \
    if op == 'get_candidates' then return {'values', redis.call('LRANGE', cand, 0, -1)} end \
    if op == 'offer' then \
      if not charge() then return 'full' end \
      redis.call('HSET', k, 'offer', ARGV[5]) \
      return 'done' \
    end \
    if op == 'answer' then \
      if redis.call('HEXISTS', k, 'answer') == 1 then return 'exists' end \
      if not charge() then return 'full' end \
      redis.call('HSET', k, 'answer', ARGV[5]) \
      return 'done' \
    end \
    if op == 'candidate' then \
      if redis.call('LPOS', cand, ARGV[5]) then return 'done' end \
      if redis.call('LLEN', cand) >= tonumber(ARGV[8]) then return 'full' end \
      if not charge() then return 'full' end \
      redis.call('RPUSH', cand, ARGV[5]) \
      redis.call('PEXPIRE', cand, redis.call('PTTL', k)) \
      return 'done' \
    end \
    return 'missing'";

/// The HTTP API's limits, for the channels in Redis.
#[derive(Debug, Clone)]
pub(crate) struct ApiLimits {
    pub ttl_ms: u64,
    pub max_channels: usize,
    pub max_candidates: usize,
    pub max_bytes: usize,
}

/// What Redis answered to an [`API`] call.
fn outcome(reply: &redis::Reply) -> Option<Outcome> {
    let text = |f: &OwnedFrame| match f {
        OwnedFrame::BulkString(b) | OwnedFrame::SimpleString(b) => {
            String::from_utf8(b.clone()).ok()
        }
        _ => None,
    };
    match reply.as_ref().ok()? {
        OwnedFrame::Array(items) => match (items.first().and_then(text)?.as_str(), items.get(1)?) {
            ("value", v) => Some(Outcome::Value(Some(text(v)?))),
            ("values", OwnedFrame::Array(vs)) => {
                Some(Outcome::Values(vs.iter().map(text).collect::<Option<_>>()?))
            }
            _ => None,
        },
        f => Some(match text(f)?.as_str() {
            "done" => Outcome::Done,
            "missing" => Outcome::NotFound,
            "exists" => Outcome::Exists,
            "full" => Outcome::Full,
            "none" => Outcome::Value(None),
            _ => return None,
        }),
    }
}

#[derive(Clone)]
struct Shas {
    register: String,
    heartbeat: String,
    claim: String,
    api: String,
}

fn load_scripts(r: &mut Redis) -> std::io::Result<Shas> {
    let mut load = |body: &str| -> std::io::Result<String> {
        let script = format!("{NOW}{body}");
        match r.call(&[b"SCRIPT", b"LOAD", script.as_bytes()])? {
            Ok(OwnedFrame::BulkString(s)) => Ok(String::from_utf8_lossy(&s).into_owned()),
            Ok(other) => Err(std::io::Error::other(format!(
                "SCRIPT LOAD answered {other:?}"
            ))),
            Err(e) => Err(std::io::Error::other(e)),
        }
    };
    Ok(Shas {
        register: load(REGISTER)?,
        heartbeat: load(HEARTBEAT)?,
        claim: load(CLAIM)?,
        api: load(API)?,
    })
}

fn connect(url: &RedisUrl, opts: &ClusterOptions) -> std::io::Result<Redis> {
    Redis::open(
        url,
        opts.password.as_ref(),
        &opts.ca_file,
        connect_timeout(opts),
    )
}

fn connect_timeout(opts: &ClusterOptions) -> Duration {
    (opts.node_timeout / 2).max(Duration::from_millis(500))
}

/// What went wrong with Redis, for the log: a read or write that timed out says so.
fn why(e: &std::io::Error, opts: &ClusterOptions) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            format!("no answer within {:?}", connect_timeout(opts))
        }
        _ => e.to_string(),
    }
}

/// Register as a node, as `prefer` if that id is free or still this process's: the id, and
/// whether it was still live (Redis kept this node's entry while the connection was down).
fn register(
    r: &mut Redis,
    shas: &Shas,
    opts: &ClusterOptions,
    prefer: u16,
    token: &str,
) -> Result<(u16, bool), String> {
    let timeout = opts.node_timeout.as_millis().to_string();
    let reply = r
        .call(&[
            b"EVALSHA",
            shas.register.as_bytes(),
            b"0",
            opts.prefix.as_bytes(),
            prefer.to_string().as_bytes(),
            timeout.as_bytes(),
            token.as_bytes(),
        ])
        .map_err(|e| e.to_string())??;
    let (id, live) = match &reply {
        OwnedFrame::Array(v) if v.len() == 2 => (int(&v[0]), int(&v[1]) == Some(1)),
        _ => (None, false),
    };
    match id {
        Some(id) if (1..=i64::from(MAX_NODE)).contains(&id) => Ok((id as u16, live)),
        _ => Err(format!(
            "no free node id ({} nodes are live at most)",
            MAX_NODE
        )),
    }
}

/// Connect to Redis and register as a node. Fails (for exit status 2) when Redis does not
/// answer, unless `--cluster-wait`, which retries until it does.
pub(crate) fn join(url: &RedisUrl, opts: &ClusterOptions) -> Result<Joined, String> {
    let mut delay = Duration::from_millis(100);
    let mut t = [0u8; 16];
    crate::csprng::fill(&mut t);
    let token = crate::proto::dialect::hex(&t);
    loop {
        let attempt = connect(url, opts)
            .map_err(|e| e.to_string())
            .and_then(|mut c| {
                let shas = load_scripts(&mut c).map_err(|e| e.to_string())?;
                let (node, _) = register(&mut c, &shas, opts, 0, &token)?;
                Ok(Joined {
                    token: token.clone(),
                    node,
                    conn: c,
                    shas,
                    url: url.clone(),
                    opts: opts.clone(),
                })
            });
        match attempt {
            Ok(mut j) => {
                info!(
                    "cluster: node {} of {url} (prefix {:?})",
                    j.node, opts.prefix
                );
                warn_if_evicting(&mut j.conn, url);
                return Ok(j);
            }
            Err(e) if opts.wait => {
                warn!("cluster: {url}: {e}; retrying in {delay:?} (--cluster-wait)");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(format!("cannot reach the cluster's Redis at {url}: {e}")),
        }
    }
}

/// The cluster's keys (members, claims, HTTP API channels) must stay until they expire: a Redis
/// that may evict them under memory pressure is named in the log. (Nothing is said when
/// `CONFIG` is refused, as managed Redis services often do.)
fn warn_if_evicting(c: &mut Redis, url: &RedisUrl) {
    let Ok(Ok(OwnedFrame::Array(kv))) = c.call(&[b"CONFIG", b"GET", b"maxmemory-policy"]) else {
        return;
    };
    if let Some(OwnedFrame::BulkString(policy)) = kv.get(1) {
        if policy.as_slice() != b"noeviction" {
            warn!(
                "cluster: Redis at {url} has maxmemory-policy {}: under memory pressure it may \
                 evict the cluster's members and claims (then pairs can be split between nodes); \
                 use noeviction",
                String::from_utf8_lossy(policy)
            );
        }
    }
}

fn channel(prefix: &str, node: u16) -> String {
    format!("{prefix}:n:{node}")
}

/// Start the bridge threads; `cores` hands each core its records, answers and news.
pub(crate) fn start(
    joined: Joined,
    cores: Vec<Mailbox>,
    api: ApiLimits,
) -> std::io::Result<(Arc<Cluster>, Vec<JoinHandle<()>>)> {
    let (tx, rx) = mpsc::sync_channel(JOB_QUEUE);
    let refresh_every = joined.opts.claim_ttl / 3;
    let stats = Arc::new(ClusterStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    stats.redis_up.store(1, Ordering::Relaxed);
    let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let members = Arc::new(Members::new());
    let owed = Arc::new(Mutex::new(Owed::default()));
    let cluster = Arc::new(Cluster {
        owed: owed.clone(),
        gone: members.clone(),
        queued: queued.clone(),
        node: joined.node,
        jobs: tx,
        stats: stats.clone(),
        stop: stop.clone(),
        claim_ttl_ms: joined.opts.claim_ttl.as_millis() as u64,
    });
    let sub = Subscriber {
        url: joined.url.clone(),
        opts: joined.opts.clone(),
        node: joined.node,
        cores: cores.clone(),
        stats: stats.clone(),
        stop: stop.clone(),
        owed: owed.clone(),
    };
    // The subscription is in place before any record can be sent to this node.
    let first = sub.subscribe()?;
    let cmd = Commands {
        owed,
        members,
        queued,
        token: joined.token,
        node: joined.node,
        url: joined.url,
        opts: joined.opts,
        shas: joined.shas,
        conn: Some(joined.conn),
        cores,
        stats,
        rx,
        stop,
        known: BTreeSet::new(),
        dead: BTreeSet::new(),
        lost_at: None,
        retell: false,
        retold: None,
        back_at: None,
        severed: false,
        beat_ok: Instant::now(),
        refused: Refusals::default(),
        reclaim: false,
        retry_at: Instant::now(),
        backoff: Duration::from_millis(100),
        next_beat: Instant::now(),
        next_refresh: Instant::now() + refresh_every,
        api,
    };
    let threads = vec![
        std::thread::Builder::new()
            .name("sigyard-cluster-cmd".into())
            .spawn(move || cmd.run())?,
        std::thread::Builder::new()
            .name("sigyard-cluster-sub".into())
            .spawn(move || sub.run(first))?,
    ];
    Ok((cluster, threads))
}

impl Cluster {
    /// Leave the cluster now (a graceful stop): the node's entry goes, others see it gone at
    /// their next heartbeat. The bridge threads end.
    pub fn leave(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A set of node ids the command thread writes and the reactors read.
pub(crate) struct Members {
    bits: Vec<AtomicU64>,
}

impl Members {
    fn new() -> Members {
        Members {
            bits: (0..=usize::from(MAX_NODE) / 64)
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }

    /// Make the set exactly `nodes`.
    fn set(&self, nodes: &BTreeSet<u16>) {
        for (i, word) in self.bits.iter().enumerate() {
            let mut w = 0u64;
            for b in 0..64u16 {
                if nodes.contains(&(i as u16 * 64 + b)) {
                    w |= 1 << b;
                }
            }
            word.store(w, Ordering::Relaxed);
        }
    }

    fn has(&self, node: u16) -> bool {
        let word = &self.bits[usize::from(node / 64).min(self.bits.len() - 1)];
        word.load(Ordering::Relaxed) & (1 << (node % 64)) != 0
    }
}

/// Tell `core` who owns a key it asked about.
fn claimed(
    cores: &[Mailbox],
    core: u16,
    waiter: Option<(usize, u32)>,
    key: &str,
    node: Option<u16>,
) {
    let Some(m) = cores.get(usize::from(core)) else {
        return;
    };
    let msg = match waiter {
        Some((slot, gen)) => ClusterMsg::Claimed { slot, gen, node },
        None => ClusterMsg::KeyClaimed {
            key: key.into(),
            node,
        },
    };
    let _ = m.send(CoreMsg::Cluster(msg));
}

fn tell_all(cores: &[Mailbox], gone: &Gone) {
    for m in cores {
        let _ = m.send(CoreMsg::Cluster(ClusterMsg::Gone(gone.clone())));
    }
}

// ── the command thread ──────────────────────────────────────────────────────────────────────

struct Commands {
    node: u16,
    token: String,
    /// See [`Cluster::queued`]: what a publish sent or failed no longer counts.
    queued: Arc<std::sync::atomic::AtomicUsize>,
    /// See [`Cluster::is_gone`]: `dead`, for the reactors.
    members: Arc<Members>,
    url: RedisUrl,
    opts: ClusterOptions,
    shas: Shas,
    conn: Option<Redis>,
    cores: Vec<Mailbox>,
    stats: Arc<ClusterStats>,
    rx: Receiver<Job>,
    stop: Arc<AtomicBool>,
    /// The live nodes at the last heartbeat.
    known: BTreeSet<u16>,
    /// Nodes the cores were told are gone, until they are seen live again.
    dead: BTreeSet<u16>,
    /// When the command connection to Redis was last lost.
    lost_at: Option<Instant>,
    /// Resets went out since the cores last told their keys' owners again ([`RETELL_EVERY`]
    /// apart at the most, when that was).
    retell: bool,
    retold: Option<Instant>,
    owed: Arc<Mutex<Owed>>,
    /// When Redis came back without this node's entry (it restarted empty, or this node was
    /// away past the node timeout). For a while after ([`Commands::rejoining`]) a node missing
    /// from the members may be one still reconnecting to a Redis that lost them, not a dead
    /// one.
    back_at: Option<Instant>,
    /// The cores were told everything remote is gone during this outage.
    severed: bool,
    /// When Redis last accepted this node's heartbeat (or its registration).
    beat_ok: Instant,
    /// Requests' commands Redis refused, for the log.
    refused: Refusals,
    /// The next refresh makes the claims again (after a reconnection, or when this node may have
    /// been seen gone).
    reclaim: bool,
    retry_at: Instant,
    backoff: Duration,
    next_beat: Instant,
    next_refresh: Instant,
    api: ApiLimits,
}

impl Commands {
    fn beat_every(&self) -> Duration {
        self.opts.node_timeout / 3
    }

    fn run(mut self) {
        let mut jobs = Vec::new();
        loop {
            if self.stop.load(Ordering::Relaxed) {
                // What the reactors published while draining goes out first.
                let mut last: Vec<Job> = self.rx.try_iter().collect();
                if !last.is_empty() && self.conn.is_some() {
                    if let Err(e) = self.exchange(&mut last, false) {
                        self.lost(&e);
                    }
                }
                self.fail(&mut last);
                self.leave();
                return;
            }
            let wait = self
                .next_beat
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100));
            match self.rx.recv_timeout(wait) {
                Ok(j) => jobs.push(j),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.leave();
                    return;
                }
            }
            while jobs.len() < 1024 {
                match self.rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            let beat = Instant::now() >= self.next_beat;
            if beat {
                self.next_beat = Instant::now() + self.beat_every();
            }
            if Instant::now() >= self.next_refresh {
                // Each core answers with the keys its live connections were placed by.
                self.next_refresh = Instant::now() + self.opts.claim_ttl / 3;
                let reclaim = std::mem::take(&mut self.reclaim);
                for m in &self.cores {
                    let _ = m.send(CoreMsg::Cluster(ClusterMsg::RefreshClaims { reclaim }));
                }
            }
            // Before a reconnection, which is no heartbeat: one lapsed while Redis was away
            // ends the relationships even when Redis is back in this same turn.
            self.check_outage();
            if self.conn.is_none() {
                self.reconnect();
            }
            if self.conn.is_some() {
                let resets = self.resets();
                let reset = !resets.is_empty();
                jobs.splice(0..0, resets);
                match self.exchange(&mut jobs, beat) {
                    Err(e) => self.lost(&e),
                    // The nodes reset have dropped what this one told them (what was told
                    // while the resets were owed was lost): the dialects tell it again.
                    Ok(()) => self.retell |= reset,
                }
            }
            // At most once a second: under overload (a queue to Redis that keeps filling)
            // telling everything again must not feed the overload.
            if self.retell && !self.retold.is_some_and(|t| t.elapsed() < RETELL_EVERY) {
                self.retell = false;
                self.retold = Some(Instant::now());
                for m in &self.cores {
                    let _ = m.send(CoreMsg::Cluster(ClusterMsg::Back));
                }
            }
            self.fail(&mut jobs);
        }
    }

    /// Send every job (and the heartbeat), then read every reply. Jobs answered are removed;
    /// on an error, the rest stay for [`Commands::fail`].
    fn exchange(&mut self, jobs: &mut Vec<Job>, beat: bool) -> std::io::Result<()> {
        let Some(mut conn) = self.conn.take() else {
            return Ok(());
        };
        let r = self.exchange_on(&mut conn, jobs, beat);
        self.conn = Some(conn);
        r
    }

    fn exchange_on(
        &mut self,
        conn: &mut Redis,
        jobs: &mut Vec<Job>,
        beat: bool,
    ) -> std::io::Result<()> {
        let me = self.node.to_string();
        let timeout = self.opts.node_timeout.as_millis().to_string();
        let ttl = self.opts.claim_ttl.as_millis().to_string();
        let prefix = self.opts.prefix.as_bytes();
        let claim = |conn: &mut Redis, key: &str| {
            conn.push(&[
                b"EVALSHA",
                self.shas.claim.as_bytes(),
                b"0",
                prefix,
                me.as_bytes(),
                key.as_bytes(),
                ttl.as_bytes(),
                timeout.as_bytes(),
            ])
        };
        for j in jobs.iter() {
            match j {
                Job::Publish { node, batch } => {
                    let ch = channel(&self.opts.prefix, *node);
                    conn.push(&[b"PUBLISH", ch.as_bytes(), batch]);
                }
                Job::Store { op, .. } => {
                    // A call the dialect encoded is well formed; one that is not gets an
                    // error reply from a script that does not exist.
                    let (name, key, cost, value) = decode_call(op).unwrap_or((
                        crate::proto::dialect::httpapi::Op::GetOffer,
                        "",
                        0,
                        "",
                    ));
                    let a = &self.api;
                    let (cost, ttl) = (cost.to_string(), a.ttl_ms.to_string());
                    let (chans, cands, bytes) = (
                        a.max_channels.to_string(),
                        a.max_candidates.to_string(),
                        a.max_bytes.to_string(),
                    );
                    conn.push(&[
                        b"EVALSHA",
                        self.shas.api.as_bytes(),
                        b"0",
                        prefix,
                        name.name().as_bytes(),
                        key.as_bytes(),
                        cost.as_bytes(),
                        value.as_bytes(),
                        ttl.as_bytes(),
                        chans.as_bytes(),
                        cands.as_bytes(),
                        bytes.as_bytes(),
                    ]);
                }
                Job::Refresh { keys, reclaim, .. } => {
                    for k in keys {
                        if *reclaim {
                            // Claimed as a request would be: this node's again unless another
                            // live one took it meanwhile.
                            claim(conn, k);
                        } else {
                            let key = format!("{}:k:{k}", self.opts.prefix);
                            conn.push(&[b"PEXPIRE", key.as_bytes(), ttl.as_bytes()]);
                        }
                    }
                }
                Job::Claim { key, .. } => claim(conn, key),
            }
        }
        if beat {
            conn.push(&[
                b"EVALSHA",
                self.shas.heartbeat.as_bytes(),
                b"0",
                prefix,
                me.as_bytes(),
                timeout.as_bytes(),
                self.token.as_bytes(),
            ]);
        }
        let sent = Instant::now();
        conn.flush()?;
        let mut done = 0;
        let mut result = Ok(());
        'jobs: for j in jobs.iter() {
            let Job::Refresh {
                core,
                keys,
                reclaim,
            } = j
            else {
                match conn.read() {
                    Ok(reply) => self.on_reply(j, reply),
                    Err(e) => {
                        result = Err(e);
                        break 'jobs;
                    }
                }
                done += 1;
                continue;
            };
            // One reply per key. With `reclaim` each names the key's owner: another live node
            // took the keys that name it while this one was seen gone. They go to the core in
            // one message (which says what it ends, if anything is left by then).
            let mut taken = Vec::new();
            for key in keys {
                let reply = match conn.read() {
                    Ok(reply) => reply,
                    Err(e) => {
                        result = Err(e);
                        break 'jobs;
                    }
                };
                let owner = reply.ok().as_ref().and_then(int);
                let other = owner
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|&n| *reclaim && n != self.node);
                if let Some(n) = other {
                    taken.push((key.clone(), n));
                }
            }
            if let (false, Some(m)) = (taken.is_empty(), self.cores.get(usize::from(*core))) {
                let _ = m.send(CoreMsg::Cluster(ClusterMsg::Taken(taken)));
            }
            done += 1;
        }
        if result.is_ok() && beat {
            match conn.read() {
                Ok(reply) => {
                    self.stats
                        .rtt_us
                        .store(sent.elapsed().as_micros() as u64, Ordering::Relaxed);
                    match reply {
                        Ok(OwnedFrame::Array(items)) => self.membership(&items),
                        Ok(other) => warn!("cluster: heartbeat answered {other:?}"),
                        Err(e) => warn!("cluster: heartbeat failed: {e}"),
                    }
                }
                Err(e) => result = Err(e),
            }
        }
        jobs.drain(..done);
        result
    }

    /// The answer to `job` (a refresh's are read where it is sent).
    fn on_reply(&mut self, job: &Job, reply: redis::Reply) {
        match job {
            Job::Publish { node, batch } => {
                self.queued.fetch_sub(batch.len(), Ordering::Relaxed);
                let receivers = reply.as_ref().ok().and_then(int).unwrap_or(0);
                if receivers == 0 {
                    self.stats.failed_deliveries.fetch_add(1, Ordering::Relaxed);
                    if self.dead.insert(*node) {
                        self.members.set(&self.dead);
                        warn!("cluster: node {node} did not receive a publish: it is gone");
                        tell_all(&self.cores, &Gone::Nodes(vec![*node]));
                    }
                } else {
                    self.stats.publishes.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .bytes_out
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
            }
            Job::Refresh { .. } => {}
            Job::Store { core, conn, .. } => {
                if let Err(e) = &reply {
                    self.refused.warn("HTTP API store call", e);
                }
                let result = outcome(&reply).map_or(Vec::new(), |o| o.encode());
                if let Some(m) = self.cores.get(usize::from(*core)) {
                    let msg = ClusterMsg::Stored {
                        conn: *conn,
                        result,
                    };
                    let _ = m.send(CoreMsg::Cluster(msg));
                }
            }
            Job::Claim { core, waiter, key } => {
                self.stats.claims.fetch_add(1, Ordering::Relaxed);
                let node = match &reply {
                    Ok(f) => int(f).and_then(|n| u16::try_from(n).ok()),
                    Err(e) => {
                        self.refused.warn("claim", e);
                        None
                    }
                };
                claimed(&self.cores, *core, *waiter, key, node);
            }
        }
    }

    /// What a heartbeat said about the members.
    fn membership(&mut self, items: &[OwnedFrame]) {
        if items.first().and_then(int) == Some(-1) {
            // Records for this id would reach two processes, whose handles may coincide: a
            // message could reach the wrong client. Stopping is the only safe answer.
            error!(
                "cluster: node id {} now belongs to another process (was the cluster's Redis \
                 flushed?); this process stops: two processes must never answer for one node",
                self.node
            );
            std::process::exit(1);
        }
        self.beat_ok = Instant::now();
        if self.severed {
            // Every key's owner was forgotten: the dialects tell them again.
            for m in &self.cores {
                let _ = m.send(CoreMsg::Cluster(ClusterMsg::Back));
            }
        }
        let was_live = items.first().and_then(int) == Some(1);
        if !was_live || self.severed {
            // Seen gone (or Redis lost the members): another node may have claimed keys this
            // one still serves. They are claimed again at once, and any taken end here. (Once
            // severed, whatever Redis says of this node: a heartbeat sent before an outage may
            // reach it only after, and make this node look live throughout.)
            self.reclaim = true;
            self.next_refresh = Instant::now();
        }
        let mut live: BTreeSet<u16> = items[1..]
            .iter()
            .filter_map(|f| int(f).and_then(|n| u16::try_from(n).ok()))
            .collect();
        if !was_live && !self.known.is_empty() && !self.severed {
            // The others saw this node gone: they ended their side of every relationship.
            warn!("cluster: this node's heartbeat had lapsed: ending every remote relationship");
            tell_all(&self.cores, &Gone::All);
        }
        let mut gone: Vec<u16> = self
            .known
            .iter()
            .filter(|n| !live.contains(n) && **n != self.node && !self.dead.contains(n))
            .copied()
            .collect();
        if !gone.is_empty() && self.rejoining() {
            // Perhaps not gone: still on their way back to a Redis that lost the members.
            live.extend(gone.drain(..));
        }
        if !gone.is_empty() {
            warn!("cluster: node(s) {gone:?} left");
            self.stats
                .nodes_gone
                .fetch_add(gone.len() as u64, Ordering::Relaxed);
            self.dead.extend(gone.iter().copied());
            tell_all(&self.cores, &Gone::Nodes(gone));
        }
        self.dead.retain(|n| !live.contains(n));
        self.members.set(&self.dead);
        self.stats.nodes.store(live.len() as u64, Ordering::Relaxed);
        self.known = live;
        self.severed = false;
        self.stats.cut_off.store(0, Ordering::Relaxed);
    }

    /// Whether Redis came back from an outage so recently that every live node may not have
    /// reconnected and beaten its heartbeat yet: a node timeout, plus the longest reconnect
    /// backoff.
    fn rejoining(&self) -> bool {
        self.back_at
            .is_some_and(|t| t.elapsed() < self.opts.node_timeout + MAX_BACKOFF)
    }

    fn lost(&mut self, e: &std::io::Error) {
        if self.conn.take().is_some() {
            error!(
                "cluster: lost Redis at {}: {}",
                self.url,
                why(e, &self.opts)
            );
            self.stats.redis_up.store(0, Ordering::Relaxed);
            self.lost_at = Some(Instant::now());
            self.retry_at = Instant::now() + self.backoff;
        }
    }

    fn reconnect(&mut self) {
        if Instant::now() < self.retry_at {
            return;
        }
        let attempt = connect(&self.url, &self.opts).and_then(|mut c| {
            let shas = load_scripts(&mut c)?;
            let id = register(&mut c, &shas, &self.opts, self.node, &self.token)
                .map_err(std::io::Error::other)?;
            Ok((c, shas, id))
        });
        match attempt {
            Ok((c, shas, (id, kept))) => {
                if id != self.node {
                    error!(
                        "cluster: node id {} was taken while Redis was away (now {id}); \
                         this node keeps {} and may conflict: restart it",
                        self.node, self.node
                    );
                }
                info!("cluster: Redis at {} is back", self.url);
                self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                self.stats.redis_up.store(1, Ordering::Relaxed);
                self.conn = Some(c);
                self.shas = shas;
                // Redis kept this node's entry: it kept the others' too, and the members it
                // names can be believed at once.
                self.back_at = (!kept).then(Instant::now);
                // Its claims may be gone even so (a failover to a replica that missed the last
                // writes; an empty Redis takes them all): they are made again at once, before a
                // request on another node can take a key this node still serves.
                self.next_refresh = Instant::now();
                self.reclaim = true;
                self.backoff = Duration::from_millis(100);
                self.next_beat = Instant::now();
            }
            Err(e) => {
                warn!(
                    "cluster: Redis at {} still unreachable: {}",
                    self.url,
                    why(&e, &self.opts)
                );
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                self.retry_at = Instant::now() + self.backoff;
            }
        }
    }

    /// Jobs that could not be done: claims get "unknown", publishes count as failed, and every
    /// relationship with their nodes ends, here and there (a gap in what a node was sent must
    /// never pass unseen).
    fn fail(&mut self, jobs: &mut Vec<Job>) {
        let mut lost = BTreeSet::new();
        for j in jobs.drain(..) {
            match j {
                Job::Publish { node, batch } => {
                    self.queued.fetch_sub(batch.len(), Ordering::Relaxed);
                    self.stats.failed_deliveries.fetch_add(1, Ordering::Relaxed);
                    lost.insert(node);
                }
                // (Claimed again after the reconnection this needs.)
                Job::Refresh { .. } => {}
                Job::Store { core, conn, .. } => {
                    if let Some(m) = self.cores.get(usize::from(core)) {
                        let msg = ClusterMsg::Stored {
                            conn,
                            result: Vec::new(),
                        };
                        let _ = m.send(CoreMsg::Cluster(msg));
                    }
                }
                Job::Claim { core, waiter, key } => claimed(&self.cores, core, waiter, &key, None),
            }
        }
        if lost.is_empty() {
            return;
        }
        // Nodes already owed a reset have had their relationships ended since.
        let mut owed = lock(&self.owed);
        let lost: Vec<u16> = lost.into_iter().filter(|&n| owed.nodes.insert(n)).collect();
        drop(owed);
        if !lost.is_empty() && !self.severed {
            // (Once severed, nothing is left to end: the cores were told every node is gone.)
            warn!("cluster: records for node(s) {lost:?} may be lost: ending every relationship with them");
            tell_all(&self.cores, &Gone::Lost(lost));
        }
    }

    /// The resets owed, as publishes to go before every other job.
    fn resets(&mut self) -> Vec<Job> {
        let mut owed = lock(&self.owed);
        let mut nodes = std::mem::take(&mut owed.nodes);
        if std::mem::take(&mut owed.everyone) {
            nodes.extend(self.known.iter().copied());
        }
        drop(owed);
        nodes.remove(&self.node);
        if nodes.is_empty() {
            return Vec::new();
        }
        let mut batch = Vec::new();
        records::Record::Reset { from: self.node }.encode(&mut batch);
        nodes
            .into_iter()
            .map(|node| {
                self.queued.fetch_add(batch.len(), Ordering::Relaxed);
                Job::Publish {
                    node,
                    batch: batch.clone(),
                }
            })
            .collect()
    }

    /// No heartbeat of this node's accepted for a node timeout (Redis gone, or refusing it:
    /// out of memory, read-only): the other nodes have seen this one gone, so every remote
    /// relationship ends here too.
    fn check_outage(&mut self) {
        let timeout = self.opts.node_timeout;
        if self.severed || self.beat_ok.elapsed() < timeout {
            return;
        }
        // Lost since the last heartbeat Redis took (perhaps back by now, too late), or
        // answering and refusing it.
        let why = match self.lost_at {
            Some(t) if t > self.beat_ok => "Redis unreachable",
            _ => "Redis refuses it",
        };
        error!("cluster: no heartbeat for {timeout:?} ({why}): ending every remote relationship");
        self.severed = true;
        self.stats.cut_off.store(1, Ordering::Relaxed);
        self.known.clear();
        self.stats.nodes.store(0, Ordering::Relaxed);
        tell_all(&self.cores, &Gone::All);
    }

    fn leave(&mut self) {
        if let Some(c) = self.conn.as_mut() {
            let _ = c.call(&[
                b"ZREM",
                format!("{}:nodes", self.opts.prefix).as_bytes(),
                self.node.to_string().as_bytes(),
            ]);
            info!("cluster: node {} left", self.node);
        }
    }
}

/// Commands Redis refused for requests (claims, HTTP API calls; one per request, so possibly
/// thousands a second): logged at most once a second, with how many were not.
#[derive(Default)]
struct Refusals {
    logged_at: Option<Instant>,
    unlogged: u64,
}

impl Refusals {
    fn warn(&mut self, what: &str, e: &str) {
        if self
            .logged_at
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            self.unlogged += 1;
            return;
        }
        match std::mem::take(&mut self.unlogged) {
            0 => warn!("cluster: {what} failed: {e}"),
            n => warn!("cluster: {what} failed: {e} ({n} more refused since the last such line)"),
        }
        self.logged_at = Some(Instant::now());
    }
}

// ── the subscriber thread ───────────────────────────────────────────────────────────────────

struct Subscriber {
    url: RedisUrl,
    opts: ClusterOptions,
    node: u16,
    cores: Vec<Mailbox>,
    stats: Arc<ClusterStats>,
    stop: Arc<AtomicBool>,
    owed: Arc<Mutex<Owed>>,
}

impl Subscriber {
    fn subscribe(&self) -> std::io::Result<Redis> {
        let mut c = connect(&self.url, &self.opts)?;
        let ch = channel(&self.opts.prefix, self.node);
        c.call(&[b"SUBSCRIBE", ch.as_bytes()])?
            .map_err(std::io::Error::other)?;
        c.set_read_timeout(Duration::from_millis(200))?;
        Ok(c)
    }

    fn run(self, first: Redis) {
        let mut conn = Some(first);
        let mut backoff = Duration::from_millis(100);
        while !self.stop.load(Ordering::Relaxed) {
            let Some(c) = conn.as_mut() else {
                std::thread::sleep(backoff);
                match self.subscribe() {
                    Ok(c) => {
                        info!("cluster: subscribed again");
                        // Records published meanwhile are lost: no relationship survives that,
                        // here or on the nodes that sent them.
                        lock(&self.owed).everyone = true;
                        tell_all(&self.cores, &Gone::All);
                        conn = Some(c);
                        backoff = Duration::from_millis(100);
                    }
                    Err(_) => backoff = (backoff * 2).min(MAX_BACKOFF),
                }
                continue;
            };
            match c.read() {
                Ok(Ok(OwnedFrame::Array(parts))) => {
                    if let [OwnedFrame::BulkString(kind), _, OwnedFrame::BulkString(payload)] =
                        &parts[..]
                    {
                        if kind == b"message" {
                            self.dispatch(payload);
                        }
                    }
                }
                Ok(_) => {}
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => {
                    error!("cluster: lost the subscription at {}: {e}", self.url);
                    conn = None;
                }
            }
        }
    }

    /// Hand each core its records of one batch.
    fn dispatch(&self, batch: &[u8]) {
        self.stats
            .bytes_in
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let n = self.cores.len();
        let mut per_core: Vec<Vec<u8>> = vec![Vec::new(); n];
        let mut rest = batch;
        while !rest.is_empty() {
            let (rec, used) = match records::decode(rest) {
                Ok(x) => x,
                Err(e) => {
                    warn!("cluster: dropped a malformed batch ({e:?})");
                    break;
                }
            };
            if let records::Record::Reset { from } = rec {
                // What came before it, then the relationships with `from` end, then the rest.
                warn!("cluster: node {from} lost records exchanged with this node: ending every relationship with it");
                self.send_cores(&mut per_core);
                tell_all(&self.cores, &Gone::Lost(vec![from]));
                rest = &rest[used..];
                continue;
            }
            let core = match rec {
                records::Record::Open {
                    core: ANY_CORE,
                    key: Some(k),
                    ..
                }
                | records::Record::Tell {
                    core: ANY_CORE,
                    key: k,
                    ..
                } => crate::net::owner(k, n),
                r => usize::from(r.core()),
            };
            if let Some(v) = per_core.get_mut(core) {
                v.extend_from_slice(&rest[..used]);
            }
            self.stats.records_in.fetch_add(1, Ordering::Relaxed);
            rest = &rest[used..];
        }
        self.send_cores(&mut per_core);
    }

    fn send_cores(&self, per_core: &mut [Vec<u8>]) {
        for (core, v) in per_core.iter_mut().enumerate() {
            if !v.is_empty() {
                let v = std::mem::take(v);
                let _ = self.cores[core].send(CoreMsg::Cluster(ClusterMsg::Records(v)));
            }
        }
    }
}

fn lock(owed: &Mutex<Owed>) -> std::sync::MutexGuard<'_, Owed> {
    owed.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_sets() {
        let m = Members::new();
        assert!(!m.has(7) && !m.has(MAX_NODE));
        m.set(&[1u16, 64, 16383].into_iter().collect());
        assert!(m.has(1) && m.has(64) && m.has(16383));
        assert!(!m.has(2) && !m.has(63) && !m.has(65));
        m.set(&BTreeSet::new());
        assert!(!m.has(1));
    }

    #[test]
    fn queued_bytes_press_then_refuse_and_come_back() {
        let (tx, rx) = mpsc::sync_channel(JOB_QUEUE);
        let c = Cluster {
            node: 1,
            jobs: tx,
            gone: Arc::new(Members::new()),
            owed: Default::default(),
            queued: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            stats: Arc::new(ClusterStats::default()),
            stop: Arc::new(AtomicBool::new(false)),
            claim_ttl_ms: 3_600_000,
        };
        let batch = || Job::Publish {
            node: 2,
            batch: vec![0; 4 << 20],
        };
        let mut sent = 0;
        while c.submit(batch()).is_ok() {
            sent += 1;
            assert!(sent <= 16, "never refused");
        }
        assert_eq!(sent, 16, "64 MiB of 4 MiB batches");
        assert!(c.pressed());
        assert_eq!(c.stats.failed_deliveries.load(Ordering::Relaxed), 1);
        // The command thread's side: what it sent no longer counts.
        for _ in 0..9 {
            if let Ok(Job::Publish { batch, .. }) = rx.try_recv() {
                c.queued.fetch_sub(batch.len(), Ordering::Relaxed);
            }
        }
        assert!(!c.pressed());
        assert!(c.submit(batch()).is_ok());
    }

    #[test]
    fn urls() {
        let u = RedisUrl::parse("redis://127.0.0.1:6390/2").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.db), ("127.0.0.1", 6390, 2));
        assert!(u.password.is_none());
        let u = RedisUrl::parse("redis://:s3cret@r.example").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.db), ("r.example", 6379, 0));
        assert_eq!(u.password.as_ref().map(Secret::expose), Some("s3cret"));
        assert_eq!(u.to_string(), "redis://:***@r.example:6379/0");
        let u = RedisUrl::parse("redis://app:pw@[::1]:7000").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 7000));
        assert_eq!(u.user.as_deref(), Some("app"));
        for bad in ["http://x", "redis://", "redis://h:port", "redis://h/db"] {
            assert!(RedisUrl::parse(bad).is_err(), "{bad}");
        }
        let u = RedisUrl::parse("rediss://r.example:6380").unwrap();
        assert!(u.tls && !RedisUrl::parse("redis://h").unwrap().tls);
        assert_eq!(u.to_string(), "rediss://r.example:6380/0");
    }
}
