//! Per-core timer queue with lazy revalidation.
//!
//! Entries are `(deadline, slot, gen)`; nothing is ever cancelled. When an entry fires, the
//! reactor checks the slot's generation (a stale entry is dropped) and asks the connection for
//! its *current* deadline, which may have moved later in the meantime. Activity therefore only
//! moves a number inside the connection, and an idle connection costs about one push per
//! timeout period. A binary heap sits behind the three-function interface; a hashed wheel can
//! replace it without touching callers if a profile ever asks for one.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A timer entry: a deadline in milliseconds since the reactor's epoch and a slab key, in one
/// `u64` (the deadline in the high 40 bits, about 34 years; the key in the low 24, as many as
/// a handle can name), so that entries order by deadline and cost 8 bytes each: there is one
/// per connection with a deadline, and every accepted connection has one (its handshake).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry(u64);

const KEY_BITS: u32 = 24;

impl Entry {
    pub fn new(at_ms: u64, key: u32) -> Entry {
        debug_assert!(key < 1 << KEY_BITS);
        Entry((at_ms.min((1 << (64 - KEY_BITS)) - 1) << KEY_BITS) | u64::from(key))
    }

    pub fn at_ms(self) -> u64 {
        self.0 >> KEY_BITS
    }

    pub fn key(self) -> u32 {
        (self.0 & ((1 << KEY_BITS) - 1)) as u32
    }
}

#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<Entry>>,
}

impl Timers {
    pub fn insert(&mut self, e: Entry) {
        self.heap.push(Reverse(e));
    }

    /// The earliest deadline, if any.
    pub fn next_expiry(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse(e)| e.at_ms())
    }

    /// Pop every entry due at `now_ms` into `out`. A queue that shrank to a quarter of its
    /// allocation gives half of it back (a burst of handshakes leaves no standing cost).
    pub fn drain_expired(&mut self, now_ms: u64, out: &mut Vec<Entry>) {
        while let Some(Reverse(e)) = self.heap.peek() {
            if e.at_ms() > now_ms {
                break;
            }
            out.push(*e);
            self.heap.pop();
        }
        let (len, cap) = (self.heap.len(), self.heap.capacity());
        if !out.is_empty() && cap > 1024 && len < cap / 4 {
            self.heap.shrink_to(len * 2);
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drains_in_deadline_order_and_only_due() {
        let mut t = Timers::default();
        for (at, key) in [(30, 3), (10, 1), (20, 2)] {
            t.insert(Entry::new(at, key));
        }
        assert_eq!(t.next_expiry(), Some(10));
        let mut out = Vec::new();
        t.drain_expired(20, &mut out);
        assert_eq!(out.iter().map(|e| e.key()).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(t.len(), 1);
        assert_eq!(std::mem::size_of::<Entry>(), 8);
        let big = Entry::new(1 << 39, (1 << 24) - 1);
        assert_eq!((big.at_ms(), big.key()), (1 << 39, (1 << 24) - 1));
    }
}
