//! Randomness for spreading herds: reconnection delays and stream lifetimes that would
//! otherwise line up across thousands of clients or a fleet of servers.
//!
//! Not cryptographic, and it needs none: SipHash keyed by the standard library's per-process
//! random keys (a fresh key per call), over the clock.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime};

/// 64 random bits.
pub fn random() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// A number in `[0, 1)`.
pub fn fraction() -> f64 {
    (random() >> 11) as f64 / (1u64 << 53) as f64
}

/// A duration in `[lo, hi]` (`lo` when `hi < lo`).
pub fn between(lo: Duration, hi: Duration) -> Duration {
    lo + hi.saturating_sub(lo).mul_f64(fraction())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_in_range_and_varies() {
        let (lo, hi) = (Duration::from_millis(800), Duration::from_millis(1000));
        let draws: Vec<Duration> = (0..200).map(|_| between(lo, hi)).collect();
        assert!(draws.iter().all(|d| *d >= lo && *d <= hi));
        let distinct: std::collections::HashSet<_> = draws.iter().collect();
        assert!(distinct.len() > 150, "{} distinct of 200", distinct.len());
        assert_eq!(between(hi, lo), hi);
    }
}
