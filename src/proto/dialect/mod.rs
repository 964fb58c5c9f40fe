//! Signaling dialects: each is a small sans-I/O machine over whole messages, plus the tables it
//! keeps per core. The shell routes a message to the dialect of the endpoint it arrived on and
//! delivers what the dialect returns.
//!
//! Dialects never touch sockets or buffers of other connections: they name connections by
//! [`ConnRef`] and return [`Outgoing`] messages, which the shell appends to those connections'
//! send queues.

pub mod cevitxe;
pub mod httpapi;
pub mod mewconnect;
pub mod mewv1;
pub mod msgpack;
pub mod peerolator;
pub mod pipe;
pub mod sio;
pub mod workspaces;

use crate::proto::ws::DataKind;

/// Message kind on the wire.
pub type Kind = DataKind;

/// A connection on this core: slab key plus generation (stale references are detected).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnRef {
    pub key: u32,
    pub gen: u32,
}

/// A message for a connection on this core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub to: ConnRef,
    pub kind: Kind,
    pub payload: Vec<u8>,
}
