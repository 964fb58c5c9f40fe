//! y-webrtc signaling (PROTOCOLS-beyond.md §8), as a pure table: sockets are [`Handle`]s,
//! input is whole WebSocket messages, output is [`Outgoing`]-style sends through the call's
//! [`Cx`].
//!
//! Owns: topics and their subscribers in subscription order, the four message types
//! (`subscribe`, `unsubscribe`, `publish`, `ping`), the fan-out with `clients`, and the limits
//! of §8.7 (topics per connection, topic name length; past one the frame is dropped, as the
//! protocol has no errors).
//!
//! Does not own: placement and paths (`anypath`: every y-webrtc socket lives on the instance
//! owning its key, so one table sees every topic, on one node or across a cluster), WebSocket
//! keepalive (the shell's pings and idle timeout), frame size (the shell's `--max-message-size`).
//!
//! # Messages
//!
//! A frame, text or binary, is a JSON object with a string `type`; anything else is dropped
//! and the connection stays (the original process dies on it). A publish goes to every
//! subscriber of its topic, the sender included if it subscribed, as the object it came in:
//! every member in its order with its value as sent, and `clients` (the topic's subscriber
//! count) set in place or appended last. Publishing to a topic one has not subscribed is
//! allowed; to a topic nobody has, nothing happens. `{"type":"ping"}` gets `{"type":"pong"}`.

use super::{Cx, Handle, Kind, Message};
use crate::proto::rawjson::{self, Reader};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Topics one connection may subscribe to (§8.7); more in a `subscribe` are skipped.
pub const MAX_TOPICS_PER_CONN: usize = 1000;
/// The longest topic name (§8.7); a longer one is skipped.
pub const MAX_TOPIC_LEN: usize = 1024;

/// A JSON object's members in order with their values as sent (each value's JSON text). A
/// repeated name keeps its first place and its last value, as `JSON.parse` does.
#[derive(Debug, Default)]
pub struct Members<'a>(pub Vec<(Cow<'a, str>, &'a str)>);

impl<'a> Members<'a> {
    /// The members of `text` if it is a JSON object.
    pub fn parse(text: &'a str) -> Option<Members<'a>> {
        let mut out: Vec<(Cow<'a, str>, &'a str)> = Vec::new();
        let is_object = Reader::document(text, |r| {
            r.object(|r, name| {
                let value = r.value()?;
                match out.iter_mut().find(|(k, _)| *k == name) {
                    Some(slot) => slot.1 = value,
                    None => out.push((name, value)),
                }
                Some(())
            })
        })?;
        is_object.then_some(Members(out))
    }

    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
    }

    /// A member that is a JSON string: its text.
    pub fn str(&self, name: &str) -> Option<Cow<'a, str>> {
        rawjson::string(self.get(name)?)
    }
}

struct Topic {
    /// Subscribers by subscription number: the original's Set insertion order.
    subscribers: BTreeMap<u64, Handle>,
}

/// A connection's topics with its subscription number in each. Most clients subscribe to one
/// room: that one is kept inline, more go to a vector.
enum Subs {
    One(Arc<str>, u64),
    Many(Vec<(Arc<str>, u64)>),
}

impl Subs {
    fn len(&self) -> usize {
        match self {
            Subs::One(..) => 1,
            Subs::Many(v) => v.len(),
        }
    }

    fn contains(&self, topic: &str) -> bool {
        match self {
            Subs::One(t, _) => &**t == topic,
            Subs::Many(v) => v.iter().any(|(t, _)| &**t == topic),
        }
    }

    fn push(&mut self, topic: Arc<str>, n: u64) {
        match self {
            Subs::One(t, m) => *self = Subs::Many(vec![(t.clone(), *m), (topic, n)]),
            Subs::Many(v) => v.push((topic, n)),
        }
    }

    /// Takes `topic` out: its subscription number, and whether none is left.
    fn remove(&mut self, topic: &str) -> Option<(u64, bool)> {
        match self {
            Subs::One(t, n) => (&**t == topic).then_some((*n, true)),
            Subs::Many(v) => {
                let i = v.iter().position(|(t, _)| &**t == topic)?;
                let (_, n) = v.swap_remove(i);
                Some((n, v.is_empty()))
            }
        }
    }

    fn into_vec(self) -> Vec<(Arc<str>, u64)> {
        match self {
            Subs::One(t, n) => vec![(t, n)],
            Subs::Many(v) => v,
        }
    }
}

/// The y-webrtc table of one instance. A topic's name is allocated once and shared by its
/// subscribers' lists, and a connection's list holds one topic inline, so a subscriber costs
/// a few tens of bytes beyond its socket.
#[derive(Default)]
pub struct Topics {
    topics: HashMap<Arc<str>, Topic>,
    conns: HashMap<Handle, Subs>,
    next: u64,
}

impl Topics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Connections that subscribed to anything.
    pub fn conns(&self) -> usize {
        self.conns.len()
    }

    /// Topics with at least one subscriber.
    pub fn topics(&self) -> usize {
        self.topics.len()
    }

    /// One frame from `conn` (a binary one too, read as text if it is UTF-8): its answers and
    /// fan-out go to `cx`.
    pub fn message(&mut self, cx: &mut Cx<'_>, conn: Handle, msg: Message<'_>) {
        let Some(m) = msg.text().and_then(Members::parse) else {
            return;
        };
        match m.str("type").as_deref() {
            Some("subscribe") => {
                for t in topic_list(&m) {
                    self.subscribe(conn, &t);
                }
            }
            Some("unsubscribe") => {
                for t in topic_list(&m) {
                    self.unsubscribe(conn, &t);
                }
            }
            Some("publish") => self.publish(cx, &m),
            Some("ping") => cx.text(conn, r#"{"type":"pong"}"#),
            _ => {}
        }
    }

    fn subscribe(&mut self, conn: Handle, topic: &str) {
        if topic.len() > MAX_TOPIC_LEN {
            return;
        }
        if let Some(mine) = self.conns.get(&conn) {
            if mine.len() >= MAX_TOPICS_PER_CONN || mine.contains(topic) {
                return;
            }
        }
        let n = self.next;
        self.next += 1;
        let name = match self.topics.get_key_value(topic) {
            Some((name, _)) => name.clone(),
            None => Arc::from(topic),
        };
        match self.conns.get_mut(&conn) {
            Some(mine) => mine.push(name.clone(), n),
            None => {
                self.conns.insert(conn, Subs::One(name.clone(), n));
            }
        }
        self.topics
            .entry(name)
            .or_insert_with(|| Topic {
                subscribers: BTreeMap::new(),
            })
            .subscribers
            .insert(n, conn);
    }

    fn unsubscribe(&mut self, conn: Handle, topic: &str) {
        let Some(mine) = self.conns.get_mut(&conn) else {
            return;
        };
        if let Some((n, none_left)) = mine.remove(topic) {
            if none_left {
                self.conns.remove(&conn);
            }
            self.leave_topic(topic, n);
        }
    }

    fn leave_topic(&mut self, topic: &str, n: u64) {
        if let Some(t) = self.topics.get_mut(topic) {
            t.subscribers.remove(&n);
            if t.subscribers.is_empty() {
                self.topics.remove(topic);
            }
        }
    }

    fn publish(&mut self, cx: &mut Cx<'_>, m: &Members) {
        let Some(topic) = m.str("topic").filter(|t| !t.is_empty()) else {
            return;
        };
        let Some(t) = self.topics.get(&*topic) else {
            return;
        };
        let msg = with_clients(m, t.subscribers.len());
        cx.send_many(t.subscribers.values().copied(), Kind::Text, msg.as_bytes());
    }

    /// `conn` is gone: it leaves every topic.
    pub fn close(&mut self, conn: Handle) {
        let Some(mine) = self.conns.remove(&conn) else {
            return;
        };
        for (topic, n) in mine.into_vec() {
            self.leave_topic(&topic, n);
        }
    }
}

/// The string elements of `topics` (skipping others; nothing if it is not an array).
fn topic_list<'a>(m: &Members<'a>) -> Vec<Cow<'a, str>> {
    let mut topics = Vec::new();
    if let Some(raw) = m.get("topics") {
        Reader::document(raw, |r| {
            r.array(|r| {
                topics.extend(rawjson::string(r.value()?));
                Some(())
            })
        });
    }
    topics
}

/// The object `m` with `clients` set to `n`: in its place if present, else last.
fn with_clients(m: &Members, n: usize) -> String {
    let mut s = String::with_capacity(
        64 + m
            .0
            .iter()
            .map(|(k, v)| k.len() + v.len() + 4)
            .sum::<usize>(),
    );
    s.push('{');
    let mut set = false;
    for (i, (k, v)) in m.0.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&serde_json::Value::from(&**k).to_string());
        s.push(':');
        if k == "clients" {
            s.push_str(&n.to_string());
            set = true;
        } else {
            s.push_str(v);
        }
    }
    if !set {
        if !m.0.is_empty() {
            s.push(',');
        }
        s.push_str(r#""clients":"#);
        s.push_str(&n.to_string());
    }
    s.push('}');
    s
}

/// Whether a frame is a y-webrtc message: a JSON object with a string `type` (how a socket on a
/// shared path is told apart).
pub fn claims(msg: Message<'_>) -> bool {
    msg.text()
        .and_then(Members::parse)
        .is_some_and(|m| m.str("type").is_some())
}

#[cfg(test)]
mod tests;
