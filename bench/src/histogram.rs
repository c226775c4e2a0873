//! A latency histogram shared by many tasks: log-linear buckets of atomic counters (100 µs wide
//! up to 100 ms, then 10 ms wide up to ~10 s), so recording is one relaxed add and no lock.

use std::sync::atomic::{AtomicU64, Ordering};

/// Buckets 100 µs wide up to 100 ms, then 10 ms wide up to ~10 s.
const FINE: u64 = 1000;
const COARSE: u64 = 990;

fn bucket(us: u64) -> usize {
    let b = if us < 100_000 {
        us / 100
    } else {
        FINE + ((us - 100_000) / 10_000).min(COARSE - 1)
    };
    b as usize
}

fn bucket_upper_us(b: usize) -> u64 {
    let b = b as u64;
    if b < FINE {
        (b + 1) * 100
    } else {
        100_000 + (b - FINE + 1) * 10_000
    }
}

/// Latencies in microseconds, and the largest seen.
pub struct Histogram {
    buckets: Vec<AtomicU64>,
    max_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..FINE + COARSE).map(|_| AtomicU64::new(0)).collect(),
            max_us: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Records `n` samples of `latency_us`.
    pub fn record(&self, latency_us: u64, n: u64) {
        self.buckets[bucket(latency_us)].fetch_add(n, Ordering::Relaxed);
        self.max_us.fetch_max(latency_us, Ordering::Relaxed);
    }

    /// The samples recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// The `p` quantile (0–1), in µs: the upper bound of its bucket; 0 without samples.
    pub fn percentile(&self, p: f64) -> u64 {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((total as f64) * p).ceil() as u64;
        let mut seen = 0;
        for (b, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_upper_us(b);
            }
        }
        bucket_upper_us(counts.len() - 1)
    }

    /// The largest sample, in µs.
    pub fn max_us(&self) -> u64 {
        self.max_us.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_the_range() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(99), 0);
        assert_eq!(bucket(150), 1);
        assert_eq!(bucket_upper_us(bucket(150)), 200);
        assert_eq!(bucket(100_000), FINE as usize);
        assert_eq!(bucket_upper_us(bucket(105_000)), 110_000);
        assert_eq!(bucket(u64::MAX / 2), (FINE + COARSE - 1) as usize);
    }

    #[test]
    fn percentiles() {
        let h = Histogram::default();
        assert_eq!(h.percentile(0.99), 0);
        for us in 1..=100 {
            h.record(us * 1000, 1);
        }
        assert_eq!(h.count(), 100);
        assert_eq!(h.percentile(0.5), 50_100);
        assert_eq!(h.percentile(0.99), 99_100);
        assert_eq!(h.max_us(), 100_000);
    }
}
