//! The HTTP API's store as the server runs it (`proto::dialect::httpapi` is the protocol):
//! the channel table shared by every reactor, its durability, and its metrics.
//!
//! Requests are answered on the reactor that read them: the table is split into shards, each
//! behind its own mutex (the shard logic is `httpapi::store::Shard`), and the store-wide
//! limits are two atomic counters, so no request waits for another core's event loop and none
//! takes a lock over the whole store. (The alternative, placing each channel on one core and
//! forwarding requests there, would cost two cross-core hops per request on keep-alive
//! connections that touch many channels.)
//!
//! # Durability (`--state-dir`)
//!
//! Every mutation is appended, as a length-prefixed CRC32-checked record, to its shard's
//! in-memory pending buffer by the reactor that made it. One maintenance thread owns the file
//! `<state-dir>/api.log`: every `--state-sync-interval` it drains the pending buffers, appends
//! them with one `write`, and (with `--state-fsync`, the default) `fdatasync`s. Reactors never
//! write or fsync. A response may therefore be sent before its record is on disk: a crash
//! (`kill -9`, or power loss with fsync on) loses at most the mutations of the last interval,
//! plus the one write in progress. At start the file is replayed (expired channels skipped); a
//! record cut short or failing its CRC stops the replay there, the damaged file is kept as
//! `api.log.corrupt-<ms>` and a warning names the offset. Then, and every
//! `--state-compact-interval` if the log grew, the live channels are written to
//! `api.log.tmp`, fsynced, and renamed over `api.log` (and the directory fsynced). The thread
//! also sweeps expired channels once a second, with or without a state directory.

use crate::config::ApiConfig;
use crate::proto::dialect::httpapi::store::{
    self, shard_index, Budget, Id, Shard, Sharded, StoreLimits,
};
use crate::{error, info, warn};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Wall-clock milliseconds since the UNIX epoch; replaceable for tests.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    })
}

/// The store-wide limits in atomic counters.
struct SharedBudget {
    limits: StoreLimits,
    channels: AtomicUsize,
    bytes: AtomicUsize,
}

impl Budget for SharedBudget {
    fn add_channel(&self, force: bool) -> bool {
        let before = self.channels.fetch_add(1, Relaxed);
        if !force && before >= self.limits.max_channels {
            self.channels.fetch_sub(1, Relaxed);
            return false;
        }
        true
    }
    fn remove_channel(&self, charged: usize) {
        self.channels.fetch_sub(1, Relaxed);
        self.bytes.fetch_sub(charged, Relaxed);
    }
    fn charge(&self, n: usize, force: bool) -> bool {
        let before = self.bytes.fetch_add(n, Relaxed);
        if !force && before.saturating_add(n) > self.limits.max_bytes {
            self.bytes.fetch_sub(n, Relaxed);
            return false;
        }
        true
    }
    fn channels(&self) -> usize {
        self.channels.load(Relaxed)
    }
}

/// The channel table every reactor shares: shards behind their own locks.
pub struct SharedTable {
    shards: Box<[Mutex<Shard>]>,
    budget: SharedBudget,
    /// For `/metrics`: requests answered 200, answered with an error, and state-log writes
    /// that failed (all reactors and the maintenance thread add to them).
    answered_ok: AtomicU64,
    answered_error: AtomicU64,
    state_write_errors: AtomicU64,
    clock: Clock,
}

impl SharedTable {
    pub fn new(cfg: &ApiConfig, cores: usize, clock: Clock) -> SharedTable {
        let limits = StoreLimits {
            ttl_ms: cfg.ttl.as_millis() as u64,
            max_channels: cfg.max_channels,
            max_candidates: cfg.max_candidates,
            max_bytes: cfg.max_bytes,
        };
        let logging = cfg.state_dir.is_some();
        SharedTable {
            shards: (0..store::shards_for(cores))
                .map(|_| Mutex::new(Shard::new(logging)))
                .collect(),
            budget: SharedBudget {
                limits,
                channels: AtomicUsize::new(0),
                bytes: AtomicUsize::new(0),
            },
            answered_ok: AtomicU64::new(0),
            answered_error: AtomicU64::new(0),
            state_write_errors: AtomicU64::new(0),
            clock,
        }
    }

    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    pub fn len(&self) -> usize {
        self.budget.channels()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self, i: usize) -> MutexGuard<'_, Shard> {
        // A panic while a shard was locked cannot leave it inconsistent in a way that matters
        // more than losing the store; keep serving.
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drop every expired channel in every shard (for a periodic sweep).
    pub fn sweep(&self, now: u64) {
        for i in 0..self.shards.len() {
            self.lock(i).expire(now, &self.budget);
        }
    }

    /// The API's lines of `/metrics` (Prometheus text format).
    pub fn render_metrics(&self, o: &mut String) {
        use std::fmt::Write;
        let ok = self.answered_ok.load(Relaxed);
        let err = self.answered_error.load(Relaxed);
        let _ = writeln!(o, "# HELP sigyard_api_channels live channels in the HTTP API's store\n# TYPE sigyard_api_channels gauge\nsigyard_api_channels {}", self.len());
        let _ = writeln!(o, "# HELP sigyard_api_requests_total HTTP API method calls by outcome\n# TYPE sigyard_api_requests_total counter\nsigyard_api_requests_total{{outcome=\"ok\"}} {ok}\nsigyard_api_requests_total{{outcome=\"error\"}} {err}");
        let _ = writeln!(o, "# HELP sigyard_api_state_write_errors_total failed writes of the state log\n# TYPE sigyard_api_state_write_errors_total counter\nsigyard_api_state_write_errors_total {}", self.state_write_errors.load(Relaxed));
    }
}

impl Sharded for SharedTable {
    fn shard(&self, id: &Id) -> impl std::ops::DerefMut<Target = Shard> {
        self.lock(shard_index(id, self.shards.len()))
    }
    fn budget(&self) -> &dyn Budget {
        &self.budget
    }
    fn limits(&self) -> &StoreLimits {
        &self.budget.limits
    }
}

/// The table as a dialect's port: every core's instance holds one.
impl Sharded for Arc<SharedTable> {
    fn shard(&self, id: &Id) -> impl std::ops::DerefMut<Target = Shard> {
        (**self).shard(id)
    }
    fn budget(&self) -> &dyn Budget {
        (**self).budget()
    }
    fn limits(&self) -> &StoreLimits {
        (**self).limits()
    }
    fn answered(&self, ok: bool) {
        let counter = if ok {
            &self.answered_ok
        } else {
            &self.answered_error
        };
        counter.fetch_add(1, Relaxed);
    }
}

// ── durability ──────────────────────────────────────────────────────────────────────────────

/// The state log file of one store.
struct StateLog {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    /// Bytes in the file now, and right after the last compaction.
    size: u64,
    compacted_size: u64,
    fsync: bool,
}

impl StateLog {
    /// Open (creating) `dir/api.log`, replay it into `table`, and compact it.
    fn open(dir: &Path, table: &SharedTable, fsync: bool) -> io::Result<StateLog> {
        fs::create_dir_all(dir)?;
        let path = dir.join("api.log");
        let now = table.now();
        match File::open(&path) {
            Ok(mut f) => {
                let mut bytes = Vec::new();
                f.read_to_end(&mut bytes)?;
                let r = store::replay(&bytes, |payload, r| {
                    table
                        .shard(&store::record_id(payload))
                        .apply(payload, now, r, &table.budget)
                });
                info!(
                    "state: replayed {} records from {}: {} live channels, {} expired",
                    r.records,
                    path.display(),
                    r.channels,
                    r.expired
                );
                if let Some((at, why)) = r.stopped {
                    let keep = dir.join(format!("api.log.corrupt-{now}"));
                    warn!(
                        "state: {}: {why} at byte {at}; replay stopped there, {} bytes after it ignored; the damaged file is kept as {}",
                        path.display(),
                        bytes.len() - r.valid_len,
                        keep.display()
                    );
                    fs::copy(&path, &keep)?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut log = StateLog {
            dir: dir.to_path_buf(),
            file: OpenOptions::new().create(true).append(true).open(&path)?,
            path,
            size: 0,
            compacted_size: 0,
            fsync,
        };
        log.compact(table, now)?;
        Ok(log)
    }

    /// Append every shard's pending records; fsync per policy.
    fn flush(&mut self, table: &SharedTable, buf: &mut Vec<u8>) -> io::Result<()> {
        buf.clear();
        for i in 0..table.shards.len() {
            buf.extend(table.lock(i).take_log());
        }
        if buf.is_empty() {
            return Ok(());
        }
        self.file.write_all(buf)?;
        self.size += buf.len() as u64;
        if self.fsync {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Rewrite the log from the live channels: temp file, fsync, rename, fsync the directory.
    fn compact(&mut self, table: &SharedTable, now: u64) -> io::Result<()> {
        let tmp = self.dir.join("api.log.tmp");
        let mut f = File::create(&tmp)?;
        let mut buf = store::LOG_MAGIC.to_vec();
        let mut size = 0u64;
        for i in 0..table.shards.len() {
            table.lock(i).snapshot(now, &mut buf, &table.budget);
            if buf.len() >= 1 << 20 {
                f.write_all(&buf)?;
                size += buf.len() as u64;
                buf.clear();
            }
        }
        f.write_all(&buf)?;
        size += buf.len() as u64;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &self.path)?;
        File::open(&self.dir)?.sync_all()?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.size = size;
        self.compacted_size = size;
        Ok(())
    }
}

/// The maintenance thread: sweeps expired channels and owns the state log.
pub struct Maintenance {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: JoinHandle<()>,
}

impl Maintenance {
    /// Replay the state log (if any) into `table`, then start the thread. Errors opening or
    /// replaying the log stop the start.
    pub fn start(table: Arc<SharedTable>, cfg: &ApiConfig) -> io::Result<Maintenance> {
        let api = table;
        let mut log = match &cfg.state_dir {
            Some(dir) => Some(StateLog::open(dir, &api, cfg.state_fsync)?),
            None => None,
        };
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let (sync_every, compact_every) = (cfg.state_sync_interval, cfg.state_compact_interval);
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sigyard-api".into())
            .spawn(move || {
                let tick = sync_every.min(Duration::from_secs(1));
                let (mut last_sweep, mut last_compact) = (Instant::now(), Instant::now());
                let mut buf = Vec::new();
                let mut failing = false;
                // After a failed write the pending records it took are not in the file: only a
                // full rewrite from memory makes the file whole again.
                let mut must_compact = false;
                loop {
                    let stopping = {
                        let (lock, cv) = &*flag;
                        let g = lock.lock().unwrap_or_else(|p| p.into_inner());
                        let (g, _) = cv
                            .wait_timeout_while(g, tick, |s| !*s)
                            .unwrap_or_else(|p| p.into_inner());
                        *g
                    };
                    if last_sweep.elapsed() >= Duration::from_secs(1) {
                        api.sweep(api.now());
                        last_sweep = Instant::now();
                    }
                    if let Some(log) = log.as_mut() {
                        let mut result = log.flush(&api, &mut buf);
                        let grew = log.size > log.compacted_size;
                        let due = grew && last_compact.elapsed() >= compact_every;
                        if result.is_ok() && (must_compact || due) {
                            result = log.compact(&api, api.now());
                            last_compact = Instant::now();
                        }
                        must_compact = result.is_err();
                        if result.is_err() {
                            api.state_write_errors.fetch_add(1, Relaxed);
                        }
                        match result {
                            Ok(()) if failing => {
                                info!("state: writing {} works again", log.path.display());
                                failing = false;
                            }
                            Ok(()) => {}
                            Err(e) if !failing => {
                                error!("state: cannot write {}: {e}", log.path.display());
                                failing = true;
                            }
                            Err(_) => {}
                        }
                    }
                    if stopping {
                        break;
                    }
                }
            })?;
        Ok(Maintenance { stop, thread })
    }

    /// Write what is pending, fsync, and end the thread.
    pub fn stop(self) {
        let (lock, cv) = &*self.stop;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
        let _ = self.thread.join();
    }
}
