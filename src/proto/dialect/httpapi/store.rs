//! The channel store of the HTTP API: channels keyed by their UUID, each with an offer, an
//! answer and one list of candidates, living exactly `ttl` from creation.
//!
//! # Shards and the budget
//!
//! The store is made of [`Shard`]s; a channel lives in the shard its id hashes to
//! ([`shard_index`]). A shard is plain single-threaded data: whoever owns it serializes the
//! calls. The limits on the whole store (channels, bytes) are kept by a [`Budget`] the shards
//! share. [`Table`] is the single-threaded store (tests, fuzzing, one-thread embedders); the
//! server's store keeps each shard behind its own lock and the budget in atomic counters
//! (`crate::api::SharedTable`), so a request on any reactor locks one shard for the few
//! microseconds its method takes.
//!
//! # Expiry
//!
//! Each shard keeps a min-heap of `(expiry, id)`. Whenever a shard is used, the entries whose
//! time has come are popped and their channels removed: the cost is proportional to what
//! expires, never a scan. A lookup also treats a channel at or past its expiry as gone, so
//! expiry is exact to the millisecond whether or not a sweep ran.
//!
//! # Durability records
//!
//! With logging on, every mutation appends a record to its shard's pending buffer, in
//! mutation order. The shell drains the buffers into its append-only file
//! ([`Shard::take_log`]), replays a file at start ([`replay`]) and rewrites it from the live
//! channels ([`Shard::snapshot`]). A record is `len: u32 LE, crc32(payload): u32 LE, payload`,
//! payload = `kind: u8, id: [u8; 16]` then `expiry_ms: u64 LE` (create) or the value's JSON
//! text (offer, answer, candidate). The file starts with [`LOG_MAGIC`].
//!
//! Time is a parameter (`now`, milliseconds since the UNIX epoch): nothing here reads a clock.
//! Ids are given by the caller.

use super::json::Value;
use super::Channels;
use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

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

/// The limits on the whole store, shared by its shards. `force` skips the limit (replaying
/// records that were within it when written) but still counts.
pub trait Budget {
    /// Count one more channel, unless the limit is reached.
    fn add_channel(&self, force: bool) -> bool;
    /// A channel went, with the bytes charged to it.
    fn remove_channel(&self, charged: usize);
    /// Charge `bytes`, unless the limit would be passed.
    fn charge(&self, bytes: usize, force: bool) -> bool;
    /// Live channels (including expired ones not yet swept).
    fn channels(&self) -> usize;
}

/// A [`Budget`] for one thread.
#[derive(Debug)]
pub struct LocalBudget {
    limits: StoreLimits,
    channels: Cell<usize>,
    bytes: Cell<usize>,
}

impl LocalBudget {
    pub fn new(limits: StoreLimits) -> Self {
        LocalBudget {
            limits,
            channels: Cell::new(0),
            bytes: Cell::new(0),
        }
    }
}

impl Budget for LocalBudget {
    fn add_channel(&self, force: bool) -> bool {
        if !force && self.channels.get() >= self.limits.max_channels {
            return false;
        }
        self.channels.set(self.channels.get() + 1);
        true
    }
    fn remove_channel(&self, charged: usize) {
        self.channels.set(self.channels.get().saturating_sub(1));
        self.bytes.set(self.bytes.get().saturating_sub(charged));
    }
    fn charge(&self, bytes: usize, force: bool) -> bool {
        let total = self.bytes.get().saturating_add(bytes);
        if !force && total > self.limits.max_bytes {
            return false;
        }
        self.bytes.set(total);
        true
    }
    fn channels(&self) -> usize {
        self.channels.get()
    }
}

/// Record kinds.
const CREATE: u8 = 1;
const OFFER: u8 = 2;
const ANSWER: u8 = 3;
const CANDIDATE: u8 = 4;

/// Shards for `cores` reactor threads: a power of two, at least four per core.
pub fn shards_for(cores: usize) -> usize {
    (4 * cores.max(1)).next_power_of_two()
}

/// The shard of `id` among `shards` (a power of two).
pub fn shard_index(id: &Id, shards: usize) -> usize {
    (crate::proto::hash::stable_hash(id) as usize) & (shards - 1)
}

/// One shard: its channels, their expiry heap, and its pending log records.
#[derive(Default)]
pub struct Shard {
    map: HashMap<Id, Channel>,
    expiry: BinaryHeap<Reverse<(u64, Id)>>,
    /// Pending log records; `None` when logging is off.
    log: Option<Vec<u8>>,
}

impl Shard {
    pub fn new(logging: bool) -> Shard {
        Shard {
            log: logging.then(Vec::new),
            ..Shard::default()
        }
    }

    /// Drop what has expired by `now`.
    pub fn expire(&mut self, now: u64, b: &dyn Budget) {
        while let Some(Reverse((at, id))) = self.expiry.peek().copied() {
            if at > now {
                break;
            }
            self.expiry.pop();
            if self.map.get(&id).is_some_and(|c| c.expires == at) {
                if let Some(c) = self.map.remove(&id) {
                    b.remove_channel(c.charged);
                }
            }
        }
    }

    /// Create channel `id`, living until `expires` (`force`: without the channel limit).
    pub fn insert(
        &mut self,
        id: Id,
        expires: u64,
        now: u64,
        force: bool,
        b: &dyn Budget,
    ) -> Result<(), WriteError> {
        self.expire(now, b);
        if self.map.contains_key(&id) {
            return Err(WriteError::Exists);
        }
        if !b.add_channel(force) {
            return Err(WriteError::Full);
        }
        self.map.insert(
            id,
            Channel {
                expires,
                offer: None,
                answer: None,
                candidates: Vec::new(),
                charged: 0,
            },
        );
        self.expiry.push(Reverse((expires, id)));
        if let Some(log) = self.log.as_mut() {
            push_record(log, CREATE, &id, &expires.to_le_bytes());
        }
        Ok(())
    }

    /// Live channel `id`, if there is one.
    pub fn read(&mut self, id: &Id, now: u64, b: &dyn Budget) -> Option<&Channel> {
        self.expire(now, b);
        self.map.get(id).filter(|c| c.expires > now)
    }

    /// Apply a write of `kind` (offer, answer, candidate), charging `cost` bytes (`force`:
    /// without the limits).
    #[allow(clippy::too_many_arguments)] // the write and its context, passed explicitly
    fn write(
        &mut self,
        id: &Id,
        now: u64,
        cost: usize,
        kind: u8,
        value: Value,
        force: bool,
        limits: &StoreLimits,
        b: &dyn Budget,
    ) -> WriteResult {
        self.expire(now, b);
        let Some(c) = self.map.get_mut(id).filter(|c| c.expires > now) else {
            return Err(WriteError::NotFound);
        };
        match kind {
            ANSWER if c.answer.is_some() => return Err(WriteError::AnswerExists),
            CANDIDATE if c.candidates.contains(&value) => return Ok(()),
            CANDIDATE if !force && c.candidates.len() >= limits.max_candidates => {
                return Err(WriteError::Full)
            }
            _ => {}
        }
        if !b.charge(cost, force) {
            return Err(WriteError::Full);
        }
        c.charged += cost;
        if let Some(log) = self.log.as_mut() {
            push_record(log, kind, id, value.to_py_json().as_bytes());
        }
        match kind {
            OFFER => c.offer = Some(value),
            ANSWER => c.answer = Some(value),
            _ => c.candidates.push(value),
        }
        Ok(())
    }

    /// Store `value` as the channel's offer (replacing any).
    pub fn set_offer(&mut self, w: Write<'_>, value: Value) -> WriteResult {
        self.write(w.id, w.now, w.cost, OFFER, value, false, w.limits, w.budget)
    }

    /// Store `value` as the channel's answer, unless it has one.
    pub fn set_answer(&mut self, w: Write<'_>, value: Value) -> WriteResult {
        self.write(
            w.id, w.now, w.cost, ANSWER, value, false, w.limits, w.budget,
        )
    }

    /// Append `value` to the channel's candidates unless an equal one is there (still `Ok`).
    pub fn add_candidate(&mut self, w: Write<'_>, value: Value) -> WriteResult {
        self.write(
            w.id, w.now, w.cost, CANDIDATE, value, false, w.limits, w.budget,
        )
    }

    /// Take the pending log records (empty when logging is off).
    pub fn take_log(&mut self) -> Vec<u8> {
        match self.log.as_mut() {
            Some(log) => std::mem::take(log),
            None => Vec::new(),
        }
    }

    /// Records that recreate the live channels, appended to `out`; the pending records are
    /// dropped (the snapshot includes their effect). For compaction.
    pub fn snapshot(&mut self, now: u64, out: &mut Vec<u8>, b: &dyn Budget) {
        self.expire(now, b);
        if let Some(log) = self.log.as_mut() {
            log.clear();
        }
        for (id, c) in self.map.iter().filter(|(_, c)| c.expires > now) {
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

    /// Apply one replayed record (checked by [`parse_record`]) without the limits and without
    /// logging it again.
    pub fn apply(&mut self, payload: &[u8], now: u64, r: &mut Replay, b: &dyn Budget) {
        let (kind, body) = (payload[0], &payload[17..]);
        let id = record_id(payload);
        let log = self.log.take();
        if kind == CREATE {
            let mut e = [0u8; 8];
            e.copy_from_slice(body);
            let expires = u64::from_le_bytes(e);
            if expires <= now {
                r.expired += 1;
            } else if self.insert(id, expires, now, true, b).is_ok() {
                r.channels += 1;
            }
        } else if let Some(value) = Value::parse(body) {
            let limits = StoreLimits {
                ttl_ms: 0,
                max_channels: usize::MAX,
                max_candidates: usize::MAX,
                max_bytes: usize::MAX,
            };
            let _ = self.write(&id, now, body.len(), kind, value, true, &limits, b);
        }
        self.log = log;
    }
}

/// A write's target and context.
#[derive(Clone, Copy)]
pub struct Write<'a> {
    pub id: &'a Id,
    pub now: u64,
    /// Bytes to charge (the request's size).
    pub cost: usize,
    pub limits: &'a StoreLimits,
    pub budget: &'a dyn Budget,
}

/// The channel id of a record's payload.
pub fn record_id(payload: &[u8]) -> Id {
    let mut id = [0u8; 16];
    id.copy_from_slice(&payload[1..17]);
    id
}

/// Read the records of a log file (magic included), handing each valid one to `apply` in
/// order. Stops at the first record that is cut short, fails its CRC or does not decode; the
/// report says where.
pub fn replay(file: &[u8], mut apply: impl FnMut(&[u8], &mut Replay)) -> Replay {
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
        apply(payload, &mut r);
        rest = &rest[used..];
        offset += used;
    }
    if r.stopped.is_none() {
        r.valid_len = file.len();
    }
    r
}

/// The single-threaded store: shards in cells, the budget in plain counters.
pub struct Table {
    shards: Box<[RefCell<Shard>]>,
    limits: StoreLimits,
    budget: LocalBudget,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("shards", &self.shards.len())
            .field("channels", &self.len())
            .finish()
    }
}

impl Table {
    /// An empty table with `shards` shards (rounded up to a power of two); `logging` turns on
    /// the durability records.
    pub fn new(limits: StoreLimits, shards: usize, logging: bool) -> Table {
        let n = shards.max(1).next_power_of_two();
        Table {
            shards: (0..n).map(|_| RefCell::new(Shard::new(logging))).collect(),
            limits,
            budget: LocalBudget::new(limits),
        }
    }

    pub fn limits(&self) -> &StoreLimits {
        &self.limits
    }

    /// Live channels (including expired ones not yet swept).
    pub fn len(&self) -> usize {
        self.budget.channels()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Drop every expired channel in every shard.
    pub fn sweep(&self, now: u64) {
        for s in self.shards.iter() {
            s.borrow_mut().expire(now, &self.budget);
        }
    }

    /// Run `f` on live channel `id` (read-only); `None` if there is none.
    pub fn read<R>(&self, id: &Id, now: u64, f: impl FnOnce(&Channel) -> R) -> Option<R> {
        self.shard(id).read(id, now, &self.budget).map(f)
    }

    /// Take shard `i`'s pending log records (empty when logging is off).
    pub fn take_log(&self, i: usize) -> Vec<u8> {
        self.shards[i].borrow_mut().take_log()
    }

    /// Records that recreate shard `i`'s live channels, appended to `out`.
    pub fn snapshot(&self, i: usize, now: u64, out: &mut Vec<u8>) {
        self.shards[i].borrow_mut().snapshot(now, out, &self.budget);
    }

    /// Apply the records of a log file at `now` (see [`replay`]): expired channels are
    /// skipped, and so are records for channels that do not exist.
    pub fn replay(&self, file: &[u8], now: u64) -> Replay {
        replay(file, |payload, r| {
            self.shard(&record_id(payload))
                .apply(payload, now, r, &self.budget)
        })
    }
}

impl Sharded for Table {
    fn shard(&self, id: &Id) -> impl std::ops::DerefMut<Target = Shard> {
        self.shards[shard_index(id, self.shards.len())].borrow_mut()
    }
    fn budget(&self) -> &dyn Budget {
        &self.budget
    }
    fn limits(&self) -> &StoreLimits {
        &self.limits
    }
}

/// A store made of shards, each reached through some guard (a `RefCell` borrow, a mutex).
/// Every such store is the API's [`Channels`].
pub trait Sharded {
    /// The shard holding `id`, for the time of one method.
    fn shard(&self, id: &Id) -> impl std::ops::DerefMut<Target = Shard>;
    fn budget(&self) -> &dyn Budget;
    fn limits(&self) -> &StoreLimits;
    /// See [`Channels::answered`].
    fn answered(&self, ok: bool) {
        let _ = ok;
    }
}

impl<T: Sharded> Channels for T {
    fn create(&self, id: Id, now: u64) -> Result<(), WriteError> {
        let expires = now.saturating_add(self.limits().ttl_ms);
        self.shard(&id)
            .insert(id, expires, now, false, self.budget())
    }
    fn read_with(&self, id: &Id, now: u64, f: &mut dyn FnMut(&Channel)) -> bool {
        let mut s = self.shard(id);
        s.read(id, now, self.budget()).map(f).is_some()
    }
    fn set_offer(&self, id: &Id, value: Value, cost: usize, now: u64) -> WriteResult {
        self.shard(id)
            .set_offer(write_ctx(self, id, now, cost), value)
    }
    fn set_answer(&self, id: &Id, value: Value, cost: usize, now: u64) -> WriteResult {
        self.shard(id)
            .set_answer(write_ctx(self, id, now, cost), value)
    }
    fn add_candidate(&self, id: &Id, value: Value, cost: usize, now: u64) -> WriteResult {
        self.shard(id)
            .add_candidate(write_ctx(self, id, now, cost), value)
    }
    fn answered(&self, ok: bool) {
        Sharded::answered(self, ok)
    }
}

fn write_ctx<'a>(t: &'a impl Sharded, id: &'a Id, now: u64, cost: usize) -> Write<'a> {
    Write {
        id,
        now,
        cost,
        limits: t.limits(),
        budget: t.budget(),
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
