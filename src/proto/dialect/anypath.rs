//! The dialects a client reaches on any path: y-webrtc (PROTOCOLS-beyond.md §8) and the
//! WebTorrent tracker (§9). Both originals accept an upgrade on any path and both real clients
//! connect to the bare URL, so one instance holds both tables and tells a socket's dialect by
//! its path (`--webtorrent-paths`, `--ywebrtc-paths`) or, on any other path, by its first
//! frame (PROTOCOLS-beyond.md, "Routing"): a JSON object whose `action` is `announce` or
//! `scrape` is the tracker's, one with a string `type` is y-webrtc's, anything else is dropped
//! and the next frame decides. Once decided, a socket stays in its dialect.
//!
//! Sockets are served where they were accepted ([`Placement::Here`]); each request is told to
//! the key of its swarm or topic, so one swarm or topic is in one place while a server's swarms
//! and topics spread over its cores and nodes. An instance both serves sockets and owns keys.

use super::webtorrent::{self, Tracker};
use super::ywebrtc::{self, Topics};
use super::HandleMap;
use super::{upgrade_required, Answer, Cx, Dialect, Handle, Message, Metric, Placement, Random};
use crate::proto::http::{RequestHead, Response};

/// Where each dialect is served, and the tracker's options.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub ywebrtc_paths: Vec<String>,
    pub webtorrent_paths: Vec<String>,
    pub tracker: webtorrent::Options,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Undecided,
    YWebrtc,
    Tracker,
}

/// y-webrtc and the WebTorrent tracker as one dialect.
pub struct AnyPath {
    opts: Options,
    topics: Topics,
    tracker: Tracker,
    which: HandleMap<Which>,
    swept: u64,
}

impl AnyPath {
    pub fn new(opts: Options) -> AnyPath {
        AnyPath {
            tracker: Tracker::new(opts.tracker.clone()),
            opts,
            topics: Topics::new(),
            which: HandleMap::default(),
            swept: 0,
        }
    }

    /// The y-webrtc table.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    fn tracker_path(&self, path: &str) -> bool {
        self.opts.webtorrent_paths.iter().any(|p| p == path)
    }
}

/// The metrics [`AnyPath`] reports, in [`Dialect::metrics`] order.
pub const METRICS: &[Metric] = &[
    Metric::gauge(
        "sigyard_ywebrtc_topics",
        "y-webrtc topics with at least one subscriber",
    ),
    Metric::gauge(
        "sigyard_webtorrent_swarms",
        "WebTorrent swarms with at least one peer",
    ),
    Metric::gauge("sigyard_webtorrent_peers", "WebTorrent peers in all swarms"),
    Metric::counter(
        "sigyard_webtorrent_announces_total",
        "WebTorrent announces served",
    ),
    Metric::counter(
        "sigyard_webtorrent_scrapes_total",
        "WebTorrent scrapes served",
    ),
    Metric::counter(
        "sigyard_webtorrent_offers_relayed_total",
        "WebTorrent offers sent on to a peer",
    ),
    Metric::counter(
        "sigyard_webtorrent_answers_relayed_total",
        "WebTorrent answers sent on to their offerer",
    ),
    Metric::counter(
        "sigyard_webtorrent_failures_total",
        "WebTorrent requests answered with a failure reason",
    ),
];

impl Dialect for AnyPath {
    fn place(&self, req: &RequestHead, _rand: &mut dyn Random) -> Placement {
        if req.upgrade.is_some() {
            return Placement::Here;
        }
        // Neither client makes HTTP requests; each original answers them so.
        match self.tracker_path(&req.path) {
            true => Placement::Answer(Response::new(404, "text/plain", "404 Not Found")),
            false => Placement::Answer(Response::new(200, "text/plain", "okay")),
        }
    }

    fn on_request(
        &mut self,
        _cx: &mut Cx<'_>,
        conn: Handle,
        _key: Option<&str>,
        req: &RequestHead,
    ) -> Answer {
        if req.upgrade.is_none() {
            return Answer::Respond(upgrade_required());
        }
        let which = if self.tracker_path(&req.path) {
            Which::Tracker
        } else if self.opts.ywebrtc_paths.contains(&req.path) {
            Which::YWebrtc
        } else {
            Which::Undecided
        };
        self.which.insert(conn, which);
        Answer::Upgrade
    }

    fn on_message(&mut self, cx: &mut Cx<'_>, conn: Handle, msg: Message<'_>) {
        let Some(which) = self.which.get_mut(&conn) else {
            return;
        };
        if *which == Which::Undecided {
            if Tracker::claims(msg) {
                *which = Which::Tracker;
            } else if ywebrtc::claims(msg) {
                *which = Which::YWebrtc;
            } else {
                return;
            }
        }
        match *which {
            Which::Tracker => self.tracker.message(cx, conn, msg),
            _ => self.topics.message(cx, conn, msg),
        }
    }

    fn on_close(&mut self, cx: &mut Cx<'_>, conn: Handle) {
        match self.which.remove(&conn) {
            Some(Which::Tracker) => self.tracker.close(cx, conn),
            Some(Which::YWebrtc) => self.topics.close(cx, conn),
            _ => {}
        }
    }

    fn on_told(&mut self, cx: &mut Cx<'_>, from: Handle, key: &str, payload: &[u8]) {
        if Tracker::is_key(key) {
            self.tracker.told(cx, from, payload);
        } else if Topics::is_key(key) {
            self.topics.told(cx, from, key, payload);
        }
    }

    fn on_reply(&mut self, cx: &mut Cx<'_>, conn: Handle, payload: &[u8]) {
        if self.which.get(&conn) == Some(&Which::Tracker) {
            self.tracker.replied(cx, conn, payload);
        }
    }

    fn on_lost(&mut self, cx: &mut Cx<'_>, lost: &dyn Fn(Handle) -> bool) {
        self.tracker.lost(cx, lost);
        self.topics.lost(cx, lost);
    }

    fn on_moved(&mut self, _cx: &mut Cx<'_>, key: &str) {
        self.tracker.forget(key);
        self.topics.forget(key);
    }

    fn holds(&self, key: &str) -> bool {
        self.tracker.holds(key) || self.topics.holds(key)
    }

    fn on_timeout(&mut self, cx: &mut Cx<'_>) {
        if self.swept + self.tracker.sweep_every_ms() <= cx.now {
            self.swept = cx.now;
        }
        self.tracker.expire(cx);
    }

    fn poll_timeout(&self) -> Option<u64> {
        self.tracker.next_sweep(self.swept)
    }

    fn metrics(&self, out: &mut [u64]) {
        let c = self.tracker.counters();
        let values = [
            self.topics.topics() as u64,
            self.tracker.swarms() as u64,
            self.tracker.peers() as u64,
            c.announces,
            c.scrapes,
            c.offers_relayed,
            c.answers_relayed,
            c.failures,
        ];
        for (o, v) in out.iter_mut().zip(values) {
            *o = v;
        }
    }
}

#[cfg(test)]
mod tests;
