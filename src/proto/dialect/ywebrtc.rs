//! y-webrtc signaling (PROTOCOLS-beyond.md §8), as a pure table: sockets are [`Handle`]s,
//! input is whole WebSocket messages, output is [`Outgoing`]-style sends through the call's
//! [`Cx`].
//!
//! Owns: topics and their subscribers in subscription order, the four message types
//! (`subscribe`, `unsubscribe`, `publish`, `ping`), the fan-out with `clients`, and the limits
//! of §8.7 (topics per connection, topic name length; past one the frame is dropped, as the
//! protocol has no errors).
//!
//! Does not own: paths (`anypath`), where a topic's owner runs (the shell places each topic's
//! key, on one node or across a cluster), WebSocket keepalive (the shell's pings and idle
//! timeout), frame size (the shell's `--max-message-size`).
//!
//! # Messages
//!
//! A frame, text or binary, is a JSON object with a string `type`; anything else is dropped
//! and the connection stays (the original process dies on it). A publish goes to every
//! subscriber of its topic, the sender included if it subscribed, as the object it came in:
//! every member in its order with its value as sent, and `clients` (the topic's subscriber
//! count) set in place or appended last. Publishing to a topic one has not subscribed is
//! allowed; to a topic nobody has, nothing happens. `{"type":"ping"}` gets `{"type":"pong"}`.

use super::HandleMap;
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

/// A topic this instance owns: its subscribers in subscription order (the original's Set
/// insertion order), wherever their sockets are.
#[derive(Default)]
struct Topic {
    subscribers: BTreeMap<u64, Handle>,
    order: HandleMap<u64>,
}

/// A connection's topics. Most clients subscribe to one room: that one is kept inline, more go
/// to a vector.
enum Subs {
    One(Arc<str>),
    Many(Vec<Arc<str>>),
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
            Subs::One(t) => &**t == topic,
            Subs::Many(v) => v.iter().any(|t| &**t == topic),
        }
    }

    fn push(&mut self, topic: Arc<str>) {
        match self {
            Subs::One(t) => *self = Subs::Many(vec![t.clone(), topic]),
            Subs::Many(v) => v.push(topic),
        }
    }

    /// Takes `topic` out: whether it was there, and whether none is left.
    fn remove(&mut self, topic: &str) -> Option<bool> {
        match self {
            Subs::One(t) => (&**t == topic).then_some(true),
            Subs::Many(v) => {
                let i = v.iter().position(|t| &**t == topic)?;
                v.swap_remove(i);
                Some(v.is_empty())
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Arc<str>> {
        let (one, many) = match self {
            Subs::One(t) => (Some(t), &[][..]),
            Subs::Many(v) => (None, &v[..]),
        };
        one.into_iter().chain(many)
    }
}

/// What a topic's owner is told.
const SUBSCRIBE: u8 = 1;
const UNSUBSCRIBE: u8 = 2;
/// Then the length of the text before the `clients` count (4 bytes), that text, and the rest.
const PUBLISH: u8 = 3;

/// The y-webrtc table of one instance, in both its roles (ARCHITECTURE.md, "Where state
/// lives"): it serves sockets (reads their frames, keeps the topics each subscribed, answers
/// pings) and owns the topics whose keys the shell places on it (subscribers, fan-out). Every
/// subscribe, unsubscribe and publish is told to its topic's key, so the topics of one server
/// spread over its cores and nodes.
#[derive(Default)]
pub struct Topics {
    topics: HashMap<Box<str>, Topic>,
    conns: HandleMap<Subs>,
    next: u64,
    /// Reused for the keys told.
    key: String,
}

impl Topics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Connections served here that subscribed to anything.
    pub fn conns(&self) -> usize {
        self.conns.len()
    }

    /// Topics owned here with at least one subscriber.
    pub fn topics(&self) -> usize {
        self.topics.len()
    }

    /// A topic's placement key (in a buffer kept for it).
    fn key(&mut self, topic: &str) -> &str {
        self.key.clear();
        self.key.push_str("yt/");
        self.key.push_str(topic);
        &self.key
    }

    /// Whether a key is a topic key (`yt/…`).
    pub fn is_key(key: &str) -> bool {
        key.starts_with("yt/")
    }

    /// A topic key this instance owned is owned elsewhere now: its subscribers here go.
    pub fn forget(&mut self, key: &str) {
        if let Some(t) = key.strip_prefix("yt/") {
            self.topics.remove(t);
        }
    }

    /// Whether this instance owns subscribers of a topic key.
    pub fn holds(&self, key: &str) -> bool {
        key.strip_prefix("yt/")
            .is_some_and(|t| self.topics.contains_key(t))
    }

    /// One frame from `conn` (a binary one too, read as text if it is UTF-8): what it asks is
    /// told to its topics' owners.
    pub fn message(&mut self, cx: &mut Cx<'_>, conn: Handle, msg: Message<'_>) {
        let Some(m) = msg.text().and_then(Members::parse) else {
            return;
        };
        match m.str("type").as_deref() {
            Some("subscribe") => {
                for t in topic_list(&m) {
                    self.subscribe(cx, conn, &t);
                }
            }
            Some("unsubscribe") => {
                for t in topic_list(&m) {
                    self.unsubscribe(cx, conn, &t);
                }
            }
            Some("publish") => {
                let Some(topic) = m.str("topic").filter(|t| !t.is_empty()) else {
                    return;
                };
                let key = self.key(&topic);
                cx.tell_with(key, conn, |b| {
                    b.push(PUBLISH);
                    let start = b.len() + 4;
                    b.extend_from_slice(&[0; 4]);
                    let at = with_clients(&m, b) - start;
                    b[start - 4..start].copy_from_slice(&(at as u32).to_le_bytes());
                });
            }
            Some("ping") => cx.text(conn, r#"{"type":"pong"}"#),
            _ => {}
        }
    }

    fn subscribe(&mut self, cx: &mut Cx<'_>, conn: Handle, topic: &str) {
        if topic.len() > MAX_TOPIC_LEN {
            return;
        }
        match self.conns.get_mut(&conn) {
            Some(mine) if mine.len() >= MAX_TOPICS_PER_CONN || mine.contains(topic) => return,
            Some(mine) => mine.push(topic.into()),
            None => {
                self.conns.insert(conn, Subs::One(topic.into()));
            }
        }
        cx.tell(self.key(topic), conn, &[SUBSCRIBE]);
    }

    fn unsubscribe(&mut self, cx: &mut Cx<'_>, conn: Handle, topic: &str) {
        let Some(mine) = self.conns.get_mut(&conn) else {
            return;
        };
        if let Some(none_left) = mine.remove(topic) {
            if none_left {
                self.conns.remove(&conn);
            }
            cx.tell(self.key(topic), conn, &[UNSUBSCRIBE]);
        }
    }

    /// `conn` is gone: it leaves every topic.
    pub fn close(&mut self, cx: &mut Cx<'_>, conn: Handle) {
        let Some(mine) = self.conns.remove(&conn) else {
            return;
        };
        for topic in mine.iter() {
            cx.tell(self.key(topic), conn, &[UNSUBSCRIBE]);
        }
    }

    /// A message told to a topic key this instance owns, on behalf of `from`.
    pub fn told(&mut self, cx: &mut Cx<'_>, from: Handle, key: &str, payload: &[u8]) {
        let Some(name) = key.strip_prefix("yt/") else {
            return;
        };
        match payload.first() {
            Some(&SUBSCRIBE) => {
                let t = match self.topics.get_mut(name) {
                    Some(t) => t,
                    None => self.topics.entry(name.into()).or_default(),
                };
                if let std::collections::hash_map::Entry::Vacant(e) = t.order.entry(from) {
                    e.insert(self.next);
                    t.subscribers.insert(self.next, from);
                    self.next += 1;
                }
            }
            Some(&UNSUBSCRIBE) => {
                if let Some(t) = self.topics.get_mut(name) {
                    if let Some(n) = t.order.remove(&from) {
                        t.subscribers.remove(&n);
                    }
                    if t.subscribers.is_empty() {
                        self.topics.remove(name);
                    }
                }
            }
            Some(&PUBLISH) => {
                let Some(t) = self.topics.get(name) else {
                    return;
                };
                let Some((at, text)) = payload[1..].split_first_chunk::<4>() else {
                    return;
                };
                let at = u32::from_le_bytes(*at) as usize;
                let Some((before, after)) = text.split_at_checked(at) else {
                    return;
                };
                let tos = t.subscribers.values().copied();
                cx.send_many_with(tos, Kind::Text, |b| {
                    b.extend_from_slice(before);
                    crate::proto::http::push_decimal(b, t.subscribers.len() as u64);
                    b.extend_from_slice(after);
                });
            }
            _ => {}
        }
    }

    /// Cluster nodes are gone: their subscribers leave the topics owned here, and the topics
    /// the sockets served here subscribed are told again (their owners may have been there).
    pub fn lost(&mut self, cx: &mut Cx<'_>, lost: &dyn Fn(Handle) -> bool) {
        self.topics.retain(|_, t| {
            t.order.retain(|h, n| {
                let gone = lost(*h);
                if gone {
                    t.subscribers.remove(n);
                }
                !gone
            });
            !t.subscribers.is_empty()
        });
        for (conn, mine) in &self.conns {
            for topic in mine.iter() {
                cx.tell(&format!("yt/{topic}"), *conn, &[SUBSCRIBE]);
            }
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

/// Writes the object `m` with `clients` set (in its place if present, else last) to `out`,
/// the count left out; returns where in `out` the count goes.
fn with_clients(m: &Members, out: &mut Vec<u8>) -> usize {
    out.push(b'{');
    let mut at = None;
    for (i, (k, v)) in m.0.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // A JSON string, escaped as `JSON.stringify` would (writing to a Vec cannot fail).
        let _ = serde_json::to_writer(&mut *out, &**k);
        out.push(b':');
        if k == "clients" {
            at = Some(out.len());
        } else {
            out.extend_from_slice(v.as_bytes());
        }
    }
    let at = match at {
        Some(at) => at,
        None => {
            if !m.0.is_empty() {
                out.push(b',');
            }
            out.extend_from_slice(br#""clients":"#);
            out.len()
        }
    };
    out.push(b'}');
    at
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
