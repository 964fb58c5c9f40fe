//! The Socket.IO dialects (webRTWorkspaces, MewConnect v1) run on the Engine.IO 3 / Socket.IO 2
//! layer (`proto::eio`), which is itself a [`super::Dialect`]. They follow the same contract
//! one level up: a Socket.IO dialect is handed events (a socket connected with its handshake
//! query, an event with its arguments, a socket gone, a deadline), with the time and the
//! randomness in its [`SioCx`], and answers only by queuing [`Action`]s, which the layer
//! carries out in order. It never sees a transport, a connection or a session's packets; every
//! socket is in the room named after its own id.

use super::Cx;
use serde_json::Value;

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

/// A dialect on the Socket.IO layer. `cx.now` is the layer's clock (deadlines); `cx.unix_ms`
/// the wall clock (token lifetimes, timestamps).
pub trait SioDialect {
    /// A socket connected to the default namespace; `query` is the handshake's query string
    /// (percent-decoded pairs, in order).
    fn on_connect(&mut self, cx: &mut SioCx<'_>, sid: &str, query: &[(String, String)]);
    /// `42["event", args...]` from a socket.
    fn on_event(&mut self, cx: &mut SioCx<'_>, sid: &str, event: &str, args: &[Value]);
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
}
