//! A log-linear latency histogram (in the spirit of HdrHistogram, written for this tool):
//! values below 256 are counted exactly; above, each power of two is split into 128 equal
//! buckets, so a reported percentile is within 1/256 of the true value (relative error bound,
//! `MAX_RELATIVE_ERROR`). Fixed size (7,424 buckets), mergeable, serialisable as sparse pairs.

/// Sub-buckets per power of two: `2^SUB_BITS`.
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
/// Enough buckets for every `u64`: the highest shift is `63 - SUB_BITS`.
const BUCKETS: usize = ((63 - SUB_BITS as usize) + 1) * SUB as usize + SUB as usize;

/// A reported percentile differs from the true one by at most this fraction of the true value.
pub const MAX_RELATIVE_ERROR: f64 = 1.0 / 256.0;

#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    min: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Histogram(n={}, max={})", self.total, self.max)
    }
}

fn index(v: u64) -> usize {
    if v < 2 * SUB {
        return v as usize;
    }
    let high = 63 - v.leading_zeros();
    let shift = high - SUB_BITS;
    (shift as u64 * SUB + (v >> shift)) as usize
}

/// The lowest value and the width of bucket `i`.
fn bucket(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < 2 * SUB {
        return (i, 1);
    }
    let shift = i / SUB - 1;
    let sub = i - shift * SUB;
    (sub << shift, 1 << shift)
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
        }
    }

    pub fn record(&mut self, v: u64) {
        self.counts[index(v)] += 1;
        self.total += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += v as u128;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    /// The value at quantile `q` (0 < q ≤ 1): the ⌈q·n⌉-th smallest recorded value, within
    /// `MAX_RELATIVE_ERROR`. Zero when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (lo, width) = bucket(i);
                let mid = lo + (width - 1) / 2;
                return mid.clamp(self.min, self.max);
            }
        }
        self.max
    }

    /// Non-empty buckets as `[index, count]` pairs plus min/max/sum, for the JSON summary (so
    /// that a parent process can merge its workers' histograms).
    pub fn to_json(&self) -> serde_json::Value {
        let buckets: Vec<[u64; 2]> = self
            .counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &c)| [i as u64, c])
            .collect();
        serde_json::json!({
            "buckets": buckets,
            "min": if self.total == 0 { 0 } else { self.min },
            "max": self.max,
            "sum": self.sum.to_string(),
        })
    }

    /// The inverse of `to_json`; `None` on anything malformed.
    pub fn from_json(v: &serde_json::Value) -> Option<Histogram> {
        let mut h = Histogram::new();
        for pair in v.get("buckets")?.as_array()? {
            let i = pair.get(0)?.as_u64()? as usize;
            let c = pair.get(1)?.as_u64()?;
            *h.counts.get_mut(i)? += c;
            h.total += c;
        }
        if h.total > 0 {
            h.min = v.get("min")?.as_u64()?;
            h.max = v.get("max")?.as_u64()?;
            h.sum = v.get("sum")?.as_str()?.parse().ok()?;
        }
        Some(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn buckets_cover_every_value_once() {
        for v in (0..100_000u64).chain([u64::MAX, u64::MAX - 1, 1 << 40, (1 << 40) - 1]) {
            let (lo, w) = bucket(index(v));
            assert!(lo <= v && v - lo < w, "v={v} lo={lo} w={w}");
            assert!(index(v) < BUCKETS);
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn percentiles_match_sorted_reference() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for round in 0..20 {
            let n = 1 + (rng.next() % 50_000) as usize;
            let mut h = Histogram::new();
            let mut data = Vec::with_capacity(n);
            for _ in 0..n {
                // Spread over many magnitudes: a random value below a random power of two.
                let bits = rng.next() % 40;
                let v = rng.next() % (1u64 << bits).max(1);
                h.record(v);
                data.push(v);
            }
            data.sort_unstable();
            for q in [0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0] {
                let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
                let truth = data[rank - 1];
                let got = h.quantile(q);
                let err = (got as f64 - truth as f64).abs();
                assert!(
                    err <= truth as f64 * MAX_RELATIVE_ERROR,
                    "round {round} q={q} truth={truth} got={got}"
                );
            }
            assert_eq!(h.max(), *data.last().unwrap());
            assert_eq!(h.count(), n as u64);
        }
    }

    #[test]
    fn merge_and_json_round_trip() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        for v in 0..1000 {
            a.record(v * 7);
            b.record(v * 1_000_003);
        }
        let mut m = a.clone();
        m.merge(&b);
        let back = Histogram::from_json(&m.to_json()).unwrap();
        assert_eq!(back.count(), 2000);
        for q in [0.5, 0.99, 1.0] {
            assert_eq!(back.quantile(q), m.quantile(q));
        }
        assert_eq!(Histogram::new().quantile(0.5), 0);
        assert!(Histogram::from_json(&serde_json::json!({"buckets": [[99999, 1]]})).is_none());
    }
}
