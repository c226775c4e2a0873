//! Limits on what one client can take: subscribers in total and per client address, and the
//! publish rate per credential; and on what resuming clients take together: the replay budget.
//!
//! The other limits live where their input is read: message size and channels (the broadcast
//! list and `POST /messages`), `type` filters per subscription (`events.rs`), connections (the
//! accept loop), HTTP/2 streams and header sizes (`transport/`).
//!
//! Why a `std::sync::Mutex` around plain maps: each critical section is a lookup and an
//! increment, with no `.await` inside; subscriptions and publishes are rare next to deliveries.

use crate::runtime::connection::ClientAddr;
use crate::runtime::lock::MutexExt;
use axum::http::HeaderMap;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The client's address: the connection's peer, or, behind a trusted proxy
/// (`--trust-forwarded-for`), the address that proxy appended last to `X-Forwarded-For`.
pub fn client_ip(peer: Option<&ClientAddr>, headers: &HeaderMap, trust_forwarded: bool) -> IpAddr {
    let forwarded = trust_forwarded
        .then(|| {
            headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .next_back()
                .and_then(|a| a.trim().parse::<IpAddr>().ok())
        })
        .flatten();
    forwarded
        .or(peer.map(|p| p.0.ip()))
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// Why a limit refused: the server is full, this address holds its share, or this credential
/// publishes too fast (how to answer each: `api::refusal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("the server holds its limit of {0} subscribers; retry later")]
    Subscribers(usize),
    #[error("this address holds its limit of {0} subscribers")]
    SubscribersPerIp(usize),
    #[error("rate limit reached; retry in {} ms", .0.as_millis())]
    PublishRate(Duration),
}

/// Subscribers in total and per address; `0` means no limit.
#[derive(Debug)]
pub struct SubscriberLimits {
    total: usize,
    per_ip: usize,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// One admitted subscriber; dropping it gives the place back.
#[derive(Debug)]
pub struct SubscriberPermit {
    limits: Arc<SubscriberLimits>,
    ip: IpAddr,
}

impl SubscriberLimits {
    pub fn new(total: usize, per_ip: usize) -> Arc<Self> {
        Arc::new(SubscriberLimits {
            total,
            per_ip,
            held: Mutex::default(),
        })
    }

    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<SubscriberPermit, LimitError> {
        let mut held = self.held.lock_or_recover();
        if self.total > 0 && held.total >= self.total {
            return Err(LimitError::Subscribers(self.total));
        }
        let mine = held.by_ip.get(&ip).copied().unwrap_or(0);
        if self.per_ip > 0 && mine >= self.per_ip {
            return Err(LimitError::SubscribersPerIp(self.per_ip));
        }
        held.total += 1;
        held.by_ip.insert(ip, mine + 1);
        Ok(SubscriberPermit {
            limits: self.clone(),
            ip,
        })
    }

    /// Addresses holding at least one subscriber (bounded by the subscribers themselves).
    pub fn addresses(&self) -> usize {
        self.held.lock_or_recover().by_ip.len()
    }
}

impl Drop for SubscriberPermit {
    fn drop(&mut self) {
        let mut held = self.limits.held.lock_or_recover();
        held.total = held.total.saturating_sub(1);
        if let Some(n) = held.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                held.by_ip.remove(&self.ip);
            }
        }
    }
}

/// Buckets tracked at most; beyond it, the full (idle) ones are forgotten. A full bucket and a
/// forgotten one behave alike, so forgetting never lets anyone publish faster.
const MAX_BUCKETS: usize = 10_000;

/// A token bucket per credential: `rate` messages per second, bursts of up to `burst`.
#[derive(Debug)]
pub struct PublishRate {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl PublishRate {
    /// `rate` of `0` means no limit.
    pub fn new(rate: f64, burst: u32) -> Self {
        PublishRate {
            rate,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::default(),
        }
    }

    /// Takes one message's token from `key`'s bucket, or says how long until there is one.
    pub fn check(&self, key: &str) -> Result<(), LimitError> {
        self.take(key, true)
    }

    /// Whether `key`'s bucket has a token, without taking it (how long until it has one if not).
    pub fn peek(&self, key: &str) -> Result<(), LimitError> {
        self.take(key, false)
    }

    fn take(&self, key: &str, consume: bool) -> Result<(), LimitError> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock_or_recover();
        if !consume && !buckets.contains_key(key) {
            return Ok(()); // a full bucket, not made until something is taken
        }
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refilled = bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * self.rate;
        bucket.tokens = refilled.min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            if consume {
                bucket.tokens -= 1.0;
            }
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.rate;
            Err(LimitError::PublishRate(Duration::from_secs_f64(wait)))
        }
    }
}

/// Bytes per second that every resuming stream together may replay from history
/// (`--replay-rate`).
///
/// Why: after a crash, thousands of browsers resume at once, each from where it was, and each
/// replay is a copy through the kernel (and TLS) of what it missed; taken all at once they
/// starve the live streams of CPU (measured: a canary's latency from ~1 ms to 823 ms). Each
/// replay batch is reserved from this budget before it is read: within the budget at once, and
/// beyond it a reservation waits its turn (reservations are served in the order they were made:
/// the budget goes into debt and each waits until its part is earned). Live deliveries never
/// reserve. A reservation larger than the batch taken is refunded.
#[derive(Debug)]
pub struct ReplayBudget {
    /// Bytes per second; 0: no limit.
    rate: f64,
    /// Bytes that may go at once after a quiet second.
    burst: f64,
    bucket: Mutex<Bucket>,
}

impl ReplayBudget {
    pub fn new(bytes_per_second: u64) -> Self {
        let rate = bytes_per_second as f64;
        ReplayBudget {
            rate,
            burst: rate,
            bucket: Mutex::new(Bucket {
                tokens: rate,
                at: Instant::now(),
            }),
        }
    }

    /// Reserves `bytes`; returns how long the caller must wait before taking them.
    pub fn reserve(&self, bytes: usize) -> Duration {
        if self.rate <= 0.0 {
            return Duration::ZERO;
        }
        let now = Instant::now();
        let mut bucket = self.bucket.lock_or_recover();
        let earned = now.duration_since(bucket.at).as_secs_f64() * self.rate;
        bucket.tokens = (bucket.tokens + earned).min(self.burst) - bytes as f64;
        bucket.at = now;
        if bucket.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-bucket.tokens / self.rate)
        }
    }

    /// Gives back `bytes` reserved and not taken.
    pub fn refund(&self, bytes: usize) {
        if self.rate <= 0.0 || bytes == 0 {
            return;
        }
        let mut bucket = self.bucket.lock_or_recover();
        bucket.tokens = (bucket.tokens + bytes as f64).min(self.burst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use std::net::SocketAddr;

    #[test]
    fn subscribers_in_total_and_per_address() {
        let limits = SubscriberLimits::new(3, 2);
        let a = IpAddr::from([10, 0, 0, 1]);
        let b = IpAddr::from([10, 0, 0, 2]);
        let a1 = limits.admit(a).unwrap();
        let _a2 = limits.admit(a).unwrap();
        assert_eq!(
            limits.admit(a).unwrap_err(),
            LimitError::SubscribersPerIp(2)
        );
        let _b1 = limits.admit(b).unwrap();
        assert_eq!(limits.admit(b).unwrap_err(), LimitError::Subscribers(3));
        drop(a1);
        let _a3 = limits.admit(a).unwrap();
        assert_eq!(limits.addresses(), 2);
        let unlimited = SubscriberLimits::new(0, 0);
        let held: Vec<_> = (0..100).map(|_| unlimited.admit(a).unwrap()).collect();
        drop(held);
        assert_eq!(unlimited.addresses(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn publish_rate_per_credential() {
        let rate = PublishRate::new(2.0, 3);
        for _ in 0..3 {
            rate.check("alice").unwrap();
        }
        let Err(LimitError::PublishRate(wait)) = rate.check("alice") else {
            panic!("a fourth message within the burst must be refused");
        };
        assert_eq!(wait, Duration::from_millis(500));
        // Another credential has its own bucket.
        rate.check("bob").unwrap();
        tokio::time::advance(Duration::from_millis(500)).await;
        rate.check("alice").unwrap();
        assert!(rate.check("alice").is_err());
        // A long pause refills up to the burst, not beyond it.
        tokio::time::advance(Duration::from_secs(60)).await;
        for _ in 0..3 {
            rate.check("alice").unwrap();
        }
        assert!(rate.check("alice").is_err());
        assert!(PublishRate::new(0.0, 1).check("x").is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn peeking_takes_nothing() {
        let rate = PublishRate::new(1.0, 2);
        rate.peek("carol").unwrap();
        rate.check("carol").unwrap();
        rate.peek("carol").unwrap();
        rate.peek("carol").unwrap();
        rate.check("carol").unwrap();
        let Err(LimitError::PublishRate(wait)) = rate.peek("carol") else {
            panic!("an empty bucket must show through a peek");
        };
        assert_eq!(wait, Duration::from_secs(1));
        tokio::time::advance(wait).await;
        rate.peek("carol").unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn idle_buckets_are_forgotten_beyond_the_bound() {
        let rate = PublishRate::new(1.0, 1);
        for i in 0..MAX_BUCKETS {
            rate.check(&i.to_string()).unwrap();
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        rate.check("new").unwrap();
        assert_eq!(rate.buckets.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn replays_take_their_turn_beyond_the_budget() {
        let budget = ReplayBudget::new(1000);
        assert_eq!(budget.reserve(600), Duration::ZERO);
        assert_eq!(budget.reserve(400), Duration::ZERO);
        // The budget is spent: each reservation waits for its part, in order.
        assert_eq!(budget.reserve(500), Duration::from_millis(500));
        assert_eq!(budget.reserve(500), Duration::from_millis(1000));
        budget.refund(500);
        assert_eq!(budget.reserve(250), Duration::from_millis(750));
        tokio::time::advance(Duration::from_secs(10)).await;
        // A quiet stretch earns at most a second's worth.
        assert_eq!(budget.reserve(1000), Duration::ZERO);
        assert_eq!(budget.reserve(1), Duration::from_millis(1));
        assert_eq!(ReplayBudget::new(0).reserve(1 << 30), Duration::ZERO);
    }

    #[test]
    fn forwarded_for_only_when_trusted() {
        let peer = ClientAddr(SocketAddr::from(([127, 0, 0, 1], 5000)));
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("1.1.1.1, 203.0.113.7"),
        );
        assert_eq!(client_ip(Some(&peer), &headers, false), peer.0.ip());
        assert_eq!(
            client_ip(Some(&peer), &headers, true),
            IpAddr::from([203, 0, 113, 7])
        );
        assert_eq!(client_ip(Some(&peer), &HeaderMap::new(), true), peer.0.ip());
    }
}
