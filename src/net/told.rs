//! Messages between dialect instances: `Tell` to whichever instance owns a key, `Reply` to the
//! instance serving a connection, and the other records one core sends another of its node
//! through their mailboxes (ARCHITECTURE.md, "Where state lives").
//!
//! A key told something is placed as a request's key is: on [`owner`] of its hash among this
//! node's cores, and in a cluster on the node that claimed it. The owner core checks that its
//! node owns the key before its dialect hears of it, asking Redis the first time (the claim
//! makes this node the owner if no live node is); what a claim said about another node is
//! remembered for a claim's lifetime as a hint, so most tells go straight to the owner, and a
//! stale hint costs one more hop, never a second owner.

use crate::cluster::{Gone, Job};
use crate::net::flow::call;
use crate::net::mailbox::CoreMsg;
use crate::net::reactor::{live, Core, Reactor};
use crate::net::{owner, place_core, place_node, resolve};
use crate::proto::cluster::{records, Record, ANY_CORE};
use crate::proto::dialect::Handle;
use crate::registry::ROUTES;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

/// How often a tell may be passed on from node to node (its key's owner moving meanwhile)
/// before it is dropped.
const MAX_HOPS: u8 = 3;

/// What one core knows of the keys told in a cluster.
#[derive(Default)]
pub(crate) struct Told {
    /// Keys this node owns whose owner core this is, with the dialect told: their claims are
    /// refreshed while the dialect holds them.
    owned: HashMap<Box<str>, u8>,
    /// Keys another node owns, as a claim said, and until when that is trusted (this core's
    /// clock).
    hints: HashMap<Box<str>, (u16, u64)>,
    /// Tells waiting for the answer to their key's claim, as records, and when the first of
    /// them began waiting.
    asking: HashMap<Box<str>, (Vec<u8>, u64)>,
    /// Keys whose claim named a node seen gone (Redis frees its keys once its heartbeat is
    /// older than the node timeout): asked again at `retry_at`, their tells still waiting.
    retry: Vec<Box<str>>,
    pub retry_at: Option<u64>,
    /// Nodes told gone, until when a claim naming one is not believed: Redis gives a dead
    /// node's keys to another only once its heartbeat is a node timeout old.
    gone: HashMap<u16, u64>,
}

impl Told {
    /// Node `n` owns `key`, as a claim said, until `until`.
    fn hint(&mut self, key: &str, n: u16, until: u64) {
        if self.hints.len() >= MAX_HINTS {
            // Hints are only shortcuts: past the bound they start over.
            self.hints.clear();
        }
        self.hints.insert(key.into(), (n, until));
    }
}

/// How long a claim that named a gone node waits before it is asked again.
const RETRY_MS: u64 = 250;

/// Bytes of tells one key holds while its owner is being found; more are dropped (counted).
const MAX_WAITING: usize = 1 << 20;

/// Hints one core keeps at most (keys another node owns); past it they start over.
const MAX_HINTS: usize = 1 << 20;

/// How long tells wait for their key's owner while Redis cannot say (an outage): past it they
/// are dropped (counted).
const MAX_WAIT_MS: u64 = 60_000;

impl Core {
    /// Queue a record for another core of this node (sent at the end of the loop turn).
    pub(crate) fn emit_core(&mut self, core: usize, rec: &Record<'_>) {
        let i = match self.to_cores.iter().position(|(c, _)| *c == core) {
            Some(i) => i,
            None => {
                self.to_cores.push((core, Vec::new()));
                self.to_cores.len() - 1
            }
        };
        rec.encode(&mut self.to_cores[i].1);
    }

    /// Queue a record for the core holding the connection `h`, on this node or another.
    pub(crate) fn emit_for(&mut self, h: Handle, rec: &Record<'_>) {
        let at = resolve(h).0;
        match place_node(at) {
            n if n == self.node => self.emit_core(place_core(at), rec),
            n => self.emit(n, rec),
        }
    }

    /// Send a tell on to `node`, the owner of its key as far as this core knows, unless it
    /// was passed on too often already (then it is dropped and counted).
    fn pass_on(
        &mut self,
        node: u16,
        dialect: u8,
        hops: u8,
        from: Handle,
        key: &str,
        payload: &[u8],
    ) {
        if hops >= MAX_HOPS {
            self.undeliverable();
            return;
        }
        let rec = Record::Tell {
            core: ANY_CORE,
            dialect,
            hops: hops + 1,
            from,
            key,
            payload,
        };
        self.emit(node, &rec);
    }

    fn undeliverable(&self) {
        if let Some(l) = self.link.as_ref() {
            l.cluster
                .stats
                .undeliverable
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Reactor {
    /// A dialect's `Tell`: to this node's owner core of `key`, which sends it on to the
    /// owner node if that is another (see [`Reactor::told`]).
    pub(crate) fn tell(&mut self, dialect: u8, key: &str, from: Handle, payload: &[u8]) {
        let c = &mut self.core;
        let core = owner(key, c.shared.mailboxes.len());
        if core == c.id {
            self.told(dialect, 0, from, key, payload);
        } else {
            let rec = Record::Tell {
                core: core as u16,
                dialect,
                hops: 0,
                from,
                key,
                payload,
            };
            c.emit_core(core, &rec);
        }
    }

    /// A tell for a key whose owner core on this node this is: to the dialect once this node
    /// is known to own the key (in a cluster, a claim may be asked first).
    pub(crate) fn told(&mut self, dialect: u8, hops: u8, from: Handle, key: &str, payload: &[u8]) {
        let c = &mut self.core;
        if usize::from(dialect) >= c.dialects.len() {
            return;
        }
        if let Some(link) = c.link.as_mut() {
            if !link.told.owned.contains_key(key) {
                if let Some(&(node, until)) = link.told.hints.get(key) {
                    if until > c.now_ms && !link.cluster.is_gone(node) {
                        c.pass_on(node, dialect, hops, from, key, payload);
                        return;
                    }
                }
                let rec = Record::Tell {
                    core: c.id as u16,
                    dialect,
                    hops,
                    from,
                    key,
                    payload,
                };
                if let Some((waiting, _)) = link.told.asking.get_mut(key) {
                    if waiting.len() < MAX_WAITING {
                        rec.encode(waiting);
                    } else {
                        c.undeliverable();
                    }
                    return;
                }
                let job = Job::Claim {
                    core: c.id as u16,
                    waiter: None,
                    key: key.into(),
                };
                if link.cluster.submit(job).is_err() {
                    c.undeliverable();
                    return;
                }
                let mut waiting = Vec::new();
                rec.encode(&mut waiting);
                link.told.asking.insert(key.into(), (waiting, c.now_ms));
                return;
            }
        }
        call(c, usize::from(dialect), |d, cx| {
            d.on_told(cx, from, key, payload)
        });
    }

    /// Who owns a key that tells wait for: they go to the dialect here, or on to that node.
    pub(crate) fn key_claimed(&mut self, key: &str, node: Option<u16>) {
        let c = &mut self.core;
        let Some(link) = c.link.as_mut() else {
            return;
        };
        let Some(&(_, since)) = link.told.asking.get(key) else {
            return;
        };
        let now = c.now_ms;
        let dead =
            |n: u16| link.cluster.is_gone(n) || link.told.gone.get(&n).is_some_and(|&t| t > now);
        let wait = match node {
            // Its claim outlives it for a node timeout.
            Some(n) => n != c.node && dead(n),
            // Redis could not say (it is gone for now): for a while.
            None => now.saturating_sub(since) < MAX_WAIT_MS,
        };
        if wait {
            // Asked again soon, the tells waiting.
            link.told.retry.push(key.into());
            let delay = if node.is_some() {
                RETRY_MS
            } else {
                4 * RETRY_MS
            };
            link.told.retry_at.get_or_insert(now + delay);
            return;
        }
        let Some((waiting, _)) = link.told.asking.remove(key) else {
            return;
        };
        if let Some(n) = node.filter(|&n| n != c.node) {
            link.told
                .hint(key, n, c.now_ms + link.cluster.claim_ttl_ms());
            // What an instance here still holds for the key is stale (from before an outage,
            // when this node owned it): another node owns it now.
            if let Some(Ok(Record::Tell { dialect, .. })) = records(&waiting).next() {
                let d = usize::from(dialect);
                if c.dialects.holds(d, key) {
                    call(c, d, |dl, cx| dl.on_moved(cx, key));
                }
            }
        }
        for rec in records(&waiting).flatten() {
            let Record::Tell {
                dialect,
                hops,
                from,
                key,
                payload,
                ..
            } = rec
            else {
                continue;
            };
            let c = &mut self.core;
            match node {
                Some(n) if n == c.node => {
                    if let Some(link) = c.link.as_mut() {
                        link.told.owned.insert(key.into(), dialect);
                    }
                    call(c, usize::from(dialect), |d, cx| {
                        d.on_told(cx, from, key, payload)
                    });
                }
                Some(n) => c.pass_on(n, dialect, hops, from, key, payload),
                None => c.undeliverable(),
            }
        }
    }

    /// Ask again the claims that named a gone node, once their time came.
    pub(crate) fn retry_claims(&mut self) {
        let c = &mut self.core;
        let Some(link) = c.link.as_mut() else {
            return;
        };
        if !link.told.retry_at.is_some_and(|at| at <= c.now_ms) {
            return;
        }
        link.told.retry_at = None;
        for key in std::mem::take(&mut link.told.retry) {
            let job = Job::Claim {
                core: c.id as u16,
                waiter: None,
                key,
            };
            if let Err(Job::Claim { key, .. }) = link.cluster.submit(job) {
                // The queue is full: the tells are lost, as any the cluster cannot take.
                link.told.asking.remove(&key);
                let stats = &link.cluster.stats;
                stats.undeliverable.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A dialect's `Reply`: to the instance serving `to`, here or where `to` lives.
    pub(crate) fn reply(&mut self, to: Handle, payload: &[u8]) {
        let c = &mut self.core;
        if resolve(to).0 != c.here {
            c.emit_for(to, &Record::Reply { to, payload });
            return;
        }
        let Some(route) = live(&mut self.slots, c.here, to).and_then(|(_, s)| s.route()) else {
            return;
        };
        call(c, ROUTES[route].dialect, |d, cx| {
            d.on_reply(cx, to, payload)
        });
    }

    /// The keys this core's instances were told and still hold (their claims are kept);
    /// the others, and hints past their time, are forgotten.
    pub(crate) fn held_keys(&mut self) -> Vec<Box<str>> {
        let c = &mut self.core;
        let Some(link) = c.link.as_mut() else {
            return Vec::new();
        };
        let now = c.now_ms;
        link.told.hints.retain(|_, (_, until)| *until > now);
        let dialects = &c.dialects;
        link.told
            .owned
            .retain(|k, d| dialects.holds(usize::from(*d), k));
        link.told.owned.keys().cloned().collect()
    }

    /// Told keys owned here that another node claimed while this one was seen gone: tells go
    /// there now, and the dialect drops what it held for them. Returns those it owned, with
    /// their new owner.
    pub(crate) fn told_keys_taken<'k>(
        &mut self,
        taken: &'k [(Box<str>, u16)],
    ) -> Vec<(&'k str, u16)> {
        let c = &mut self.core;
        let Some(link) = c.link.as_mut() else {
            return Vec::new();
        };
        let until = c.now_ms + link.cluster.claim_ttl_ms();
        let mut moved = Vec::new();
        for (key, n) in taken {
            if let Some(d) = link.told.owned.remove(key) {
                link.told.hint(key, *n, until);
                moved.push((usize::from(d), &**key, *n));
            }
        }
        for &(d, key, _) in &moved {
            if c.dialects.holds(d, key) {
                call(c, d, |dl, cx| dl.on_moved(cx, key));
            }
        }
        moved.into_iter().map(|(_, k, n)| (k, n)).collect()
    }

    /// Nodes are gone: forget what was known of their keys, and this node's own claims too
    /// when it may have been seen gone itself (every other node is gone to it).
    pub(crate) fn forget_owners(&mut self, g: &Gone) {
        let c = &mut self.core;
        let Some(link) = c.link.as_mut() else {
            return;
        };
        match g {
            Gone::Nodes(v) => {
                let until = c.now_ms
                    + c.shared.cfg.cluster_options.node_timeout.as_millis() as u64
                    + RETRY_MS;
                link.told.hints.retain(|_, (n, _)| !v.contains(n));
                for n in v {
                    link.told.gone.insert(*n, until);
                }
                let now = c.now_ms;
                link.told.gone.retain(|_, t| *t > now);
            }
            Gone::All => {
                link.told.hints.clear();
                link.told.owned.clear();
            }
            // Live: what they own stays theirs.
            Gone::Lost(_) => {}
        }
    }

    /// Send what this turn queued for the other cores of this node.
    pub(crate) fn flush_cores(&mut self) {
        let c = &mut self.core;
        for (core, batch) in c.to_cores.drain(..) {
            if let Some(m) = c.shared.mailboxes.get(core) {
                let _ = m.send(CoreMsg::Records(batch));
            }
        }
    }
}
