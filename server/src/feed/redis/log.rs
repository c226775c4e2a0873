//! The log read into the broadcast list: the history a (re)started server loads from the
//! log's tail, then every entry as it comes (`XREAD BLOCK`), each appended under its id.

use super::codec::{feed_id, split_message, stream_id};
use super::RedisIngest;
use crate::feed::broadcast::Rejected;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};
use redis::Value;
use std::time::Duration;

/// How long one `XREAD` blocks before it asks again (also how fast a dead reader is noticed).
pub(super) const READ_BLOCK: Duration = Duration::from_secs(1);
/// Entries one `XREAD` returns at most.
const READ_COUNT: usize = 1024;

impl RedisIngest {
    /// Fills the broadcast list from the log's tail (a restarted server can then serve resumes
    /// for messages it never saw live); returns the newest id.
    pub(super) async fn backfill(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> redis::RedisResult<u64> {
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
    pub(super) async fn tail(
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
    pub(super) async fn read_log(
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
}
