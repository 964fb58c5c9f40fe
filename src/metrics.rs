//! Metrics: each core keeps plain counters while it works and publishes them into its own
//! block of atomics once per loop iteration; `/metrics` (served by whichever core got the
//! request) reads every core's block and renders the Prometheus text format.
//!
//! Each block has exactly one writer (its core), so publishing is plain relaxed stores and
//! nothing contends. Latency [`Histogram`]s live in the same blocks and follow the same rule
//! (one writer per core, relaxed stores), summed over cores at scrape. What this module does not do: decide what to count (the reactor and the
//! protocol machine do) or serve HTTP (the reactor's App does).

use crate::proto::conn::Counters;
use crate::registry::{DIALECTS, DIALECT_METRICS, ROUTES};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Connection classes for the `sigyard_connections{state=…}` gauge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Handshake,
    Http,
    /// An open WebSocket of a route (its index in `registry::ROUTES`).
    WebSocket(u8),
    Closing,
}

const STATES: [&str; 4] = ["handshake", "http", "websocket", "closing"];

impl Class {
    fn state_index(self) -> usize {
        match self {
            Class::Handshake => 0,
            Class::Http => 1,
            Class::WebSocket(_) => 2,
            Class::Closing => 3,
        }
    }
}

/// Counters kept by the shell itself (the protocol machine's are [`Counters`]).
#[derive(Debug, Default, Clone)]
pub struct ShellCounters {
    pub accepted: u64,
    pub rejected_max_connections: u64,
    pub rejected_per_ip: u64,
    /// Connections refused (429) past `--max-new-connections-per-ip`.
    pub rejected_conn_rate: u64,
    /// Plain HTTP requests refused (429) past `--max-http-requests-per-ip`.
    pub rejected_http_rate: u64,
    pub accept_errors: u64,
    pub accept_pauses: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub handoffs_out: u64,
    pub handoffs_in: u64,
    pub slow_reader_disconnects: u64,
    /// Lossy messages not sent because their connection was behind.
    pub lossy_dropped: u64,
    /// WebSockets closed (1008) for sending past `--max-messages-per-second` or
    /// `--max-message-bytes-per-second`.
    pub rate_limited: u64,
    pub tls_errors: u64,
    /// Sends made through the io_uring batch (`--batch-sends`), and the system calls that
    /// made them.
    pub batched_sends: u64,
    pub send_batches: u64,
    pub loop_iterations: u64,
    /// How late the most recent timer fired, in microseconds.
    pub loop_lag_us: u64,
}

/// One row per exported counter: name, help text, and where its value comes from. The table
/// generates the name list and the snapshot function, so they cannot drift apart.
macro_rules! counter_table {
    ($( $name:literal, $help:literal, $src:ident . $field:ident; )*) => {
        const COUNTERS: &[(&str, &str)] = &[$(($name, $help),)*];
        const N_COUNTERS: usize = COUNTERS.len();
        fn snapshot(p: &Counters, s: &ShellCounters) -> [u64; N_COUNTERS] {
            [$( counter_table!(@get p s $src $field), )*]
        }
    };
    (@get $p:ident $s:ident proto $field:ident) => { $p.$field };
    (@get $p:ident $s:ident shell $field:ident) => { $s.$field };
}

counter_table! {
    "sigyard_accepted_total", "TCP connections accepted", shell.accepted;
    "sigyard_rejected_max_connections_total", "connections refused because max-connections was reached", shell.rejected_max_connections;
    "sigyard_rejected_per_ip_total", "connections refused because max-connections-per-ip was reached", shell.rejected_per_ip;
    "sigyard_rejected_connection_rate_total", "connections refused (429) because their address opened more per second than max-new-connections-per-ip", shell.rejected_conn_rate;
    "sigyard_rejected_http_rate_total", "plain HTTP requests (API, polling) refused (429) because their address made more per second than max-http-requests-per-ip", shell.rejected_http_rate;
    "sigyard_rate_limited_total", "WebSockets closed (1008) for sending past their message or byte rate", shell.rate_limited;
    "sigyard_accept_errors_total", "accept() failures", shell.accept_errors;
    "sigyard_accept_pauses_total", "times accepting paused (file descriptors or buffers exhausted)", shell.accept_pauses;
    "sigyard_bytes_received_total", "bytes read from sockets (after TLS)", shell.bytes_in;
    "sigyard_bytes_sent_total", "bytes handed to sockets (before TLS)", shell.bytes_out;
    "sigyard_frames_received_total", "WebSocket frames received", proto.frames_in;
    "sigyard_frames_sent_total", "WebSocket frames sent", proto.frames_out;
    "sigyard_messages_received_total", "WebSocket messages received", proto.messages_in;
    "sigyard_messages_sent_total", "WebSocket messages sent", proto.messages_out;
    "sigyard_pings_sent_total", "server pings sent to idle WebSockets", proto.pings_sent;
    "sigyard_protocol_errors_total", "WebSocket protocol violations (connection failed with a close code)", proto.protocol_errors;
    "sigyard_idle_timeouts_total", "WebSockets closed for idleness", proto.idle_timeouts;
    "sigyard_handshake_timeouts_total", "connections that did not finish TLS + HTTP in time", proto.handshake_timeouts;
    "sigyard_handshakes_total", "successful WebSocket upgrades", proto.upgrades;
    "sigyard_handoffs_out_total", "connections moved to the core owning their key", shell.handoffs_out;
    "sigyard_handoffs_in_total", "connections adopted from another core", shell.handoffs_in;
    "sigyard_slow_reader_disconnects_total", "connections dropped because their outbound buffer exceeded max-outbound-bytes", shell.slow_reader_disconnects;
    "sigyard_lossy_messages_dropped_total", "relayed messages that may be lost (a tracker's offers and answers) dropped because their connection had --buffer-size bytes queued", shell.lossy_dropped;
    "sigyard_tls_errors_total", "TLS handshakes or records that failed", shell.tls_errors;
    "sigyard_batched_sends_total", "socket sends made several to a system call through io_uring (--batch-sends)", shell.batched_sends;
    "sigyard_send_batches_total", "io_uring system calls that made those sends", shell.send_batches;
    "sigyard_reactor_iterations_total", "reactor loop iterations", shell.loop_iterations;
}

/// Upper bounds (`le`) of the latency histograms' buckets, in microseconds: 50 µs to 10 s,
/// spanning a loop turn's work up to a handshake's worst case. A last bucket (`+Inf`) takes
/// the rest.
pub use crate::proto::dialect::LATENCY_BUCKETS_US;
const N_BUCKETS: usize = LATENCY_BUCKETS_US.len() + 1;

/// Which latency histogram an observation is for: [`HANDSHAKE`], or a route's index in
/// `registry::ROUTES` (the message relay of that WebSocket route).
pub type Latency = u8;
/// The handshake histogram (see [`Latency`]).
pub const HANDSHAKE: Latency = u8::MAX;

/// A fixed-bucket latency histogram of one core: a count per bucket (not cumulative; the
/// rendering accumulates) and the sum of the observations in microseconds.
///
/// Per-core atomics written only by their core, as a relaxed load and a relaxed store (not a
/// read-modify-write): with one writer nothing can be lost, and on x86-64 and AArch64 this is
/// two plain moves — no lock prefix, no fence — so an observation costs what a plain `u64`
/// counter does. That is cheaper than keeping plain counters and copying every bucket of every
/// histogram into atomics once per loop turn (as [`CoreMetrics::publish`] does for the
/// counters): most turns observe nothing, and a scrape sees each observation at once. A scrape
/// may read a bucket before the sum of the same observation; `_count` is rendered as the
/// `+Inf` bucket, so the buckets and the count always agree.
pub struct Histogram {
    buckets: [AtomicU64; N_BUCKETS],
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }
    }
}

/// `a += n` by its only writer.
fn bump(a: &AtomicU64, n: u64) {
    a.store(a.load(Relaxed).wrapping_add(n), Relaxed);
}

impl Histogram {
    /// Count one observation of `us` microseconds (called by the owning core only).
    pub fn observe(&self, us: u64) {
        // The first bucket whose bound is at least `us` (`le` is inclusive); past the last
        // bound, `+Inf`.
        let i = LATENCY_BUCKETS_US.partition_point(|&b| b < us);
        bump(&self.buckets[i], 1);
        bump(&self.sum_us, us);
    }

    /// Add this core's figures to `total`.
    fn add_to(&self, total: &mut HistogramSum) {
        for (t, b) in total.buckets.iter_mut().zip(&self.buckets) {
            *t += b.load(Relaxed);
        }
        total.sum_us += self.sum_us.load(Relaxed);
    }
}

/// Histograms of several cores summed, for rendering.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct HistogramSum {
    buckets: [u64; N_BUCKETS],
    sum_us: u64,
}

impl HistogramSum {
    fn of<'a>(hs: impl IntoIterator<Item = &'a Histogram>) -> Self {
        let mut total = HistogramSum::default();
        for h in hs {
            h.add_to(&mut total);
        }
        total
    }

    /// The series of one histogram: cumulative `_bucket`s up to `le="+Inf"`, `_sum` in
    /// seconds and `_count`. `labels` is empty or `key="value",…` without braces.
    fn render(&self, o: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            cumulative += n;
            let le = match LATENCY_BUCKETS_US.get(i) {
                Some(&us) => format!("{}", us as f64 / 1e6),
                None => "+Inf".to_owned(),
            };
            let _ = writeln!(o, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}");
        }
        let braced = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = self.sum_us as f64 / 1e6;
        let _ = writeln!(o, "{name}_sum{braced} {sum:.6}");
        let _ = writeln!(o, "{name}_count{braced} {cumulative}");
    }
}

/// One core's published metrics.
pub struct CoreMetrics {
    counters: [AtomicU64; N_COUNTERS],
    states: [AtomicU64; 4],
    endpoints: [AtomicU64; ROUTES.len()],
    lag_us: AtomicU64,
    buffers: AtomicU64,
    /// The dialect instances' metrics (see [`DIALECTS`]).
    dialects: [AtomicU64; DIALECT_METRICS],
    /// Handshake failures by (status, reason); rare, so a lock is fine.
    failures: Mutex<Vec<(u16, &'static str, u64)>>,
    /// From a connection's accept to its first response's last byte written.
    handshake: Histogram,
    /// From a message's read to its relay's last byte written, by the receiving connection's
    /// route (only WebSocket routes are rendered).
    relay: [Histogram; ROUTES.len()],
}

impl Default for CoreMetrics {
    fn default() -> Self {
        CoreMetrics {
            counters: std::array::from_fn(|_| AtomicU64::new(0)),
            states: Default::default(),
            endpoints: std::array::from_fn(|_| AtomicU64::new(0)),
            lag_us: AtomicU64::new(0),
            buffers: AtomicU64::new(0),
            dialects: std::array::from_fn(|_| AtomicU64::new(0)),
            failures: Mutex::new(Vec::new()),
            handshake: Histogram::default(),
            relay: std::array::from_fn(|_| Histogram::default()),
        }
    }
}

/// A core's live connection counts, maintained by the reactor on every transition.
#[derive(Debug, Default, Clone)]
pub struct Gauges {
    pub states: [u64; 4],
    pub endpoints: [u64; ROUTES.len()],
}

impl Gauges {
    pub fn add(&mut self, c: Class) {
        self.states[c.state_index()] += 1;
        if let Class::WebSocket(e) = c {
            self.endpoints[usize::from(e)] += 1;
        }
    }

    pub fn remove(&mut self, c: Class) {
        let s = &mut self.states[c.state_index()];
        *s = s.saturating_sub(1);
        if let Class::WebSocket(e) = c {
            let n = &mut self.endpoints[usize::from(e)];
            *n = n.saturating_sub(1);
        }
    }

    pub fn total(&self) -> u64 {
        self.states.iter().sum()
    }
}

impl CoreMetrics {
    /// Publish the core's current values (called by the owning core only).
    pub fn publish(&self, p: &Counters, s: &ShellCounters, g: &Gauges, buffers_in_use: usize) {
        for (slot, v) in self.counters.iter().zip(snapshot(p, s)) {
            slot.store(v, Relaxed);
        }
        for (slot, v) in self.states.iter().zip(g.states) {
            slot.store(v, Relaxed);
        }
        for (slot, v) in self.endpoints.iter().zip(g.endpoints) {
            slot.store(v, Relaxed);
        }
        self.lag_us.store(s.loop_lag_us, Relaxed);
        self.buffers.store(buffers_in_use as u64, Relaxed);
    }

    /// Publish dialect metrics: `values` for the slots from `at` on, in [`DIALECTS`] order
    /// (called by the owning core only).
    pub fn publish_dialects(&self, at: usize, values: &[u64]) {
        let slots = self.dialects.get(at..).unwrap_or_default();
        for (slot, v) in slots.iter().zip(values) {
            slot.store(*v, Relaxed);
        }
    }

    /// Count one latency observation of `us` microseconds (called by the owning core only).
    pub fn observe(&self, what: Latency, us: u64) {
        let h = match what {
            HANDSHAKE => &self.handshake,
            r => match self.relay.get(usize::from(r)) {
                Some(h) => h,
                None => return,
            },
        };
        h.observe(us);
    }

    /// Count one handshake failure.
    pub fn handshake_failed(&self, status: u16, reason: &'static str) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match f.iter_mut().find(|(s, r, _)| *s == status && *r == reason) {
            Some(e) => e.2 += 1,
            None => f.push((status, reason, 1)),
        }
    }
}

/// One dialect metric's series, from its slots starting at `i`, summed over `cores`.
fn dialect_series(
    o: &mut String,
    m: &crate::proto::dialect::Metric,
    i: usize,
    cores: &[CoreMetrics],
) {
    let slot = |k: usize| -> u64 { cores.iter().map(|c| c.dialects[i + k].load(Relaxed)).sum() };
    let name = m.name;
    if m.kind == crate::proto::dialect::MetricKind::Histogram {
        let mut h = HistogramSum::default();
        for (k, b) in h.buckets.iter_mut().enumerate() {
            *b = slot(k);
        }
        h.sum_us = slot(N_BUCKETS);
        h.render(o, name, m.labels);
    } else {
        match m.labels {
            "" => writeln!(o, "{name} {}", slot(0)),
            labels => writeln!(o, "{name}{{{labels}}} {}", slot(0)),
        }
        .ok();
    }
}

/// Render every core's metrics in the Prometheus text exposition format.
pub fn render(cores: &[CoreMetrics], uptime_secs: f64) -> String {
    let mut o = String::with_capacity(4096);
    let sum = |f: &dyn Fn(&CoreMetrics) -> u64| cores.iter().map(f).sum::<u64>();

    let _ = writeln!(o, "# HELP sigyard_uptime_seconds seconds since the server started\n# TYPE sigyard_uptime_seconds gauge");
    let _ = writeln!(o, "sigyard_uptime_seconds {uptime_secs:.3}");

    let _ = writeln!(
        o,
        "# HELP sigyard_connections open connections by state\n# TYPE sigyard_connections gauge"
    );
    for (i, name) in STATES.iter().enumerate() {
        let _ = writeln!(
            o,
            "sigyard_connections{{state=\"{name}\"}} {}",
            sum(&|c| c.states[i].load(Relaxed))
        );
    }
    let _ = writeln!(o, "# HELP sigyard_websocket_connections open WebSocket connections by dialect\n# TYPE sigyard_websocket_connections gauge");
    for (i, r) in ROUTES.iter().enumerate().filter(|(_, r)| r.websocket) {
        let _ = writeln!(
            o,
            "sigyard_websocket_connections{{dialect=\"{}\"}} {}",
            r.label,
            sum(&|c| c.endpoints[i].load(Relaxed))
        );
    }
    let _ = writeln!(o, "# HELP sigyard_core_connections open connections per reactor core\n# TYPE sigyard_core_connections gauge");
    for (i, c) in cores.iter().enumerate() {
        let total: u64 = c.states.iter().map(|s| s.load(Relaxed)).sum();
        let _ = writeln!(o, "sigyard_core_connections{{core=\"{i}\"}} {total}");
    }
    // Each metric with its first slot; a family's series (one name, several dialects or
    // labels) are written together, under the HELP of the first that has one.
    let mut slots = Vec::new();
    let mut at = 0;
    for m in DIALECTS.iter().flat_map(|(_, m)| m.iter()) {
        slots.push((m, at));
        at += m.slots();
    }
    let mut names: Vec<&str> = Vec::new();
    for (m, _) in &slots {
        if !names.contains(&m.name) {
            names.push(m.name);
        }
    }
    for name in names {
        let family: Vec<_> = slots.iter().filter(|(m, _)| m.name == name).collect();
        let first = family[0].0;
        let help = family
            .iter()
            .map(|(m, _)| m.help)
            .find(|h| !h.is_empty())
            .unwrap_or("");
        let kind = first.kind.name();
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for &&(m, i) in &family {
            dialect_series(&mut o, m, i, cores);
        }
    }
    let _ = writeln!(o, "# HELP sigyard_buffers_in_use pooled I/O buffers checked out, in --buffer-size units (a streaming read buffer counts as the standard ones it is worth)\n# TYPE sigyard_buffers_in_use gauge");
    let _ = writeln!(
        o,
        "sigyard_buffers_in_use {}",
        sum(&|c| c.buffers.load(Relaxed))
    );
    let _ = writeln!(o, "# HELP sigyard_reactor_loop_lag_seconds how late the most recent timer ran on each core\n# TYPE sigyard_reactor_loop_lag_seconds gauge");
    for (i, c) in cores.iter().enumerate() {
        let _ = writeln!(
            o,
            "sigyard_reactor_loop_lag_seconds{{core=\"{i}\"}} {:.6}",
            c.lag_us.load(Relaxed) as f64 / 1e6
        );
    }
    for (i, (name, help)) in COUNTERS.iter().enumerate() {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter");
        let _ = writeln!(o, "{name} {}", sum(&|c| c.counters[i].load(Relaxed)));
    }
    let _ = writeln!(o, "# HELP sigyard_handshake_failures_total rejected requests and upgrades by status and reason\n# TYPE sigyard_handshake_failures_total counter");
    let mut all: Vec<(u16, &str, u64)> = Vec::new();
    for c in cores {
        let f = c.failures.lock().unwrap_or_else(|p| p.into_inner());
        for &(s, r, n) in f.iter() {
            match all.iter_mut().find(|(s2, r2, _)| *s2 == s && *r2 == r) {
                Some(e) => e.2 += n,
                None => all.push((s, r, n)),
            }
        }
    }
    all.sort();
    for (s, r, n) in all {
        let _ = writeln!(
            o,
            "sigyard_handshake_failures_total{{status=\"{s}\",reason=\"{r}\"}} {n}"
        );
    }
    render_latencies(&mut o, cores);
    o
}

/// The latency histograms, summed over cores.
fn render_latencies(o: &mut String, cores: &[CoreMetrics]) {
    let name = "sigyard_handshake_duration_seconds";
    let _ = writeln!(o, "# HELP {name} from a connection's accept to the last byte of its first response (a WebSocket's 101, or a refusal) written, TLS included; requests a dialect holds are left out\n# TYPE {name} histogram");
    HistogramSum::of(cores.iter().map(|c| &c.handshake)).render(o, name, "");
    let name = "sigyard_message_relay_seconds";
    let _ = writeln!(o, "# HELP {name} from the loop turn that read a message to the end of the turn that wrote the last byte of the write batch it was queued in, by the receiving connection's dialect (the oldest message of each drained batch; messages from other cores or nodes are left out)\n# TYPE {name} histogram");
    for (i, r) in ROUTES.iter().enumerate().filter(|(_, r)| r.websocket) {
        let labels = format!("dialect=\"{}\"", r.label);
        HistogramSum::of(cores.iter().map(|c| &c.relay[i])).render(o, name, &labels);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_declared_once_and_dialect_histograms_render() {
        let text = render(&[CoreMetrics::default(), CoreMetrics::default()], 1.0);
        let mut seen = std::collections::HashSet::new();
        for l in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let name = l.split(' ').next().unwrap();
            assert!(seen.insert(name.to_owned()), "{name} declared twice");
        }
        for d in ["cevitxe_connection", "mewconnect"] {
            let inf = format!("sigyard_pairing_seconds_bucket{{dialect=\"{d}\",le=\"+Inf\"}} 0\n");
            assert!(text.contains(&inf), "{d}");
        }
    }

    #[test]
    fn render_sums_cores_and_lists_failures() {
        let cores = [CoreMetrics::default(), CoreMetrics::default()];
        let mut g = Gauges::default();
        g.add(Class::WebSocket(0));
        let s = ShellCounters {
            bytes_in: 5,
            ..Default::default()
        };
        cores[0].publish(&Counters::default(), &s, &g, 1);
        cores[1].publish(&Counters::default(), &s, &Gauges::default(), 0);
        cores[1].handshake_failed(400, "missing_key");
        cores[0].handshake_failed(400, "missing_key");
        let text = render(&cores, 1.0);
        assert!(text.contains("sigyard_bytes_received_total 10\n"), "{text}");
        assert!(text.contains("sigyard_connections{state=\"websocket\"} 1\n"));
        assert!(text.contains("sigyard_websocket_connections{dialect=\"echo\"} 1\n"));
        assert!(text.contains("sigyard_core_connections{core=\"1\"} 0\n"));
        assert!(text.contains(
            "sigyard_handshake_failures_total{status=\"400\",reason=\"missing_key\"} 2\n"
        ));
    }

    #[test]
    fn histogram_buckets_accumulate_and_merge_over_cores() {
        let cores = [CoreMetrics::default(), CoreMetrics::default()];
        // Bounds are inclusive: 50 µs goes in le=0.00005, 51 µs in le=0.0001.
        cores[0].observe(HANDSHAKE, 0);
        cores[0].observe(HANDSHAKE, 50);
        cores[1].observe(HANDSHAKE, 51);
        cores[1].observe(HANDSHAKE, 3_000);
        // Past the last bound: only +Inf.
        cores[1].observe(HANDSHAKE, 60_000_000);
        let total = HistogramSum::of(cores.iter().map(|c| &c.handshake));
        assert_eq!(total.buckets[0], 2);
        assert_eq!(total.buckets[1], 1);
        assert_eq!(total.buckets[6], 1); // le=0.005
        assert_eq!(total.buckets[N_BUCKETS - 1], 1);
        assert_eq!(total.sum_us, 60_003_101);

        let text = render(&cores, 1.0);
        let line = |l: &str| assert!(text.contains(&format!("{l}\n")), "{l} in\n{text}");
        let h = "sigyard_handshake_duration_seconds";
        line(&format!("# TYPE {h} histogram"));
        line(&format!("{h}_bucket{{le=\"0.00005\"}} 2"));
        line(&format!("{h}_bucket{{le=\"0.0001\"}} 3"));
        line(&format!("{h}_bucket{{le=\"0.0025\"}} 3"));
        line(&format!("{h}_bucket{{le=\"0.005\"}} 4"));
        line(&format!("{h}_bucket{{le=\"10\"}} 4"));
        line(&format!("{h}_bucket{{le=\"+Inf\"}} 5"));
        line(&format!("{h}_sum 60.003101"));
        line(&format!("{h}_count 5"));

        // Every bucket series is cumulative (never decreasing) and ends in +Inf = _count.
        let buckets: Vec<u64> = text
            .lines()
            .filter(|l| l.starts_with(&format!("{h}_bucket")))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(buckets.len(), N_BUCKETS);
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");

        // Relay histograms carry the dialect label, for WebSocket routes only.
        let echo = ROUTES.iter().position(|r| r.label == "echo").unwrap();
        cores[0].observe(echo as Latency, 700);
        cores[1].observe(echo as Latency, 700);
        let text = render(&cores, 1.0);
        let r = "sigyard_message_relay_seconds";
        assert!(text.contains(&format!("{r}_bucket{{dialect=\"echo\",le=\"0.0005\"}} 0\n")));
        assert!(text.contains(&format!("{r}_bucket{{dialect=\"echo\",le=\"0.001\"}} 2\n")));
        assert!(text.contains(&format!("{r}_bucket{{dialect=\"echo\",le=\"+Inf\"}} 2\n")));
        assert!(text.contains(&format!("{r}_sum{{dialect=\"echo\"}} 0.001400\n")));
        assert!(text.contains(&format!("{r}_count{{dialect=\"echo\"}} 2\n")));
        for (route, _) in ROUTES.iter().enumerate().filter(|(_, r)| !r.websocket) {
            let label = ROUTES[route].label;
            assert!(!text.contains(&format!("{r}_count{{dialect=\"{label}\"}}")));
        }
        // An unknown route is ignored rather than a panic.
        cores[0].observe((ROUTES.len()) as Latency, 1);
    }
}
