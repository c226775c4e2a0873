//! The session loop: connect to the primary, load the history, follow the log and sequence
//! Pub/Sub input until something fails; then offline, and reconnect with backoff and jitter.

use super::codec::feed_id;
use super::{redact, scripts, RedisIngest};
use crate::runtime::cancel::CancelToken;
use crate::runtime::lock::MutexExt;
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A session that lasted this long resets the reconnect backoff.
const STABLE_SESSION: Duration = Duration::from_secs(10);

impl RedisIngest {
    /// Follows Redis until `shutdown`: connects, reads the log, sequences Pub/Sub input, and
    /// on any failure marks itself offline and reconnects with backoff and jitter.
    pub async fn run(self, shutdown: CancelToken) {
        let mut progress = Progress::default();
        let mut attempt: u32 = 0;
        loop {
            let started = Instant::now();
            let outcome = tokio::select! {
                _ = shutdown.cancelled() => break,
                outcome = self.session(&mut progress) => outcome,
            };
            self.set_offline();
            if let Err(e) = outcome {
                if attempt == 0 || started.elapsed() >= STABLE_SESSION {
                    tracing::warn!(error = %e, "Redis unavailable; serving on, reconnecting with backoff");
                } else {
                    tracing::debug!(error = %e, attempt, "Redis still unavailable");
                }
            }
            if started.elapsed() >= STABLE_SESSION {
                attempt = 0;
            }
            let delay = backoff(
                self.inner.settings.backoff_min,
                self.inner.settings.backoff_max,
                attempt,
            );
            attempt = attempt.saturating_add(1);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        self.set_offline();
    }

    fn set_offline(&self) {
        *self.inner.commands.lock_or_recover() = None;
        // Only a change is news: every stream sends each one as a `ringback.source` event, and
        // a failed reconnection attempt while already offline is not one.
        self.inner
            .online
            .send_if_modified(|online| std::mem::replace(online, false));
        self.inner.metrics.redis_up.store(0, Ordering::Relaxed);
    }

    /// One connected session; returns only with the error that ended it.
    async fn session(&self, progress: &mut Progress) -> redis::RedisResult<()> {
        let Progress { last, unconfirmed } = progress;
        let s = &self.inner.settings;
        let client = self.inner.primary.client(s.command_timeout).await?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(s.command_timeout))
            .set_response_timeout(Some(s.command_timeout));
        let mut commands = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        if last.is_none() {
            *last = Some(self.backfill(&mut commands).await?);
        }
        let reader_config =
            config.set_response_timeout(Some(super::log::READ_BLOCK + s.command_timeout));
        let reader = client
            .get_multiplexed_async_connection_with_config(&reader_config)
            .await?;
        let mut pubsub = client.get_async_pubsub().await?;
        for channel in &s.channels {
            pubsub.subscribe(channel).await?;
        }
        // Subscribed: every message from here on reaches this server. What the log holds now
        // is behind this cursor and is never matched against (the newest of the `last` key and
        // the log's tail, in case either was lost or written by other means).
        let counter: Option<String> = redis::cmd("GET")
            .arg(&self.inner.last_key)
            .query_async(&mut commands)
            .await?;
        let tail = self.tail(&mut commands, 1).await?;
        let mut cursor = counter
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
            .max(tail.ids.first().and_then(|e| feed_id(&e.id)).unwrap_or(0));
        if let Some(read) = *last {
            if cursor < read {
                cursor = self.rewound(&mut commands, cursor, read).await?;
            }
        }
        // Cancelled by a publish that finds this primary demoted.
        let demoted = CancelToken::new();
        *self.inner.commands.lock_or_recover() = Some((commands.clone(), demoted.clone()));
        self.inner
            .online
            .send_if_modified(|online| !std::mem::replace(online, true));
        self.inner.metrics.redis_up.store(1, Ordering::Relaxed);
        self.inner
            .metrics
            .redis_connects
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(url = %redact(&s.url), channels = ?s.channels, "following Redis");
        let mut from = last.unwrap_or(0);
        let result = tokio::select! {
            r = self.read_log(reader, &mut from) => r,
            r = self.sequence(pubsub, commands, cursor, unconfirmed) => r,
            _ = demoted.cancelled() => Err(redis::RedisError::from((
                redis::ErrorKind::Client,
                "the Redis primary became a replica (READONLY); finding the new one",
            ))),
        };
        *last = Some(from);
        result
    }

    /// The log ends at `newest`, before `read`, the newest entry this server has read: entries
    /// were lost (see the module docs). Says so, and raises the id counter to `read` so that
    /// new entries get ids after everything served; returns the new cursor.
    async fn rewound(
        &self,
        conn: &mut MultiplexedConnection,
        newest: u64,
        read: u64,
    ) -> redis::RedisResult<u64> {
        self.inner
            .metrics
            .redis_log_rewinds
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            log_ends_at = newest,
            read_through = read,
            "the Redis log is behind what this server has served (a failover to a replica that \
             lacked the newest entries?); ids continue after {read}. With --redis-min-replicas, \
             nothing acknowledged is lost this way"
        );
        let raised: String = scripts::raise()
            .key(&self.inner.last_key)
            .arg(read)
            .invoke_async(conn)
            .await?;
        Ok(raised.parse().unwrap_or(read))
    }
}

/// What the ingest carries from one session to the next.
#[derive(Default)]
struct Progress {
    /// The newest log entry read (`None` until the first session's backfill).
    last: Option<u64>,
    /// The Pub/Sub messages this server was writing when its session ended, with the cursor
    /// they were matched from (see `sequence`).
    unconfirmed: Option<(Vec<String>, u64)>,
}

/// Exponential backoff with jitter: `min * 2^attempt`, capped at `max`, then scaled by a random
/// 50–100% so a fleet of servers does not reconnect in step.
fn backoff(min: Duration, max: Duration, attempt: u32) -> Duration {
    let full = min
        .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
        .min(max);
    crate::runtime::jitter::between(full / 2, full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(5));
        for attempt in 0..40 {
            let full = (min * 2u32.saturating_pow(attempt.min(20))).min(max);
            let d = backoff(min, max, attempt);
            assert!(d >= full / 2 && d <= full, "{attempt}: {d:?}");
        }
    }
}
