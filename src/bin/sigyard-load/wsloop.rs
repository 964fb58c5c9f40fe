//! The event loop of one thread of the dialect scenarios that hold many sockets in one mio
//! poll (`peerjs`, `ywebrtc`, `webtorrent`, `mewconnect`, `socketio`), written once: set-up with at most `--concurrency`
//! units (a client, or a pair of them) setting up at once, a tick ten times a second (set-up
//! deadlines, heartbeats), the start of the traffic when the coordinator says so (every unit
//! at once in closed loop, or `--rate` per second round robin, a busy one skipped), and the
//! sockets' readiness handed to the scenario. The scenario keeps its own state per unit and
//! says what a unit is through [`Units`].

use crate::args::Opts;
use crate::phases;
use mio::{Events, Poll, Token};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

// Phase 0 (the default) is set-up.
pub const RUNNING: u8 = 1;
pub const STOP: u8 = 2;

/// How one thread sets up and paces its units.
#[derive(Clone)]
pub struct Plan {
    /// Set once every unit is set up or failed.
    pub setup_done: Arc<AtomicBool>,
    /// How many units set up at once.
    pub concurrency: u64,
    /// `--rate`: paced turns per second for this thread; `None`: closed loop.
    pub rate: Option<f64>,
    /// `--spin`: poll without sleeping while the traffic runs.
    pub spin: bool,
}

impl Plan {
    /// The plan of one of `threads` threads with `part` of the run's `total` units (or paced
    /// things), that sets `setup_done` once set up.
    pub fn new(o: &Opts, threads: u64, part: u64, total: u64, setup_done: Arc<AtomicBool>) -> Plan {
        Plan {
            setup_done,
            concurrency: phases::concurrency(o, threads),
            rate: phases::rate(o, part, total),
            spin: o.spin,
        }
    }
}

/// What the loop needs from a scenario's thread.
pub trait Units {
    /// How many units this thread sets up (started in index order).
    fn len(&self) -> usize;
    /// Start setting up unit `i` (connects, first messages queued and flushed).
    fn start(&mut self, poll: &Poll, i: usize);
    /// Unit `i` is still setting up (not set up and not failed).
    fn setting_up(&self, i: usize) -> bool;
    /// The unit whose socket is registered as `token` (by default, unit `token`).
    fn unit_of(&self, token: Token) -> usize {
        token.0
    }
    /// A socket of unit `i` is ready: read, react, write.
    fn ready(&mut self, poll: &Poll, i: usize, running: bool);
    /// Ten times a second: fail the units set up for too long, send heartbeats. `setting_up`
    /// is how many units are setting up.
    fn tick(&mut self, poll: &Poll, now: Instant, setting_up: u64);
    /// The traffic starts, closed loop: start it on every unit that is set up.
    fn begin(&mut self, poll: &Poll);
    /// Open loop (`--rate`): how many things take paced turns (units, or groups of them).
    fn paced_len(&self) -> usize;
    /// Open loop: give thing `k` its turn; false if it is still busy or gone (skipped).
    fn pace(&mut self, poll: &Poll, k: usize) -> bool;
}

/// Run `u` until `phase` says stop: set-up, then the traffic, as `plan` says. `Err` only if
/// no poll could be made (`setup_done` is set then too).
pub fn run<U: Units>(u: &mut U, phase: &AtomicU8, plan: &Plan) -> Result<(), String> {
    let Plan {
        setup_done,
        concurrency,
        rate,
        spin,
    } = plan;
    let (concurrency, rate) = (*concurrency, *rate);
    let mut poll = match Poll::new() {
        Ok(p) => p,
        Err(e) => {
            setup_done.store(true, Relaxed);
            return Err(format!("poll: {e}"));
        }
    };
    let mut events = Events::with_capacity(1024);
    let mut next = 0usize; // the next unit to start
    let mut in_flight = 0u64;
    let mut running = false;
    // Paced turns: how many were given since the run began, and where to look next.
    let (mut paced, mut cursor, mut run_start) = (0u64, 0usize, Instant::now());
    let mut last_scan = Instant::now();
    loop {
        let now_phase = phase.load(Relaxed);
        if now_phase == STOP {
            break;
        }
        // Set-up: keep `concurrency` units setting up.
        while next < u.len() && in_flight < concurrency {
            u.start(&poll, next);
            in_flight += u64::from(u.setting_up(next));
            next += 1;
        }
        let now = Instant::now();
        if now.duration_since(last_scan) >= Duration::from_millis(100) {
            last_scan = now;
            u.tick(&poll, now, in_flight);
            if in_flight > 0 {
                in_flight = (0..next).filter(|&i| u.setting_up(i)).count() as u64;
            }
        }
        if next == u.len() && in_flight == 0 {
            setup_done.store(true, Relaxed);
        }
        if now_phase == RUNNING && !running {
            running = true;
            run_start = Instant::now();
            if rate.is_none() {
                u.begin(&poll);
            }
        }
        if let (true, Some(rate)) = (running, rate) {
            // Open loop: turns on schedule, round robin, a busy one skipped (not queued).
            let due = (rate * run_start.elapsed().as_secs_f64()) as u64;
            let n = u.paced_len();
            let mut looked = 0;
            while paced < due && looked < n {
                let k = cursor;
                cursor = (cursor + 1) % n;
                looked += 1;
                if u.pace(&poll, k) {
                    paced += 1;
                    looked = 0;
                }
            }
            paced = paced.max(due.saturating_sub(n as u64));
        }
        let wait = match (running, rate) {
            (true, _) if *spin => 0,
            (true, Some(_)) => 1,
            _ => 5,
        };
        let _ = poll.poll(&mut events, Some(Duration::from_millis(wait)));
        for e in events.iter() {
            let i = u.unit_of(e.token());
            let before = u.setting_up(i);
            u.ready(&poll, i, running);
            if before && !u.setting_up(i) {
                in_flight -= 1;
            }
        }
    }
    Ok(())
}
