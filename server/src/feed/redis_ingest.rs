//! Redis ingest: several servers, one feed, nothing lost.
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
//!   `PUBLISH_LUA`), and answer with the id; with Redis down they answer `503`. With an
//!   `Idempotency-Key`, the same script remembers the key (`<prefix>:keys`, bounded, each for
//!   `--idempotency-window`) in the same atomic step as the entry: a repeat on any server is
//!   answered with the first id and not written again, and a replica promoted by a failover has
//!   the key whenever it has the entry.
//!
//! # Failover
//! - **Sentinel** (`redis+sentinel://…`, `redis_primary.rs`): every (re)connection asks the
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

use crate::config::{FeedLimits, IdempotencyArgs, RedisArgs};
use crate::feed::broadcast::{BroadcastList, Rejected};
use crate::feed::idempotency::{Idempotent, Outcome};
use crate::feed::redis_primary::RedisPrimary;
use crate::metrics::Metrics;
use crate::runtime::cancel::CancelToken;
use crate::runtime::lock::MutexExt;
use crate::runtime::log_summary::LogSummary;
use app::message::{SOURCE_ID_FIELD, SOURCE_TIME_FIELD};
use futures::{FutureExt, StreamExt};
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};
use redis::{AsyncConnectionConfig, Script, Value};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long one `XREAD` blocks before it asks again (also how fast a dead reader is noticed).
const READ_BLOCK: Duration = Duration::from_secs(1);
/// Entries one `XREAD` returns at most.
const READ_COUNT: usize = 1024;
/// Log entries after its cursor a server searches for a Pub/Sub message another server wrote.
const MATCH_WINDOW: usize = 1024;
/// A session that lasted this long resets the reconnect backoff.
const STABLE_SESSION: Duration = Duration::from_secs(10);

/// Pub/Sub messages one sequencing call carries at most: the ones already waiting when a call
/// is made go together, so a server that fell behind catches up in few calls.
const SEQUENCE_BATCH: usize = 64;

/// What both log scripts share: the id arithmetic, and the next id for a new entry.
///
/// `next_id` reads Redis's clock and the id counter once per call, then hands out
/// `max(now_ms * 1000, last + 1)`: increasing, and following Redis's clock.
const LOG_LUA_COMMON: &str = r"
local function num(sid)
  local dash = string.find(sid, '-', 1, true)
  return tonumber(string.sub(sid, 1, dash - 1)) * 1000 + tonumber(string.sub(sid, dash + 1))
end
local function sid(n)
  return string.format('%d-%d', math.floor(n / 1000), n % 1000)
end
local now, last
local function clock()
  if not now then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return now
end
local function next_id(log, counter)
  if not last then
    clock()
    last = tonumber(redis.call('GET', counter) or '0')
    -- Also past anything written to the log by other means, so XADD never refuses the id.
    local tail = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)
    if #tail > 0 then last = math.max(last, num(tail[1][1])) end
  end
  last = math.max(now * 1000, last + 1)
  return last
end
local function trimmed(log, counter, max_age)
  redis.call('SET', counter, string.format('%d', last))
  redis.call('XTRIM', log, 'MINID', '~', sid(math.max(0, now - tonumber(max_age)) * 1000))
end
";

/// Appends Pub/Sub messages to the log, in order, after looking for each after the cursor (a
/// message another server already wrote is not written again).
///
/// One call for a whole batch: the entries after the cursor are read once (`XRANGE`, up to the
/// match window) and walked once for all the batch's messages, so a call's cost grows with the
/// batch and the lag added, not multiplied. After a message is written, nothing later in the
/// batch can match (every entry read is older), as in calls made one message at a time.
///
/// KEYS: log, last id. ARGV: max entries, max age (ms), source, cursor, match window, then the
/// messages' JSON. Returns `{id, written, id, written, …}`, ids as decimal strings, `written` 1
/// or 0.
const APPEND_LUA: &str = r"
local entries = redis.call('XRANGE', KEYS[1], '(' .. sid(tonumber(ARGV[4])), '+', 'COUNT', ARGV[5])
local pos = 1
local out = {}
for i = 6, #ARGV do
  local msg = ARGV[i]
  local h = redis.sha1hex(msg)
  local found = nil
  for j = pos, #entries do
    local f = entries[j][2]
    for k = 1, #f, 2 do
      if f[k] == 'h' and f[k + 1] == h then found = j end
    end
    if found then break end
  end
  if found then
    out[#out + 1] = string.format('%d', num(entries[found][1]))
    out[#out + 1] = 0
    pos = found + 1
  else
    local id = next_id(KEYS[1], KEYS[2])
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], sid(id), 'src', ARGV[3], 'h', h, 'msg', msg)
    out[#out + 1] = string.format('%d', id)
    out[#out + 1] = 1
    pos = #entries + 1
  end
end
if last then trimmed(KEYS[1], KEYS[2], ARGV[2]) end
return out
";

/// Appends one message published directly (`POST /messages`, `ringback publish`, the demo), at
/// most once per idempotency key and window.
///
/// KEYS: log, last id, the keys (a hash: key → `id:digest`), their expiries (a sorted set: key
/// → Unix ms). ARGV: max entries, max age (ms), source, message JSON, then the idempotency key
/// ('' for none), the message's digest, the window (ms), the most keys kept. Returns `{id,
/// outcome, forgotten}`: outcome 1 written, 2 an earlier publish with the key and message (its
/// id; nothing written), 3 the key was used for another message; `forgotten`: keys dropped early
/// to stay within the most kept. Expired keys are dropped a few per call (and by the bound).
const PUBLISH_LUA: &str = r"
local key = ARGV[5]
if key ~= '' then
  local expired = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', clock(), 'LIMIT', 0, 64)
  if #expired > 0 then
    redis.call('HDEL', KEYS[3], unpack(expired))
    redis.call('ZREM', KEYS[4], unpack(expired))
  end
  local prior = redis.call('HGET', KEYS[3], key)
  if prior then
    local sep = string.find(prior, ':', 1, true)
    local outcome = 3
    if string.sub(prior, sep + 1) == ARGV[6] then outcome = 2 end
    return {string.sub(prior, 1, sep - 1), outcome, 0}
  end
end
local id = next_id(KEYS[1], KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], sid(id), 'src', ARGV[3], 'h', '', 'msg', ARGV[4])
trimmed(KEYS[1], KEYS[2], ARGV[2])
local forgotten = 0
if key ~= '' then
  redis.call('HSET', KEYS[3], key, string.format('%d', id) .. ':' .. ARGV[6])
  redis.call('ZADD', KEYS[4], now + tonumber(ARGV[7]), key)
  local over = redis.call('ZCARD', KEYS[4]) - tonumber(ARGV[8])
  if over > 0 then
    local oldest = redis.call('ZRANGE', KEYS[4], 0, over - 1)
    redis.call('HDEL', KEYS[3], unpack(oldest))
    redis.call('ZREM', KEYS[4], unpack(oldest))
    forgotten = #oldest
  end
end
return {string.format('%d', id), 1, forgotten}
";

/// Raises the id counter (KEYS[1]) to at least ARGV[1]; returns the counter.
const RAISE_LUA: &str = r"
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[1])
if current < floor then
  redis.call('SET', KEYS[1], ARGV[1])
  return ARGV[1]
end
return string.format('%d', current)
";

/// Reports this server's subscriber counts and returns the feed's (see `feed/presence.rs`).
///
/// KEYS: the set of the servers' count keys, this server's count key. ARGV: expiry (ms), then
/// channel, count pairs. This server's hash is replaced and expires unless the next report
/// refreshes it; the set's keys that have expired (their servers stopped reporting) leave it.
/// Returns `{channel, total, …}` over every live server. The servers' keys share the prefix's
/// hash tag, so a Cluster keeps them in one slot.
const PRESENCE_LUA: &str = r"
redis.call('DEL', KEYS[2])
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
if #ARGV > 1 then
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
  redis.call('SADD', KEYS[1], KEYS[2])
end
local totals, order = {}, {}
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local f = redis.call('HGETALL', key)
  if #f == 0 then redis.call('SREM', KEYS[1], key) end
  for i = 1, #f, 2 do
    if not totals[f[i]] then
      order[#order + 1] = f[i]
      totals[f[i]] = 0
    end
    totals[f[i]] = totals[f[i]] + tonumber(f[i + 1])
  end
end
local out = {}
for _, name in ipairs(order) do
  out[#out + 1] = name
  out[#out + 1] = string.format('%d', totals[name])
end
return out
";

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

/// A duration in whole milliseconds, as Redis takes them.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 4)
}

/// A Redis `ms-seq` stream id for a feed id.
pub fn stream_id(id: u64) -> String {
    format!("{}-{}", id / 1000, id % 1000)
}

/// The feed id of a Redis `ms-seq` stream id.
pub fn feed_id(stream_id: &str) -> Option<u64> {
    let (ms, seq) = stream_id.split_once('-')?;
    let (ms, seq): (u64, u64) = (ms.parse().ok()?, seq.parse().ok()?);
    (seq < 1000).then(|| ms.checked_mul(1000)?.checked_add(seq))?
}

/// A seed-style payload, normalised: its channel and the message JSON the log keeps
/// (`{"type":…,"data":…,<the publisher's other fields>}`, its `id` kept as `source_id`).
pub fn normalise(payload: &[u8], max_bytes: usize) -> Result<(String, String), Rejected> {
    if payload.len() > max_bytes {
        return Err(Rejected::TooLarge {
            size: payload.len(),
            limit: max_bytes,
        });
    }
    let Ok(serde_json::Value::Object(mut fields)) = serde_json::from_slice(payload) else {
        return Err(Rejected::BadJson);
    };
    let channel = match fields.get("type") {
        Some(serde_json::Value::String(c)) => c.clone(),
        _ => return Err(Rejected::BadJson),
    };
    app::message::validate_channel(&channel).map_err(Rejected::Channel)?;
    if !fields.contains_key("data") {
        return Err(Rejected::BadJson);
    }
    if let Some(id) = fields.remove("id") {
        fields.insert(SOURCE_ID_FIELD.to_owned(), id);
    }
    if let Some(time) = fields.remove("time") {
        fields.insert(SOURCE_TIME_FIELD.to_owned(), time);
    }
    Ok((channel, serde_json::Value::Object(fields).to_string()))
}

/// Splits a log entry's message JSON into what the broadcast list encodes: channel, data JSON
/// and the further members (without braces).
pub fn split_message(msg: &[u8]) -> Option<(String, Vec<u8>, Vec<u8>)> {
    let serde_json::Value::Object(mut fields) = serde_json::from_slice(msg).ok()? else {
        return None;
    };
    let serde_json::Value::String(channel) = fields.remove("type")? else {
        return None;
    };
    let data = serde_json::to_vec(&fields.remove("data")?).ok()?;
    // The feed's own members; a log entry written by other means may carry them.
    fields.remove("id");
    fields.remove("time");
    Some((channel, data, crate::feed::frame::object_members(&fields)))
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
                presence_script: Script::new(PRESENCE_LUA),
                keys_key: format!("{}:keys", settings.prefix),
                keys_expiry_key: format!("{}:keys:expiry", settings.prefix),
                settings,
                append_script: Script::new(&format!("{LOG_LUA_COMMON}{APPEND_LUA}")),
                publish_script: Script::new(&format!("{LOG_LUA_COMMON}{PUBLISH_LUA}")),
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

    /// Appends a message to the log (every server shows it); returns its feed id. With `once`,
    /// at most once per idempotency key and window, on every server of this Redis (see
    /// [`PUBLISH_LUA`]).
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

    /// One [`PUBLISH_LUA`] call, and the replication a written entry waits for.
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
    /// for `expiry`, and returns every live server's summed (see [`PRESENCE_LUA`]). Fails while
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
    fn commands(&self) -> Option<(MultiplexedConnection, CancelToken)> {
        self.inner.commands.lock_or_recover().clone()
    }

    /// Appends Pub/Sub `msgs` in order after matching them from `cursor` (see [`APPEND_LUA`]);
    /// each one's id and whether this call wrote it (else another server had). Written entries
    /// are replicated as `--redis-min-replicas` asks before this returns.
    async fn append(
        &self,
        conn: &mut MultiplexedConnection,
        source: &str,
        msgs: &[String],
        cursor: u64,
    ) -> redis::RedisResult<Vec<(u64, bool)>> {
        let s = &self.inner.settings;
        let mut call = self.inner.append_script.key(&self.inner.log_key);
        call.key(&self.inner.last_key)
            .arg(s.history.max(1))
            .arg(millis(s.history_age))
            .arg(source)
            .arg(cursor.to_string())
            .arg(MATCH_WINDOW);
        for msg in msgs {
            call.arg(msg);
        }
        let reply: Vec<(String, i64)> = call.invoke_async(conn).await?;
        let bad = || redis::RedisError::from((redis::ErrorKind::Parse, "append returned a bad id"));
        let appended = reply
            .into_iter()
            .map(|(id, written)| Ok((id.parse().map_err(|_| bad())?, written == 1)))
            .collect::<redis::RedisResult<Vec<_>>>()?;
        if appended.len() != msgs.len() {
            return Err(bad());
        }
        if appended.iter().any(|(_, written)| *written) {
            self.replicated(conn).await?;
        }
        Ok(appended)
    }

    /// Waits until `--redis-min-replicas` replicas have this connection's writes (`WAIT`), up
    /// to half the command timeout (the rest is the reply's margin); an error if fewer did.
    async fn replicated(&self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
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
        let reader_config = config.set_response_timeout(Some(READ_BLOCK + s.command_timeout));
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
        let raised: String = Script::new(RAISE_LUA)
            .key(&self.inner.last_key)
            .arg(read)
            .invoke_async(conn)
            .await?;
        Ok(raised.parse().unwrap_or(read))
    }

    /// Fills the broadcast list from the log's tail (a restarted server can then serve resumes
    /// for messages it never saw live); returns the newest id.
    async fn backfill(&self, conn: &mut MultiplexedConnection) -> redis::RedisResult<u64> {
        let limit = self.inner.feed.limits().history.max(1);
        let mut ids = self.tail(conn, limit + 1).await?.ids;
        // One entry more than the history: the newest one this server will not hold.
        let evicted_through = if ids.len() > limit {
            ids.pop().and_then(|e| feed_id(&e.id)).unwrap_or(0)
        } else {
            self.max_deleted(conn).await.unwrap_or(0)
        };
        self.inner.feed.follow_log(evicted_through);
        let mut newest = evicted_through;
        for entry in ids.iter().rev() {
            newest = newest.max(self.deliver(entry));
        }
        tracing::info!(
            entries = ids.len(),
            evicted_through,
            "history loaded from the Redis log"
        );
        Ok(newest)
    }

    /// The log's newest `count` entries, newest first.
    async fn tail(
        &self,
        conn: &mut MultiplexedConnection,
        count: usize,
    ) -> redis::RedisResult<StreamRangeReply> {
        redis::cmd("XREVRANGE")
            .arg(&self.inner.log_key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(count)
            .query_async(conn)
            .await
    }

    /// The newest id Redis has trimmed from the log (`XINFO STREAM`'s `max-deleted-entry-id`).
    async fn max_deleted(&self, conn: &mut MultiplexedConnection) -> Option<u64> {
        let info: Value = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(&self.inner.log_key)
            .query_async(conn)
            .await
            .ok()?;
        let pairs: Vec<(String, Value)> = match info {
            Value::Array(items) => items
                .chunks(2)
                .filter_map(|kv| match kv {
                    [k, v] => Some((redis::from_redis_value_ref(k).ok()?, v.clone())),
                    _ => None,
                })
                .collect(),
            Value::Map(items) => items
                .into_iter()
                .filter_map(|(k, v)| Some((redis::from_redis_value_ref(&k).ok()?, v)))
                .collect(),
            _ => return None,
        };
        let (_, value) = pairs
            .into_iter()
            .find(|(k, _)| k == "max-deleted-entry-id")?;
        let id: String = redis::from_redis_value_ref(&value).ok()?;
        feed_id(&id)
    }

    /// Reads the log from `from` on, appending each entry to the broadcast list.
    async fn read_log(
        &self,
        mut conn: MultiplexedConnection,
        from: &mut u64,
    ) -> redis::RedisResult<()> {
        // The stream id to read after: an entry whose id is not a feed id (written by other
        // means) is still passed, so it is read once, not forever.
        let mut after = stream_id(*from);
        loop {
            let reply: Option<StreamReadReply> = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(READ_COUNT)
                .arg("BLOCK")
                .arg(u64::try_from(READ_BLOCK.as_millis()).unwrap_or(1000))
                .arg("STREAMS")
                .arg(&self.inner.log_key)
                .arg(&after)
                .query_async(&mut conn)
                .await?;
            for key in reply.map(|r| r.keys).unwrap_or_default() {
                for entry in key.ids {
                    *from = (*from).max(self.deliver(&entry));
                    after = entry.id;
                }
            }
        }
    }

    /// Appends one log entry to the broadcast list; returns its id (0 if it has none).
    fn deliver(&self, entry: &StreamId) -> u64 {
        let Some(id) = feed_id(&entry.id) else {
            self.bad_input(
                Rejected::BadJson,
                "a Redis log entry's id is not a Ringback id",
            );
            return 0;
        };
        let msg: Option<Vec<u8>> = entry.get("msg");
        let Some((channel, data, extra)) = msg.as_deref().and_then(split_message) else {
            self.bad_input(
                Rejected::BadJson,
                "a Redis log entry is not a Ringback message",
            );
            return id;
        };
        if let Err(e) = self.inner.feed.append(id, &channel, &data, &extra) {
            let what = e.to_string();
            self.bad_input(e, &what);
        }
        id
    }

    /// Writes each Pub/Sub message to the log once across all servers (see the module docs),
    /// the messages already waiting together in one call (up to `SEQUENCE_BATCH`).
    ///
    /// A batch written here whose replication was not confirmed stays in `unconfirmed` (with
    /// the cursor it was matched from) until a session confirms it: written again, or found
    /// where the entries survived.
    async fn sequence(
        &self,
        pubsub: redis::aio::PubSub,
        mut conn: MultiplexedConnection,
        mut cursor: u64,
        unconfirmed: &mut Option<(Vec<String>, u64)>,
    ) -> redis::RedisResult<()> {
        if let Some((batch, from)) = unconfirmed.as_ref() {
            let appended = self.append(&mut conn, "pubsub", batch, *from).await?;
            cursor = appended.iter().fold(cursor, |c, (id, _)| c.max(*id));
            *unconfirmed = None;
        }
        let mut messages = pubsub.into_on_message();
        let mut open = true;
        while open {
            let Some(first) = messages.next().await else {
                break;
            };
            let mut batch = Vec::new();
            self.admit(&first, &mut batch);
            // Counted by messages taken, valid or not: a flood of invalid ones still yields.
            for _ in 1..SEQUENCE_BATCH {
                match messages.next().now_or_never() {
                    Some(Some(message)) => self.admit(&message, &mut batch),
                    Some(None) => {
                        open = false;
                        break;
                    }
                    None => break,
                }
            }
            if batch.is_empty() {
                continue;
            }
            let batch = &unconfirmed.insert((batch, cursor)).0;
            let appended = self.append(&mut conn, "pubsub", batch, cursor).await?;
            *unconfirmed = None;
            cursor = appended.iter().fold(cursor, |c, (id, _)| c.max(*id));
        }
        Err(redis::RedisError::from((
            redis::ErrorKind::Io,
            "the Pub/Sub connection closed",
        )))
    }

    /// Counts a Pub/Sub message and adds it to `batch`, normalised, if it is a valid one.
    fn admit(&self, message: &redis::Msg, batch: &mut Vec<String>) {
        self.inner
            .metrics
            .published_redis
            .fetch_add(1, Ordering::Relaxed);
        let max = self.inner.settings.max_message_bytes;
        let (channel, msg) = match normalise(message.get_payload_bytes(), max) {
            Ok(ok) => ok,
            Err(e) => {
                return self.bad_input(e, "a Redis Pub/Sub payload is not a Ringback message")
            }
        };
        if let Err(e) = self.inner.feed.check(&channel, msg.len()) {
            let what = e.to_string();
            return self.bad_input(e, &what);
        }
        batch.push(msg);
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
    fn ids_map_both_ways() {
        assert_eq!(feed_id("1732457000123-7"), Some(1_732_457_000_123_007));
        assert_eq!(stream_id(1_732_457_000_123_007), "1732457000123-7");
        assert_eq!(feed_id("1-1000"), None, "seq must stay below 1000");
        assert_eq!(feed_id("x-1"), None);
        assert_eq!(feed_id("5"), None);
    }

    #[test]
    fn seed_payloads_are_normalised() {
        let (channel, msg) = normalise(
            br#"{"id":1,"data":"an important message","type":"blue"}"#,
            1024,
        )
        .unwrap();
        assert_eq!(channel, "blue");
        let (c, data, extra) = split_message(msg.as_bytes()).unwrap();
        assert_eq!(c, "blue");
        assert_eq!(data, br#""an important message""#);
        assert_eq!(extra, br#""source_id":1"#);
        // The publisher's own `time` is kept too, out of the way of the feed's.
        let (_, msg) = normalise(br#"{"type":"blue","data":1,"time":"noon"}"#, 1024).unwrap();
        let (_, _, extra) = split_message(msg.as_bytes()).unwrap();
        assert_eq!(extra, br#""source_time":"noon""#);
        for (bad, reason) in [
            (&b"not json"[..], "bad_json"),
            (br#"[1,2]"#, "bad_json"),
            (br#"{"data":"x"}"#, "bad_json"),
            (br#"{"type":"blue"}"#, "bad_json"),
            (br#"{"type":"a b","data":1}"#, "bad_type"),
            (br#"{"type":7,"data":1}"#, "bad_json"),
        ] {
            let e = normalise(bad, 1024).unwrap_err();
            assert_eq!(Rejected::LABELS[e.index()], reason, "{bad:?}");
        }
        let e = normalise(br#"{"type":"blue","data":"0123456789"}"#, 16).unwrap_err();
        assert_eq!(Rejected::LABELS[e.index()], "too_large");
    }

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(5));
        for attempt in 0..40 {
            let full = (min * 2u32.saturating_pow(attempt.min(20))).min(max);
            let d = backoff(min, max, attempt);
            assert!(d >= full / 2 && d <= full, "{attempt}: {d:?}");
        }
    }

    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(redact("redis://:secret@h:6379/0"), "redis://***@h:6379/0");
        assert_eq!(redact("redis://h:6379"), "redis://h:6379");
    }
}
