//! The `ywebrtc` scenario: y-webrtc signaling (the protocol of y-webrtc 10.3.0's
//! `bin/server.js`), publishes fanned out to every subscriber of a topic.
//!
//! Setup: `--connections` WebSockets on the URL's path (`/y-webrtc` by default; the original
//! server takes any path), at most `--concurrency` setting up at once, split into topics of
//! `--fanout` subscribers each (the last topic takes the rest; topic names are random per run).
//! Each sends `{"type":"subscribe","topics":[T]}` once upgraded, then `{"type":"ping"}`: the
//! server handles a socket's messages in order, so its `pong` says the subscription is in
//! place. Setup latency runs from the connect to the `pong`.
//!
//! Then, for `--duration`, every topic has one publish in flight at a time: a subscriber (each
//! of the topic's subscribers in turn) sends `{"type":"publish","topic":T,"data":"…"}` whose
//! data is `--size` characters, the send time first (16 hex digits of the tool's clock), and
//! the server delivers it to every subscriber of T, the sender too. The publish is complete
//! when the last of them got it; its latency runs from the send time in the data to that last
//! receipt (one clock: all subscribers of a topic live in one thread of this process). Closed
//! loop by default (the next publish as soon as one completes); with `--rate R`, R publishes
//! per second over all topics, round robin, a topic whose publish is still in flight skipped.
//! Deliveries are the publishes received, by all subscribers.
//!
//! With `--server-pid`, the server's memory before the first connect and with every
//! subscription in place (before the publishes), per subscriber. One mio event loop per thread
//! (`--threads`), each owning whole topics; `--workers` is not supported for this scenario.

use crate::args::Opts;
use crate::engine::now_ns;
use crate::phases;
use crate::phases::{Merged, Outcome, Progress, Threads};
use crate::ws::Rng;
use crate::wsconn::{Conn, Target};
use crate::wsloop::{self, Plan, RUNNING};
use mio::{Poll, Token};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PING: &[u8] = br#"{"type":"ping"}"#;
const PONG: &[u8] = br#"{"type":"pong"}"#;
const PUBLISH: &[u8] = br#"{"type":"publish","#;
const DATA: &[u8] = br#""data":""#;

/// What the threads share with the coordinator.
#[derive(Default)]
struct Shared {
    /// Set up: subscribers subscribed.
    progress: Progress,
    publishes: AtomicU64,
    deliveries: AtomicU64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    /// Waiting for the 101.
    Connecting,
    /// Subscribe and ping sent, waiting for the pong.
    Subscribing,
    Subscribed,
    Failed,
}

struct Sub {
    conn: Option<Conn>,
    step: Step,
    topic: usize,
    started: Instant,
    /// The send time of the last publish this subscriber got (each counts once).
    seen: u64,
}

struct Topic {
    /// Its subscribers (indexes into the thread's `subs`).
    members: Vec<usize>,
    /// The subscribe message.
    subscribe: Vec<u8>,
    /// The publish message; the send time goes at `stamp_at`.
    publish: Vec<u8>,
    stamp_at: usize,
    /// Subscribers subscribed and still connected.
    alive: u32,
    /// The next publisher, counting round the members.
    turn: usize,
    /// The publish in flight: its send time and how many subscribers have yet to get it.
    in_flight: Option<(u64, u32)>,
}

/// What one thread measured.
pub fn run(o: &Opts) -> Result<serde_json::Value, String> {
    phases::unsupported(o, "ywebrtc", true)?;
    let path = phases::path_or(o, "/y-webrtc");
    let topics = o.connections.div_ceil(o.fanout);
    let threads = (o.threads as u64).clamp(1, topics.max(1));
    let shared = Arc::new(Shared::default());
    let run_tag = phases::seed();
    let mut spawned = Threads::start_measuring(o);
    let mut first_topic = 0;
    for t in 0..threads {
        let my_topics = phases::part(topics, threads, t);
        let mut w = Worker {
            target: Target::of(o, t),
            path: path.clone(),
            timeout: o.timeout,
            plan: Plan::new(o, threads, my_topics, topics, spawned.setup_flag()),
            rng: Rng::new(phases::thread_seed(0x0079_7765, t, run_tag)),
            shared: shared.clone(),
            subs: Vec::new(),
            topics: Vec::new(),
            out: Outcome::default(),
        };
        for k in first_topic..first_topic + my_topics {
            let members = o.fanout.min(o.connections - k * o.fanout);
            let name = format!("load-{:012x}-{k}", run_tag & 0xffff_ffff_ffff);
            w.add_topic(&name, members as usize, o.size);
        }
        first_topic += my_topics;
        spawned.spawn(format!("ywebrtc-{t}"), move || w.run())?;
    }
    let measured = spawned.measured(o, &shared.progress, "subscribers", "publishes")?;
    let run = &measured.run;
    let subscribed = shared.progress.set_up.load(Relaxed);
    let Merged {
        setup,
        latency,
        errors,
    } = run.merged();
    if subscribed == 0 {
        return Err(format!("no subscriber could be set up: {errors:?}"));
    }
    let lat = phases::latency_json;
    let (publishes, deliveries) = (
        shared.publishes.load(Relaxed),
        shared.deliveries.load(Relaxed),
    );
    let mut v = serde_json::json!({
        "scenario": "ywebrtc",
        "url": o.url,
        "threads": threads,
        "connections": o.connections,
        "fanout": o.fanout,
        "topics": topics,
        "subscribed": subscribed,
        "failed": shared.progress.failed.load(Relaxed),
        "setup_s": run.setup_s,
        "subscribers_per_s": run.setup_rate(subscribed),
        "setup_latency_us": lat(&setup),
        "window_s": run.window_s,
        "publishes": publishes,
        "publishes_per_s": run.per_s(publishes),
        "deliveries": deliveries,
        "deliveries_per_s": run.per_s(deliveries),
        "latency_us": lat(&latency),
        "errors": errors,
    });
    phases::extend(&mut v, measured.memory_json(subscribed));
    Ok(v)
}

/// The readable summary of `run`'s JSON.
pub fn text(v: &serde_json::Value) -> String {
    let l = |k: &str| phases::latency_text(&v[k]);
    let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
    format!(
        "scenario ywebrtc  url {}  threads {}\n\
         subscribers: {} of {} in {} topics of {} subscribed in {:.2} s, {} failed: {:.0} subscribers/s\n\
         subscribe latency (connect to the pong after the subscribe): {}\n\
         {}\
         publishes: {} in {:.1} s = {:.0}/s; deliveries {} = {:.0}/s\n\
         publish-to-last-subscriber latency: {}\n\
         errors: {}\n",
        v["url"].as_str().unwrap_or(""),
        v["threads"],
        v["subscribed"],
        v["connections"],
        v["topics"],
        v["fanout"],
        f("setup_s"),
        v["failed"],
        f("subscribers_per_s"),
        l("setup_latency_us"),
        phases::memory_text(v, v["subscribed"].as_u64().unwrap_or(0), "subscriber"),
        v["publishes"],
        f("window_s"),
        f("publishes_per_s"),
        v["deliveries"],
        f("deliveries_per_s"),
        l("latency_us"),
        v["errors"]
    )
}

/// Where `needle` first occurs in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The send time at the front of a publish's data (16 hex digits).
fn stamp_of(text: &[u8]) -> Option<u64> {
    let at = find(text, DATA)? + DATA.len();
    let hex = std::str::from_utf8(text.get(at..at + 16)?).ok()?;
    u64::from_str_radix(hex, 16).ok()
}

struct Worker {
    target: Target,
    path: String,
    timeout: Duration,
    /// Its rate: publishes per second for this thread.
    plan: Plan,
    rng: Rng,
    shared: Arc<Shared>,
    subs: Vec<Sub>,
    topics: Vec<Topic>,
    out: Outcome,
}

impl Worker {
    fn add_topic(&mut self, name: &str, members: usize, size: usize) {
        let k = self.topics.len();
        let first = self.subs.len();
        let now = Instant::now();
        self.subs.extend((0..members).map(|_| Sub {
            conn: None,
            step: Step::Connecting,
            topic: k,
            started: now,
            seen: 0,
        }));
        let name = serde_json::to_string(name).expect("a string");
        let head = format!(r#"{{"type":"publish","topic":{name},"data":""#);
        let mut publish = head.clone().into_bytes();
        publish.resize(publish.len() + size, b'A');
        publish.extend_from_slice(b"\"}");
        self.topics.push(Topic {
            members: (first..first + members).collect(),
            subscribe: format!(r#"{{"type":"subscribe","topics":[{name}]}}"#).into_bytes(),
            publish,
            stamp_at: head.len(),
            alive: 0,
            turn: 0,
            in_flight: None,
        });
    }

    fn run(mut self) -> Outcome {
        let (shared, plan) = (self.shared.clone(), self.plan.clone());
        if let Err(e) = wsloop::run(&mut self, &shared.progress.phase, &plan) {
            self.out.errors.push(e);
        }
        self.out
    }

    fn start(&mut self, poll: &Poll, s: usize) {
        self.subs[s].started = Instant::now();
        match (self.target).ws(poll, Token(s), s, &self.path, &mut self.rng) {
            Ok(c) => {
                self.subs[s].conn = Some(c);
                self.flush(poll, s);
            }
            Err(e) => self.fail(poll, s, &e),
        }
    }

    /// Publish on topic `k` from its next subscriber; false if none is left.
    fn publish(&mut self, poll: &Poll, k: usize) -> bool {
        let t = &mut self.topics[k];
        if t.in_flight.is_some() || t.alive == 0 {
            return false;
        }
        let n = t.members.len();
        let Some(from) = (0..n)
            .map(|j| t.members[(t.turn + j) % n])
            .find(|&s| self.subs[s].step == Step::Subscribed)
        else {
            return false;
        };
        t.turn = t.turn.wrapping_add(1);
        let stamp = now_ns();
        let hex = format!("{stamp:016x}");
        t.publish[t.stamp_at..t.stamp_at + 16].copy_from_slice(hex.as_bytes());
        t.in_flight = Some((stamp, t.alive));
        if let Some(c) = self.subs[from].conn.as_mut() {
            c.send(&t.publish, &mut self.rng);
        }
        self.shared.publishes.fetch_add(1, Relaxed);
        self.flush(poll, from);
        true
    }

    /// Publish `k`'s publish in flight reached every subscriber still there.
    fn complete(&mut self, poll: &Poll, k: usize) {
        let Some((stamp, _)) = self.topics[k].in_flight.take() else {
            return;
        };
        self.out.latency.record(now_ns().saturating_sub(stamp));
        if self.shared.progress.phase.load(Relaxed) == RUNNING && self.plan.rate.is_none() {
            self.publish(poll, k);
        }
    }

    fn flush(&mut self, poll: &Poll, s: usize) {
        if let Some(Err(e)) = self.subs[s].conn.as_mut().map(Conn::flush) {
            self.fail(poll, s, &e);
        }
    }

    fn drive(&mut self, poll: &Poll, s: usize, running: bool) {
        self.flush(poll, s);
        let sub = &mut self.subs[s];
        let Some(c) = sub.conn.as_mut() else {
            return;
        };
        let mut msgs = Vec::new();
        let got = c.read(&mut msgs, &mut self.rng);
        if sub.step == Step::Connecting && c.is_open() {
            c.send(&self.topics[sub.topic].subscribe, &mut self.rng);
            c.send(PING, &mut self.rng);
            sub.step = Step::Subscribing;
        }
        for m in msgs {
            self.on_message(poll, s, &m, running);
        }
        match got {
            Err(e) => self.fail(poll, s, &e),
            Ok(()) => self.flush(poll, s),
        }
    }

    fn on_message(&mut self, poll: &Poll, s: usize, text: &[u8], running: bool) {
        let sub = &mut self.subs[s];
        let k = sub.topic;
        match sub.step {
            Step::Subscribing if text == PONG => {
                sub.step = Step::Subscribed;
                self.out
                    .setup
                    .record(sub.started.elapsed().as_nanos() as u64);
                self.shared.progress.set_up.fetch_add(1, Relaxed);
                self.topics[k].alive += 1;
                if running && self.plan.rate.is_none() {
                    self.publish(poll, k);
                }
            }
            Step::Subscribed if text.starts_with(PUBLISH) => {
                self.shared.deliveries.fetch_add(1, Relaxed);
                let stamp = stamp_of(text);
                match self.topics[k].in_flight {
                    Some((want, left)) if stamp == Some(want) && sub.seen != want => {
                        sub.seen = want;
                        self.topics[k].in_flight = Some((want, left - 1));
                        if left == 1 {
                            self.complete(poll, k);
                        }
                    }
                    _ => self.out.errors.push("a publish not in flight".into()),
                }
            }
            Step::Subscribed if text == PONG => {}
            Step::Failed => {}
            _ => {
                let what = String::from_utf8_lossy(&text[..text.len().min(80)]).into_owned();
                self.fail(poll, s, &format!("unexpected message: {what}"));
            }
        }
    }

    fn fail(&mut self, poll: &Poll, s: usize, why: &str) {
        let sub = &mut self.subs[s];
        if sub.step == Step::Failed {
            return;
        }
        let was = std::mem::replace(&mut sub.step, Step::Failed);
        if let Some(mut c) = sub.conn.take() {
            c.deregister(poll);
        }
        self.shared.progress.failed.fetch_add(1, Relaxed);
        self.out.errors.push(why.to_string());
        if was == Step::Subscribed {
            let (k, seen) = (sub.topic, sub.seen);
            let t = &mut self.topics[k];
            t.alive -= 1;
            // The publish in flight no longer waits for this one.
            if let Some((want, left)) = t.in_flight {
                if seen != want {
                    t.in_flight = Some((want, left - 1));
                    if left == 1 {
                        self.complete(poll, k);
                    }
                }
            }
        }
    }
}

impl wsloop::Units for Worker {
    fn len(&self) -> usize {
        self.subs.len()
    }

    fn start(&mut self, poll: &Poll, s: usize) {
        Worker::start(self, poll, s);
    }

    fn setting_up(&self, s: usize) -> bool {
        matches!(self.subs[s].step, Step::Connecting | Step::Subscribing)
    }

    fn ready(&mut self, poll: &Poll, s: usize, running: bool) {
        self.drive(poll, s, running);
    }

    /// Deadlines of the subscribers setting up (those started: they have a socket).
    fn tick(&mut self, poll: &Poll, now: Instant, setting_up: u64) {
        if setting_up == 0 {
            return;
        }
        for s in 0..self.subs.len() {
            let sub = &self.subs[s];
            let late = now.duration_since(sub.started) > self.timeout;
            if sub.conn.is_some() && self.setting_up(s) && late {
                self.fail(poll, s, "setup timed out");
            }
        }
    }

    fn begin(&mut self, poll: &Poll) {
        for k in 0..self.topics.len() {
            self.publish(poll, k);
        }
    }

    fn paced_len(&self) -> usize {
        self.topics.len()
    }

    /// A topic with no publish in flight publishes.
    fn pace(&mut self, poll: &Poll, k: usize) -> bool {
        self.topics[k].in_flight.is_none() && self.publish(poll, k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_carries_its_send_time_and_size() {
        let mut w = Worker {
            target: Target {
                addr: "127.0.0.1:9".parse().unwrap(),
                host: String::new(),
                sources: Vec::new(),
            },
            path: "/y-webrtc".into(),
            timeout: Duration::from_secs(1),
            plan: Plan {
                setup_done: Arc::default(),
                concurrency: 1,
                rate: None,
                spin: false,
            },
            rng: Rng::new(1),
            shared: Arc::default(),
            subs: Vec::new(),
            topics: Vec::new(),
            out: Outcome::default(),
        };
        w.add_topic("room \"a\"", 3, 40);
        w.add_topic("b", 2, 16);
        assert_eq!(w.subs.len(), 5);
        assert_eq!(w.topics[1].members, vec![3, 4]);
        let t = &mut w.topics[0];
        t.publish[t.stamp_at..t.stamp_at + 16].copy_from_slice(b"00000000deadbeef");
        let v: serde_json::Value = serde_json::from_slice(&t.publish).unwrap();
        assert_eq!(v["topic"], "room \"a\"");
        assert_eq!(v["data"].as_str().unwrap().len(), 40);
        let sub: serde_json::Value = serde_json::from_slice(&t.subscribe).unwrap();
        assert_eq!(sub["topics"][0], "room \"a\"");
        // What the server sends back: the publish with `clients` appended.
        let mut back = t.publish[..t.publish.len() - 1].to_vec();
        back.extend_from_slice(br#","clients":3}"#);
        assert!(back.starts_with(PUBLISH));
        assert_eq!(stamp_of(&back), Some(0xdead_beef));
        assert_eq!(stamp_of(br#"{"type":"publish","data":"12"}"#), None);
        assert_eq!(
            stamp_of(br#"{"type":"publish","data":"zzzzzzzzzzzzzzzz"}"#),
            None
        );
    }
}
