//! Idempotent publishing: a publish sent again with the same `Idempotency-Key` (a publisher
//! retrying what got no answer: a timeout, a server that died before it answered) is answered
//! as the first was and not delivered again.
//!
//! A key is remembered for `--idempotency-window` after the publish that used it, with the id it
//! was given and a digest of its message: the same key with another message is refused (it is
//! a publisher's bug, and answering with the first id would hide it). At most
//! `--idempotency-keys` are remembered at once; beyond it the oldest are forgotten early
//! (counted: `ringback_idempotency_evictions_total`), so the memory they take is bounded whatever
//! publishers send. Embedded, this table is the memory; with Redis, the same rules run in the
//! publish script, on every server and across a failover as far as the log is replicated
//! (`feed/redis/`).
//!
//! Why a `std::sync::Mutex`: the lookup, the append and the insert happen under it, so two
//! copies of one publish arriving together cannot both be delivered; the append is the broadcast
//! list's own short critical section, and nothing awaits inside.

use crate::config::IdempotencyArgs;
use crate::metrics::Metrics;
use crate::runtime::lock::MutexExt;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

/// A publish's `Idempotency-Key`, scoped to its publisher's credential, and the digest of the
/// message it was sent with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotent {
    /// `<credential>:<key>` (the key alone when publishing is open).
    pub key: String,
    /// SHA-256 of the message's channel and data, hex (first 16 bytes).
    pub digest: String,
}

impl Idempotent {
    /// The scoped key of `key` for `credential`, and the digest of the message.
    pub fn new(
        credential: Option<&str>,
        key: &str,
        channel: &str,
        data: &serde_json::Value,
    ) -> Self {
        let message = serde_json::json!([channel, data]).to_string();
        let digest = crate::encoding::digest::sha256(message.as_bytes());
        Idempotent {
            key: match credential {
                Some(c) => format!("{c}:{key}"),
                None => key.to_owned(),
            },
            digest: crate::encoding::digest::hex(&digest[..16]),
        }
    }
}

/// What a publish came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Appended now, under this id.
    Published(u64),
    /// An earlier publish with the same key and message was given this id; nothing appended.
    Replayed(u64),
    /// The key was used, within the window, for another message (given this id).
    KeyReused(u64),
}

/// The keys remembered by an embedded server.
#[derive(Debug)]
pub struct IdempotencyKeys {
    settings: IdempotencyArgs,
    table: Mutex<Table>,
    metrics: Arc<Metrics>,
}

#[derive(Debug, Default)]
struct Table {
    /// Key → (id, digest).
    by_key: HashMap<String, (u64, String)>,
    /// Keys in the order they were remembered, with when they are forgotten.
    order: VecDeque<(Instant, String)>,
}

impl IdempotencyKeys {
    pub fn new(settings: IdempotencyArgs, metrics: Arc<Metrics>) -> Self {
        IdempotencyKeys {
            settings,
            table: Mutex::default(),
            metrics,
        }
    }

    /// `publish`es unless `once`'s key was used within the window; remembers it if it did.
    pub fn publish<E>(
        &self,
        once: &Idempotent,
        publish: impl FnOnce() -> Result<u64, E>,
    ) -> Result<Outcome, E> {
        let now = Instant::now();
        let mut table = self.table.lock_or_recover();
        while table.order.front().is_some_and(|(until, _)| *until <= now) {
            if let Some((_, key)) = table.order.pop_front() {
                table.by_key.remove(&key);
            }
        }
        if let Some((id, digest)) = table.by_key.get(&once.key) {
            return Ok(if *digest == once.digest {
                self.metrics
                    .idempotent_replays
                    .fetch_add(1, Ordering::Relaxed);
                Outcome::Replayed(*id)
            } else {
                Outcome::KeyReused(*id)
            });
        }
        let id = publish()?;
        if self.settings.idempotency_keys == 0 {
            return Ok(Outcome::Published(id));
        }
        while table.by_key.len() >= self.settings.idempotency_keys {
            let Some((_, key)) = table.order.pop_front() else {
                break;
            };
            table.by_key.remove(&key);
            self.metrics
                .idempotency_evictions
                .fetch_add(1, Ordering::Relaxed);
        }
        table
            .by_key
            .insert(once.key.clone(), (id, once.digest.clone()));
        let until = now + self.settings.idempotency_window;
        table.order.push_back((until, once.key.clone()));
        Ok(Outcome::Published(id))
    }

    /// Keys remembered now.
    pub fn len(&self) -> usize {
        self.table.lock_or_recover().by_key.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::time::Duration;

    fn keys(window: u64, max: usize) -> IdempotencyKeys {
        IdempotencyKeys::new(
            IdempotencyArgs {
                idempotency_window: Duration::from_secs(window),
                idempotency_keys: max,
                max_idempotency_key_bytes: 64,
            },
            Arc::default(),
        )
    }

    fn once(key: &str, data: &str) -> Idempotent {
        Idempotent::new(Some("token#0"), key, "blue", &data.into())
    }

    #[tokio::test(start_paused = true)]
    async fn a_repeat_within_the_window_is_answered_not_published() {
        let keys = keys(60, 10);
        let mut next = 0;
        let mut publish = || -> Result<u64, Infallible> {
            next += 1;
            Ok(next)
        };
        assert_eq!(
            keys.publish(&once("a", "x"), &mut publish),
            Ok(Outcome::Published(1))
        );
        assert_eq!(
            keys.publish(&once("a", "x"), &mut publish),
            Ok(Outcome::Replayed(1))
        );
        assert_eq!(
            keys.publish(&once("a", "y"), &mut publish),
            Ok(Outcome::KeyReused(1))
        );
        // Another credential's key of the same name is its own.
        let theirs = Idempotent::new(Some("token#1"), "a", "blue", &"x".into());
        assert_eq!(
            keys.publish(&theirs, &mut publish),
            Ok(Outcome::Published(2))
        );
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(
            keys.publish(&once("a", "x"), &mut publish),
            Ok(Outcome::Published(3))
        );
        assert_eq!(keys.metrics.idempotent_replays.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_table_is_bounded_and_forgets_the_oldest_first() {
        let keys = keys(3600, 3);
        let mut next = 0;
        let mut publish = || -> Result<u64, Infallible> {
            next += 1;
            Ok(next)
        };
        for k in ["a", "b", "c", "d"] {
            keys.publish(&once(k, "x"), &mut publish).unwrap();
        }
        assert_eq!(keys.len(), 3);
        assert_eq!(
            keys.metrics.idempotency_evictions.load(Ordering::Relaxed),
            1
        );
        // `a` was forgotten: it publishes again; `d` is remembered.
        assert_eq!(
            keys.publish(&once("d", "x"), &mut publish),
            Ok(Outcome::Replayed(4))
        );
        assert_eq!(
            keys.publish(&once("a", "x"), &mut publish),
            Ok(Outcome::Published(5))
        );
    }

    #[test]
    fn a_failed_publish_is_not_remembered() {
        let keys = keys(60, 10);
        assert_eq!(keys.publish(&once("a", "x"), || Err("full")), Err("full"));
        assert_eq!(keys.len(), 0);
    }
}
