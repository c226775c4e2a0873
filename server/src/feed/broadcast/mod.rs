//! The broadcast list: one bounded, shared, in-memory sequence of encoded SSE frames.
//!
//! Every message is validated and encoded **once**, on append, into a [`Bytes`] frame; every
//! subscriber reads the same frames at its own pace by keeping only a cursor (the last id it
//! delivered). Delivering a frame to a subscriber is a reference-count increment, never a copy.
//!
//! The list keeps a bounded history (by count and by bytes) for `Last-Event-ID` resume and for
//! the page's first paint. Memory is bounded by the history alone, whatever the subscribers do:
//! a subscriber holds no frames of its own, so a slow one costs nothing but its cursor. One that
//! falls further behind than the history has lost messages; it is cut off (its connection is
//! closed) and resumes with `Last-Event-ID`, learning of the gap if it is beyond history.
//!
//! The list also counts its subscribers per channel as they come and go
//! ([`BroadcastList::channels`]) and carries the feed's counts, set by `feed/presence.rs` at
//! most once per interval: a subscriber that has not sent the newest counts sends them (one
//! shared `ringback.presence` frame) at its next step, woken as by an append. A stream holds
//! nothing for it but a number.
//!
//! The parts, one per file: [`history`] (the entries, their eviction, where a subscriber
//! starts, a reader's batch), [`channel_table`] (the channels carried, private ones, idle ones
//! forgotten), [`registry`] (the live subscribers' cursors and what they read),
//! [`presence_counts`] (the feed's counts as frames), [`subscription`] (one reader). This file
//! ties them under their locks.
//!
//! Why a watch channel for wake-ups: `watch` keeps a version, so a reader that marks the version
//! seen *before* it reads the list is woken by any append that its read missed. There is no
//! window for a lost wake-up (the original's bug), and one `send` wakes every reader.
//!
//! Why `std::sync` locks: critical sections are short (a push, a binary search, cloning a few
//! `Bytes`), and none holds a lock across an `.await`. Lock order: the state, then the registry
//! (nothing takes them the other way).

mod channel_table;
mod direct;
mod history;
mod presence_counts;
mod registry;
mod subscription;
#[cfg(test)]
mod tests;

pub use channel_table::ChannelState;
pub use history::{Entry, Start};
pub use presence_counts::PresenceState;
pub use subscription::Subscription;

/// The bounds of the list: `--history`, `--history-bytes`, `--max-message-bytes`,
/// `--max-channels`, `--channel-idle`.
pub use crate::config::FeedLimits as Limits;

use crate::feed::channels::ChannelSet;
use crate::feed::frame::gzip::{self, Deflater};
use crate::feed::frame::Message;
use crate::metrics::Metrics;
use crate::runtime::cancel::CancelToken;
use crate::runtime::lock::{MutexExt, RwLockExt};
use crate::runtime::log_summary::LogSummary;
use app::message::{validate_channel, ChannelError, Gap};
use channel_table::ChannelTable;
use history::History;
use presence_counts::PresenceCounts;
use registry::{Registry, Slot};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use tokio::sync::watch;

/// Why a message was not appended. Each variant is a reason label in the metrics.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Rejected {
    #[error("invalid channel: {0}")]
    Channel(ChannelError),
    #[error("message is {size} bytes; the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("the feed already carries {0} channels, its limit")]
    TooManyChannels(usize),
    /// Not a message: not a JSON object with a string `type` and a `data` (Redis Pub/Sub).
    #[error("not a Ringback message (a JSON object with `type` and `data`)")]
    BadJson,
}

impl Rejected {
    /// The metrics labels, by [`Rejected::index`].
    pub const LABELS: [&'static str; 4] =
        ["bad_type", "too_large", "too_many_channels", "bad_json"];

    /// This reason's counter (`ringback_redis_rejected_total`).
    pub fn index(&self) -> usize {
        match self {
            Rejected::Channel(_) => 0,
            Rejected::TooLarge { .. } => 1,
            Rejected::TooManyChannels(_) => 2,
            Rejected::BadJson => 3,
        }
    }
}

/// What the feed holds for a first paint (see [`BroadcastList::latest`]).
pub struct Latest {
    /// The public channels, defaults first, then in order of first appearance.
    pub channels: Vec<Arc<str>>,
    /// The latest public entries of each channel, oldest first.
    pub entries: Vec<Entry>,
    /// The newest id: a live stream that resumes after it misses nothing and repeats nothing.
    pub newest: u64,
}

/// The list; cloning it is cheap and every clone is the same list.
#[derive(Clone)]
pub struct BroadcastList {
    shared: Arc<Shared>,
}

struct Shared {
    state: RwLock<State>,
    /// The newest id; its version wakes every waiting reader on append.
    head: watch::Sender<u64>,
    /// Subscribers by key, so an append that evicts past a stalled subscriber's cursor can cut
    /// it off even when nothing polls it (a reader whose socket is full is never polled).
    registry: Mutex<Registry>,
    /// Number of live subscribers, observable (tests await it returning to zero).
    subscribers: watch::Sender<usize>,
    limits: Limits,
    metrics: Arc<Metrics>,
    /// The subscriber counts across the feed (set by `feed::presence`): a subscription sends the
    /// newest at its next step once its own count of changes is behind.
    presence: PresenceCounts,
    /// The log of subscribers cut for lagging, one line and a count per interval.
    cuts: Arc<LogSummary>,
    /// A compressed stream went out of step with the shared compressor (a frame of its own was
    /// sent: presence, a heartbeat, a source change): the next frame is a reset point, so it
    /// is back in step at once rather than after up to `gzip::RESET_EVERY` frames. At most one
    /// extra reset per presence interval, whatever the subscribers.
    reset_wanted: AtomicBool,
    /// The subscriptions whose streams are compressed now: with none, no frame is compressed.
    compressed: AtomicUsize,
    /// The writers of direct subscribers' frames (`direct.rs`), started with the first one.
    writers: OnceLock<direct::Writers>,
}

/// What appending changes, under one lock.
struct State {
    history: History,
    channels: ChannelTable,
    /// Compresses each frame on append, for compressed streams (see `feed::gzip`); `None`:
    /// streams are not compressed.
    deflater: Option<Deflater>,
}

impl BroadcastList {
    /// An empty list whose first id is `first_id`, carrying the page's default `channels`.
    ///
    /// The server seeds `first_id` from the clock (microseconds since the Unix epoch), so a
    /// restarted server's ids are larger than any it handed out before: a browser resuming
    /// from an old id is told of the gap instead of waiting for ids that will never come.
    pub fn new(limits: Limits, first_id: u64, channels: &[&str], metrics: Arc<Metrics>) -> Self {
        let first_id = first_id.max(1);
        let state = State {
            history: History::new(first_id, &limits),
            channels: ChannelTable::new(channels),
            deflater: None,
        };
        let (head, _) = watch::channel(first_id - 1);
        let (subscribers, _) = watch::channel(0);
        BroadcastList {
            shared: Arc::new(Shared {
                state: RwLock::new(state),
                head,
                registry: Mutex::new(Registry::default()),
                subscribers,
                limits,
                metrics,
                presence: PresenceCounts::default(),
                reset_wanted: AtomicBool::new(false),
                compressed: AtomicUsize::new(0),
                writers: OnceLock::new(),
                cuts: Arc::new(LogSummary::new(
                    "subscriber fell behind the history; disconnected so it resumes with Last-Event-ID",
                    tracing::Level::WARN,
                )),
            }),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    /// Marks the channels in `private` private from now on: their entries reach only the
    /// subscribers granted them (see [`BroadcastList::subscribe`]) and no first paint. Set
    /// once, at start-up, before the first append.
    pub fn set_private(&self, private: ChannelSet) {
        self.shared
            .state
            .write_or_recover()
            .channels
            .set_private(private);
    }

    /// Compresses every frame appended from now on, once, for compressed streams. Set once, at
    /// start-up, before the first append.
    pub fn compress_frames(&self) {
        self.shared.state.write_or_recover().deflater = Some(Deflater::new(
            gzip::LEVEL,
            gzip::RESET_EVERY,
            gzip::RESET_AFTER,
        ));
    }

    /// Whether frames are compressed: a subscriber may ask for a compressed stream.
    pub fn compresses(&self) -> bool {
        self.shared.state.read_or_recover().deflater.is_some()
    }

    /// Validates, encodes once, and appends a message under the next id; returns the id.
    ///
    /// The embedded default: this list assigns the ids.
    pub fn publish(&self, channel: &str, data: &serde_json::Value) -> Result<u64, Rejected> {
        // serde_json escapes control characters, so the data line can hold no line break.
        let data_json = serde_json::to_vec(data).unwrap_or_else(|_| b"null".to_vec());
        self.insert(None, channel, &data_json, b"")
            .map(|id| id.unwrap_or_default())
    }

    /// Appends a message whose id was assigned elsewhere (the Redis log); `Ok(None)` when the
    /// list already holds that id or a newer one, so a replayed entry is never shown twice.
    ///
    /// `data_json` is one JSON value and `extra_json` zero or more further members of the
    /// message object (`"key":value,...`, no braces), both produced by serde_json.
    pub fn append(
        &self,
        id: u64,
        channel: &str,
        data_json: &[u8],
        extra_json: &[u8],
    ) -> Result<Option<u64>, Rejected> {
        self.insert(Some(id), channel, data_json, extra_json)
    }

    /// Would a message of `size` bytes on `channel` be accepted now? Lets a publisher that
    /// appends through Redis refuse at the door what every server's list would refuse later.
    pub fn check(&self, channel: &str, size: usize) -> Result<(), Rejected> {
        validate_channel(channel).map_err(Rejected::Channel)?;
        let limit = self.shared.limits.max_message_bytes;
        if size > limit {
            return Err(Rejected::TooLarge { size, limit });
        }
        let max = self.shared.limits.max_channels;
        let full = {
            let state = self.shared.state.read_or_recover();
            state.channels.len() >= max && !state.channels.knows(channel)
        };
        if full {
            let mut state = self.shared.state.write_or_recover();
            if !self.room_for_one_more(&mut state.channels) && !state.channels.knows(channel) {
                return Err(Rejected::TooManyChannels(max));
            }
        }
        Ok(())
    }

    /// Whether the feed carries `channel` now (a publish to any other creates it).
    pub fn knows_channel(&self, channel: &str) -> bool {
        self.shared.state.read_or_recover().channels.knows(channel)
    }

    /// Channels the feed carries now (idle ones included until they are forgotten).
    pub fn channel_count(&self) -> usize {
        self.shared.state.read_or_recover().channels.len()
    }

    /// Whether one more channel fits under `max_channels`, after forgetting the idle ones if
    /// the table is full: no message for `channel_idle`, no subscriber naming them in a filter,
    /// not one of the defaults.
    fn room_for_one_more(&self, channels: &mut ChannelTable) -> bool {
        let limits = &self.shared.limits;
        if channels.len() < limits.max_channels {
            return true;
        }
        if limits.channel_idle.is_zero() {
            return false;
        }
        let forgotten = {
            // Lock order: the state (held by the caller), then the registry.
            let registry = self.shared.registry.lock_or_recover();
            channels.forget_idle(limits.channel_idle, |name| registry.follows(name))
        };
        if forgotten > 0 {
            tracing::info!(forgotten, "forgot idle channels to make room for a new one");
            self.shared
                .metrics
                .channels_forgotten
                .fetch_add(forgotten as u64, Ordering::Relaxed);
        }
        channels.len() < limits.max_channels
    }

    fn insert(
        &self,
        id: Option<u64>,
        channel: &str,
        data_json: &[u8],
        extra_json: &[u8],
    ) -> Result<Option<u64>, Rejected> {
        validate_channel(channel).map_err(Rejected::Channel)?;
        let size = data_json.len() + extra_json.len();
        let limit = self.shared.limits.max_message_bytes;
        if size > limit {
            return Err(Rejected::TooLarge { size, limit });
        }
        // Under the lock the id is assigned, bytes are copied and, for compressed streams, the
        // frame is deflated: the shared compressor must take the frames in the ids' order.
        let (id, scan) = {
            let mut guard = self.shared.state.write_or_recover();
            let state = &mut *guard;
            let Some((id, time)) = state.history.next(id) else {
                return Ok(None);
            };
            let (channel, announce) = match state.channels.touch(channel, id, time) {
                Some(name) => (name, false),
                None => {
                    if !self.room_for_one_more(&mut state.channels) {
                        return Err(Rejected::TooManyChannels(self.shared.limits.max_channels));
                    }
                    (state.channels.add(channel, id, time), true)
                }
            };
            let private = state.channels.is_private(&channel);
            // A private channel's name is in no first paint, so a page granted it learns the
            // name from the announcement that every one of its frames carries.
            let (frame, json) = Message {
                id,
                time,
                channel: &channel,
                data_json,
                extra_json,
                announce: announce || private,
            }
            .encode();
            // Private frames stay out of the shared compressor's stream (not every reader of
            // the whole feed reads them), and so does every frame while no stream is compressed:
            // it rests.
            let deflated = state.deflater.as_mut().map(|d| {
                let shared = !private && self.shared.compressed.load(Ordering::Relaxed) > 0;
                // Taken by the next frame of the shared stream.
                let reset = shared && self.shared.reset_wanted.swap(false, Ordering::Relaxed);
                Box::new(d.deflate(&frame, shared, reset))
            });
            state.history.push(Entry {
                id,
                channel,
                frame,
                json,
                private,
                time,
                deflated,
            });
            (id, state.history.evict(&self.shared.limits))
        };
        self.shared.head.send_replace(id);
        if let Some(evicted_through) = scan {
            self.cut_lagging(evicted_through);
        }
        Ok(Some(id))
    }

    /// Makes this list a follower of a shared log (Redis): ids come from the log, so they are
    /// sparse, and a resume from an id newer than this list's newest is another server's id
    /// that this one has not received *yet*: the subscriber waits for it instead of being told
    /// of a gap. `evicted_through` is the newest id the log no longer holds; a resume from an
    /// older one has a gap. Called before the first entry is appended.
    pub fn follow_log(&self, evicted_through: u64) {
        let mut state = self.shared.state.write_or_recover();
        if state.history.follow_log(evicted_through) {
            self.shared.head.send_replace(state.history.newest);
        }
    }

    /// Cuts off every subscriber whose cursor is older than `evicted_through`.
    fn cut_lagging(&self, evicted_through: u64) {
        let registry = self.shared.registry.lock_or_recover();
        for slot in registry.slots() {
            if slot.cursor.load(Ordering::Acquire) < evicted_through
                && !slot.held_back.load(Ordering::Acquire)
            {
                self.cut(slot, evicted_through);
            }
        }
    }

    fn cut(&self, slot: &Slot, evicted_through: u64) {
        if !slot.lagged.swap(true, Ordering::AcqRel) {
            // A crash's worth of slow resumes is cut in herds: one line and a count.
            let cursor = slot.cursor.load(Ordering::Relaxed);
            self.shared
                .cuts
                .note(|| format!("cursor {cursor}, evicted through {evicted_through}"));
            self.shared
                .metrics
                .lagged_disconnects
                .fetch_add(1, Ordering::Relaxed);
            slot.cut.cancel();
        }
    }

    /// Registers a subscriber starting at `start`, reading only `filter`'s channels if given,
    /// and of the private channels only those in `grants` (none without).
    ///
    /// `cut` is cancelled if the subscriber falls behind the history: the server passes its
    /// connection's token, so a stalled connection is closed even though nothing polls it.
    /// Returns the gap when `start` asks for messages the list no longer holds.
    pub fn subscribe(
        &self,
        start: Start,
        filter: Option<Vec<String>>,
        grants: Option<Arc<ChannelSet>>,
        cut: CancelToken,
    ) -> (Subscription, Option<Gap>) {
        // Read `head` before the history: an append in between is then replayed, not skipped.
        let head = self.shared.head.subscribe();
        let (cursor, gap) = self.shared.state.read_or_recover().history.start(start);
        if gap.is_some() {
            self.shared
                .metrics
                .resume_gaps
                .fetch_add(1, Ordering::Relaxed);
        }
        if matches!(start, Start::After(_) | Start::Since(_)) {
            self.shared.metrics.resumes.fetch_add(1, Ordering::Relaxed);
        }
        let slot = Arc::new(Slot::new(cursor, cut));
        let filter: Option<Box<[Arc<str>]>> =
            filter.map(|f| f.into_iter().map(Arc::from).collect());
        let key = {
            let mut registry = self.shared.registry.lock_or_recover();
            let key = registry.add(slot.clone(), filter.as_deref(), grants.as_ref());
            self.shared.subscribers.send_replace(registry.len());
            key
        };
        (
            Subscription {
                list: self.clone(),
                key,
                slot,
                cursor,
                head,
                filter,
                grants,
                presence_seen: 0,
                gzip: None,
                direct: None,
            },
            gap,
        )
    }

    /// Every channel the feed carries now (private ones included), with this server's
    /// subscribers reading it (those naming it in a filter, and those without a filter that may
    /// read it) and its newest message.
    pub fn channels(&self) -> Vec<ChannelState> {
        // Lock order: the state, then the registry.
        let state = self.shared.state.read_or_recover();
        let registry = self.shared.registry.lock_or_recover();
        state
            .channels
            .states(|name, private| registry.readers(name, private))
    }

    /// Sets the subscriber counts across the feed (channel, count, private), channels with none
    /// left out; every subscriber sends them at its next step (a `ringback.presence` event) if
    /// they changed. Returns whether they did.
    pub fn set_presence(&self, counts: Vec<(Arc<str>, u64, bool)>) -> bool {
        if !self.shared.presence.set(counts) {
            return false;
        }
        // Wakes every waiting subscriber, as an append does (the newest id is unchanged).
        self.shared.head.send_modify(|_| {});
        true
    }

    /// The subscriber counts set last.
    pub fn presence(&self) -> Arc<PresenceState> {
        self.shared.presence.get()
    }

    /// Live subscribers now.
    pub fn subscriber_count(&self) -> usize {
        *self.shared.subscribers.borrow()
    }

    /// A receiver that changes whenever the subscriber count does.
    pub fn watch_subscribers(&self) -> watch::Receiver<usize> {
        self.shared.subscribers.subscribe()
    }

    /// The newest id handed out (the first id minus one before any message).
    pub fn newest_id(&self) -> u64 {
        *self.shared.head.borrow()
    }

    /// Entries and bytes held in history.
    pub fn held(&self) -> (usize, usize) {
        self.shared.state.read_or_recover().history.held()
    }

    /// What a first paint may show: the public channels, the latest `per_channel` public
    /// entries of each (oldest first), and the newest id, all read at one instant.
    pub fn latest(&self, per_channel: usize) -> Latest {
        let state = self.shared.state.read_or_recover();
        Latest {
            channels: state.channels.public_names(),
            entries: state
                .history
                .latest(per_channel)
                .into_iter()
                .cloned()
                .collect(),
            newest: state.history.newest,
        }
    }
}
