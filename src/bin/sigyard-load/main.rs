//! `sigyard-load`: the load generator for sigyard. This file is the coordinator: it parses
//! the command line (`args`), raises the open-files limit, splits the load over event-loop
//! threads (`engine`) or child processes (`--workers`), moves the run through its phases
//! (open → run/hold → stop), prints a progress line about once a second, and prints the
//! summary (`report`). Latencies go into the tool's own histogram (`hist`); the WebSocket
//! client codec is in `ws`.

/// `print!` and friends that treat a closed stdout or stderr (a reader that stopped early, as
/// in `sigyard-load --help | head`) as the end of the output instead of panicking.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($t)*);
    }};
}
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($t)*);
    }};
}
macro_rules! err {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr().lock(), $($t)*);
    }};
}
macro_rules! errln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($t)*);
    }};
}

mod args;
mod engine;
mod hist;
mod httpapi;
mod mewconnect;
mod peerjs;
mod perfctl;
mod phases;
mod report;
mod socketio;
mod tls;
mod webtorrent;
mod ws;
mod wsconn;
mod wsloop;
mod ywebrtc;

use args::{Mode, Opts, Parsed, Scenario};
use engine::{Counters, Plan, Shared, RUNNING, SETUP, STOP};
use report::{n, Summary};
use std::io::BufRead;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A server's memory, in KiB: the whole resident set and its anonymous part (heap and stacks,
/// without the binary's code pages, which fault in as code paths first run and are shared by
/// every process of the binary).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Mem {
    pub rss_kib: u64,
    pub anon_kib: u64,
}

/// The server's [`Mem`] from `/proc/PID/status`.
pub fn server_mem(pid: u32) -> Option<Mem> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some(Mem {
        rss_kib: kib("VmRSS:")?,
        anon_kib: kib("RssAnon:")?,
    })
}

/// A server's CPU time, in seconds: in user space and in the kernel on its behalf.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Cpu {
    pub user_s: f64,
    pub system_s: f64,
}

impl Cpu {
    /// The time spent between two readings, `before` and `self`.
    pub fn since(self, before: Cpu) -> Cpu {
        Cpu {
            user_s: self.user_s - before.user_s,
            system_s: self.system_s - before.system_s,
        }
    }
}

/// The server's [`Cpu`] so far, from `utime` and `stime` in `/proc/PID/stat` (all its
/// threads; the kernel samples the split at its tick and scales it to the exact total).
pub fn server_cpu(pid: u32) -> Option<Cpu> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold anything: the
    // first of them is field 3 (state), so utime (14) and stime (15) are the 12th and 13th.
    let mut fields = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .skip(11);
    let mut ticks = || fields.next()?.parse::<u64>().ok();
    let (utime, stime) = (ticks()?, ticks()?);
    // SAFETY: sysconf takes no pointers; it only reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    Some(Cpu {
        user_s: utime as f64 / hz,
        system_s: stime as f64 / hz,
    })
}

/// The TCP segments this host has sent so far: `OutSegs` of /proc/net/snmp, for the network
/// namespace the tool runs in. Over loopback each segment is sent by one end and received by
/// the other, so the difference of two readings counts the segments of both ends once.
pub fn tcp_out_segments() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    // Two "Tcp:" lines: the field names, then their values.
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next()?, tcp.next()?);
    let at = names.split_whitespace().position(|n| n == "OutSegs")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// Raise RLIMIT_NOFILE's soft limit to the hard limit; returns the soft limit in force.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim = want;
            }
        }
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every platform
    let cur = lim.rlim_cur as u64;
    cur
}

/// Part `i` of `total` split into `parts` nearly equal shares.
fn share(total: u64, parts: u64, i: u64) -> u64 {
    total / parts + u64::from(i < total % parts)
}

/// The first index of part `i` (for naming pipe pairs uniquely across workers).
fn share_start(total: u64, parts: u64, i: u64) -> u64 {
    (0..i).map(|k| share(total, parts, k)).sum()
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let opts = match args::parse(&argv) {
        Ok(Parsed::Help) => {
            out!("{}", args::HELP);
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Run(o)) => *o,
        Err(e) => {
            errln!("sigyard-load: {e}\nTry 'sigyard-load --help'.");
            return ExitCode::from(2);
        }
    };
    let nofile = raise_nofile();
    if let Some(path) = &opts.perf_control {
        if let Err(e) = perfctl::open(path) {
            errln!("sigyard-load: {e}");
            return ExitCode::from(2);
        }
    }
    if opts.scenario == Scenario::SocketIo {
        return match socketio::run(&opts) {
            Ok(v) if opts.json => {
                err!("{}", socketio::text(&v));
                outln!("{v}");
                ExitCode::SUCCESS
            }
            Ok(v) => {
                out!("{}", socketio::text(&v));
                ExitCode::SUCCESS
            }
            Err(e) => {
                errln!("sigyard-load: {e}");
                ExitCode::from(1)
            }
        };
    }
    type Dialect = (
        fn(&Opts) -> Result<serde_json::Value, String>,
        fn(&serde_json::Value) -> String,
    );
    let dialect: Option<Dialect> = match opts.scenario {
        Scenario::MewConnect => Some((mewconnect::run, mewconnect::text)),
        Scenario::PeerJs => Some((peerjs::run, peerjs::text)),
        Scenario::YWebrtc => Some((ywebrtc::run, ywebrtc::text)),
        Scenario::WebTorrent => Some((webtorrent::run, webtorrent::text)),
        _ => None,
    };
    if let Some((run, text)) = dialect {
        return match run(&opts) {
            Ok(v) if opts.json => {
                err!("{}", text(&v));
                outln!("{v}");
                ExitCode::SUCCESS
            }
            Ok(v) => {
                out!("{}", text(&v));
                ExitCode::SUCCESS
            }
            Err(e) => {
                errln!("sigyard-load: {e}");
                ExitCode::from(1)
            }
        };
    }
    let tag = match opts.worker {
        Some((i, _)) => format!("sigyard-load[w{i}]"),
        None => "sigyard-load".to_string(),
    };
    if !opts.quiet {
        errln!(
            "{tag}: open-files limit raised to {} (the hard limit)",
            n(nofile)
        );
    }
    let summary = if opts.scenario == Scenario::HttpApi {
        httpapi::run(&opts, nofile)
    } else if opts.workers > 1 && opts.worker.is_none() {
        run_parent(&opts, nofile)
    } else {
        run_local(&opts, nofile, &tag)
    };
    let summary = match summary {
        Ok(s) => s,
        Err(e) => {
            errln!("{tag}: {e}");
            return ExitCode::from(1);
        }
    };
    if opts.json {
        if opts.worker.is_none() {
            err!("{}", summary.text());
        }
        outln!("{}", summary.to_json());
    } else {
        out!("{}", summary.text());
    }
    if summary.established == 0 && summary.attempted > 0 {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// This process's share of the load when it is worker `i` of `k`.
fn worker_share(o: &Opts) -> (u64, u64, u64, u64, Option<f64>) {
    let (i, k) = o.worker.map_or((0, 1), |(i, k)| (i as u64, k as u64));
    let conns = share(o.connections, k, i);
    let pairs = share(o.pairs, k, i);
    let pair0 = share_start(o.pairs, k, i);
    let conc = share(o.concurrency, k, i).max(1);
    let rate = o.rate.map(|r| match o.scenario {
        Scenario::Relay => r * pairs as f64 / o.pairs.max(1) as f64,
        _ => r / k as f64,
    });
    (conns, pairs, pair0, conc, rate)
}

fn run_local(o: &Opts, nofile: u64, tag: &str) -> Result<Summary, String> {
    let (conns, pairs, pair0, conc, rate) = worker_share(o);
    let units = match o.scenario {
        Scenario::Idle => conns,
        Scenario::Relay => pairs,
        _ => conc,
    };
    let threads = (o.threads as u64).min(units.max(1));
    let sources: Vec<IpAddr> = if o.source_ips > 1 {
        (1..=o.source_ips)
            .map(|k| IpAddr::V4(Ipv4Addr::new(127, 0, 0, k as u8)))
            .collect()
    } else {
        Vec::new()
    };
    let tls = match &o.tls_name {
        Some(name) => Some(tls::Tls::new(name, &o.trust)?),
        None => None,
    };
    let shared = Arc::new(Shared {
        phase: AtomicU8::new(SETUP),
    });
    let mem_before = o.server_pid.and_then(server_mem);
    let mut counters = Vec::new();
    let mut wakers = Vec::new();
    let mut handles = Vec::new();
    engine::now_ns();
    // This process's pipe paths are its own: several load processes may share a cluster.
    let pipe_tag = std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
            .rotate_left(16);
    for t in 0..threads {
        let (poll, waker) =
            engine::make_poll().map_err(|e| format!("cannot create a poll: {e}"))?;
        let c = Arc::new(Counters::default());
        let my_pairs: Vec<u64> = (0..pairs)
            .filter(|p| p % threads == t)
            .map(|p| pair0 + p)
            .collect();
        let thread_rate = rate.map(|r| match o.scenario {
            Scenario::Relay => r * my_pairs.len() as f64 / pairs.max(1) as f64,
            _ => r / threads as f64,
        });
        let mut my_sources = sources.clone();
        if !my_sources.is_empty() {
            let k = t as usize % my_sources.len();
            my_sources.rotate_left(k);
        }
        let plan = Plan {
            peer: o.peer.clone(),
            tag: pipe_tag,
            scenario: o.scenario,
            mode: o.mode,
            addr: o.addr,
            host: o.host.clone(),
            path: o.path.clone(),
            connections: share(conns, threads, t),
            pairs: my_pairs,
            concurrency: if o.scenario == Scenario::Idle {
                conc.div_ceil(threads)
            } else {
                share(conc, threads, t).max(1)
            },
            rate: thread_rate,
            size: o.size,
            timeout: o.timeout,
            sources: my_sources,
            spin: o.spin,
            tls: tls.clone(),
            raw: o.raw_tcp,
            stall: o.stall,
            window: o.window,
            seed: 0x0051_677a_7264_u64
                ^ (t + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
                ^ u64::from(std::process::id()) << 32
                ^ engine::now_ns(),
        };
        let w = engine::Worker::new(poll, plan, shared.clone(), c.clone());
        let h = std::thread::Builder::new()
            .name(format!("load-{t}"))
            .spawn(move || w.run())
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        counters.push(c);
        wakers.push(waker);
        handles.push(h);
    }
    let sum = |f: fn(&Counters) -> u64| counters.iter().map(|c| f(c)).sum::<u64>();
    let wake = || {
        for w in &wakers {
            let _ = w.wake();
        }
    };
    let window = match o.scenario {
        Scenario::Idle => o.hold,
        _ => o.duration,
    };
    let start = Instant::now();
    let mut run_start = None;
    let mut mem_at_n = None;
    let mut setup_s = 0.0;
    let mut last_tick = start;
    let mut last = (0u64, 0u64, 0u64);
    let mut cpu_before = None;
    let mut segments_before = None;
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let now = Instant::now();
        match run_start {
            None if counters.iter().all(|c| c.setup_done.load(Relaxed)) => {
                setup_s = start.elapsed().as_secs_f64();
                if o.scenario == Scenario::Idle {
                    // Let the server finish its side of the last handshakes.
                    std::thread::sleep(Duration::from_millis(300));
                    mem_at_n = o.server_pid.and_then(server_mem);
                }
                if o.worker.is_some() {
                    // All workers start their traffic together, once every one of them is set
                    // up: one worker's handshakes must not fall into another's measurement.
                    wait_for_go();
                }
                perfctl::enable();
                cpu_before = o.server_pid.and_then(server_cpu);
                segments_before = o.server_pid.and_then(|_| tcp_out_segments());
                shared.phase.store(RUNNING, Relaxed);
                wake();
                run_start = Some(Instant::now());
            }
            Some(t0) if t0.elapsed() >= window => break,
            // Nothing could be opened: there is nothing to hold or to send over.
            Some(_)
                if matches!(o.scenario, Scenario::Idle | Scenario::Relay)
                    && sum(|c| c.established.load(Relaxed)) == 0 =>
            {
                break
            }
            _ => {}
        }
        if now.duration_since(last_tick) >= Duration::from_secs(1) {
            let dt = now.duration_since(last_tick).as_secs_f64();
            last_tick = now;
            let est = sum(|c| c.established.load(Relaxed));
            let recv = sum(|c| c.received.load(Relaxed));
            let ops = sum(|c| c.ops.load(Relaxed));
            let failed = sum(|c| c.failed.load(Relaxed));
            let open = sum(|c| c.open.load(Relaxed));
            let rss = o
                .server_pid
                .and_then(server_mem)
                .map(|m| format!("  server RSS {} KiB", n(m.rss_kib)))
                .unwrap_or_default();
            let elapsed = start.elapsed().as_secs_f64();
            let line = match (o.scenario, run_start.is_some()) {
                (Scenario::Idle | Scenario::Relay, false) => format!(
                    "opening: established {}, failed {}, open {} (+{:.0}/s)",
                    n(est),
                    n(failed),
                    n(open),
                    (est - last.0) as f64 / dt
                ),
                (Scenario::Idle, true) => format!(
                    "holding: open {}, closed by the server {}",
                    n(open),
                    n(sum(|c| c.closed_by_server.load(Relaxed)))
                ),
                (Scenario::Relay, true) => format!(
                    "{:.0} msg/s  open {}  failed {}",
                    (recv - last.1) as f64 / dt,
                    n(open),
                    n(failed)
                ),
                _ => format!(
                    "{:.0}/s completed  open {}  failed {}",
                    (ops - last.2) as f64 / dt,
                    n(open),
                    n(failed)
                ),
            };
            last = (est, recv, ops);
            if !o.quiet {
                errln!("{tag} [{elapsed:6.1}s] {line}{rss}");
            }
        }
    }
    let window_s = run_start.map_or(0.0, |t| t.elapsed().as_secs_f64());
    perfctl::disable();
    let server_cpu = cpu_before.and_then(|b| Some(server_cpu(o.server_pid?)?.since(b)));
    let tcp_segments = segments_before.and_then(|b| tcp_out_segments()?.checked_sub(b));
    let held = sum(|c| c.open.load(Relaxed));
    let mem_end = o.server_pid.and_then(server_mem);
    shared.phase.store(STOP, Relaxed);
    wake();
    let mut s = Summary {
        scenario: o.scenario.name().into(),
        mode: (o.scenario == Scenario::Relay).then(|| {
            match o.mode {
                Mode::Echo => "echo",
                Mode::Pipe => "pipe",
            }
            .to_string()
        }),
        url: o.url.clone(),
        threads,
        workers: 1,
        open_files_limit: nofile,
        setup_s,
        window_s,
        held,
        mem_before,
        mem_at_n,
        mem_end,
        server_cpu,
        tcp_segments,
        ..Default::default()
    };
    for h in handles {
        let out = h.join().map_err(|_| "a load thread panicked".to_string())?;
        s.hist.merge(&out.hist);
        for (k, v) in out.errors {
            *s.errors.entry(k).or_default() += v;
        }
        if s.client_limit.is_none() {
            s.client_limit = out.client_limit;
        }
    }
    s.attempted = sum(|c| c.attempted.load(Relaxed));
    s.established = sum(|c| c.established.load(Relaxed));
    s.failed = sum(|c| c.failed.load(Relaxed));
    s.closed_by_server = sum(|c| c.closed_by_server.load(Relaxed));
    s.sent = sum(|c| c.sent.load(Relaxed));
    s.received = sum(|c| c.received.load(Relaxed));
    s.completed = sum(|c| c.ops.load(Relaxed));
    if window_s > 0.0 {
        s.received_per_s = s.received as f64 / window_s;
        s.completed_per_s = s.completed as f64 / window_s;
    }
    Ok(s)
}

/// `--workers K`: run K children of this binary, each on its share, and merge their JSON
/// summaries. The server's RSS is sampled here: before the children start and, as "at N",
/// the highest value seen while they run (each child holds its connections for the whole
/// hold, so the peak is the RSS with every connection open).
/// Worker side of the start barrier: say `READY` on stdout, wait for a line on stdin.
fn wait_for_go() {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "READY");
    let _ = out.flush();
    drop(out);
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
}

fn run_parent(o: &Opts, nofile: u64) -> Result<Summary, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find my own binary: {e}"))?;
    let mut base = vec![o.scenario.name().to_string()];
    let mut it = o.raw.iter();
    while let Some(a) = it.next() {
        let flag = a.split_once('=').map_or(a.as_str(), |(f, _)| f);
        match flag {
            "--workers" | "--server-pid" => {
                if !a.contains('=') {
                    it.next();
                }
            }
            "--json" => {}
            _ => base.push(a.clone()),
        }
    }
    let mem_before = o.server_pid.and_then(server_mem);
    let mut children = Vec::new();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    for i in 0..o.workers {
        let mut cmd = Command::new(&exe);
        cmd.args(&base)
            .args(["--json", "--worker", &format!("{i}/{}", o.workers)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut ch = cmd
            .spawn()
            .map_err(|e| format!("cannot start worker {i}: {e}"))?;
        // Read each child's stdout on its own thread so no child blocks on a full pipe; its
        // first line is READY (set up, waiting to start), the last its JSON summary.
        let so = ch.stdout.take();
        let ready = ready_tx.clone();
        let reader = std::thread::spawn(move || {
            let mut out = String::new();
            if let Some(so) = so {
                for line in std::io::BufReader::new(so).lines().map_while(Result::ok) {
                    if line == "READY" {
                        let _ = ready.send(());
                    } else {
                        out.push_str(&line);
                        out.push('\n');
                    }
                }
            }
            out
        });
        children.push((ch, reader));
    }
    drop(ready_tx);
    // The start barrier: GO to every worker once all are set up (or gone).
    let mut waiting = children.len();
    while waiting > 0 {
        match ready_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(()) => waiting -= 1,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let exited = children
                    .iter_mut()
                    .filter_map(|(ch, _)| ch.try_wait().ok().flatten())
                    .count();
                if exited > 0 && exited >= waiting {
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    for (ch, _) in &mut children {
        if let Some(mut stdin) = ch.stdin.take() {
            use std::io::Write;
            let _ = stdin.write_all(b"GO\n");
        }
    }
    let mut peak = None::<Mem>;
    let mut outputs = Vec::new();
    for (mut ch, reader) in children {
        loop {
            if let Some(r) = o.server_pid.and_then(server_mem) {
                peak = Some(peak.map_or(r, |p| if r.rss_kib > p.rss_kib { r } else { p }));
            }
            match ch.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => return Err(format!("waiting for a worker: {e}")),
            }
        }
        outputs.push(reader.join().unwrap_or_default());
    }
    let mut total: Option<Summary> = None;
    for (i, out) in outputs.iter().enumerate() {
        let v: serde_json::Value = out
            .lines()
            .last()
            .and_then(|l| serde_json::from_str(l).ok())
            .ok_or_else(|| format!("worker {i} printed no summary"))?;
        let s = Summary::from_json(&v).ok_or_else(|| format!("worker {i}: bad summary"))?;
        match &mut total {
            None => total = Some(s),
            Some(t) => t.merge(&s),
        }
    }
    let mut t = total.ok_or("no worker ran")?;
    t.workers = o.workers as u64;
    t.open_files_limit = nofile;
    t.mem_before = mem_before;
    t.mem_at_n = peak;
    t.mem_end = o.server_pid.and_then(server_mem);
    Ok(t)
}
