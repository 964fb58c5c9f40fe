//! Token buckets for the rate limits (`--max-messages-per-second`, …): integer arithmetic on
//! the caller's clock, a bucket as small as a connection can afford.

/// A rate and the burst allowed above it; `per_sec` 0 is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_sec: u64,
    pub burst: u64,
}

impl Rate {
    pub const OFF: Rate = Rate {
        per_sec: 0,
        burst: 0,
    };

    /// `per_sec`, with a burst of two seconds' worth.
    pub const fn per_second(per_sec: u64) -> Rate {
        Rate {
            per_sec,
            burst: per_sec.saturating_mul(2),
        }
    }
}

/// A bucket: full at its first use, refilled at the rate.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Tokens in thousandths.
    milli: u64,
    at_ms: u64,
    started: bool,
}

impl Bucket {
    /// True when the bucket was last used at least `ms` before `now_ms`.
    pub fn idle_for(&self, now_ms: u64, ms: u64) -> bool {
        now_ms.saturating_sub(self.at_ms) >= ms
    }

    /// Take `n` tokens at `now_ms`; false (and nothing taken) when there are not enough.
    pub fn take(&mut self, rate: Rate, now_ms: u64, n: u64) -> bool {
        if rate.per_sec == 0 {
            return true;
        }
        let cap = rate.burst.max(1).saturating_mul(1000);
        if !self.started {
            *self = Bucket {
                milli: cap,
                at_ms: now_ms,
                started: true,
            };
        }
        let elapsed = now_ms.saturating_sub(self.at_ms);
        self.milli = self
            .milli
            .saturating_add(elapsed.saturating_mul(rate.per_sec))
            .min(cap);
        self.at_ms = now_ms.max(self.at_ms);
        let need = n.saturating_mul(1000);
        if self.milli >= need {
            self.milli -= need;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let r = Rate::per_second(10);
        let mut b = Bucket::default();
        // Two seconds' worth at once, then nothing more in the same millisecond.
        assert!((0..20).all(|_| b.take(r, 1000, 1)));
        assert!(!b.take(r, 1000, 1));
        // 100 ms refill one token.
        assert!(b.take(r, 1100, 1));
        assert!(!b.take(r, 1100, 1));
        // Idle for long: full again, not more.
        assert!((0..20).all(|_| b.take(r, 60_000, 1)));
        assert!(!b.take(r, 60_000, 1));
        // Larger takes, and the limit off.
        let mut bytes = Bucket::default();
        assert!(bytes.take(Rate::per_second(1000), 0, 2000));
        assert!(!bytes.take(Rate::per_second(1000), 0, 1));
        assert!(Bucket::default().take(Rate::OFF, 0, u64::MAX));
        // A clock that goes back does not refill.
        let mut c = Bucket::default();
        assert!(c.take(Rate::per_second(1), 5000, 2));
        assert!(!c.take(Rate::per_second(1), 4000, 1));
    }
}
