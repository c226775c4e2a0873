//! Redis ingest: several servers, one feed, nothing lost.
//!
//! The parts: [`codec`] (feed ids as stream ids, messages in and out of the log), [`commands`]
//! (publish and presence, on the session's command connection), [`session`] (connect, follow,
//! reconnect with backoff), [`log`] (the log read into the broadcast list), [`sequencer`]
//! (Pub/Sub input written to the log once across servers), [`scripts`] (the Lua, in `lua/`),
//! [`primary`] (where the primary is: a URL, or Sentinel).
//!
//! # The mechanism, and why
//! - **The log is a Redis Stream** (`<prefix>:log`). Every message any server accepts is one
//!   entry; every server reads the stream (`XREAD BLOCK`) and appends each entry to its own
//!   broadcast list. So every server shows the same messages in the same order under the same
//!   ids, a restarted server refills its history from the stream, and a server that lost Redis
//!   for a while reads on from the last entry it saw: nothing Redis accepted is missed.
//! - **Ids are the stream's ids**, written by one Lua script as `ms-seq` with `seq < 1000`; the
//!   feed id is `ms * 1000 + seq`. It increases across the whole feed, is the same on every
//!   server, stays below 2^53 (exact in JavaScript), and keeps growing after Redis loses its
//!   data (it follows Redis's clock), so an old `Last-Event-ID` is never mistaken for a new one.
//! - **Seed-compatible input is Pub/Sub.** `PUBLISH events '{"type":"blue","data":"hi"}'`
//!   carries no identity, and every server receives it. Each server passes each message to the
//!   same script with its *cursor* (the newest log entry it has matched or written): the script
//!   looks for the message among the entries after the cursor (by the SHA-1 of the normalised
//!   message) and writes it only if no other server already did. Redis delivers one channel's
//!   messages to every subscriber in the same order, so the servers' cursors walk the log
//!   together and each message is written once, however many servers run and whichever comes
//!   first; if one dies, the others keep writing.
//! - `POST /messages` and `ringback publish` append to the log directly (a script of their own,
//!   `lua/publish.lua`), and answer with the id; with Redis down they answer `503`. With an
//!   `Idempotency-Key`, the same script remembers the key (`<prefix>:keys`, bounded, each for
//!   `--idempotency-window`) in the same atomic step as the entry: a repeat on any server is
//!   answered with the first id and not written again, and a replica promoted by a failover has
//!   the key whenever it has the entry.
//!
//! # Failover
//! - **Sentinel** (`redis+sentinel://…`, `primary.rs`): every (re)connection asks the
//!   Sentinels for the primary. A failover ends the session on the old primary (its connection
//!   breaks, or it answers `READONLY` once demoted); the reconnection finds the new one.
//! - **Durability** (`--redis-min-replicas N`): after writing a log entry the server sends
//!   `WAIT N`; a publish is acknowledged (`202`) only when N replicas have the entry, so a
//!   promoted replica has everything acknowledged. Fewer in time: `503`, and the entry may or
//!   may not survive. A Pub/Sub message this server wrote is kept until its replication is
//!   confirmed and written again (or found, by its hash) in the next session.
//! - **Ids keep increasing.** A reconnection that finds the log behind what this server has
//!   read (a replica promoted before it received the newest entries) says so
//!   (`ringback_redis_log_rewinds_total`, a warning) and raises the id counter past everything
//!   it served, so new entries follow them in every server's order instead of reusing their ids.
//!
//! # Costs
//! One script call per Pub/Sub message per server (the messages already waiting share one call:
//! `SEQUENCE_BATCH`), and the payload crosses the network twice more (into the log, out to each
//! server). A `PUBLISH` that reaches *no* Ringback server (all
//! disconnected from Redis) is lost, as Pub/Sub itself loses it; `PUBLISH` returns the number of
//! receivers, so a publisher can tell. Two identical payloads published back to back while a
//! server is (re)subscribing may be matched to one another by that server; another server that
//! saw both still writes both.

mod codec;
mod commands;
mod log;
pub mod primary;
mod scripts;
mod sequencer;
mod session;

pub use codec::{normalise, split_message};

use crate::config::{FeedLimits, IdempotencyArgs, RedisArgs};
use crate::feed::broadcast::{BroadcastList, Rejected};
use crate::metrics::Metrics;
use crate::runtime::cancel::CancelToken;
use crate::runtime::log_summary::LogSummary;
use primary::RedisPrimary;
use redis::aio::MultiplexedConnection;
use redis::Script;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// What the ingest needs to know; built from the server's configuration.
#[derive(Clone, Debug)]
pub struct RedisSettings {
    pub url: String,
    /// Pub/Sub channels carrying seed-style messages.
    pub channels: Vec<String>,
    /// Prefix of the keys (`<prefix>:log`, `<prefix>:last`, `<prefix>:presence…`); the `{…}`
    /// hash tag keeps them in one Redis Cluster slot.
    pub prefix: String,
    /// Log entries Redis keeps.
    pub history: usize,
    /// Age beyond which log entries are trimmed.
    pub history_age: Duration,
    /// Reconnect backoff bounds.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How long a command (a publish) may wait for Redis.
    pub command_timeout: Duration,
    /// Largest accepted message, as the raw Pub/Sub payload.
    pub max_message_bytes: usize,
    /// Replicas a written entry must reach before it counts as written (`WAIT`); 0: none.
    pub min_replicas: u32,
    /// How long idempotency keys are remembered, and how many at most.
    pub idempotency: IdempotencyArgs,
}

/// Why a publish through Redis failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Rejected(#[from] Rejected),
    #[error("the message source (Redis) is unavailable: {0}")]
    Unavailable(String),
}

/// The ingest's shared handle; cheap to clone.
#[derive(Clone)]
pub struct RedisIngest {
    inner: Arc<Inner>,
}

struct Inner {
    primary: RedisPrimary,
    settings: RedisSettings,
    log_key: String,
    last_key: String,
    /// The idempotency keys (a hash) and when each expires (a sorted set).
    keys_key: String,
    keys_expiry_key: String,
    append_script: Script,
    publish_script: Script,
    /// The set of the servers' presence keys, and the script that reports to it.
    presence_key: String,
    presence_script: Script,
    /// The command connection of the current session, `None` while Redis is unreachable.
    commands: Mutex<Option<(MultiplexedConnection, CancelToken)>>,
    online: watch::Sender<bool>,
    feed: BroadcastList,
    metrics: Arc<Metrics>,
    /// Garbage from Redis, logged as one line per interval.
    bad_input_log: Arc<LogSummary>,
}

impl RedisSettings {
    /// The settings for following the Redis at `url`: the `--redis-*` flags, and the feed's
    /// bounds (the log keeps as many messages as the list, and refuses what the list would).
    pub fn new(
        url: String,
        redis: &RedisArgs,
        feed: &FeedLimits,
        idempotency: &IdempotencyArgs,
    ) -> Self {
        RedisSettings {
            url,
            channels: redis.redis_channels.clone(),
            prefix: redis.redis_prefix.clone(),
            history: feed.history,
            history_age: redis.history_age,
            backoff_min: crate::config::defaults::REDIS_BACKOFF_MIN,
            backoff_max: redis.redis_backoff_max,
            command_timeout: redis.redis_timeout,
            max_message_bytes: feed.max_message_bytes,
            min_replicas: redis.redis_min_replicas,
            idempotency: idempotency.clone(),
        }
    }
}

impl RedisIngest {
    pub fn new(
        settings: RedisSettings,
        feed: BroadcastList,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let primary = RedisPrimary::parse(&settings.url)
            .map_err(|e| format!("{e} ({:?})", redact(&settings.url)))?;
        let (online, _) = watch::channel(false);
        Ok(RedisIngest {
            inner: Arc::new(Inner {
                primary,
                log_key: format!("{}:log", settings.prefix),
                last_key: format!("{}:last", settings.prefix),
                presence_key: format!("{}:presence", settings.prefix),
                presence_script: scripts::presence(),
                keys_key: format!("{}:keys", settings.prefix),
                keys_expiry_key: format!("{}:keys:expiry", settings.prefix),
                settings,
                append_script: scripts::append(),
                publish_script: scripts::publish(),
                commands: Mutex::new(None),
                online,
                feed,
                metrics,
                bad_input_log: Arc::new(LogSummary::new(
                    "dropped Redis input",
                    tracing::Level::WARN,
                )),
            }),
        })
    }

    /// Whether the ingest is connected to Redis and following the log now.
    pub fn is_online(&self) -> bool {
        *self.inner.online.borrow()
    }

    /// Changes whenever the connection to Redis comes or goes.
    pub fn watch_online(&self) -> watch::Receiver<bool> {
        self.inner.online.subscribe()
    }

    /// Counts a refused input and logs it, one line per interval however many arrive.
    fn bad_input(&self, rejected: Rejected, what: &str) {
        self.inner.metrics.redis_rejected.add(rejected.index());
        let reason = Rejected::LABELS[rejected.index()];
        self.inner
            .bad_input_log
            .note(|| format!("{reason}: {what}"));
    }
}

/// The URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(redact("redis://:secret@h:6379/0"), "redis://***@h:6379/0");
        assert_eq!(redact("redis://h:6379"), "redis://h:6379");
    }
}
