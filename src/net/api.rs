//! The shell around the HTTP API (`proto::dialect::httpapi`): which requests are the API's,
//! CORS, the clock and ids it is given, and the durability of its channel store.
//!
//! Requests are answered on the reactor that read them: the store is sharded behind one mutex
//! per shard (see `httpapi::store`), so no request waits for another core's event loop and
//! none takes a lock over the whole store.
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
use crate::proto::conn::{Response, Routed};
use crate::proto::dialect::httpapi::store::{self, StoreLimits, Table};
use crate::proto::dialect::httpapi::{self, ONLY_POST};
use crate::proto::http::{Method, RequestHead};
use crate::proto::route::{self, Route};
use crate::{error, info, warn};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
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

enum Cors {
    Any,
    Off,
    Origins(Vec<String>),
}

/// The running API: its store, clock, mount and CORS policy.
pub(crate) struct Api {
    pub table: Table,
    /// For `/metrics`: requests answered 200, answered with an error, and state-log writes
    /// that failed (all reactors and the maintenance thread add to them).
    answered_ok: AtomicU64,
    answered_error: AtomicU64,
    state_write_errors: AtomicU64,
    clock: Clock,
    /// `None`: every path no other endpoint claims.
    path: Option<String>,
    echo: bool,
    cors: Cors,
}

impl Api {
    pub fn new(cfg: &ApiConfig, echo: bool, cores: usize, clock: Clock) -> Api {
        let limits = StoreLimits {
            ttl_ms: cfg.ttl.as_millis() as u64,
            max_channels: cfg.max_channels,
            max_candidates: cfg.max_candidates,
            max_bytes: cfg.max_bytes,
        };
        let cors = match cfg.cors_origin.trim() {
            "*" => Cors::Any,
            "none" => Cors::Off,
            list => Cors::Origins(
                list.split(',')
                    .map(|o| o.trim().to_string())
                    .filter(|o| !o.is_empty())
                    .collect(),
            ),
        };
        Api {
            table: Table::new(limits, store::shards_for(cores), cfg.state_dir.is_some()),
            answered_ok: AtomicU64::new(0),
            answered_error: AtomicU64::new(0),
            state_write_errors: AtomicU64::new(0),
            clock,
            path: (cfg.path != "*").then(|| cfg.path.clone()),
            echo,
            cors,
        }
    }

    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    /// The API's lines of `/metrics` (Prometheus text format).
    pub fn render_metrics(&self, o: &mut String) {
        use std::fmt::Write;
        let ok = self.answered_ok.load(Relaxed);
        let err = self.answered_error.load(Relaxed);
        let _ = writeln!(o, "# HELP sigyard_api_channels live channels in the HTTP API's store\n# TYPE sigyard_api_channels gauge\nsigyard_api_channels {}", self.table.len());
        let _ = writeln!(o, "# HELP sigyard_api_requests_total HTTP API method calls by outcome\n# TYPE sigyard_api_requests_total counter\nsigyard_api_requests_total{{outcome=\"ok\"}} {ok}\nsigyard_api_requests_total{{outcome=\"error\"}} {err}");
        let _ = writeln!(o, "# HELP sigyard_api_state_write_errors_total failed writes of the state log\n# TYPE sigyard_api_state_write_errors_total counter\nsigyard_api_state_write_errors_total {}", self.state_write_errors.load(Relaxed));
    }

    /// True when `path` is the API's.
    pub fn claims(&self, path: &str) -> bool {
        match &self.path {
            Some(p) => p == path,
            None => matches!(
                route::route(path, self.echo),
                Route::NotFound | Route::Status
            ),
        }
    }

    /// The API's decision about a request head, or `None` when the request is not the API's
    /// (another path, a WebSocket upgrade, or `GET /`: the status page).
    pub fn route(&self, head: &RequestHead, max_body: usize) -> Option<Routed> {
        if head.upgrade.is_some() || !self.claims(&head.path) {
            return None;
        }
        match head.method {
            Method::Post => Some(Routed::Body { max: max_body }),
            Method::Options => Some(Routed::Respond(self.preflight(head))),
            Method::Get | Method::Head if head.path == "/" => None,
            _ => {
                let mut r = Response::new(400, "text/plain", ONLY_POST);
                self.cors_headers(head, &mut r);
                Some(Routed::Respond(r))
            }
        }
    }

    /// Answer one API request body.
    pub fn respond(&self, head: &RequestHead, body: &[u8]) -> Response {
        let reply = httpapi::handle(&self.table, self.now(), body, &mut crate::csprng::uuid_v4);
        let counter = if reply.status() == 200 {
            &self.answered_ok
        } else {
            &self.answered_error
        };
        counter.fetch_add(1, Relaxed);
        let mut r = Response::new(reply.status(), reply.content_type(), reply.into_body());
        self.cors_headers(head, &mut r);
        r
    }

    fn allowed_origin(&self, head: &RequestHead) -> Option<String> {
        match &self.cors {
            Cors::Any => Some("*".to_string()),
            Cors::Off => None,
            Cors::Origins(list) => head
                .origin
                .as_ref()
                .filter(|o| list.iter().any(|l| l == *o))
                .cloned(),
        }
    }

    fn cors_headers(&self, head: &RequestHead, r: &mut Response) {
        if let Some(origin) = self.allowed_origin(head) {
            r.headers.push(("Access-Control-Allow-Origin", origin));
        }
        if let Cors::Origins(_) = self.cors {
            r.headers.push(("Vary", "Origin".to_string()));
        }
    }

    /// `OPTIONS`: 204 with the CORS preflight answer (POST, any request header but
    /// credentials).
    fn preflight(&self, head: &RequestHead) -> Response {
        let mut r = Response::new(204, "text/plain", Vec::new());
        r.headers.push(("Allow", "POST, OPTIONS".to_string()));
        self.cors_headers(head, &mut r);
        if !matches!(self.cors, Cors::Off) {
            r.headers
                .push(("Access-Control-Allow-Methods", "POST, OPTIONS".to_string()));
            r.headers.push((
                "Access-Control-Allow-Headers",
                "*, Authorization, Content-Type".to_string(),
            ));
            r.headers
                .push(("Access-Control-Max-Age", "86400".to_string()));
        }
        r
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
    /// Open (creating) `dir/api.log`, replay it into `api.table`, and compact it.
    fn open(dir: &Path, api: &Api, fsync: bool) -> io::Result<StateLog> {
        fs::create_dir_all(dir)?;
        let path = dir.join("api.log");
        let now = api.now();
        match File::open(&path) {
            Ok(mut f) => {
                let mut bytes = Vec::new();
                f.read_to_end(&mut bytes)?;
                let r = api.table.replay(&bytes, now);
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
        log.compact(&api.table, now)?;
        Ok(log)
    }

    /// Append every shard's pending records; fsync per policy.
    fn flush(&mut self, table: &Table, buf: &mut Vec<u8>) -> io::Result<()> {
        buf.clear();
        for i in 0..table.shard_count() {
            buf.extend(table.take_log(i));
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
    fn compact(&mut self, table: &Table, now: u64) -> io::Result<()> {
        let tmp = self.dir.join("api.log.tmp");
        let mut f = File::create(&tmp)?;
        let mut buf = store::LOG_MAGIC.to_vec();
        let mut size = 0u64;
        for i in 0..table.shard_count() {
            table.snapshot(i, now, &mut buf);
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
pub(crate) struct Maintenance {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: JoinHandle<()>,
}

impl Maintenance {
    /// Replay the state log (if any) into `api`, then start the thread. Errors opening or
    /// replaying the log stop the start.
    pub fn start(api: Arc<Api>, cfg: &ApiConfig) -> io::Result<Maintenance> {
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
                        api.table.sweep(api.now());
                        last_sweep = Instant::now();
                    }
                    if let Some(log) = log.as_mut() {
                        let mut result = log.flush(&api.table, &mut buf);
                        let grew = log.size > log.compacted_size;
                        let due = grew && last_compact.elapsed() >= compact_every;
                        if result.is_ok() && (must_compact || due) {
                            result = log.compact(&api.table, api.now());
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
