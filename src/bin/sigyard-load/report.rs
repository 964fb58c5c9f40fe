//! The result of a run: the `Summary` record, its readable text, its JSON form (which also
//! carries the histogram, so a parent process can read its workers' summaries back and merge
//! them), and the merge itself.

use crate::hist::Histogram;
use crate::{Cpu, Mem};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;

#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub scenario: String,
    pub mode: Option<String>,
    pub url: String,
    pub threads: u64,
    pub workers: u64,
    pub open_files_limit: u64,
    /// Seconds spent opening the planned connections (idle, relay).
    pub setup_s: f64,
    /// The measured window: the hold (idle) or the duration.
    pub window_s: f64,
    pub attempted: u64,
    pub established: u64,
    pub failed: u64,
    pub held: u64,
    pub closed_by_server: u64,
    pub sent: u64,
    pub received: u64,
    pub received_per_s: f64,
    pub completed: u64,
    pub completed_per_s: f64,
    pub hist: Histogram,
    pub mem_before: Option<Mem>,
    pub mem_at_n: Option<Mem>,
    pub mem_end: Option<Mem>,
    /// The server's CPU over the measured window (`--server-pid`).
    pub server_cpu: Option<Cpu>,
    /// The TCP segments this host sent over the measured window (`--server-pid`): over
    /// loopback, those of both ends.
    pub tcp_segments: Option<u64>,
    pub errors: BTreeMap<String, u64>,
    pub client_limit: Option<String>,
}

fn us(ns: u64) -> f64 {
    (ns as f64 / 1000.0 * 10.0).round() / 10.0
}

fn fmt_us(ns: u64) -> String {
    if ns >= 10_000_000 {
        format!("{:.1} ms", ns as f64 / 1e6)
    } else {
        format!("{:.1} µs", ns as f64 / 1e3)
    }
}

/// Thousands separators for counts.
pub fn n(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

impl Summary {
    /// Growth of `part` of the server's memory from before the connections to when all were
    /// open, per connection.
    fn per_connection_bytes(&self, part: fn(&Mem) -> u64) -> Option<f64> {
        let (b, a) = (
            part(self.mem_before.as_ref()?),
            part(self.mem_at_n.as_ref()?),
        );
        (self.established > 0)
            .then(|| a.saturating_sub(b) as f64 * 1024.0 / self.established as f64)
    }

    fn latency_label(&self) -> &'static str {
        match (self.scenario.as_str(), self.mode.as_deref()) {
            ("relay", Some("pipe")) => "one-way latency (send → other end, through the server)",
            ("relay", _) => "round-trip latency (send → echo)",
            ("handshake", _) => "upgrade latency (connect → 101)",
            ("churn", _) => "cycle latency (connect → upgrade → echo)",
            _ => "latency",
        }
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        let mode = self
            .mode
            .as_ref()
            .map(|m| format!(" ({m})"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "sigyard-load {}{mode} against {}: {} thread(s) in {} process(es), open-files limit {}",
            self.scenario,
            self.url,
            self.threads,
            self.workers,
            n(self.open_files_limit)
        );
        let _ = writeln!(
            s,
            "  connections: {} attempted, {} established, {} failed, {} closed by the server",
            n(self.attempted),
            n(self.established),
            n(self.failed),
            n(self.closed_by_server)
        );
        match self.scenario.as_str() {
            "idle" => {
                let _ = writeln!(
                    s,
                    "  opened in {:.1} s; held {} for {:.1} s",
                    self.setup_s,
                    n(self.held),
                    self.window_s
                );
                if let (Some(b), Some(a)) = (self.mem_before, self.mem_at_n) {
                    let _ = writeln!(
                        s,
                        "  server RSS: {} KiB before, {} KiB at {} connections, {} KiB at the end; {:.0} B per connection ({:.0} B of it anonymous)",
                        n(b.rss_kib),
                        n(a.rss_kib),
                        n(self.established),
                        n(self.mem_end.unwrap_or(a).rss_kib),
                        self.per_connection_bytes(|m| m.rss_kib).unwrap_or(0.0),
                        self.per_connection_bytes(|m| m.anon_kib).unwrap_or(0.0)
                    );
                }
            }
            "relay" => {
                let _ = writeln!(
                    s,
                    "  messages: {} sent, {} received in {:.1} s = {:.0} msg/s",
                    n(self.sent),
                    n(self.received),
                    self.window_s,
                    self.received_per_s
                );
            }
            _ => {
                let _ = writeln!(
                    s,
                    "  completed: {} in {:.1} s = {:.0}/s",
                    n(self.completed),
                    self.window_s,
                    self.completed_per_s
                );
            }
        }
        if self.hist.count() > 0 {
            let h = &self.hist;
            let _ = writeln!(
                s,
                "  {}: p50 {}  p99 {}  p99.9 {}  max {}  (n = {})",
                self.latency_label(),
                fmt_us(h.quantile(0.5)),
                fmt_us(h.quantile(0.99)),
                fmt_us(h.quantile(0.999)),
                fmt_us(h.max()),
                n(h.count())
            );
        }
        if self.scenario != "idle" {
            if let (Some(b), Some(e)) = (self.mem_before, self.mem_end) {
                let _ = writeln!(
                    s,
                    "  server RSS: {} KiB before, {} KiB at the end",
                    n(b.rss_kib),
                    n(e.rss_kib)
                );
            }
        }
        if let Some(c) = self.server_cpu {
            let _ = writeln!(
                s,
                "  server CPU over the window: {:.2} s in user space, {:.2} s in the kernel",
                c.user_s, c.system_s
            );
        }
        if let Some(t) = self.tcp_segments {
            let _ = writeln!(
                s,
                "  TCP segments over the window: {} (this host's; over loopback, both ends)",
                n(t)
            );
        }
        for (why, count) in &self.errors {
            let _ = writeln!(s, "  error x{}: {why}", n(*count));
        }
        if let Some(l) = &self.client_limit {
            let _ = writeln!(
                s,
                "  CLIENT LIMIT: the load generator (not the server) hit a limit: {}. \
                 Figures above are bounded by the client; use --workers / --source-ips.",
                l.trim_start_matches("client limit: ")
            );
        }
        s
    }

    pub fn to_json(&self) -> Value {
        let h = &self.hist;
        json!({
            "scenario": self.scenario,
            "mode": self.mode,
            "url": self.url,
            "threads": self.threads,
            "workers": self.workers,
            "open_files_limit": self.open_files_limit,
            "setup_s": self.setup_s,
            "window_s": self.window_s,
            "attempted": self.attempted,
            "established": self.established,
            "failed": self.failed,
            "held": self.held,
            "closed_by_server": self.closed_by_server,
            "messages_sent": self.sent,
            "messages_received": self.received,
            "messages_per_sec": self.received_per_s,
            "completed": self.completed,
            "completed_per_sec": self.completed_per_s,
            "latency_us": {
                "count": h.count(),
                "mean": (h.mean() / 100.0).round() / 10.0,
                "p50": us(h.quantile(0.5)),
                "p99": us(h.quantile(0.99)),
                "p999": us(h.quantile(0.999)),
                "max": us(h.max()),
            },
            "latency_hist_ns": h.to_json(),
            "latency_relative_error": crate::hist::MAX_RELATIVE_ERROR,
            "server_rss_kib": {
                "before": self.mem_before.map(|m| m.rss_kib),
                "at_n": self.mem_at_n.map(|m| m.rss_kib),
                "end": self.mem_end.map(|m| m.rss_kib),
            },
            "server_anon_kib": {
                "before": self.mem_before.map(|m| m.anon_kib),
                "at_n": self.mem_at_n.map(|m| m.anon_kib),
                "end": self.mem_end.map(|m| m.anon_kib),
            },
            "server_cpu_s": self.server_cpu.map(|c| json!({
                "user": (c.user_s * 1000.0).round() / 1000.0,
                "system": (c.system_s * 1000.0).round() / 1000.0,
            })),
            "tcp_segments": self.tcp_segments,
            "server_rss_per_connection_bytes": self.per_connection_bytes(|m| m.rss_kib).map(f64::round),
            "server_anon_per_connection_bytes": self.per_connection_bytes(|m| m.anon_kib).map(f64::round),
            "errors": self.errors,
            "client_limit": self.client_limit,
        })
    }

    /// Read back a worker's `to_json`; `None` if anything is missing.
    pub fn from_json(v: &Value) -> Option<Summary> {
        let u = |k: &str| v.get(k).and_then(Value::as_u64);
        let f = |k: &str| v.get(k).and_then(Value::as_f64);
        let mut errors = BTreeMap::new();
        for (k, c) in v.get("errors")?.as_object()? {
            errors.insert(k.clone(), c.as_u64()?);
        }
        Some(Summary {
            scenario: v.get("scenario")?.as_str()?.to_string(),
            mode: v.get("mode").and_then(Value::as_str).map(String::from),
            url: v.get("url")?.as_str()?.to_string(),
            threads: u("threads")?,
            workers: u("workers")?,
            open_files_limit: u("open_files_limit")?,
            setup_s: f("setup_s")?,
            window_s: f("window_s")?,
            attempted: u("attempted")?,
            established: u("established")?,
            failed: u("failed")?,
            held: u("held")?,
            closed_by_server: u("closed_by_server")?,
            sent: u("messages_sent")?,
            received: u("messages_received")?,
            received_per_s: f("messages_per_sec")?,
            completed: u("completed")?,
            completed_per_s: f("completed_per_sec")?,
            hist: Histogram::from_json(v.get("latency_hist_ns")?)?,
            mem_before: None,
            mem_at_n: None,
            mem_end: None,
            server_cpu: None,
            tcp_segments: None,
            errors,
            client_limit: v
                .get("client_limit")
                .and_then(Value::as_str)
                .map(String::from),
        })
    }

    /// Add a worker's results (counts and rates add up; windows take the longest).
    pub fn merge(&mut self, o: &Summary) {
        self.threads += o.threads;
        self.setup_s = self.setup_s.max(o.setup_s);
        self.window_s = self.window_s.max(o.window_s);
        self.attempted += o.attempted;
        self.established += o.established;
        self.failed += o.failed;
        self.held += o.held;
        self.closed_by_server += o.closed_by_server;
        self.sent += o.sent;
        self.received += o.received;
        self.received_per_s += o.received_per_s;
        self.completed += o.completed;
        self.completed_per_s += o.completed_per_s;
        self.hist.merge(&o.hist);
        for (k, c) in &o.errors {
            *self.errors.entry(k.clone()).or_default() += c;
        }
        if self.client_limit.is_none() {
            self.client_limit.clone_from(&o.client_limit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_merge() {
        let mut s = Summary {
            scenario: "relay".into(),
            mode: Some("echo".into()),
            url: "ws://x".into(),
            threads: 2,
            workers: 1,
            received: 10,
            received_per_s: 5.0,
            window_s: 2.0,
            ..Default::default()
        };
        s.hist.record(1500);
        s.errors.insert("x".into(), 2);
        let back = Summary::from_json(&s.to_json()).unwrap();
        let mut m = back.clone();
        m.merge(&back);
        assert_eq!(m.received, 20);
        assert_eq!(m.received_per_s, 10.0);
        assert_eq!(m.hist.count(), 2);
        assert_eq!(m.errors["x"], 4);
        assert!(m.text().contains("10 msg/s"));
        assert_eq!(n(1234567), "1,234,567");
    }
}
