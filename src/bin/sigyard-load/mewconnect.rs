//! The `mewconnect` scenario: MewConnect v2 pairings, then encrypted-offer/answer round trips.
//!
//! Setup: `--pairs` pairs are made with at most `--concurrency` pairings in flight. A pairing
//! is: initiator upgrade (`role=initiator`, fresh random `connId`) → `initiated` → receiver
//! upgrade with the same `connId` and `signed` → `confirmation` on both sockets. Its latency
//! runs from the initiator's connect to the second confirmation; pairings per second are the
//! completed pairings over the setup time. Then, for `--duration`, every pair runs a closed
//! loop: the initiator sends an `offersignal` with an eccrypto-shaped payload whose ciphertext
//! has `--size` bytes, the receiver answers the `offer` with an `answersignal` of the same
//! shape, and the initiator's `answer` ends one round trip (both directions through the
//! server's validation and relay).
//!
//! One mio event loop per thread (`--threads`, `wsloop.rs`), each owning its share of the pairs,
//! with the tool's own WebSocket client (`wsconn.rs`) and histogram (`hist.rs`). Prints its own summary
//! (text, or JSON with `--json`); `--workers` is not supported for this scenario.

use crate::args::Opts;
use crate::phases::{self, Merged, Outcome, Progress, Threads};
use crate::ws::Rng;
use crate::wsconn::{self, Conn, Sides, Target};
use crate::wsloop::{self, Plan, RUNNING};
use mio::{Poll, Token};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the threads share with the coordinator.
#[derive(Default)]
struct Shared {
    /// Set up: pairs made.
    progress: Progress,
    round_trips: AtomicU64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    WaitInitiated,
    WaitConfirmations { initiator: bool, receiver: bool },
    Paired,
    WaitOffer,
    WaitAnswer,
    Failed,
}

struct Pair {
    conn_id: String,
    step: Step,
    started: Instant,
    sent_at: Instant,
    sides: [Option<Conn>; 2],
}

/// What one thread measured.
pub fn run(o: &Opts) -> Result<serde_json::Value, String> {
    phases::unsupported(o, "mewconnect", false)?;
    let path = phases::path_or(o, "/");
    let threads = (o.threads as u64).clamp(1, o.pairs.max(1));
    let shared = Arc::new(Shared::default());
    let mut spawned = Threads::start();
    for t in 0..threads {
        let pairs = phases::part(o.pairs, threads, t);
        let initiators = Target::unbound(o.addr, &o.host);
        let receivers = match &o.peer {
            Some((addr, host)) => Target::unbound(*addr, host),
            None => initiators.clone(),
        };
        let w = Worker {
            targets: [initiators, receivers],
            path: path.clone(),
            timeout: o.timeout,
            plan: Plan::new(o, threads, pairs, o.pairs, spawned.setup_flag()),
            offer: frame_text("offersignal", o.size),
            answer: frame_text("answersignal", o.size),
            rng: Rng::new(phases::thread_seed(0x006d_6577, t, phases::seed())),
            shared: shared.clone(),
            pairs: (0..pairs).map(|_| None).collect(),
            out: Outcome::default(),
        };
        spawned.spawn(format!("mew-{t}"), move || w.run())?;
    }
    let run = spawned.run(o, &shared.progress, "pairs made", "round trips")?;
    let (setup_s, window_s) = (run.setup_s, run.window_s);
    let paired = shared.progress.set_up.load(Relaxed);
    let Merged {
        setup: pairing,
        latency: rtt,
        errors,
    } = run.merged();
    let lat = phases::latency_json;
    let round_trips = shared.round_trips.load(Relaxed);
    Ok(serde_json::json!({
        "scenario": "mewconnect",
        "url": o.url,
        "threads": threads,
        "pairs": o.pairs,
        "paired": paired,
        "failed": shared.progress.failed.load(Relaxed),
        "setup_s": setup_s,
        "pairings_per_s": if setup_s > 0.0 { paired as f64 / setup_s } else { 0.0 },
        "pairing_latency_us": lat(&pairing),
        "window_s": window_s,
        "round_trips": round_trips,
        "round_trips_per_s": run.per_s(round_trips),
        "latency_us": lat(&rtt),
        "errors": errors,
    }))
}

/// The readable summary of `run`'s JSON.
pub fn text(v: &serde_json::Value) -> String {
    let l = |k: &str| phases::latency_text(&v[k]);
    let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
    format!(
        "scenario mewconnect  url {}  threads {}\n\
         pairs: {} of {} made in {:.2} s, {} failed: {:.0} pairings/s\n\
         pairing latency (initiator connect to both confirmations): {}\n\
         offer/answer round trips: {} in {:.1} s = {:.0}/s at {} concurrent pairs\n\
         round-trip latency: {}\n\
         errors: {}\n",
        v["url"].as_str().unwrap_or(""),
        v["threads"],
        v["paired"],
        v["pairs"],
        f("setup_s"),
        v["failed"],
        f("pairings_per_s"),
        l("pairing_latency_us"),
        v["round_trips"],
        f("window_s"),
        f("round_trips_per_s"),
        v["paired"],
        l("latency_us"),
        v["errors"]
    )
}

/// `{"action":<action>,"data":{"data":<EncryptedPayload>}}` with a `size`-byte ciphertext.
fn frame_text(action: &str, size: usize) -> Vec<u8> {
    let b = |n: usize, v: u8| serde_json::json!({"type": "Buffer", "data": vec![v; n]});
    let payload = serde_json::json!({"iv": b(16, 1), "ephemPublicKey": b(65, 4),
        "ciphertext": b(size, 7), "mac": b(32, 9)});
    serde_json::json!({"action": action, "data": {"data": payload}})
        .to_string()
        .into_bytes()
}

struct Worker {
    /// Where initiators connect, and receivers (`--peer-url`, else the same).
    targets: [Target; 2],
    path: String,
    timeout: Duration,
    /// Its rate: offers per second for this thread.
    plan: Plan,
    offer: Vec<u8>,
    answer: Vec<u8>,
    rng: Rng,
    shared: Arc<Shared>,
    pairs: Vec<Option<Pair>>,
    out: Outcome,
}

const INITIATOR: usize = 0;
const RECEIVER: usize = 1;

/// A pair of `step` is still pairing.
fn pairing(step: Step) -> bool {
    !matches!(
        step,
        Step::Paired | Step::WaitOffer | Step::WaitAnswer | Step::Failed
    )
}

impl Worker {
    fn run(mut self) -> Outcome {
        let (shared, plan) = (self.shared.clone(), self.plan.clone());
        if let Err(e) = wsloop::run(&mut self, &shared.progress.phase, &plan) {
            self.out.errors.push(e);
        }
        self.out
    }

    /// Connect `side` of pair `i` (as `role`).
    fn connect(&mut self, poll: &Poll, i: usize, side: usize, role: &str) {
        let Some(p) = self.pairs[i].as_mut() else {
            return;
        };
        let q = format!(
            "{}?role={role}&connId={}&signed={}",
            self.path, p.conn_id, SIGNED
        );
        let token = Token(i * 2 + side);
        match self.targets[side].ws(poll, token, 0, &q, &mut self.rng) {
            Ok(c) => p.sides[side] = Some(c),
            Err(e) => fail(p, poll, &self.shared, &mut self.out.errors, &e),
        }
    }

    fn send_offer(&mut self, i: usize) {
        let Some(p) = self.pairs[i].as_mut() else {
            return;
        };
        if p.step != Step::Paired {
            return;
        }
        if let Some(c) = p.sides[INITIATOR].as_mut() {
            c.send(&self.offer, &mut self.rng);
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
        let is = |name: &str| text.starts_with(format!("{{\"signal\":\"{name}\"").as_bytes());
        let Some(p) = self.pairs[i].as_mut() else {
            return;
        };
        match (p.step, side) {
            (Step::Failed, _) => {}
            (Step::WaitInitiated, INITIATOR) if is("initiated") => {
                p.step = Step::WaitConfirmations {
                    initiator: false,
                    receiver: false,
                };
                self.connect(poll, i, RECEIVER, "receiver");
            }
            (
                Step::WaitConfirmations {
                    initiator,
                    receiver,
                },
                _,
            ) if is("confirmation") => {
                let (i_ok, r_ok) = if side == INITIATOR {
                    (true, receiver)
                } else {
                    (initiator, true)
                };
                p.step = Step::WaitConfirmations {
                    initiator: i_ok,
                    receiver: r_ok,
                };
                if i_ok && r_ok {
                    p.step = Step::Paired;
                    self.out.setup.record(p.started.elapsed().as_nanos() as u64);
                    self.shared.progress.set_up.fetch_add(1, Relaxed);
                    if running && self.plan.rate.is_none() {
                        self.send_offer(i);
                    }
                }
            }
            (Step::WaitOffer, RECEIVER) if is("offer") => {
                if let Some(c) = p.sides[RECEIVER].as_mut() {
                    c.send(&self.answer, &mut self.rng);
                }
                p.step = Step::WaitAnswer;
            }
            (Step::WaitAnswer, INITIATOR) if is("answer") => {
                self.out
                    .latency
                    .record(p.sent_at.elapsed().as_nanos() as u64);
                self.shared.round_trips.fetch_add(1, Relaxed);
                p.step = Step::Paired;
                if self.shared.progress.phase.load(Relaxed) == RUNNING && self.plan.rate.is_none() {
                    self.send_offer(i);
                }
            }
            _ => {
                let what = String::from_utf8_lossy(&text[..text.len().min(60)]).into_owned();
                let msg = format!("unexpected message: {what}");
                fail(p, poll, &self.shared, &mut self.out.errors, &msg);
            }
        }
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

    /// A pairing starts: its initiator connects.
    fn start(&mut self, poll: &Poll, i: usize) {
        let conn_id = format!("{:016x}{:016x}", self.rng.next_u64(), self.rng.next_u64());
        let now = Instant::now();
        self.pairs[i] = Some(Pair {
            conn_id,
            step: Step::WaitInitiated,
            started: now,
            sent_at: now,
            sides: [None, None],
        });
        self.connect(poll, i, INITIATOR, "initiator");
        self.flush(poll, i);
    }

    fn setting_up(&self, i: usize) -> bool {
        self.pairs[i].as_ref().is_some_and(|p| pairing(p.step))
    }

    fn unit_of(&self, token: Token) -> usize {
        token.0 / 2
    }

    fn ready(&mut self, poll: &Poll, i: usize, running: bool) {
        self.drive(poll, i, running);
    }

    /// Pairing deadlines.
    fn tick(&mut self, poll: &Poll, now: Instant, setting_up: u64) {
        if setting_up == 0 {
            return;
        }
        for p in self.pairs.iter_mut().flatten() {
            if pairing(p.step) && now.duration_since(p.started) > self.timeout {
                let why = "pairing timed out";
                fail(p, poll, &self.shared, &mut self.out.errors, why);
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

    /// A pair not waiting for an answer sends an offer.
    fn pace(&mut self, poll: &Poll, i: usize) -> bool {
        if !self.pairs[i]
            .as_ref()
            .is_some_and(|p| p.step == Step::Paired)
        {
            return false;
        }
        self.send_offer(i);
        self.flush(poll, i);
        true
    }
}

/// The `signed` of every pair: 130 hex digits, as the real clients send.
const SIGNED: &str = "1b0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn fail(p: &mut Pair, poll: &Poll, shared: &Shared, errors: &mut Vec<String>, why: &str) {
    if p.step == Step::Failed {
        return;
    }
    p.step = Step::Failed;
    wsconn::fail(&mut p.sides, poll, &shared.progress.failed, errors, why);
}
