//! Where the feed's messages come from: the in-process bus (the embedded default) or Redis.
//!
//! Publishers (`POST /messages`, `ringback publish`, the demo) call [`Source::publish`] and
//! never care which: embedded, the message is appended to this server's broadcast list at once;
//! with Redis, it is appended to the shared log, and every server's list (this one's included)
//! receives it from there. A publish with an `Idempotency-Key` is appended once per window
//! either way (`feed/idempotency.rs`).

use crate::feed::broadcast::BroadcastList;
use crate::feed::idempotency::{IdempotencyKeys, Idempotent, Outcome};
use crate::feed::redis::{PublishError, RedisIngest};
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Clone)]
pub enum Source {
    /// This server's broadcast list is the feed; it remembers its own idempotency keys.
    Embedded(BroadcastList, Arc<IdempotencyKeys>),
    /// The Redis log is the feed; this server follows it.
    Redis(RedisIngest),
}

impl Source {
    /// Publishes a message; returns its feed id. `origin` labels where it came from (`http`,
    /// `demo`) in the Redis log.
    pub async fn publish(
        &self,
        origin: &str,
        channel: &str,
        data: &serde_json::Value,
    ) -> Result<u64, PublishError> {
        match self {
            Source::Embedded(feed, _) => Ok(feed.publish(channel, data)?),
            Source::Redis(redis) => {
                redis
                    .publish(origin, channel, data, None)
                    .await
                    .map(|o| match o {
                        Outcome::Published(id) | Outcome::Replayed(id) | Outcome::KeyReused(id) => {
                            id
                        }
                    })
            }
        }
    }

    /// Publishes a message unless its key was used within the window (then answers as before).
    pub async fn publish_once(
        &self,
        origin: &str,
        channel: &str,
        data: &serde_json::Value,
        once: &Idempotent,
    ) -> Result<Outcome, PublishError> {
        match self {
            Source::Embedded(feed, keys) => Ok(keys.publish(once, || feed.publish(channel, data))?),
            Source::Redis(redis) => redis.publish(origin, channel, data, Some(once)).await,
        }
    }

    /// Ready to serve the whole feed: always embedded; with Redis, while it is connected.
    pub fn is_ready(&self) -> bool {
        match self {
            Source::Embedded(..) => true,
            Source::Redis(redis) => redis.is_online(),
        }
    }

    /// The source's online state, for sources that can go offline.
    pub fn watch_online(&self) -> Option<watch::Receiver<bool>> {
        match self {
            Source::Embedded(..) => None,
            Source::Redis(redis) => Some(redis.watch_online()),
        }
    }
}
