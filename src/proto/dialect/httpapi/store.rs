//! The channel store of the HTTP API: channels keyed by their UUID, each with an offer, an
//! answer and one list of candidates, living exactly `ttl` from creation.
//!
//! # Ownership across reactors
//!
//! The store is split into independent shards (a power of two, at least four per reactor
//! core), each behind its own mutex; a channel lives in the shard its id hashes to. A request
//! locks one shard for the few microseconds its method takes, so requests on different cores
//! meet on a lock only when they touch the same shard, and no lock spans the whole store. The
//! only process-wide state is two atomic counters (channels, bytes) for the limits.
//!
//! # Expiry
//!
//! Each shard keeps a min-heap of `(expiry, id)`. Whenever a shard is locked, the entries whose
//! time has come are popped and their channels removed: the cost is proportional to what
//! expires, never a scan. A lookup also treats a channel at or past its expiry as gone, so
//! expiry is exact to the millisecond whether or not a sweep ran. [`Table::sweep`] does the
//! same for every shard and is called periodically, so idle shards free their memory too.
//!
//! # Durability records
//!
//! With logging on, every mutation appends a record to its shard's pending buffer, under the
//! same lock, so a channel's records are in mutation order. The shell drains the buffers into
//! its append-only file ([`Table::take_log`]), replays a file at start ([`Table::replay`]) and
//! rewrites it from the live channels ([`Table::snapshot`]). A record is
//! `len: u32 LE, crc32(payload): u32 LE, payload`, payload = `kind: u8, id: [u8; 16]` then
//! `expiry_ms: u64 LE` (create) or the value's JSON text (offer, answer, candidate). The file
//! starts with [`LOG_MAGIC`].
//!
//! Time is a parameter (`now`, milliseconds since the UNIX epoch): nothing here reads a clock.
//! Ids are given by the caller.

use super::json::Value;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// The first bytes of a log file (format version 1).
pub const LOG_MAGIC: &[u8; 8] = b"SGYAPI01";
/// Record header: length and CRC32.
pub const RECORD_HEADER: usize = 8;

/// A channel id: the 16 bytes of a UUID.
pub type Id = [u8; 16];

/// The store's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Channel lifetime from creation, in milliseconds.
    pub ttl_ms: u64,
    /// Most live channels in the whole store.
    pub max_channels: usize,
    /// Most candidates in one channel.
    pub max_candidates: usize,
    /// Most bytes of stored values in the whole store (each value counted at the size of the
    /// request that stored it, or of its record when replayed).
    pub max_bytes: usize,
}

/// One channel.
#[derive(Debug, Clone)]
pub struct Channel {
    pub expires: u64,
    pub offer: Option<Value>,
    pub answer: Option<Value>,
    pub candidates: Vec<Value>,
    /// Bytes charged to this channel (returned to the budget when it goes).
    charged: usize,
}

/// Why a write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    NotFound,
    /// A limit (channels, bytes, candidates) is reached.
    Full,
    /// `create_answer` when there is one already.
    AnswerExists,
    /// `create` with an id that exists.
    Exists,
}

#[derive(Default)]
struct Shard {
    map: HashMap<Id, Channel>,
    expiry: BinaryHeap<Reverse<(u64, Id)>>,
    /// Pending log records; `None` when logging is off.
    log: Option<Vec<u8>>,
}

/// Record kinds.
const CREATE: u8 = 1;
const OFFER: u8 = 2;
const ANSWER: u8 = 3;
const CANDIDATE: u8 = 4;

/// The sharded channel table.
pub struct Table {
    shards: Box<[Mutex<Shard>]>,
    limits: StoreLimits,
    channels: AtomicUsize,
    bytes: AtomicUsize,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("shards", &self.shards.len())
            .field("channels", &self.len())
            .finish()
    }
}

/// Shards for `cores` reactor threads: a power of two, at least four per core.
pub fn shards_for(cores: usize) -> usize {
    (4 * cores.max(1)).next_power_of_two()
}

impl Table {
    /// An empty table with `shards` shards (rounded up to a power of two); `logging` turns on
    /// the durability records.
    pub fn new(limits: StoreLimits, shards: usize, logging: bool) -> Table {
        let n = shards.max(1).next_power_of_two();
        let shards = (0..n)
            .map(|_| {
                Mutex::new(Shard {
                    log: logging.then(Vec::new),
                    ..Shard::default()
                })
            })
            .collect();
        Table {
            shards,
            limits,
            channels: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
        }
    }

    pub fn limits(&self) -> &StoreLimits {
        &self.limits
    }

    /// Live channels (including expired ones not yet swept).
    pub fn len(&self) -> usize {
        self.channels.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    fn shard_of(&self, id: &Id) -> usize {
        (crate::proto::route::stable_hash(id) as usize) & (self.shards.len() - 1)
    }

    /// Lock shard `i` and drop what has expired by `now`.
    fn lock(&self, i: usize, now: u64) -> MutexGuard<'_, Shard> {
        // A panic while a shard was locked cannot leave it inconsistent in a way that matters
        // more than losing the store; keep serving.
        let mut s = self.shards[i].lock().unwrap_or_else(|p| p.into_inner());
        self.expire(&mut s, now);
        s
    }

    fn expire(&self, s: &mut Shard, now: u64) {
        while let Some(Reverse((at, id))) = s.expiry.peek().copied() {
            if at > now {
                break;
            }
            s.expiry.pop();
            if s.map.get(&id).is_some_and(|c| c.expires == at) {
                if let Some(c) = s.map.remove(&id) {
                    self.channels.fetch_sub(1, Ordering::Relaxed);
                    self.bytes.fetch_sub(c.charged, Ordering::Relaxed);
                }
            }
        }
    }

    /// Drop every expired channel in every shard (for a periodic sweep).
    pub fn sweep(&self, now: u64) {
        for i in 0..self.shards.len() {
            drop(self.lock(i, now));
        }
    }

    fn charge(&self, n: usize) -> bool {
        let before = self.bytes.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > self.limits.max_bytes {
            self.bytes.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Create channel `id`, living until `now + ttl`.
    pub fn create(&self, id: Id, now: u64) -> Result<(), WriteError> {
        let expires = now.saturating_add(self.limits.ttl_ms);
        self.insert(id, expires, now, true)
    }

    fn insert(&self, id: Id, expires: u64, now: u64, check: bool) -> Result<(), WriteError> {
        let mut s = self.lock(self.shard_of(&id), now);
        if s.map.contains_key(&id) {
            return Err(WriteError::Exists);
        }
        let before = self.channels.fetch_add(1, Ordering::Relaxed);
        if check && before >= self.limits.max_channels {
            self.channels.fetch_sub(1, Ordering::Relaxed);
            return Err(WriteError::Full);
        }
        s.map.insert(
            id,
            Channel {
                expires,
                offer: None,
                answer: None,
                candidates: Vec::new(),
                charged: 0,
            },
        );
        s.expiry.push(Reverse((expires, id)));
        if let Some(log) = s.log.as_mut() {
            push_record(log, CREATE, &id, &expires.to_le_bytes());
        }
        Ok(())
    }

    /// Run `f` on live channel `id` (read-only); `None` if there is none.
    pub fn read<R>(&self, id: &Id, now: u64, f: impl FnOnce(&Channel) -> R) -> Option<R> {
        let s = self.lock(self.shard_of(id), now);
        s.map.get(id).filter(|c| c.expires > now).map(f)
    }

    /// Store `value` as the channel's offer (replacing any), charging `cost` bytes.
    pub fn set_offer(&self, id: &Id, value: Value, cost: usize, now: u64) -> WriteResult {
        self.write(id, now, cost, OFFER, value, true)
    }

    /// Store `value` as the channel's answer, unless it has one.
    pub fn set_answer(&self, id: &Id, value: Value, cost: usize, now: u64) -> WriteResult {
        self.write(id, now, cost, ANSWER, value, true)
    }

    /// Append `value` to the channel's candidates unless an equal one is there (still `Ok`).
    pub fn add_candidate(&self, id: &Id, value: Value, cost: usize, now: u64) -> WriteResult {
        self.write(id, now, cost, CANDIDATE, value, true)
    }

    fn write(
        &self,
        id: &Id,
        now: u64,
        cost: usize,
        kind: u8,
        value: Value,
        check: bool,
    ) -> WriteResult {
        let mut guard = self.lock(self.shard_of(id), now);
        let s = &mut *guard;
        let Some(c) = s.map.get_mut(id).filter(|c| c.expires > now) else {
            return Err(WriteError::NotFound);
        };
        match kind {
            ANSWER if c.answer.is_some() => return Err(WriteError::AnswerExists),
            CANDIDATE if c.candidates.contains(&value) => return Ok(()),
            CANDIDATE if check && c.candidates.len() >= self.limits.max_candidates => {
                return Err(WriteError::Full)
            }
            _ => {}
        }
        if check && !self.charge(cost) {
            return Err(WriteError::Full);
        }
        if !check {
            self.bytes.fetch_add(cost, Ordering::Relaxed);
        }
        c.charged += cost;
        if let Some(log) = s.log.as_mut() {
            push_record(log, kind, id, value.to_py_json().as_bytes());
        }
        match kind {
            OFFER => c.offer = Some(value),
            ANSWER => c.answer = Some(value),
            _ => c.candidates.push(value),
        }
        Ok(())
    }

    /// Take shard `i`'s pending log records (empty when logging is off).
    pub fn take_log(&self, i: usize) -> Vec<u8> {
        let mut s = self.shards[i].lock().unwrap_or_else(|p| p.into_inner());
        match s.log.as_mut() {
            Some(log) => std::mem::take(log),
            None => Vec::new(),
        }
    }

    /// Records that recreate shard `i`'s live channels, appended to `out`; the shard's pending
    /// records are dropped (the snapshot includes their effect). For compaction.
    pub fn snapshot(&self, i: usize, now: u64, out: &mut Vec<u8>) {
        let mut s = self.lock(i, now);
        if let Some(log) = s.log.as_mut() {
            log.clear();
        }
        for (id, c) in s.map.iter().filter(|(_, c)| c.expires > now) {
            push_record(out, CREATE, id, &c.expires.to_le_bytes());
            if let Some(v) = &c.offer {
                push_record(out, OFFER, id, v.to_py_json().as_bytes());
            }
            if let Some(v) = &c.answer {
                push_record(out, ANSWER, id, v.to_py_json().as_bytes());
            }
            for v in &c.candidates {
                push_record(out, CANDIDATE, id, v.to_py_json().as_bytes());
            }
        }
    }

    /// Apply the records of a log file (magic included) at `now`: expired channels are
    /// skipped, and so are records for channels that do not exist. Replay stops at the first
    /// record that is cut short, fails its CRC or does not decode; the report says where.
    /// Records are applied without the limits (they were within them when written); nothing
    /// is logged.
    pub fn replay(&self, file: &[u8], now: u64) -> Replay {
        let mut r = Replay::default();
        let Some(mut rest) = file.strip_prefix(LOG_MAGIC.as_slice()) else {
            r.stopped = Some((0, "not a sigyard API log (bad magic)"));
            return r;
        };
        let mut offset = LOG_MAGIC.len();
        r.valid_len = offset;
        while !rest.is_empty() {
            let (payload, used) = match parse_record(rest) {
                Ok(p) => p,
                Err(why) => {
                    r.stopped = Some((offset, why));
                    break;
                }
            };
            r.records += 1;
            r.valid_len = offset + used;
            self.apply(payload, now, &mut r);
            rest = &rest[used..];
            offset += used;
        }
        if r.stopped.is_none() {
            r.valid_len = file.len();
        }
        r
    }

    fn apply(&self, payload: &[u8], now: u64, r: &mut Replay) {
        let (kind, id, body) = (payload[0], &payload[1..17], &payload[17..]);
        let mut key = [0u8; 16];
        key.copy_from_slice(id);
        if kind == CREATE {
            let mut e = [0u8; 8];
            e.copy_from_slice(body);
            let expires = u64::from_le_bytes(e);
            if expires <= now {
                r.expired += 1;
            } else if self.insert(key, expires, now, false).is_ok() {
                r.channels += 1;
            }
            return;
        }
        // Decoded and checked by `parse_record`.
        let Some(value) = Value::parse(body) else {
            return;
        };
        let _ = self.write(&key, now, body.len(), kind, value, false);
    }
}

pub type WriteResult = Result<(), WriteError>;

/// What [`Table::replay`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replay {
    /// Records read (valid ones).
    pub records: usize,
    /// Channels restored (live).
    pub channels: usize,
    /// Channels skipped because they had expired.
    pub expired: usize,
    /// Length of the file's valid prefix (magic and whole, intact records).
    pub valid_len: usize,
    /// Where replay stopped early (byte offset of the bad record) and why.
    pub stopped: Option<(usize, &'static str)>,
}

/// Most bytes of one record's payload: a value is at most a request body, and bodies are
/// limited to far less (the limit here only rejects garbage lengths).
pub const MAX_RECORD: usize = 64 << 20;

fn push_record(out: &mut Vec<u8>, kind: u8, id: &Id, body: &[u8]) {
    let len = 1 + id.len() + body.len();
    let mut crc = Crc32::new();
    crc.update(&[kind]);
    crc.update(id);
    crc.update(body);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&crc.finish().to_le_bytes());
    out.push(kind);
    out.extend_from_slice(id);
    out.extend_from_slice(body);
}

/// One record from the start of `buf` (after the magic): its payload (kind, id, body), checked
/// against its CRC and decoded, and its total length; or why it is not a whole valid record.
pub fn parse_record(buf: &[u8]) -> Result<(&[u8], usize), &'static str> {
    if buf.len() < RECORD_HEADER {
        return Err("record header cut short");
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if !(17..=MAX_RECORD).contains(&len) {
        return Err("impossible record length");
    }
    let Some(payload) = buf.get(RECORD_HEADER..RECORD_HEADER + len) else {
        return Err("record cut short");
    };
    let mut c = Crc32::new();
    c.update(payload);
    if c.finish() != crc {
        return Err("record checksum mismatch");
    }
    let ok = match payload[0] {
        CREATE => len == 17 + 8,
        OFFER | ANSWER | CANDIDATE => Value::parse(&payload[17..]).is_some(),
        _ => false,
    };
    if !ok {
        return Err("record does not decode");
    }
    Ok((payload, RECORD_HEADER + len))
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), table-driven.
#[derive(Debug, Clone, Copy)]
pub struct Crc32(u32);

const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

impl Crc32 {
    pub fn new() -> Crc32 {
        Crc32(!0)
    }
    pub fn update(&mut self, bytes: &[u8]) {
        let mut c = self.0;
        for &b in bytes {
            c = CRC_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
        }
        self.0 = c;
    }
    pub fn finish(self) -> u32 {
        !self.0
    }
}

impl Default for Crc32 {
    fn default() -> Self {
        Crc32::new()
    }
}

/// Parse the canonical lowercase form of a UUID (`8-4-4-4-12` hex digits).
pub fn parse_id(s: &str) -> Option<Id> {
    let b = s.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let mut id = [0u8; 16];
    let mut n = 0;
    let mut i = 0;
    while i < 36 {
        if matches!(i, 8 | 13 | 18 | 23) {
            if b[i] != b'-' {
                return None;
            }
            i += 1;
            continue;
        }
        let hi = hex(b[i])?;
        let lo = hex(b[i + 1])?;
        id[n] = hi << 4 | lo;
        n += 1;
        i += 2;
    }
    Some(id)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
