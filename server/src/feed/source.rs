//! Where the feed's messages come from: the in-process bus (the embedded default) or Redis.
//!
//! Publishers (`POST /messages`, `ringback publish`, the demo) call [`Source::publish`] and
//! never care which: embedded, the message is appended to this server's broadcast list at once;
//! with Redis, it is appended to the shared log, and every server's list (this one's included)
//! receives it from there.

use crate::feed::broadcast::BroadcastList;
use crate::feed::redis_ingest::{PublishError, RedisIngest};
use tokio::sync::watch;

#[derive(Clone)]
pub enum Source {
    /// This server's broadcast list is the feed.
    Embedded(BroadcastList),
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
            Source::Embedded(feed) => Ok(feed.publish(channel, data)?),
            Source::Redis(redis) => redis.publish(origin, channel, data).await,
        }
    }

    /// Ready to serve the whole feed: always embedded; with Redis, while it is connected.
    pub fn is_ready(&self) -> bool {
        match self {
            Source::Embedded(_) => true,
            Source::Redis(redis) => redis.is_online(),
        }
    }

    /// The source's online state, for sources that can go offline.
    pub fn watch_online(&self) -> Option<watch::Receiver<bool>> {
        match self {
            Source::Embedded(_) => None,
            Source::Redis(redis) => Some(redis.watch_online()),
        }
    }
}
