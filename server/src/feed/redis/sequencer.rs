//! Pub/Sub input written to the log once across all servers: each server passes the messages
//! it receives, in order, to one script with its cursor; the script writes only what no other
//! server wrote already (see the folder's docs).

use super::codec::normalise;
use super::commands::millis;
use super::RedisIngest;
use futures::{FutureExt, StreamExt};
use redis::aio::MultiplexedConnection;
use std::sync::atomic::Ordering;

/// Log entries after its cursor a server searches for a Pub/Sub message another server wrote.
const MATCH_WINDOW: usize = 1024;

/// Pub/Sub messages one sequencing call carries at most: the ones already waiting when a call
/// is made go together, so a server that fell behind catches up in few calls.
const SEQUENCE_BATCH: usize = 64;

impl RedisIngest {
    /// Writes each Pub/Sub message to the log once across all servers (see the module docs),
    /// the messages already waiting together in one call (up to `SEQUENCE_BATCH`).
    ///
    /// A batch written here whose replication was not confirmed stays in `unconfirmed` (with
    /// the cursor it was matched from) until a session confirms it: written again, or found
    /// where the entries survived.
    pub(super) async fn sequence(
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

    /// Appends Pub/Sub `msgs` in order after matching them from `cursor` (see `lua/append.lua`);
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
}
