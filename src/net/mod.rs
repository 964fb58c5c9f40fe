//! The shell: mio reactors, sockets, TLS, buffers, timers, threads and mailboxes.
//!
//! It makes every syscall and owns every buffer; protocol decisions live in [`crate::proto`].
//! Reactors share only immutable data ([`Shared`]) and mailbox senders; each connection lives on
//! exactly one core, and a key (a room, a peer) is owned by `route::owner(key, cores)`.

pub(crate) mod api;
pub(crate) mod app;
pub mod listener;
pub(crate) mod mailbox;
pub mod pool;
pub(crate) mod reactor;
pub mod timer;
pub mod tls;
pub mod workspace_store;
pub(crate) mod workspaces_store;

use crate::config::Config;
use crate::metrics::CoreMetrics;
use mailbox::Mailbox;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What every reactor may read: configuration, metrics blocks, mailboxes, global counts.
pub(crate) struct Shared {
    pub cfg: Arc<Config>,
    pub cores: Vec<CoreMetrics>,
    pub mailboxes: Vec<Mailbox>,
    pub conns_total: AtomicUsize,
    pub per_ip: IpTable,
    pub started: Instant,
    /// ICE servers for the dialects and `GET /ice-servers`; its provider runs on its own thread.
    pub ice: crate::ice::Ice,
    /// The HTTP API and its store (`--api`).
    pub api: Option<Arc<api::Api>>,
    /// The webRTWorkspaces dialect when it has a store (built, and the store loaded, at start)
    /// until the core owning all workspace sockets takes it at their first handshake.
    pub workspaces: Mutex<Option<Box<dyn crate::proto::dialect::sio::Dialect + Send>>>,
}

/// Connections per client address, for `max-connections-per-ip`. Sharded so that accepts on
/// different cores rarely meet on one lock; touched only at accept and close.
pub(crate) struct IpTable {
    limit: usize,
    shards: [Mutex<HashMap<u64, u32>>; 16],
}

impl IpTable {
    pub fn new(limit: usize) -> Self {
        IpTable {
            limit,
            shards: Default::default(),
        }
    }

    /// Count a new connection from `ip`. Returns its accounting key, or `None` when the address
    /// is at its limit. Key 0 means "not counted" (limit off).
    pub fn try_add(&self, ip: IpAddr) -> Option<u64> {
        if self.limit == 0 {
            return Some(0);
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        ip.hash(&mut h);
        let key = h.finish() | 1;
        let mut shard = self.shards[(key >> 59) as usize & 15]
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

    pub fn remove(&self, key: u64) {
        if key == 0 {
            return;
        }
        let mut shard = self.shards[(key >> 59) as usize & 15]
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
        assert_eq!(IpTable::new(0).try_add(ip), Some(0));
    }
}
