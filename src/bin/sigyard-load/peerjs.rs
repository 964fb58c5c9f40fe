//! The `peerjs` scenario: PeerJS clients (the protocol of npm `peer` 1.0.2) registered in
//! pairs, then offer/answer/candidate exchanges relayed between the two clients of each pair.
//!
//! Setup: `--pairs` pairs, at most `--concurrency` of them setting up at once. Both clients of
//! a pair connect together to `{mount}peerjs?key=peerjs&id=…&token=…&version=1.5.5` (the URL's
//! path is the mount, `/` by default; ids and tokens are random per run), and the pair is
//! registered once both got `{"type":"OPEN"}`; its latency runs from the connects to the
//! second `OPEN`. Then, for `--duration`, every pair loops: A sends an `OFFER` to B whose
//! payload is `{"sdp":{"type":"offer","sdp":"<--size bytes of SDP text>"},"type":"data",
//! "connectionId":"dc_…"}`, B answers with an `ANSWER` of the same size, A sends a `CANDIDATE`
//! and B one back; then the next `OFFER`. Four messages relayed per exchange; the latency is
//! `OFFER` sent → `ANSWER` received. Closed loop by default; with `--rate R`, R exchanges per
//! second over all pairs, round robin, a pair still exchanging skipped. Every client sends
//! `{"type":"HEARTBEAT"}` every 5 s, as the real client does (the original server closes a
//! client without one for 60 s).
//!
//! With `--server-pid`, the server's memory before the first connect and with every pair
//! registered (before the exchanges), per client. One mio event loop per thread (`--threads`),
//! each owning its share of the pairs; `--workers` is not supported for this scenario.

use crate::args::Opts;
use crate::phases;
use crate::phases::{Merged, Outcome, Progress, Threads};
use crate::ws::Rng;
use crate::wsconn::{self, Conn, Sides, Target};
use crate::wsloop::{self, Plan, RUNNING};
use mio::{Poll, Token};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The real client's heartbeat period.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
const HEARTBEAT: &[u8] = br#"{"type":"HEARTBEAT"}"#;
const OPEN: &[u8] = br#"{"type":"OPEN"}"#;
const OFFER: &[u8] = br#"{"type":"OFFER","#;
const ANSWER: &[u8] = br#"{"type":"ANSWER","#;
const CANDIDATE: &[u8] = br#"{"type":"CANDIDATE","#;

/// What the threads share with the coordinator.
#[derive(Default)]
struct Shared {
    /// Set up: pairs registered.
    progress: Progress,
    messages: AtomicU64,
    round_trips: AtomicU64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    /// Waiting for `OPEN` on A and B (true once it came).
    Opening(bool, bool),
    /// Registered, no exchange under way.
    Ready,
    /// B waits for the `OFFER`.
    WaitOffer,
    /// A waits for the `ANSWER`.
    WaitAnswer,
    /// B waits for A's `CANDIDATE`.
    WaitCandidateA,
    /// A waits for B's `CANDIDATE`.
    WaitCandidateB,
    Failed,
}

struct Pair {
    step: Step,
    started: Instant,
    sent_at: Instant,
    last_beat: Instant,
    sides: [Option<Conn>; 2],
    /// The pair's messages as sent: `OFFER`, `ANSWER`, A's `CANDIDATE`, B's `CANDIDATE`.
    msgs: [Vec<u8>; 4],
}

/// What one thread measured.
pub fn run(o: &Opts) -> Result<serde_json::Value, String> {
    phases::unsupported(o, "peerjs", true)?;
    let mut mount = phases::path_or(o, "/");
    if !mount.ends_with('/') {
        mount.push('/');
    }
    let threads = (o.threads as u64).clamp(1, o.pairs.max(1));
    let shared = Arc::new(Shared::default());
    let run_tag = phases::seed();
    let sdp = serde_json::to_string(&phases::sdp_text(o.size)).expect("a string");
    let mut spawned = Threads::start_measuring(o);
    for t in 0..threads {
        let pairs = phases::part(o.pairs, threads, t);
        let w = Worker {
            target: Target::of(o, t),
            path: format!("{mount}peerjs?key=peerjs"),
            timeout: o.timeout,
            plan: Plan::new(o, threads, pairs, o.pairs, spawned.setup_flag()),
            sdp: sdp.clone(),
            id_prefix: format!("load-{:012x}-{t}", run_tag & 0xffff_ffff_ffff),
            rng: Rng::new(phases::thread_seed(0x7065_6572, t, run_tag)),
            shared: shared.clone(),
            connects: 0,
            pairs: (0..pairs).map(|_| None).collect(),
            out: Outcome::default(),
        };
        spawned.spawn(format!("peerjs-{t}"), move || w.run())?;
    }
    let measured = spawned.measured(o, &shared.progress, "pairs registered", "exchanges")?;
    let run = &measured.run;
    let registered = shared.progress.set_up.load(Relaxed);
    let Merged {
        setup,
        latency,
        errors,
    } = run.merged();
    if registered == 0 {
        return Err(format!("no pair could be registered: {errors:?}"));
    }
    let lat = phases::latency_json;
    let (messages, round_trips) = (
        shared.messages.load(Relaxed),
        shared.round_trips.load(Relaxed),
    );
    let mut v = serde_json::json!({
        "scenario": "peerjs",
        "url": o.url,
        "threads": threads,
        "pairs": o.pairs,
        "registered": registered,
        "clients": registered * 2,
        "failed": shared.progress.failed.load(Relaxed),
        "setup_s": run.setup_s,
        "clients_per_s": run.setup_rate(registered * 2),
        "setup_latency_us": lat(&setup),
        "window_s": run.window_s,
        "messages": messages,
        "messages_per_s": run.per_s(messages),
        "round_trips": round_trips,
        "round_trips_per_s": run.per_s(round_trips),
        "latency_us": lat(&latency),
        "errors": errors,
    });
    phases::extend(&mut v, measured.memory_json(registered * 2));
    Ok(v)
}

/// The readable summary of `run`'s JSON.
pub fn text(v: &serde_json::Value) -> String {
    let l = |k: &str| phases::latency_text(&v[k]);
    let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
    format!(
        "scenario peerjs  url {}  threads {}\n\
         pairs: {} of {} registered ({} clients) in {:.2} s, {} failed: {:.0} clients/s\n\
         registration latency (connects to both OPENs): {}\n\
         {}\
         messages relayed: {} in {:.1} s = {:.0}/s; offer/answer/candidate exchanges {:.0}/s at {} pairs\n\
         offer-to-answer latency: {}\n\
         errors: {}\n",
        v["url"].as_str().unwrap_or(""),
        v["threads"],
        v["registered"],
        v["pairs"],
        v["clients"],
        f("setup_s"),
        v["failed"],
        f("clients_per_s"),
        l("setup_latency_us"),
        phases::memory_text(v, v["clients"].as_u64().unwrap_or(0), "client"),
        v["messages"],
        f("window_s"),
        f("messages_per_s"),
        f("round_trips_per_s"),
        v["registered"],
        l("latency_us"),
        v["errors"]
    )
}

struct Worker {
    target: Target,
    /// The WebSocket path up to the key (`{mount}peerjs?key=peerjs`).
    path: String,
    timeout: Duration,
    /// Its rate: exchanges per second for this thread.
    plan: Plan,
    /// The SDP text as a JSON string.
    sdp: String,
    id_prefix: String,
    rng: Rng,
    shared: Arc<Shared>,
    connects: usize,
    pairs: Vec<Option<Pair>>,
    out: Outcome,
}

const A: usize = 0;
const B: usize = 1;

fn setting_up(step: Option<Step>) -> bool {
    matches!(step, Some(Step::Opening(..)))
}

impl Worker {
    fn run(mut self) -> Outcome {
        let (shared, plan) = (self.shared.clone(), self.plan.clone());
        if let Err(e) = wsloop::run(&mut self, &shared.progress.phase, &plan) {
            self.out.errors.push(e);
        }
        self.out
    }

    fn step(&self, i: usize) -> Option<Step> {
        self.pairs[i].as_ref().map(|p| p.step)
    }

    fn start(&mut self, poll: &Poll, i: usize) {
        let ids = [
            format!("{}-{i}-a", self.id_prefix),
            format!("{}-{i}-b", self.id_prefix),
        ];
        let cid = format!("dc_{:x}", self.rng.next_u64());
        let sdp = &self.sdp;
        let msg = |ty: &str, payload: &str, dst: &str| {
            format!(r#"{{"type":"{ty}","payload":{{{payload},"type":"data","connectionId":"{cid}"}},"dst":"{dst}"}}"#)
                .into_bytes()
        };
        let candidate = r#""candidate":{"candidate":"candidate:842163049 1 udp 1677729535 127.0.0.1 50000 typ srflx raddr 0.0.0.0 rport 0 generation 0 ufrag Xk3x network-cost 999","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"Xk3x"}"#;
        let msgs = [
            msg(
                "OFFER",
                &format!(r#""sdp":{{"type":"offer","sdp":{sdp}}}"#),
                &ids[B],
            ),
            msg(
                "ANSWER",
                &format!(r#""sdp":{{"type":"answer","sdp":{sdp}}}"#),
                &ids[A],
            ),
            msg("CANDIDATE", candidate, &ids[B]),
            msg("CANDIDATE", candidate, &ids[A]),
        ];
        let now = Instant::now();
        let mut p = Pair {
            step: Step::Opening(false, false),
            started: now,
            sent_at: now,
            last_beat: now,
            sides: [None, None],
            msgs,
        };
        for side in [A, B] {
            let token = self.rng.next_u64();
            let q = format!(
                "{}&id={}&token={:010x}&version=1.5.5",
                self.path,
                ids[side],
                token & 0xff_ffff_ffff
            );
            let conn =
                (self.target).ws(poll, Token(i * 2 + side), self.connects, &q, &mut self.rng);
            self.connects += 1;
            match conn {
                Ok(c) => p.sides[side] = Some(c),
                Err(e) => {
                    fail(&mut p, poll, &self.shared, &mut self.out.errors, &e);
                    break;
                }
            }
        }
        self.pairs[i] = Some(p);
        self.flush(poll, i);
    }

    fn send_offer(&mut self, i: usize) {
        let Some(p) = self.pairs[i].as_mut() else {
            return;
        };
        if p.step != Step::Ready {
            return;
        }
        if let Some(c) = p.sides[A].as_mut() {
            c.send(&p.msgs[0], &mut self.rng);
            p.sent_at = Instant::now();
            p.step = Step::WaitOffer;
        }
    }
}

impl Sides for Worker {
    fn sides(&mut self, i: usize) -> Option<(&mut [Option<Conn>], &mut Rng)> {
        let p = self.pairs[i].as_mut()?;
        Some((&mut p.sides, &mut self.rng))
    }

    fn on_message(&mut self, poll: &Poll, i: usize, side: usize, text: &[u8], running: bool) {
        let Some(p) = self.pairs[i].as_mut() else {
            return;
        };
        let relayed = |p: &mut Pair, from: usize, msg: usize, next: Step, rng: &mut Rng| {
            if let Some(c) = p.sides[from].as_mut() {
                c.send(&p.msgs[msg], rng);
            }
            p.step = next;
        };
        match (p.step, side) {
            (Step::Failed, _) => return,
            (Step::Opening(a, b), _) if text == OPEN => {
                let (a, b) = (a || side == A, b || side == B);
                p.step = Step::Opening(a, b);
                if a && b {
                    p.step = Step::Ready;
                    self.out.setup.record(p.started.elapsed().as_nanos() as u64);
                    self.shared.progress.set_up.fetch_add(1, Relaxed);
                    if running && self.plan.rate.is_none() {
                        self.send_offer(i);
                    }
                }
                return;
            }
            (Step::WaitOffer, B) if text.starts_with(OFFER) => {
                relayed(p, B, 1, Step::WaitAnswer, &mut self.rng);
            }
            (Step::WaitAnswer, A) if text.starts_with(ANSWER) => {
                self.out
                    .latency
                    .record(p.sent_at.elapsed().as_nanos() as u64);
                self.shared.round_trips.fetch_add(1, Relaxed);
                relayed(p, A, 2, Step::WaitCandidateA, &mut self.rng);
            }
            (Step::WaitCandidateA, B) if text.starts_with(CANDIDATE) => {
                relayed(p, B, 3, Step::WaitCandidateB, &mut self.rng);
            }
            (Step::WaitCandidateB, A) if text.starts_with(CANDIDATE) => {
                p.step = Step::Ready;
                if self.shared.progress.phase.load(Relaxed) == RUNNING && self.plan.rate.is_none() {
                    self.send_offer(i);
                }
            }
            _ => {
                let what = String::from_utf8_lossy(&text[..text.len().min(80)]).into_owned();
                let msg = format!("unexpected message: {what}");
                fail(p, poll, &self.shared, &mut self.out.errors, &msg);
                return;
            }
        }
        self.shared.messages.fetch_add(1, Relaxed);
    }

    fn fail(&mut self, poll: &Poll, i: usize, why: &str) {
        if let Some(p) = self.pairs[i].as_mut() {
            fail(p, poll, &self.shared, &mut self.out.errors, why);
        }
    }
}

impl wsloop::Units for Worker {
    fn len(&self) -> usize {
        self.pairs.len()
    }

    fn start(&mut self, poll: &Poll, i: usize) {
        Worker::start(self, poll, i);
    }

    fn setting_up(&self, i: usize) -> bool {
        setting_up(self.step(i))
    }

    fn unit_of(&self, token: Token) -> usize {
        token.0 / 2
    }

    fn ready(&mut self, poll: &Poll, i: usize, running: bool) {
        self.drive(poll, i, running);
    }

    /// Deadlines of pairs setting up, and heartbeats.
    fn tick(&mut self, poll: &Poll, now: Instant, _setting_up: u64) {
        for i in 0..self.pairs.len() {
            let Some(p) = self.pairs[i].as_mut() else {
                continue;
            };
            match p.step {
                Step::Failed => {}
                Step::Opening(..) if now.duration_since(p.started) > self.timeout => {
                    fail(
                        p,
                        poll,
                        &self.shared,
                        &mut self.out.errors,
                        "setup timed out",
                    );
                }
                Step::Opening(..) => {}
                _ if now.duration_since(p.last_beat) >= HEARTBEAT_EVERY => {
                    p.last_beat = now;
                    for c in p.sides.iter_mut().flatten() {
                        c.send(HEARTBEAT, &mut self.rng);
                    }
                    self.flush(poll, i);
                }
                _ => {}
            }
        }
    }

    fn begin(&mut self, poll: &Poll) {
        for i in 0..self.pairs.len() {
            self.send_offer(i);
            self.flush(poll, i);
        }
    }

    fn paced_len(&self) -> usize {
        self.pairs.len()
    }

    /// A pair not exchanging starts an exchange.
    fn pace(&mut self, poll: &Poll, i: usize) -> bool {
        if self.step(i) != Some(Step::Ready) {
            return false;
        }
        self.send_offer(i);
        self.flush(poll, i);
        true
    }
}

fn fail(p: &mut Pair, poll: &Poll, shared: &Shared, errors: &mut Vec<String>, why: &str) {
    if p.step == Step::Failed {
        return;
    }
    p.step = Step::Failed;
    wsconn::fail(&mut p.sides, poll, &shared.progress.failed, errors, why);
}
