//! The commands a server sends on its session's command connection: a publish (`POST /messages`,
//! `ringback publish`, the demo) straight into the log, at most once per idempotency key; its
//! replication (`WAIT`); and the presence reports.

use super::{PublishError, RedisIngest};
use crate::feed::idempotency::{Idempotent, Outcome};
use crate::runtime::cancel::CancelToken;
use crate::runtime::lock::MutexExt;
use redis::aio::MultiplexedConnection;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A duration in whole milliseconds, as Redis takes them.
pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 4)
}

impl RedisIngest {
    /// Appends a message to the log (every server shows it); returns its feed id. With `once`,
    /// at most once per idempotency key and window, on every server of this Redis (see
    /// `lua/publish.lua`).
    pub async fn publish(
        &self,
        source: &str,
        channel: &str,
        data: &serde_json::Value,
        once: Option<&Idempotent>,
    ) -> Result<Outcome, PublishError> {
        // Serialised once: its length is checked, then it is embedded in the log's message.
        let data_json = serde_json::to_string(data).unwrap_or_else(|_| "null".into());
        self.inner.feed.check(channel, data_json.len())?;
        // `check` validated the channel as a token: it needs no JSON escaping.
        let msg = format!(r#"{{"type":"{channel}","data":{data_json}}}"#);
        let Some((mut conn, demoted)) = self.commands() else {
            return Err(PublishError::Unavailable("not connected".into()));
        };
        self.publish_call(&mut conn, source, &msg, once)
            .await
            .map_err(|e| {
                // The session's primary was demoted (a failover its connections survived, as
                // in a partition): its reads still work, so only this tells the session to
                // find the new primary.
                if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly) {
                    demoted.cancel();
                }
                PublishError::Unavailable(e.to_string())
            })
    }

    /// One `lua/publish.lua` call, and the replication a written entry waits for.
    async fn publish_call(
        &self,
        conn: &mut MultiplexedConnection,
        source: &str,
        msg: &str,
        once: Option<&Idempotent>,
    ) -> redis::RedisResult<Outcome> {
        let s = &self.inner.settings;
        let mut call = self.inner.publish_script.key(&self.inner.log_key);
        call.key(&self.inner.last_key)
            .key(&self.inner.keys_key)
            .key(&self.inner.keys_expiry_key)
            .arg(s.history.max(1))
            .arg(millis(s.history_age))
            .arg(source)
            .arg(msg)
            .arg(once.map_or("", |o| o.key.as_str()))
            .arg(once.map_or("", |o| o.digest.as_str()))
            .arg(millis(s.idempotency.idempotency_window).max(1))
            .arg(s.idempotency.idempotency_keys.max(1));
        let (id, outcome, forgotten): (String, i64, u64) = call.invoke_async(conn).await?;
        let id: u64 = id.parse().map_err(|_| {
            redis::RedisError::from((redis::ErrorKind::Parse, "publish returned a bad id"))
        })?;
        let metrics = &self.inner.metrics;
        metrics
            .idempotency_evictions
            .fetch_add(forgotten, Ordering::Relaxed);
        Ok(match outcome {
            1 => {
                self.replicated(conn).await?;
                Outcome::Published(id)
            }
            2 => {
                metrics.idempotent_replays.fetch_add(1, Ordering::Relaxed);
                Outcome::Replayed(id)
            }
            _ => Outcome::KeyReused(id),
        })
    }

    /// Reports this server's subscriber counts (`server` names it; channels with none left out)
    /// for `expiry`, and returns every live server's summed (see `lua/presence.lua`). Fails while
    /// Redis is unreachable, and after `--redis-timeout` (the connection's response timeout).
    pub async fn report_presence<'a>(
        &self,
        server: &str,
        counts: impl IntoIterator<Item = (&'a str, u64)>,
        expiry: Duration,
    ) -> redis::RedisResult<Vec<(String, u64)>> {
        let Some((mut conn, _)) = self.commands() else {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "not connected to Redis",
            )));
        };
        let mut call = self.inner.presence_script.key(&self.inner.presence_key);
        call.key(self.presence_key_of(server)).arg(
            u64::try_from(expiry.as_millis())
                .unwrap_or(u64::MAX / 4)
                .max(1),
        );
        for (channel, n) in counts {
            call.arg(channel).arg(n);
        }
        call.invoke_async(&mut conn).await
    }

    /// Withdraws this server's counts at once (a clean shutdown), instead of at their expiry.
    pub async fn withdraw_presence(&self, server: &str) {
        if let Some((mut conn, _)) = self.commands() {
            let _: redis::RedisResult<()> = redis::cmd("DEL")
                .arg(self.presence_key_of(server))
                .query_async(&mut conn)
                .await;
        }
    }

    /// The key of `server`'s counts.
    fn presence_key_of(&self, server: &str) -> String {
        format!("{}:{server}", self.inner.presence_key)
    }

    /// The current session's command connection (its response timeout is `--redis-timeout`)
    /// and the token that ends the session; `None` while Redis is unreachable.
    pub(super) fn commands(&self) -> Option<(MultiplexedConnection, CancelToken)> {
        self.inner.commands.lock_or_recover().clone()
    }

    /// Waits until `--redis-min-replicas` replicas have this connection's writes (`WAIT`), up
    /// to half the command timeout (the rest is the reply's margin); an error if fewer did.
    pub(super) async fn replicated(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> redis::RedisResult<()> {
        let s = &self.inner.settings;
        if s.min_replicas == 0 {
            return Ok(());
        }
        let wait = s.command_timeout / 2;
        let reached: u32 = redis::cmd("WAIT")
            .arg(s.min_replicas)
            .arg(u64::try_from(wait.as_millis()).unwrap_or(1000).max(1))
            .query_async(conn)
            .await?;
        if reached < s.min_replicas {
            self.inner
                .metrics
                .redis_unreplicated
                .fetch_add(1, Ordering::Relaxed);
            return Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "written to the Redis primary but not to enough replicas in time; not acknowledged",
                format!("{reached} of {} within {wait:?}", s.min_replicas),
            )));
        }
        Ok(())
    }
}
