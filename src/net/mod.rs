//! The shell: mio reactors, sockets, TLS, buffers, timers, threads and mailboxes.
//!
//! It makes every syscall and owns every buffer; protocol decisions live in [`crate::proto`],
//! and what each dialect means is reached only through the registry ([`crate::registry`]) and
//! the dialect contract (`proto::dialect`). Reactors share only immutable data ([`Shared`]) and
//! mailbox senders; each connection lives on exactly one core, and a placement key is owned by
//! [`owner`] of its hash.

pub(crate) mod endpoints;
pub(crate) mod flow;
pub mod listener;
pub(crate) mod mailbox;
pub mod pool;
pub(crate) mod reactor;
pub(crate) mod remote;
pub(crate) mod slot;
pub(crate) mod sys;
pub mod timer;
pub mod tls;
pub(crate) mod told;

use crate::config::Config;
use crate::metrics::CoreMetrics;
use crate::proto::dialect::{Handle, Locator, Random};
use crate::registry::Registry;
use mailbox::Mailbox;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What every reactor may read: configuration, the registry, metrics blocks, mailboxes, global
/// counts.
pub(crate) struct Shared {
    pub cfg: Arc<Config>,
    /// The connection machine's limits, from `cfg`.
    pub limits: crate::proto::conn::Limits,
    pub registry: Arc<Registry>,
    pub cores: Vec<CoreMetrics>,
    pub mailboxes: Vec<Mailbox>,
    pub conns_total: AtomicUsize,
    pub per_ip: IpTable,
    pub conn_rates: IpRates,
    pub http_rates: IpRates,
    pub started: Instant,
    /// ICE servers for the dialects and `GET /ice-servers`; its provider runs on its own thread.
    pub ice: crate::ice::Ice,
    /// The wall clock dialects see (milliseconds since the UNIX epoch).
    pub wall: crate::registry::api::Clock,
    /// This node of a cluster (`None`: a process on its own, node 0).
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl Shared {
    /// This process's node id (0 on its own).
    pub fn node(&self) -> u16 {
        self.cluster.as_ref().map_or(0, |c| c.node)
    }
}

/// The core that owns a placement key among `cores`: fixed for the life of the process.
pub fn owner(key: &str, cores: usize) -> usize {
    (crate::proto::hash::stable_hash(key.as_bytes()) % cores.max(1) as u64) as usize
}

// A handle packs (from the top) 16 bits of node (0 for a process on its own), 10 bits of
// core, 14 bits of generation and 24 bits of slab key. The node and core together are a core's
// *place* (`at`), which is also its locator: node << 10 | core.
const KEY_BITS: u32 = 24;
pub(crate) const GEN_BITS: u32 = 14;
const CORE_BITS: u32 = 10;

/// The place of `core` on `node`.
pub(crate) fn place(node: u16, core: usize) -> u32 {
    (u32::from(node) << CORE_BITS) | core as u32
}

/// The node of a place.
pub(crate) fn place_node(at: u32) -> u16 {
    (at >> CORE_BITS) as u16
}

/// The core of a place.
pub(crate) fn place_core(at: u32) -> usize {
    (at & ((1 << CORE_BITS) - 1)) as usize
}

/// The handle of slab slot `key` (of generation `gen`) on the core at `at`.
pub(crate) fn handle(at: u32, key: usize, gen: u32) -> Handle {
    let gen = u64::from(gen) & ((1 << GEN_BITS) - 1);
    Handle::from_raw((u64::from(at) << (KEY_BITS + GEN_BITS)) | (gen << KEY_BITS) | key as u64)
}

/// What a handle names: the core's place, the slab key, and the generation bits it carries.
pub(crate) fn resolve(h: Handle) -> (u32, usize, u32) {
    let raw = h.raw();
    let key = (raw & ((1 << KEY_BITS) - 1)) as usize;
    let gen = ((raw >> KEY_BITS) & ((1 << GEN_BITS) - 1)) as u32;
    ((raw >> (KEY_BITS + GEN_BITS)) as u32, key, gen)
}

/// The node a handle's connection lives on.
pub(crate) fn handle_node(h: Handle) -> u16 {
    place_node(resolve(h).0)
}

/// True when a slot of generation `gen` is the one `handle_gen` names.
pub(crate) fn same_gen(gen: u32, handle_gen: u32) -> bool {
    gen & ((1 << GEN_BITS) - 1) == handle_gen
}

/// The locator of the core at `at` (what session ids carry).
pub(crate) fn locator(at: u32) -> Locator {
    Locator(at)
}

/// The dialects' randomness: the OS CSPRNG (their ids are capabilities).
pub(crate) struct OsRandom;

impl Random for OsRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        crate::csprng::fill(buf);
    }
}

/// A client address's key in the per-address tables ([`ip_key`]).
pub(crate) type IpKey = u32;

/// A client address's key in the per-address tables: a hash, never 0 (0 is "no address").
/// 32 bits (every connection's slot holds one), keyed with this process's random keys, so
/// that nobody can pick addresses whose key is another client's: two addresses share a
/// key (and so their per-address counts) only by chance, one pair in about four billion.
pub(crate) fn ip_key(ip: IpAddr) -> IpKey {
    static KEYS: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
    let mut h = std::hash::BuildHasher::build_hasher(KEYS.get_or_init(std::hash::RandomState::new));
    ip.hash(&mut h);
    h.finish() as IpKey | 1
}

/// A rate per client address (`--max-new-connections-per-ip`, `--max-http-requests-per-ip`):
/// a token bucket per address [`ip_key`] used recently, sharded like [`IpTable`]. A bucket
/// that has refilled is forgotten when its shard is swept (at most every 4,096 new
/// addresses), so the table holds the addresses of the last few seconds, not every address
/// ever seen.
pub(crate) struct IpRates {
    rate: crate::proto::rate::Rate,
    shards: [Mutex<HashMap<IpKey, crate::proto::rate::Bucket>>; 16],
}

impl IpRates {
    pub fn new(per_sec: usize) -> Self {
        IpRates {
            rate: crate::proto::rate::Rate::per_second(per_sec as u64),
            shards: Default::default(),
        }
    }

    /// Whether the address `key` may have one more at `now_ms` (wall or monotonic, one
    /// clock). Key 0 (no address known) is not limited.
    pub fn admit(&self, key: IpKey, now_ms: u64) -> bool {
        if self.rate.per_sec == 0 || key == 0 {
            return true;
        }
        let mut shard = self.shards[(key >> 27) as usize & 15]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if shard.len() >= 4096 {
            // Buckets idle for the time a burst takes to refill are full again: forget them.
            let full_after = 1000 * self.rate.burst / self.rate.per_sec.max(1) + 1;
            shard.retain(|_, b| !b.idle_for(now_ms, full_after));
        }
        shard.entry(key).or_default().take(self.rate, now_ms, 1)
    }
}

/// Connections per client address, for `max-connections-per-ip`. Sharded so that accepts on
/// different cores rarely meet on one lock; touched only at accept and close.
pub(crate) struct IpTable {
    limit: usize,
    shards: [Mutex<HashMap<IpKey, u32>>; 16],
}

impl IpTable {
    pub fn new(limit: usize) -> Self {
        IpTable {
            limit,
            shards: Default::default(),
        }
    }

    /// Count a new connection from `ip`. Returns its address key ([`ip_key`]), or `None` when
    /// the address is at its limit (with the limit off, nothing is counted).
    pub fn try_add(&self, ip: IpAddr) -> Option<IpKey> {
        let key = ip_key(ip);
        if self.limit == 0 {
            return Some(key);
        }
        let mut shard = self.shards[(key >> 27) as usize & 15]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let n = shard.entry(key).or_insert(0);
        if *n as usize >= self.limit {
            if *n == 0 {
                shard.remove(&key);
            }
            return None;
        }
        *n += 1;
        Some(key)
    }

    pub fn remove(&self, key: IpKey) {
        if key == 0 || self.limit == 0 {
            return;
        }
        let mut shard = self.shards[(key >> 27) as usize & 15]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = shard.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                shard.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_table_limits_and_releases() {
        let t = IpTable::new(2);
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let a = t.try_add(ip).unwrap();
        let b = t.try_add(ip).unwrap();
        assert!(t.try_add(ip).is_none());
        assert!(t.try_add("10.1.2.4".parse().unwrap()).is_some());
        t.remove(a);
        assert!(t.try_add(ip).is_some());
        t.remove(b);
        assert_eq!(IpTable::new(0).try_add(ip), Some(ip_key(ip)));
    }
}
