//! What the dialect scenarios that run their own event loops (`mewconnect`, `socketio`) share:
//! the coordinator (set-up, a timed run, stop, collect) and the latency summaries.

use crate::engine::{RUNNING, STOP};
use crate::hist::Histogram;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the coordinator measured, and what each thread handed back.
pub struct Run<T> {
    pub setup_s: f64,
    pub window_s: f64,
    pub outcomes: Vec<T>,
}

/// Wait until every thread has set up (`done`), call `ready(setup seconds since start)`, let
/// them run for `duration`, stop them through `phase`, and join them.
pub fn run_threads<T>(
    start: Instant,
    done: &[Arc<AtomicBool>],
    phase: &AtomicU8,
    duration: Duration,
    handles: Vec<JoinHandle<T>>,
    ready: impl FnOnce(f64),
) -> Result<Run<T>, String> {
    while !done.iter().all(|d| d.load(Relaxed)) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let setup_s = start.elapsed().as_secs_f64();
    ready(setup_s);
    phase.store(RUNNING, Relaxed);
    let t0 = Instant::now();
    std::thread::sleep(duration);
    phase.store(STOP, Relaxed);
    let window_s = t0.elapsed().as_secs_f64();
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
