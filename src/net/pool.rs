//! Per-core pools of I/O buffers.
//!
//! A connection checks a buffer out only while it has bytes to hold and gives it back as soon
//! as it is empty, so an idle connection holds none. The pool is bounded: when every buffer is
//! out, [`Pool::rx`] / [`Pool::tx`] answer `None` and the reactor stops reading (and accepting)
//! until one comes back. That turns memory pressure into back-pressure instead of growth.
//!
//! Read buffers are fixed-size and stay initialised between uses (no zeroing per checkout):
//! the standard size, and a bigger streaming size for a connection whose reads keep filling
//! the standard one, counted in the bound as the standard buffers it is worth;
//! write buffers are `Vec`s that may grow past the pool size when a burst of output is queued
//! (bounded by the connection's outbound limit), and are dropped rather than pooled if they did.
//!
//! What it does not own: what is in the buffers, or any decision about which connection
//! deserves one.

/// A read buffer: fixed capacity, with start/end cursors over its initialised bytes.
pub struct RxBuf {
    data: Box<[u8]>,
    start: usize,
    end: usize,
    kind: RxKind,
}

/// Where a read buffer comes from, and so where it goes back.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum RxKind {
    /// Exactly the bytes a stalled connection left unconsumed ([`RxBuf::stash`]); not the
    /// pool's.
    Stash,
    /// One of the pool's, of its standard size.
    Pooled,
    /// One of the pool's streaming buffers ([`Pool::rx_stream`]).
    Stream,
}

impl RxBuf {
    /// Bytes received and not yet consumed.
    pub fn filled(&mut self) -> &mut [u8] {
        &mut self.data[self.start..self.end]
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Where the unconsumed bytes start in the buffer (see [`RxBuf::at`]).
    pub fn offset(&self) -> usize {
        self.start
    }

    /// Bytes at absolute positions `r` of the buffer, consumed or not: a payload forwarded
    /// earlier in the same pass, before the buffer takes new input (only [`RxBuf::spare`]
    /// moves bytes). Empty when `r` is out of range.
    pub fn at(&self, r: std::ops::Range<usize>) -> &[u8] {
        self.data.get(r).unwrap_or_default()
    }

    /// Free space at the end, moving the unconsumed bytes to the front first when that frees
    /// room (sōzu-style compaction: only when the start passed half the buffer or the tail is full).
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 && (self.start >= self.data.len() / 2 || self.end == self.data.len()) {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.data[self.end..]
    }

    /// Record `n` bytes written into [`RxBuf::spare`].
    pub fn filled_by(&mut self, n: usize) {
        self.end = (self.end + n).min(self.data.len());
    }

    /// Drop `n` consumed bytes from the front.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// True when no more bytes fit even after compaction.
    pub fn is_full(&self) -> bool {
        self.len() == self.data.len()
    }

    /// A buffer of exactly `bytes`, not from the pool: what a stalled connection keeps of a
    /// partial read instead of a whole pooled buffer.
    pub fn stash(bytes: &[u8]) -> Box<RxBuf> {
        Box::new(RxBuf {
            data: bytes.into(),
            start: 0,
            end: bytes.len(),
            kind: RxKind::Stash,
        })
    }

    /// One of the pool's buffers (standard or streaming), not a stash.
    pub fn is_pooled(&self) -> bool {
        self.kind != RxKind::Stash
    }

    /// One of the pool's streaming buffers ([`Pool::rx_stream`]).
    pub fn is_stream(&self) -> bool {
        self.kind == RxKind::Stream
    }

    /// Bytes this buffer can hold.
    pub fn capacity(&self) -> usize {
        self.data.len()
    }

    /// Take the unconsumed bytes out (for a connection moving to another core).
    pub fn take_bytes(&mut self) -> Vec<u8> {
        let v = self.data[self.start..self.end].to_vec();
        self.consume(v.len());
        v
    }
}

/// A write buffer: bytes queued for the socket, `start` marks what was already written.
#[derive(Default)]
pub struct TxBuf {
    pub data: Vec<u8>,
    start: usize,
}

impl TxBuf {
    pub fn pending(&self) -> &[u8] {
        &self.data[self.start..]
    }

    pub fn len(&self) -> usize {
        self.data.len() - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Record `n` bytes written to the socket.
    pub fn written(&mut self, n: usize) {
        self.start = (self.start + n).min(self.data.len());
        if self.start == self.data.len() {
            self.data.clear();
            self.start = 0;
        } else if self.start > self.data.capacity() / 2 {
            self.data.drain(..self.start);
            self.start = 0;
        }
    }
}

/// A bounded per-core pool of read and write buffers.
pub struct Pool {
    size: usize,
    max: usize,
    /// Buffers checked out, in standard-size units (a streaming buffer counts as
    /// `stream_units`).
    out: usize,
    stream_size: usize,
    stream_units: usize,
    /// Of `out`, the units in streaming buffers.
    streams_out: usize,
    // Buffers are handed out boxed (a slot stores one pointer per buffer); keeping the boxes
    // on the free lists reuses those allocations too.
    #[allow(clippy::vec_box)]
    free_rx: Vec<Box<RxBuf>>,
    #[allow(clippy::vec_box)]
    free_tx: Vec<Box<TxBuf>>,
    #[allow(clippy::vec_box)]
    free_stream: Vec<Box<RxBuf>>,
}

impl Pool {
    /// A pool of at most `max` buffers (read and write together) of `size` bytes each.
    pub fn new(size: usize, max: usize) -> Self {
        Pool {
            size,
            max,
            out: 0,
            stream_size: size,
            stream_units: 1,
            streams_out: 0,
            free_rx: Vec::new(),
            free_tx: Vec::new(),
            free_stream: Vec::new(),
        }
    }

    /// The same pool, with streaming read buffers of `stream_size` bytes (none when that is
    /// not above the standard size), each counted as as many standard buffers as it holds.
    pub fn with_streams(mut self, stream_size: usize) -> Self {
        self.stream_size = stream_size;
        self.stream_units = stream_size.div_ceil(self.size);
        self
    }

    /// The size of the pool's buffers.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Buffers currently checked out, in standard-size units.
    pub fn in_use(&self) -> usize {
        self.out
    }

    pub fn exhausted(&self) -> bool {
        self.out >= self.max
    }

    pub fn rx(&mut self) -> Option<Box<RxBuf>> {
        if self.exhausted() {
            return None;
        }
        Some(self.rx_force())
    }

    /// A streaming read buffer, for a connection whose reads keep filling the standard one (a
    /// pipe moving bulk data): fewer, bigger reads and writes for the same bytes. `None` when
    /// the pool has no streaming size or not that much room left (the caller keeps reading
    /// into a standard one).
    ///
    /// Streaming buffers take at most a quarter of the pool: a pipe end whose peer stops
    /// reading keeps its buffer, and ends that do so on purpose must not exhaust the pool
    /// (which pauses reading on the whole core) much sooner than with standard buffers.
    pub fn rx_stream(&mut self) -> Option<Box<RxBuf>> {
        let units = self.stream_units;
        if self.stream_size <= self.size
            || self.out + units > self.max
            || self.streams_out + units > self.max / 4
        {
            return None;
        }
        self.out += units;
        self.streams_out += units;
        let size = self.stream_size;
        Some(self.free_stream.pop().unwrap_or_else(|| {
            Box::new(RxBuf {
                data: vec![0; size].into_boxed_slice(),
                start: 0,
                end: 0,
                kind: RxKind::Stream,
            })
        }))
    }

    pub fn tx(&mut self) -> Option<Box<TxBuf>> {
        if self.exhausted() {
            return None;
        }
        self.out += 1;
        let size = self.size;
        Some(self.free_tx.pop().unwrap_or_else(|| {
            Box::new(TxBuf {
                data: Vec::with_capacity(size),
                start: 0,
            })
        }))
    }

    /// A write buffer even when the pool is exhausted (counted, so it is returned as usual).
    /// For the few bytes the server must send regardless: a timeout's close frame, a ping, the
    /// shutdown close. Everything driven by peer input uses [`Pool::tx`] and waits instead.
    pub fn tx_force(&mut self) -> Box<TxBuf> {
        self.out += 1;
        let size = self.size;
        self.free_tx.pop().unwrap_or_else(|| {
            Box::new(TxBuf {
                data: Vec::with_capacity(size),
                start: 0,
            })
        })
    }

    /// A read buffer even when the pool is exhausted (counted like any other): for the bytes a
    /// connection brings along when it moves to this core, which must not be lost.
    pub fn rx_force(&mut self) -> Box<RxBuf> {
        self.out += 1;
        let size = self.size;
        self.free_rx.pop().unwrap_or_else(|| {
            Box::new(RxBuf {
                data: vec![0; size].into_boxed_slice(),
                start: 0,
                end: 0,
                kind: RxKind::Pooled,
            })
        })
    }

    pub fn put_rx(&mut self, mut b: Box<RxBuf>) {
        b.start = 0;
        b.end = 0;
        match b.kind {
            RxKind::Stash => {} // never the pool's
            RxKind::Pooled => {
                self.out -= 1;
                if self.free_rx.len() < self.keep() {
                    self.free_rx.push(b);
                }
            }
            RxKind::Stream => {
                self.out -= self.stream_units;
                self.streams_out -= self.stream_units;
                // As many bytes kept for reuse as of standard buffers, and at least a few.
                if self.free_stream.len() < (self.keep() / self.stream_units).max(2) {
                    self.free_stream.push(b);
                }
            }
        }
    }

    pub fn put_tx(&mut self, mut b: Box<TxBuf>) {
        self.out -= 1;
        // A buffer that grew for a burst is not kept: the pool holds only standard sizes.
        if b.data.capacity() == self.size && self.free_tx.len() < self.keep() {
            b.data.clear();
            b.start = 0;
            self.free_tx.push(b);
        }
    }

    /// How many free buffers of each kind are kept for reuse; the rest go back to the allocator
    /// so a burst does not pin its peak memory forever.
    fn keep(&self) -> usize {
        (self.max / 8).clamp(16, 1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rx_compacts_when_start_passes_half() {
        let mut p = Pool::new(8, 4);
        let mut b = p.rx().unwrap();
        b.spare()[..8].copy_from_slice(b"abcdefgh");
        b.filled_by(8);
        assert!(b.is_full());
        b.consume(5);
        assert_eq!(b.spare().len(), 5);
        assert_eq!(b.filled(), b"fgh");
        p.put_rx(b);
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn pool_is_bounded_and_reuses() {
        let mut p = Pool::new(16, 2);
        let a = p.rx().unwrap();
        let t = p.tx().unwrap();
        assert!(p.rx().is_none() && p.tx().is_none());
        p.put_rx(a);
        p.put_tx(t);
        assert_eq!(p.in_use(), 0);
        assert!(p.rx().is_some());
    }

    #[test]
    fn a_stash_is_never_counted() {
        let mut p = Pool::new(16, 2);
        let a = p.rx().unwrap();
        p.put_rx(RxBuf::stash(&[0; 16])); // as long as a pooled buffer, still not one
        assert_eq!(p.in_use(), 1);
        p.put_rx(a);
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn stream_buffers_count_as_several_and_need_room() {
        let mut p = Pool::new(16, 20).with_streams(64);
        let s = p.rx_stream().unwrap();
        assert_eq!((s.capacity(), p.in_use()), (64, 4));
        assert!(s.is_stream() && s.is_pooled());
        let standard: Vec<_> = (0..15).map(|_| p.rx().unwrap()).collect();
        assert!(p.rx_stream().is_none(), "no room for a second one");
        let a = p.rx().unwrap();
        assert!(p.exhausted());
        p.put_rx(s);
        assert_eq!(p.in_use(), 16);
        p.put_rx(a);
        for b in standard {
            p.put_rx(b);
        }
        assert_eq!(p.in_use(), 0);
        let again = p.rx_stream().unwrap();
        assert!(again.is_stream(), "kept for reuse");
        p.put_rx(again);
    }

    #[test]
    fn stream_buffers_take_at_most_a_quarter_of_the_pool() {
        let mut p = Pool::new(16, 64).with_streams(64);
        let s: Vec<_> = (0..4).map(|_| p.rx_stream().unwrap()).collect();
        assert_eq!(p.in_use(), 16);
        assert!(p.rx_stream().is_none(), "a quarter of 64 units is taken");
        assert!(p.rx().is_some(), "standard buffers are still there");
        for b in s {
            p.put_rx(b);
        }
        assert!(p.rx_stream().is_some());
    }

    #[test]
    fn no_stream_buffers_without_a_bigger_size() {
        assert!(Pool::new(16, 64).rx_stream().is_none());
        assert!(Pool::new(16, 64).with_streams(16).rx_stream().is_none());
    }

    #[test]
    fn grown_tx_is_not_pooled() {
        let mut p = Pool::new(16, 4);
        let mut t = p.tx().unwrap();
        t.data.extend_from_slice(&[1; 100]);
        t.written(40);
        assert_eq!(t.len(), 60);
        t.written(60);
        assert!(t.is_empty());
        p.put_tx(t);
        let t2 = p.tx().unwrap();
        assert_eq!(t2.data.capacity(), 16);
    }
}
