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

/// A timer entry: absolute milliseconds since the reactor's epoch, slab key, generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub at_ms: u64,
    pub key: u32,
    pub gen: u32,
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
        self.heap.peek().map(|Reverse(e)| e.at_ms)
    }

    /// Pop every entry due at `now_ms` into `out`.
    pub fn drain_expired(&mut self, now_ms: u64, out: &mut Vec<Entry>) {
        while let Some(Reverse(e)) = self.heap.peek() {
            if e.at_ms > now_ms {
                break;
            }
            out.push(*e);
            self.heap.pop();
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
            t.insert(Entry {
                at_ms: at,
                key,
                gen: 0,
            });
        }
        assert_eq!(t.next_expiry(), Some(10));
        let mut out = Vec::new();
        t.drain_expired(20, &mut out);
        assert_eq!(out.iter().map(|e| e.key).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(t.len(), 1);
    }
}
