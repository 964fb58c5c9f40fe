//! Compact time for the protocol core.
//!
//! The core never reads a clock: the shell passes `now` into every call. To keep per-connection
//! state small, instants are stored as [`Tick`]: milliseconds since an epoch chosen by the shell,
//! in a wrapping `u32`. Comparisons are wrap-aware, which is sound as long as no interval the
//! core compares exceeds about 24 days (every timeout sigyard uses is far below that).
//!
//! What this module does not do: pick the epoch or convert from `std::time::Instant`. That is
//! the shell's job (`net::reactor`), because only the shell may look at a real clock.

use std::time::Duration;

/// Milliseconds since the shell's epoch, wrapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Tick(pub u32);

impl Tick {
    /// The tick `d` later than `self` (saturating `d` at the comparable range).
    pub fn after(self, d: Duration) -> Tick {
        let ms = d.as_millis().min(i32::MAX as u128) as u32;
        Tick(self.0.wrapping_add(ms))
    }

    /// True when `self` is at or past `deadline`.
    pub fn reached(self, deadline: Tick) -> bool {
        // Wrap-aware: the signed distance tells which side of the deadline we are on.
        (self.0.wrapping_sub(deadline.0) as i32) >= 0
    }

    /// Milliseconds from `earlier` to `self` (0 if `earlier` is in the future).
    pub fn since(self, earlier: Tick) -> u32 {
        let d = self.0.wrapping_sub(earlier.0) as i32;
        d.max(0) as u32
    }

    /// The tick of `ms` milliseconds on a `u64` clock (its low 32 bits).
    pub fn from_ms(ms: u64) -> Tick {
        Tick(ms as u32)
    }

    /// This tick on a `u64` millisecond clock that reads `now` (the tick is within about 24
    /// days of it, before or after).
    pub fn to_ms(self, now: u64) -> u64 {
        let delta = self.0.wrapping_sub(now as u32) as i32;
        now.saturating_add_signed(i64::from(delta))
    }

    /// The earlier of two deadlines.
    pub fn min(self, other: Tick) -> Tick {
        if self.reached(other) {
            other
        } else {
            self
        }
    }
}

/// The earlier of two optional deadlines.
pub fn earliest(a: Option<Tick>, b: Option<Tick>) -> Option<Tick> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reached_is_wrap_aware() {
        let near_wrap = Tick(u32::MAX - 5);
        let later = near_wrap.after(Duration::from_millis(10));
        assert_eq!(later, Tick(4));
        assert!(later.reached(near_wrap));
        assert!(!near_wrap.reached(later));
        assert_eq!(later.since(near_wrap), 10);
        assert_eq!(near_wrap.since(later), 0);
        assert_eq!(near_wrap.min(later), near_wrap);
    }

    #[test]
    fn earliest_of_options() {
        assert_eq!(earliest(None, None), None);
        assert_eq!(earliest(Some(Tick(3)), None), Some(Tick(3)));
        assert_eq!(earliest(Some(Tick(3)), Some(Tick(2))), Some(Tick(2)));
    }
}
