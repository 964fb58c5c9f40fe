//! What the dialect scenarios that run their own event loops (`mewconnect`, `socketio`,
//! `peerjs`, `ywebrtc`, `webtorrent`) share: the options they refuse and their default path,
//! the coordinator (set-up, a timed run, stop, collect), how the work splits over threads,
//! what a thread hands back, the latency summaries, the server's memory, a run's seed, the
//! source addresses and SDP text.

use crate::args::Opts;
use crate::engine::{RUNNING, STOP};
use crate::hist::Histogram;
use crate::Mem;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `Err` for what the dialect scenarios do not support: `--workers` (they run in this one
/// process), and with `plain_only` a `wss://` URL.
pub fn unsupported(o: &Opts, scenario: &str, plain_only: bool) -> Result<(), String> {
    if o.workers > 1 {
        return Err(format!(
            "--workers: not supported by the {scenario} scenario"
        ));
    }
    if plain_only && o.tls_name.is_some() {
        return Err(format!("--url: ws:// only for the {scenario} scenario"));
    }
    Ok(())
}

/// The URL's path, or `default` if it named none (the tool's default path is `/echo`).
pub fn path_or(o: &Opts, default: &str) -> String {
    if o.path == "/echo" { default } else { &o.path }.to_string()
}

/// The load threads of a run as they are started: each one's set-up flag and handle, the
/// time their set-up is measured from, and the server's memory before (`--server-pid`, if
/// measured).
pub struct Threads<T> {
    start: Instant,
    done: Vec<Arc<AtomicBool>>,
    handles: Vec<JoinHandle<T>>,
    mem_before: Option<Mem>,
}

impl<T: Send + 'static> Threads<T> {
    /// No thread yet; the set-up is timed from now.
    pub fn start() -> Self {
        Threads {
            start: Instant::now(),
            done: Vec::new(),
            handles: Vec::new(),
            mem_before: None,
        }
    }

    /// [`Threads::start`] for a run that reports the server's memory ([`Threads::measured`]):
    /// first the server's memory before any connection.
    pub fn start_measuring(o: &Opts) -> Self {
        let mem_before = o.server_pid.and_then(crate::server_mem);
        Threads {
            mem_before,
            ..Threads::start()
        }
    }

    /// The flag the next thread sets once it has set up (or failed) every client.
    pub fn setup_flag(&mut self) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        self.done.push(flag.clone());
        flag
    }

    /// Start the thread called `name`, doing `work`.
    pub fn spawn(
        &mut self,
        name: String,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<(), String> {
        let h = std::thread::Builder::new()
            .name(name)
            .spawn(work)
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        self.handles.push(h);
        Ok(())
    }

    /// [`run_threads`] for `--duration`, with [`Progress::line`] on stderr once every thread
    /// has set up (unless `--quiet`): so many `what` set up, `traffic` for the duration.
    pub fn run(self, o: &Opts, p: &Progress, what: &str, traffic: &str) -> Result<Run<T>, String> {
        let quiet = o.quiet;
        run_threads(self, &p.phase, o.duration, |setup_s| {
            if !quiet {
                errln!("{}", p.line(setup_s, what, traffic, o.duration));
            }
        })
    }

    /// [`Threads::run`] for the scenarios that set up all their clients before the traffic
    /// and report the server's memory: once set up, the server's memory (300 ms later, so the
    /// server has done its side of the last set-ups) before the line on stderr, and at the end.
    pub fn measured(
        self,
        o: &Opts,
        p: &Progress,
        what: &str,
        traffic: &str,
    ) -> Result<Measured<T>, String> {
        let (server_pid, quiet) = (o.server_pid, o.quiet);
        let before = self.mem_before;
        let mut at_n = None;
        let run = run_threads(self, &p.phase, o.duration, |setup_s| {
            if server_pid.is_some() {
                std::thread::sleep(Duration::from_millis(300));
                at_n = server_pid.and_then(crate::server_mem);
            }
            if !quiet {
                errln!("{}", p.line(setup_s, what, traffic, o.duration));
            }
        })?;
        let end = server_pid.and_then(crate::server_mem);
        Ok(Measured {
            run,
            before,
            at_n,
            end,
        })
    }
}

/// What the threads of a run share with the coordinator: the phase (set-up, running, stop),
/// and how many units (clients, pairs, sessions) are set up and how many failed.
#[derive(Default)]
pub struct Progress {
    pub phase: AtomicU8,
    pub set_up: AtomicU64,
    pub failed: AtomicU64,
}

impl Progress {
    /// The line once every unit is set up: `sigyard-load: {set_up} {what} in {s} s ({failed}
    /// failed); {traffic} for {duration}`.
    fn line(&self, setup_s: f64, what: &str, traffic: &str, duration: Duration) -> String {
        format!(
            "sigyard-load: {} {what} in {setup_s:.2} s ({} failed); {traffic} for {duration:?}",
            self.set_up.load(Relaxed),
            self.failed.load(Relaxed),
        )
    }
}

/// What the coordinator measured, and what each thread handed back.
pub struct Run<T> {
    pub setup_s: f64,
    pub window_s: f64,
    pub outcomes: Vec<T>,
}

impl<T> Run<T> {
    /// `n` set up, per second of set-up.
    pub fn setup_rate(&self, n: u64) -> f64 {
        n as f64 / self.setup_s.max(1e-9)
    }

    /// `n` in the measured window, per second.
    pub fn per_s(&self, n: u64) -> f64 {
        n as f64 / self.window_s.max(1e-9)
    }
}

/// Wait until every thread has set up (`done`), call `ready(setup seconds since start)`, let
/// them run for `duration`, stop them through `phase`, and join them.
fn run_threads<T>(
    threads: Threads<T>,
    phase: &AtomicU8,
    duration: Duration,
    ready: impl FnOnce(f64),
) -> Result<Run<T>, String> {
    let Threads {
        start,
        done,
        handles,
        ..
    } = threads;
    while !done.iter().all(|d| d.load(Relaxed)) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let setup_s = start.elapsed().as_secs_f64();
    ready(setup_s);
    crate::perfctl::enable();
    phase.store(RUNNING, Relaxed);
    let t0 = Instant::now();
    std::thread::sleep(duration);
    phase.store(STOP, Relaxed);
    let window_s = t0.elapsed().as_secs_f64();
    crate::perfctl::disable();
    let outcomes = handles
        .into_iter()
        .map(|h| h.join().map_err(|_| "a load thread panicked".to_string()))
        .collect::<Result<Vec<T>, String>>()?;
    Ok(Run {
        setup_s,
        window_s,
        outcomes,
    })
}

/// What a run with every client set up first measured: the run, and the server's memory
/// before, with every client in place (`at_n`) and at the end (`None` without
/// `--server-pid`).
pub struct Measured<T> {
    pub run: Run<T>,
    before: Option<Mem>,
    at_n: Option<Mem>,
    end: Option<Mem>,
}

impl<T> Measured<T> {
    /// The server's memory at `n` connections, as [`memory_json`]'s members.
    pub fn memory_json(&self, n: u64) -> Value {
        memory_json(self.before, self.at_n, self.end, n)
    }
}

/// Thread `t`'s part of `total` (clients, pairs, topics) over `threads` threads: the first
/// `total % threads` take one more.
pub fn part(total: u64, threads: u64, t: u64) -> u64 {
    total / threads + u64::from(t < total % threads)
}

/// A thread's part of `--concurrency` (at least 1).
pub fn concurrency(o: &Opts, threads: u64) -> u64 {
    (o.concurrency / threads).max(1)
}

/// A thread's part of `--rate`, for `part` of `total` units.
pub fn rate(o: &Opts, part: u64, total: u64) -> Option<f64> {
    o.rate.map(|r| r * part as f64 / total.max(1) as f64)
}

/// The seed of thread `t`'s generator in a scenario (`salt`) and run (`run_tag`).
pub fn thread_seed(salt: u64, t: u64, run_tag: u64) -> u64 {
    salt ^ (t + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ run_tag
}

/// What a thread of a scenario with one set-up latency and one traffic latency hands back.
#[derive(Default)]
pub struct Outcome {
    /// Set-up latencies (connect to set up).
    pub setup: Histogram,
    /// The traffic's latencies.
    pub latency: Histogram,
    /// Why clients failed, one entry a failure.
    pub errors: Vec<String>,
}

/// Every thread's [`Outcome`] together.
pub struct Merged {
    pub setup: Histogram,
    pub latency: Histogram,
    /// Errors by text, with their counts.
    pub errors: BTreeMap<String, u64>,
}

impl Run<Outcome> {
    /// The threads' latencies merged and their errors counted.
    pub fn merged(&self) -> Merged {
        let mut setup = Histogram::new();
        let mut latency = Histogram::new();
        for out in &self.outcomes {
            setup.merge(&out.setup);
            latency.merge(&out.latency);
        }
        let errors = count_errors(self.outcomes.iter().flat_map(|o| o.errors.iter()));
        Merged {
            setup,
            latency,
            errors,
        }
    }
}

/// Errors by text, with their counts.
pub fn count_errors<'a>(errors: impl Iterator<Item = &'a String>) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for e in errors {
        *m.entry(e.clone()).or_default() += 1;
    }
    m
}

/// A histogram's count, p50, p99, p99.9 and max, in microseconds.
pub fn latency_json(h: &Histogram) -> Value {
    let us = |q: f64| h.quantile(q) as f64 / 1000.0;
    serde_json::json!({
        "count": h.count(),
        "p50": us(0.5), "p99": us(0.99), "p999": us(0.999),
        "max": h.max() as f64 / 1000.0,
    })
}

/// One readable latency line from [`latency_json`]'s output.
pub fn latency_text(h: &Value) -> String {
    let f = |k: &str| h[k].as_f64().unwrap_or(0.0);
    format!(
        "p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs, max {:.0} µs ({} samples)",
        f("p50"),
        f("p99"),
        f("p999"),
        f("max"),
        h["count"]
    )
}

/// The server's memory in a summary (`--server-pid`): VmRSS and RssAnon in KiB before the
/// first connection, with all `n` connections set up, and at the end, and the growth up to
/// `n` per connection, as the `idle` scenario reports them. Members to add to the summary.
fn memory_json(before: Option<Mem>, at_n: Option<Mem>, end: Option<Mem>, n: u64) -> Value {
    let per = |part: fn(&Mem) -> u64| match (before, at_n) {
        (Some(b), Some(a)) if n > 0 => {
            Some((part(&a).saturating_sub(part(&b)) as f64 * 1024.0 / n as f64).round())
        }
        _ => None,
    };
    let kib = |part: fn(&Mem) -> u64| {
        serde_json::json!({
            "before": before.as_ref().map(part),
            "at_n": at_n.as_ref().map(part),
            "end": end.as_ref().map(part),
        })
    };
    serde_json::json!({
        "server_rss_kib": kib(|m| m.rss_kib),
        "server_anon_kib": kib(|m| m.anon_kib),
        "server_rss_per_connection_bytes": per(|m| m.rss_kib),
        "server_anon_per_connection_bytes": per(|m| m.anon_kib),
    })
}

/// Add `extra`'s members (an object) to the object `v`.
pub fn extend(v: &mut Value, extra: Value) {
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
}

/// The readable line of [`memory_json`]'s members in `v` (empty without `--server-pid`), at
/// `n` connections called `what`.
pub fn memory_text(v: &Value, n: u64, what: &str) -> String {
    let rss = &v["server_rss_kib"];
    let (Some(b), Some(a)) = (rss["before"].as_u64(), rss["at_n"].as_u64()) else {
        return String::new();
    };
    let k = crate::report::n;
    format!(
        "server RSS: {} KiB before, {} KiB at {} {what}s, {} KiB at the end; \
         {:.0} B per {what} ({:.0} B of it anonymous)\n",
        k(b),
        k(a),
        k(n),
        k(rss["end"].as_u64().unwrap_or(a)),
        v["server_rss_per_connection_bytes"].as_f64().unwrap_or(0.0),
        v["server_anon_per_connection_bytes"]
            .as_f64()
            .unwrap_or(0.0),
    )
}

/// A seed that differs between runs (ids, names and masks random per run).
pub fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ u64::from(std::process::id()) << 32
}

/// `--source-ips`: the addresses thread `t` binds its sockets to, round robin, each thread
/// starting at another one (empty: no explicit bind).
pub fn sources(o: &Opts, t: usize) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = (1..=o.source_ips)
        .filter(|_| o.source_ips > 1)
        .map(|k| IpAddr::V4(Ipv4Addr::new(127, 0, 0, k as u8)))
        .collect();
    if !v.is_empty() {
        let k = t % v.len();
        v.rotate_left(k);
    }
    v
}

/// `size` bytes of text shaped like a browser's data-channel offer (lines end in CRLF).
pub fn sdp_text(size: usize) -> String {
    const LINES: &str = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        a=group:BUNDLE 0\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS\r\n\
        m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n\
        a=ice-ufrag:Xk3x\r\na=ice-pwd:q8w0e2r4t6y8u0i2o4p6a8s0\r\na=ice-options:trickle\r\n\
        a=fingerprint:sha-256 6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:\
        24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\na=setup:actpass\r\na=mid:0\r\na=sctp-port:5000\r\n\
        a=max-message-size:262144\r\n";
    LINES.chars().cycle().take(size).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdp_has_the_size_asked_for_and_survives_json() {
        for size in [16, 64, 700, 5000] {
            let text = sdp_text(size);
            assert_eq!(text.len(), size);
            assert!(text.starts_with("v=0\r\n"));
            let json = serde_json::to_string(&text).unwrap();
            assert_eq!(serde_json::from_str::<String>(&json).unwrap(), text);
        }
    }
}
