//! One connection's slot in a reactor's slab: its socket, TLS session, buffers (only while in
//! use), protocol state, and the little the shell records about it.

use crate::metrics::Class;
use crate::net::pool::{Pool, RxBuf, TxBuf};
use crate::net::tls::TlsConn;
use crate::net::IpKey;
use crate::proto::conn::Conn;
use crate::proto::dialect::Handle;
use crate::proto::time::Tick;
use crate::registry::RouteId;
use mio::net::TcpStream;

/// No route yet (or an operator endpoint).
pub(crate) const NO_ROUTE: u8 = u8::MAX;

pub(crate) struct Slot {
    pub sock: TcpStream,
    pub rx: Rx,
    pub tx: Option<Box<TxBuf>>,
    pub conn: Conn,
    /// The client address's key ([`crate::net::ip_key`]); 0 when none is known (a trusted
    /// proxy's connection until it names its client). It is counted in the per-IP table only
    /// when that limit is on.
    pub ip_key: IpKey,
    /// The deadline of this slot's live entry in the timer queue ([`NO_TIMER`]: none).
    timer_at: u32,
    /// The generation of this slab entry: the handles' [`crate::net::GEN_BITS`] of it.
    gen: u16,
    /// The socket and shell state bits, and the half-close ([`Flags`]).
    flags: Flags,
    /// The route a dialect connection was answered on ([`NO_ROUTE`] for the others).
    pub route: u8,
    /// The gauge it is counted in now ([`Slot::class`] when it was last settled).
    pub counted: Class,
    /// What only some connections need (boxed: the others pay one null pointer), TLS among
    /// them.
    pub extra: Option<Box<Extra>>,
    /// The start of the latency being measured on this connection, if any.
    pub stamp: Stamp,
}

/// What a slot's latency [`Stamp`] measures.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum StampKind {
    /// Nothing.
    None = 0,
    /// Accepted at the stamp's time; no response written yet
    /// (`sigyard_handshake_duration_seconds`).
    Accepted = 1,
    /// Accepted at the stamp's time; its first response is handed to the socket (through TLS
    /// if any) and is observed when the send queue is flushed.
    Answered = 2,
    /// The oldest message in the send queue was read at the stamp's time
    /// (`sigyard_message_relay_seconds`).
    Relay = 3,
}

/// The start of a latency measured on a connection: microseconds on the server's clock
/// (`Shared::started`, the same on every core, so a stamp survives a move) in a wrapping
/// `u32` (intervals up to 71 minutes come out right), whose two low bits hold its
/// [`StampKind`] instead (so 4 µs resolution, and it fits in the slot's padding). Observed,
/// with the end of the loop turn in which the connection's send queue was flushed, by
/// [`Slot::flushed_stamp`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(crate) struct Stamp(u32);

impl Stamp {
    fn new(kind: StampKind, clock_us: u64) -> Stamp {
        Stamp((clock_us as u32 & !3) | kind as u32)
    }

    pub fn accepted(clock_us: u64) -> Stamp {
        Stamp::new(StampKind::Accepted, clock_us)
    }

    pub fn kind(self) -> StampKind {
        match self.0 & 3 {
            0 => StampKind::None,
            1 => StampKind::Accepted,
            2 => StampKind::Answered,
            _ => StampKind::Relay,
        }
    }

    /// Its start on the server's clock (µs, wrapping `u32`).
    pub fn at(self) -> u32 {
        self.0 & !3
    }

    /// See [`Slot::stamp_relay`] (for a connection on `route`).
    pub fn relay(&mut self, route: u8, clock_us: u64) {
        if self.kind() == StampKind::None && route != NO_ROUTE {
            *self = Stamp::new(StampKind::Relay, clock_us);
        }
    }
}

/// The half-close of a connection the server ends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Linger {
    /// Not closing (or closing without a FIN sent yet).
    Off = 0,
    /// Our FIN is sent; waiting for the peer's (or the linger timer).
    Waiting = 1,
    /// The peer's FIN arrived or the linger time ran out: the slot can go.
    Over = 2,
}

/// `timer_at` when the slot has no timer entry. (A deadline that falls on this very
/// millisecond of the `u32` clock is moved one earlier: entries are checked when they fire.)
const NO_TIMER: u32 = u32::MAX;

/// A slot's bits, in one byte: an idle connection's slot is the bulk of its memory.
#[derive(Clone, Copy, Default)]
struct Flags(u8);

/// Accessors of the [`Flags`] bits: `name`, `set_name`, the bit, and what it means.
macro_rules! slot_flags {
    ($($(#[$doc:meta])* $get:ident, $set:ident = $bit:expr;)*) => {
        impl Slot {
            $(
                $(#[$doc])*
                pub fn $get(&self) -> bool {
                    self.flags.0 & $bit != 0
                }

                pub fn $set(&mut self, on: bool) {
                    if on {
                        self.flags.0 |= $bit;
                    } else {
                        self.flags.0 &= !$bit;
                    }
                }
            )*
        }
    };
}

slot_flags! {
    /// The socket may have input: set by a readable edge, cleared when a read drains it.
    readable, set_readable = 1;
    /// The socket takes more output. A new socket does; only a write that would block says
    /// otherwise, and only then is the socket watched for writability ([`Slot::out_watched`]).
    writable, set_writable = 2;
    /// Registered for writable edges too. Connections are registered for readable edges
    /// only: a writable edge for every ACK that frees send-buffer space would wake the reactor
    /// for nothing, since a signaling connection's writes almost never block. The first write
    /// that does block adds the interest (the kernel reports a socket that is already
    /// writable again at that moment, so no edge is lost), and it stays.
    out_watched, set_out_watched = 4;
    /// In the reactor's dirty list.
    queued, set_queued = 8;
    /// A dialect holds this connection (an open WebSocket or a held request): it hears
    /// `on_close` when that ends.
    attached, set_attached = 16;
    /// In the turn's list of sends ([`crate::net::reactor::Core::owed_sends`]): its output
    /// leaves at the end of the turn, together with the other connections'.
    send_owed, set_send_owed = 32;
}

/// Where [`Linger`] sits in [`Flags`].
const LINGER_SHIFT: u8 = 6;

/// The rarer parts of a slot.
#[derive(Default)]
pub(crate) struct Extra {
    /// The TLS session of a connection on a TLS listener.
    pub tls: Option<Box<TlsConn>>,
    /// The placement of the request being answered, decided on the core that read it and
    /// carried along the move (a connection is placed once per request).
    pub placed: Option<Box<Placed>>,
    /// The other end of a pipe.
    pub peer: Option<Handle>,
    /// The core this connection moves to once its output is flushed.
    pub move_to: Option<u16>,
    /// The cluster node (and core) whose dialect instance serves this connection, when that
    /// is not this core's.
    pub remote: Option<Owner>,
    /// The placement key this connection holds claimed for its node (cluster), while open.
    pub claim: Option<Box<str>>,
    /// The peer is a trusted proxy whose word on the client's address is not taken yet
    /// (`--trusted-proxies`): at its PROXY header or its first request's forwarding headers.
    pub trusted_peer: bool,
    /// A PROXY protocol header is expected before anything else (`--listen-proxy`).
    pub proxy_header: bool,
    /// A trusted proxy that names each request's client in its forwarding headers: each
    /// plain HTTP request counts for the client it names, whoever the first one was (a proxy
    /// may carry several clients' requests on one connection).
    pub forwards: bool,
    /// The sender's message and byte buckets (`--max-messages-per-second`, …), from its
    /// first message.
    pub rate: Option<Box<(crate::proto::rate::Bucket, crate::proto::rate::Bucket)>>,
    /// A pipe peer on another node: its last `Data` ended inside a frame.
    pub peer_mid: bool,
    /// A pipe end whose last read brought a standard buffer's worth (or all the room it
    /// offered): bulk data is flowing, and it reads into a streaming buffer
    /// ([`Rx::grow`]) until a smaller read ends it.
    pub streaming: bool,
    /// A pipe peer on another node: bytes sent to it not yet acknowledged (the window).
    pub unacked: u32,
    /// A pipe peer on another node: bytes received from it whose acknowledgement waits for
    /// this connection's queue to drain.
    pub owed: u32,
}

/// Where a connection's dialect lives in a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owner {
    pub node: u16,
    /// [`crate::proto::cluster::ANY_CORE`] until its first answer says.
    pub core: u16,
}

/// A placement decided elsewhere (another core, the cluster).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Placed {
    pub key: Option<Box<str>>,
    /// The node that owns `key` (a claim's answer); `None` until asked.
    pub node: Option<u16>,
    /// The answer of the node that serves the request, to apply here.
    pub answer: Option<Box<crate::proto::cluster::Remote>>,
}

/// A slot's read side: a pooled buffer while bytes arrive; when the connection stalls with a
/// few unconsumed bytes (part of a request head or of a frame header), just those bytes in a
/// buffer of their size ([`RxBuf::stash`]), so a stalled connection holds what it sent and
/// not a whole pooled buffer.
#[derive(Default)]
pub(crate) struct Rx(Option<Box<RxBuf>>);

impl Rx {
    pub fn has_bytes(&self) -> bool {
        self.0.as_ref().is_some_and(|b| !b.is_empty())
    }

    /// The pooled buffer, checked out (with stashed bytes moved in) if needed; `None` when the
    /// pool is exhausted. `force` takes one even then (bytes that must not be lost).
    pub fn buf(&mut self, pool: &mut Pool, force: bool) -> Option<&mut RxBuf> {
        if !self.0.as_ref().is_some_and(|b| b.is_pooled()) {
            let b = if force { pool.rx_force() } else { pool.rx()? };
            self.swap_in(b, pool);
        }
        self.0.as_deref_mut()
    }

    /// Read into a streaming buffer from now on, when the pool has room for one (a streaming
    /// connection; [`Pool::rx_stream`]). The bytes of the buffer it replaces move along.
    pub fn grow(&mut self, pool: &mut Pool) {
        if self.0.as_ref().is_some_and(|b| b.is_stream()) {
            return;
        }
        if let Some(b) = pool.rx_stream() {
            self.swap_in(b, pool);
        }
    }

    /// Use `b` from now on, with the bytes of the buffer it replaces (which goes back).
    fn swap_in(&mut self, mut b: Box<RxBuf>, pool: &mut Pool) {
        if let Some(mut old) = self.0.take() {
            let bytes = old.filled();
            let n = bytes.len().min(b.spare().len());
            debug_assert_eq!(n, bytes.len(), "a swap must not drop input");
            b.spare()[..n].copy_from_slice(&bytes[..n]);
            b.filled_by(n);
            pool.put_rx(old);
        }
        self.0 = Some(b);
    }

    /// The buffer, whatever its kind, if there is one.
    pub fn pooled(&mut self) -> Option<&mut RxBuf> {
        self.0.as_deref_mut()
    }

    /// Give the buffer back: all of it when empty, and, when `stall` (nothing more can be read
    /// now), the few bytes left are kept in a buffer of their own size.
    pub fn release(&mut self, pool: &mut Pool, stall: bool) {
        let Some(b) = self.0.as_mut() else { return };
        if b.is_empty() {
            if let Some(b) = self.0.take() {
                pool.put_rx(b);
            }
        } else if stall && b.is_pooled() && b.len() <= pool.size() {
            // (More than a standard buffer's worth, left in a streaming buffer, stays there:
            // a stash must fit the buffer it is later moved back into.)
            let stash = RxBuf::stash(b.filled());
            if let Some(b) = self.0.replace(stash) {
                pool.put_rx(b);
            }
        }
    }

    /// Take the unconsumed bytes out (for a connection moving to another core).
    pub fn take_bytes(&mut self, pool: &mut Pool) -> Vec<u8> {
        match self.0.take() {
            None => Vec::new(),
            Some(mut b) => {
                let v = b.take_bytes();
                pool.put_rx(b);
                v
            }
        }
    }

    /// Return everything to the pool (the slot is going).
    pub fn drop_all(&mut self, pool: &mut Pool) {
        if let Some(b) = self.0.take() {
            pool.put_rx(b);
        }
    }
}

impl Slot {
    pub fn new(
        sock: TcpStream,
        tls: Option<Box<TlsConn>>,
        conn: Conn,
        ip_key: IpKey,
        gen: u32,
    ) -> Slot {
        let mut slot = Slot {
            sock,
            rx: Rx::default(),
            tx: None,
            conn,
            ip_key,
            timer_at: NO_TIMER,
            gen: (gen & ((1 << crate::net::GEN_BITS) - 1)) as u16,
            flags: Flags::default(),
            route: NO_ROUTE,
            counted: Class::Handshake,
            extra: None,
            stamp: Stamp::default(),
        };
        slot.set_readable(true);
        slot.set_writable(true);
        if tls.is_some() {
            slot.extra().tls = tls;
        }
        slot
    }

    /// The generation of this slab entry, as handles carry it.
    pub fn gen(&self) -> u32 {
        u32::from(self.gen)
    }

    /// Where the connection is in its half-close.
    pub fn linger(&self) -> Linger {
        match self.flags.0 >> LINGER_SHIFT {
            0 => Linger::Off,
            1 => Linger::Waiting,
            _ => Linger::Over,
        }
    }

    pub fn set_linger(&mut self, l: Linger) {
        self.flags.0 = (self.flags.0 & !(3 << LINGER_SHIFT)) | ((l as u8) << LINGER_SHIFT);
    }

    /// The deadline of this slot's live timer entry, if it has one.
    pub fn timer_at(&self) -> Option<Tick> {
        (self.timer_at != NO_TIMER).then_some(Tick(self.timer_at))
    }

    pub fn set_timer_at(&mut self, at: Option<Tick>) {
        self.timer_at = match at {
            Some(Tick(NO_TIMER)) => NO_TIMER - 1,
            Some(Tick(t)) => t,
            None => NO_TIMER,
        };
    }

    /// The TLS session, on a TLS listener's connection.
    pub fn tls(&self) -> Option<&TlsConn> {
        self.extra.as_ref().and_then(|e| e.tls.as_deref())
    }

    /// True for a connection without TLS.
    pub fn plain(&self) -> bool {
        self.tls().is_none()
    }

    /// True when the connection sends its FIN as soon as its queue is written: it is closed
    /// (the reactor closes the socket, or half-closes it while it waits for the peer's last
    /// bytes, in the turn that writes the queue's end), not over TLS (whose `close_notify`
    /// record is written after it) and not already half-closed.
    pub fn fin_follows_flush(&self) -> bool {
        self.conn.is_closed() && self.plain() && self.linger() == Linger::Off
    }

    /// Which gauge this connection counts in.
    pub fn class(&self) -> Class {
        if self.linger() != Linger::Off || self.conn.is_closed() {
            return Class::Closing;
        }
        if self.conn.is_websocket() {
            return match self.route {
                NO_ROUTE => Class::Closing,
                r if self.conn.is_open() => Class::WebSocket(r),
                _ => Class::Closing,
            };
        }
        if self.conn.is_handshaking() {
            Class::Handshake
        } else {
            Class::Http
        }
    }

    /// A message read at `clock_us` was queued for this connection: the queue's oldest
    /// message is stamped, unless another measurement is under way. (Only a connection with a
    /// route is: its route is the histogram's label.)
    pub fn stamp_relay(&mut self, clock_us: u64) {
        self.stamp.relay(self.route, clock_us);
    }

    /// After a write (`sent`: bytes were taken from the send queue): when the queue and the
    /// TLS records are flushed, the measurement that ends here, as the histogram and the
    /// stamp's start (see [`crate::metrics::Latency`]).
    pub fn flushed_stamp(&mut self, sent: bool) -> Option<(crate::metrics::Latency, u32)> {
        let flushed = self.pending_out() == 0 && !self.tls().is_some_and(|t| t.wants_write());
        let s = &mut self.stamp;
        if s.kind() == StampKind::Accepted && sent {
            *s = Stamp(s.at() | StampKind::Answered as u32);
        }
        let what = match s.kind() {
            StampKind::None | StampKind::Accepted => return None,
            StampKind::Answered => crate::metrics::HANDSHAKE,
            StampKind::Relay => self.route,
        };
        if !flushed {
            return None;
        }
        Some((what, std::mem::take(s).at()))
    }

    pub fn route(&self) -> Option<RouteId> {
        (self.route != NO_ROUTE).then_some(usize::from(self.route))
    }

    pub fn extra(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Default::default)
    }

    /// See [`Extra::trusted_peer`].
    pub fn trusted_peer(&self) -> bool {
        self.extra.as_ref().is_some_and(|e| e.trusted_peer)
    }

    /// See [`Extra::proxy_header`].
    pub fn proxy_header(&self) -> bool {
        self.extra.as_ref().is_some_and(|e| e.proxy_header)
    }

    /// The other end of this connection's pipe.
    pub fn peer(&self) -> Option<Handle> {
        self.extra.as_ref().and_then(|e| e.peer)
    }

    /// Data frames from this connection go cut-through to its peer.
    pub fn forwarding(&self) -> bool {
        self.peer().is_some() && self.conn.is_piped()
    }

    pub fn pending_out(&self) -> usize {
        self.tx.as_ref().map_or(0, |t| t.len())
    }

    /// The send queue, taken from the pool even when it is exhausted (for bytes that must go
    /// out: timeouts' frames, closes, deliveries already bounded by the sender's
    /// back-pressure).
    pub fn tx_force(&mut self, pool: &mut Pool) -> &mut Vec<u8> {
        tx_force(&mut self.tx, pool)
    }

    /// Give empty buffers back to the pool: an idle connection holds no buffer. `stalled`:
    /// what is left of its input waits for more input (not for room to write), so it is kept
    /// in a buffer of its own size.
    pub fn release_buffers(&mut self, pool: &mut Pool, stalled: bool) {
        self.rx.release(pool, stalled);
        if self.tx.as_ref().is_some_and(|b| b.is_empty()) {
            if let Some(b) = self.tx.take() {
                pool.put_tx(b);
            }
        }
    }
}

/// The TLS session in a slot's `extra`, on the field alone (so the slot's socket and buffers
/// can be borrowed beside it).
pub(crate) fn tls_mut(extra: &mut Option<Box<Extra>>) -> Option<&mut TlsConn> {
    extra.as_mut().and_then(|e| e.tls.as_deref_mut())
}

/// [`Slot::tx_force`] on the field alone (so the slot's `conn` can be borrowed beside it).
pub(crate) fn tx_force<'a>(tx: &'a mut Option<Box<TxBuf>>, pool: &mut Pool) -> &'a mut Vec<u8> {
    &mut tx.get_or_insert_with(|| pool.tx_force()).data
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_bytes(pool: &mut Pool, bytes: &[u8]) -> Rx {
        let mut rx = Rx::default();
        let b = rx.buf(pool, false).unwrap();
        b.spare()[..bytes.len()].copy_from_slice(bytes);
        b.filled_by(bytes.len());
        rx
    }

    #[test]
    fn growing_moves_the_unread_bytes_into_a_streaming_buffer() {
        let mut pool = Pool::new(16, 64).with_streams(64);
        let mut rx = with_bytes(&mut pool, b"half a head");
        rx.grow(&mut pool);
        let b = rx.pooled().unwrap();
        assert!(b.is_stream());
        assert_eq!(b.filled(), b"half a head");
        assert_eq!(b.spare().len(), 53);
        assert_eq!(pool.in_use(), 4, "the standard buffer went back");
        rx.grow(&mut pool);
        assert_eq!(pool.in_use(), 4, "growing twice takes one buffer");
        rx.pooled().unwrap().consume(11);
        rx.release(&mut pool, false);
        assert_eq!(pool.in_use(), 0, "an empty streaming buffer goes back too");
    }

    #[test]
    fn a_full_pool_keeps_the_standard_buffer() {
        let mut pool = Pool::new(16, 4).with_streams(64);
        let mut rx = with_bytes(&mut pool, b"abc");
        rx.grow(&mut pool);
        assert!(!rx.pooled().unwrap().is_stream());
        assert_eq!(pool.in_use(), 1);
    }

    #[test]
    fn a_stall_stashes_only_what_a_standard_buffer_holds() {
        let mut pool = Pool::new(16, 64).with_streams(64);
        let mut small = with_bytes(&mut pool, b"");
        small.grow(&mut pool);
        let b = small.pooled().unwrap();
        b.spare()[..5].copy_from_slice(b"frame");
        b.filled_by(5);
        small.release(&mut pool, true);
        assert!(!small.pooled().unwrap().is_pooled(), "stashed");
        assert_eq!(pool.in_use(), 0);

        let mut big = with_bytes(&mut pool, b"");
        big.grow(&mut pool);
        big.pooled().unwrap().filled_by(40);
        big.release(&mut pool, true);
        assert!(
            big.pooled().unwrap().is_stream(),
            "40 bytes stay where they are"
        );
        // And the stash moves back into a standard buffer whole.
        let b = small.buf(&mut pool, false).unwrap();
        assert_eq!(b.filled(), b"frame");
    }
}
