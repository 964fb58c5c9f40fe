//! Cross-core mailboxes: an `mpsc` channel per core plus the `mio::Waker` of its `Poll`.
//!
//! Reactors share nothing mutable; they talk only through these messages. A connection that
//! must live on another core travels as [`Handoff`] (its socket, TLS state, protocol state and
//! the few bytes already read), and control messages (shutdown, a new TLS configuration) reach
//! every core the same way.

use crate::net::slot::{Placed, Stamp};
use crate::net::tls::TlsConn;
use crate::proto::conn::Conn;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::Instant;

/// A connection moving to the core that owns its request's placement, before the request is
/// answered. It has flushed all output before leaving.
pub struct Handoff {
    pub stream: std::net::TcpStream,
    pub tls: Option<Box<TlsConn>>,
    pub conn: Conn,
    /// Plaintext already read but not yet consumed: the request it moves for, and whatever
    /// followed it.
    pub leftover: Vec<u8>,
    pub ip_key: crate::net::IpKey,
    /// See [`crate::net::slot::Slot::trusted_peer`].
    pub trusted_peer: bool,
    /// Where the request was placed (it is not placed again).
    pub placed: Placed,
    /// Its latency measurement (the handshake's, from its accept).
    pub stamp: Stamp,
}

pub enum CoreMsg {
    Adopt(Box<Handoff>),
    /// Stop accepting, close every connection politely, and exit by `deadline`.
    Shutdown {
        deadline: Instant,
    },
    /// Use this TLS configuration for connections accepted from now on.
    TlsConfig(Arc<rustls::ServerConfig>),
    /// From the cluster's bridge: records, a claim's answer, nodes gone.
    Cluster(crate::cluster::ClusterMsg),
    /// Records from another core of this node ([`crate::proto::cluster`]), in order.
    Records(Vec<u8>),
}

/// The sending side of one core's mailbox.
#[derive(Clone)]
pub struct Mailbox {
    tx: Sender<CoreMsg>,
    waker: Arc<mio::Waker>,
}

impl Mailbox {
    pub fn new(tx: Sender<CoreMsg>, waker: Arc<mio::Waker>) -> Self {
        Mailbox { tx, waker }
    }

    /// Deliver and wake the core. Fails only when that core has already exited.
    pub fn send(&self, msg: CoreMsg) -> Result<(), CoreMsg> {
        self.tx.send(msg).map_err(|e| e.0)?;
        // A failed wake means the Poll is gone, i.e. the core exited: the message is moot.
        let _ = self.waker.wake();
        Ok(())
    }
}

/// The receiving side, owned by the reactor.
pub type Inbox = Receiver<CoreMsg>;
