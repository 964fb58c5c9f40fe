//! The Socket.IO dialects (webRTWorkspaces, MewConnect v1) run on the Engine.IO 3 / Socket.IO 2
//! layer (`proto::eio`), which is itself a [`super::Dialect`]. They follow the same contract
//! one level up: a Socket.IO dialect is handed events (a socket connected with its handshake
//! query, an event with its arguments, a socket gone, a deadline), with the time and the
//! randomness in its [`SioCx`], and answers only by queuing [`Action`]s, which the layer
//! carries out in order. It never sees a transport, a connection or a session's packets; every
//! socket is in the room named after its own id.

use super::Cx;
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::HashMap;

/// A JSON value as the client wrote it (an event argument, or one of its members): relayed
/// with its bytes unchanged, so nothing a client sends is reordered or reformatted. Values the
/// server makes are written once with [`Raw::from_value`].
#[derive(Debug, Clone)]
pub struct Raw(Box<RawValue>);

impl Raw {
    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// A value the server makes.
    pub fn from_value(v: &Value) -> Raw {
        // A `Value` always serializes (its map keys are strings).
        Raw(serde_json::value::to_raw_value(v).unwrap_or_else(|_| null()))
    }

    /// The value parsed, for a dialect's checks (`Null` if it is not JSON, which the layer
    /// never hands out).
    pub fn value(&self) -> Value {
        serde_json::from_str(self.get()).unwrap_or(Value::Null)
    }

    /// The members of an object as sent; none for anything else.
    pub fn members(&self) -> Members<'_> {
        Members::of(Some(&self.0))
    }

    /// Splits a JSON array into its elements as sent; `None` if `json` is not one.
    pub fn elements(json: &str) -> Option<Vec<Raw>> {
        let items: Vec<Box<RawValue>> = serde_json::from_str(json).ok()?;
        Some(items.into_iter().map(Raw).collect())
    }
}

impl std::ops::Deref for Raw {
    type Target = RawValue;
    fn deref(&self) -> &RawValue {
        &self.0
    }
}

impl From<&RawValue> for Raw {
    fn from(v: &RawValue) -> Raw {
        Raw(v.to_owned())
    }
}

impl serde::Serialize for Raw {
    /// The text as it is.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl PartialEq for Raw {
    /// The same text (the bytes the peer gets).
    fn eq(&self, other: &Raw) -> bool {
        self.get() == other.get()
    }
}

/// The members of an object argument as sent (the last of a repeated name, as `JSON.parse`
/// keeps it).
#[derive(Debug, Default)]
pub struct Members<'a>(HashMap<String, &'a RawValue>);

impl<'a> Members<'a> {
    /// The members of `arg` if it is an object (none otherwise, or without an argument).
    pub fn of(arg: Option<&'a RawValue>) -> Members<'a> {
        Members(
            arg.and_then(|a| serde_json::from_str(a.get()).ok())
                .unwrap_or_default(),
        )
    }

    /// A member's value as sent.
    pub fn raw(&self, name: &str) -> Option<&'a RawValue> {
        self.0.get(name).copied()
    }

    /// A member that is a string: its text.
    pub fn str(&self, name: &str) -> Option<String> {
        serde_json::from_str(self.raw(name)?.get()).ok()
    }
}

fn null() -> Box<RawValue> {
    RawValue::from_string("null".into()).expect("null is JSON")
}

/// An object written member by member, its values as sent or made here: `JSON.stringify` of
/// an object literal, with members that are `undefined` (absent) left out.
#[derive(Debug, Default)]
pub struct ObjectWriter(String);

impl ObjectWriter {
    pub fn new() -> ObjectWriter {
        ObjectWriter(String::from("{"))
    }

    /// `name: value`, if the value is present.
    pub fn raw(&mut self, name: &str, value: Option<&RawValue>) -> &mut ObjectWriter {
        if let Some(v) = value {
            self.name(name);
            self.0.push_str(v.get());
        }
        self
    }

    /// `name: value` for a value the server makes.
    pub fn value(&mut self, name: &str, value: &Value) -> &mut ObjectWriter {
        self.name(name);
        self.0.push_str(&value.to_string());
        self
    }

    fn name(&mut self, name: &str) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push_str(&Value::from(name).to_string());
        self.0.push(':');
    }

    pub fn finish(&mut self) -> Raw {
        let mut text = std::mem::take(&mut self.0);
        if text.is_empty() {
            text.push('{');
        }
        text.push('}');
        // Members are JSON values and names are JSON strings: the text is an object.
        Raw(RawValue::from_string(text).unwrap_or_else(|_| null()))
    }
}

/// A Socket.IO dialect's context: the contract's [`Cx`] with [`Action`]s as outputs.
pub type SioCx<'a> = Cx<'a, Vec<Action>>;

/// Where an emit goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum To {
    /// `socket.emit` / `io.to(socketId).emit`: one socket.
    Socket(String),
    /// `io.to(room).emit`: every socket in the room, the sender included.
    Room(String),
    /// `socket.to(room).emit`: every socket in the room except `except`.
    RoomExcept { room: String, except: String },
}

/// What a dialect asks of the layer, applied in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `42["event", args...]` to the target.
    Emit {
        to: To,
        event: String,
        args: Vec<Raw>,
    },
    /// `44<data>`: a Socket.IO error packet to one socket.
    Error {
        sid: String,
        data: Value,
    },
    Join {
        sid: String,
        room: String,
    },
    Leave {
        sid: String,
        room: String,
    },
    /// Server-side disconnect of one socket: `41`, then the session ends.
    Disconnect {
        sid: String,
    },
}

/// A dialect on the Socket.IO layer. `cx.now` is the layer's clock (deadlines); `cx.unix_ms`
/// the wall clock (token lifetimes, timestamps).
pub trait SioDialect {
    /// A socket connected to the default namespace; `query` is the handshake's query string
    /// (percent-decoded pairs, in order).
    fn on_connect(&mut self, cx: &mut SioCx<'_>, sid: &str, query: &[(String, String)]);
    /// `42["event", args...]` from a socket, its arguments as sent.
    fn on_event(&mut self, cx: &mut SioCx<'_>, sid: &str, event: &str, args: &[Raw]);
    /// The socket is gone (client disconnect, transport close, ping timeout, or after an
    /// [`Action::Disconnect`]). It has already left all rooms.
    fn on_disconnect(&mut self, cx: &mut SioCx<'_>, sid: &str);
    /// The deadline from [`SioDialect::poll_timeout`] passed (e.g. MewConnect v1's 120 s
    /// pairs).
    fn on_timeout(&mut self, cx: &mut SioCx<'_>) {
        let _ = cx;
    }
    /// When `on_timeout` has something to do next (`cx.now`'s clock), if ever.
    fn poll_timeout(&self) -> Option<u64> {
        None
    }

    /// Its metrics' values (see [`crate::proto::dialect::Dialect::metrics`]), if it has any.
    fn metrics(&self, out: &mut [u64]) {
        let _ = out;
    }
}

/// The Socket.IO dialects a layer serves, numbered `0..count()`. The registry provides them;
/// the layer knows them only through this.
pub trait Apps {
    fn count(&self) -> usize;
    /// Which dialect a handshake speaks (from its query), and the key its sessions are placed
    /// by; `None`: no dialect takes it.
    fn pick(&self, query: &[(String, String)]) -> Option<(usize, String)>;
    /// The dialect's Engine.IO `pingTimeout`, in milliseconds.
    fn ping_timeout_ms(&self, app: usize) -> u64;
    /// The dialect, built on first use; `None` when it cannot be served.
    fn get(&mut self, app: usize) -> Option<&mut dyn SioDialect>;
    /// The dialect if it is built already.
    fn built(&mut self, app: usize) -> Option<&mut dyn SioDialect>;
    /// The dialect's [`SioDialect::poll_timeout`] (none if it is not built).
    fn poll_timeout(&self, app: usize) -> Option<u64>;
    /// The dialects' metrics, after the layer's own (see [`crate::proto::dialect::Dialect::metrics`]).
    fn metrics(&self, out: &mut [u64]) {
        let _ = out;
    }
}
