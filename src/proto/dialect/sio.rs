//! The contract between the Engine.IO 3 / Socket.IO 2 layer and the dialects that run on it
//! (webRTWorkspaces, MewConnect v1).
//!
//! The layer owns sessions, transports (long-polling and WebSocket), heartbeats, packet
//! framing and rooms. A dialect sees sockets by id, receives their events, and answers with
//! [`Action`]s; it never sees a transport. Every socket is in the room named after its own id.

use serde_json::Value;

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
        args: Vec<Value>,
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

/// What a dialect may ask of its surroundings while handling an event.
pub trait Env {
    /// The ICE servers for `user` (an attendee or connection id): a JSON array of entries
    /// that carry both `url` and `urls`.
    fn ice_servers(&mut self, user: &str) -> Value;
}

/// A dialect on the Socket.IO layer. `now_ms` is milliseconds on the layer's clock
/// (monotonic for deadlines; a dialect that needs wall time, e.g. for JWT `iat`/`exp`, gets it
/// from its own injectable clock).
pub trait Dialect {
    /// A socket connected to the default namespace; `query` is the handshake's query string
    /// (percent-decoded pairs, in order).
    fn on_connect(
        &mut self,
        now_ms: u64,
        sid: &str,
        query: &[(String, String)],
        env: &mut dyn Env,
        out: &mut Vec<Action>,
    );
    /// `42["event", args...]` from a socket.
    fn on_event(
        &mut self,
        now_ms: u64,
        sid: &str,
        event: &str,
        args: &[Value],
        env: &mut dyn Env,
        out: &mut Vec<Action>,
    );
    /// The socket is gone (client disconnect, transport close, ping timeout, or after an
    /// [`Action::Disconnect`]). It has already left all rooms.
    fn on_disconnect(&mut self, now_ms: u64, sid: &str, env: &mut dyn Env, out: &mut Vec<Action>);
    /// Time passed: expire what is due (e.g. MewConnect v1's 120 s pairs).
    fn on_tick(&mut self, _now_ms: u64, _env: &mut dyn Env, _out: &mut Vec<Action>) {}
    /// The next `now_ms` at which `on_tick` has something to do.
    fn next_deadline(&self) -> Option<u64> {
        None
    }
}
