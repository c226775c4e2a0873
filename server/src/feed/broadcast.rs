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
//! Why a watch channel for wake-ups: `watch` keeps a version, so a reader that marks the version
//! seen *before* it reads the list is woken by any append that its read missed. There is no
//! window for a lost wake-up (the original's bug), and one `send` wakes every reader.
//!
//! Why `std::sync` locks: critical sections are short (a push, a binary search, cloning a few
//! `Bytes`), and none holds a lock across an `.await`.

use crate::feed::channels::ChannelSet;
use crate::metrics::Metrics;
use crate::runtime::cancel::CancelToken;
use crate::runtime::lock::{MutexExt, RwLockExt};
use crate::runtime::log_summary::LogSummary;
use app::message::{validate_channel, ChannelError, Gap, Message};
use app::time::unix_now;
use bytes::{Bytes, BytesMut};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::watch;
use tokio::time::Instant;

/// Per-entry bookkeeping counted against the byte bound on top of the frame itself.
const ENTRY_OVERHEAD: usize = std::mem::size_of::<Entry>();

/// A frame this large or larger is handed to a subscriber alone, as the list's shared bytes,
/// never copied into a batch: what a stalled or resuming reader holds of it is then a reference.
/// Smaller frames ready together are copied into one buffer (one write for many).
const SHARED_ALONE: usize = 4096;

/// The bounds of the list: `--history`, `--history-bytes`, `--max-message-bytes`,
/// `--max-channels`, `--channel-idle`.
pub use crate::config::FeedLimits as Limits;

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

/// One message in the list.
#[derive(Clone, Debug)]
pub struct Entry {
    pub id: u64,
    pub channel: Arc<str>,
    /// The complete SSE frame (preceded, for a channel's first message, by a `ringback.channel`
    /// announcement), shared by every subscriber.
    pub frame: Bytes,
    /// The message's JSON, a slice of `frame` (no copy), for snapshots.
    pub json: Bytes,
    /// On a private channel: only subscribers granted it read this entry, and snapshots
    /// (served to anyone) leave it out. Decided once, on append.
    pub private: bool,
    /// When it was published, in Unix milliseconds: the clock's when published here (never
    /// earlier than the entry before), the id's when it comes from the Redis log (`ms * 1000 +
    /// seq`). For `GET /messages?since=`.
    pub time: u64,
}

/// Where a new subscriber starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// After the newest message: only what is published from now on.
    Live,
    /// After this id (`Last-Event-ID`): replays what the subscriber missed, then live.
    After(u64),
    /// From the first message published at or after this Unix millisecond (`?since=`).
    Since(u64),
}

/// The shared handle; cheap to clone.
#[derive(Clone)]
pub struct BroadcastList {
    shared: Arc<Shared>,
}

struct Shared {
    ring: RwLock<Ring>,
    /// The newest id; its version wakes every waiting reader on append.
    head: watch::Sender<u64>,
    /// Subscribers by key, so an append that evicts past a stalled subscriber's cursor can cut
    /// it off even when nothing polls it (a reader whose socket is full is never polled).
    registry: Mutex<Registry>,
    /// Number of live subscribers, observable (tests await it returning to zero).
    subscribers: watch::Sender<usize>,
    limits: Limits,
    metrics: Arc<Metrics>,
    /// The subscriber counts across the feed (set by `feed::presence`), and how often they
    /// changed: a subscription sends the newest counts at its next step once its own count of
    /// changes is behind (see [`Subscription::try_next`]).
    presence: RwLock<Arc<PresenceState>>,
    presence_version: AtomicU64,
    /// The log of subscribers cut for lagging, one line and a count per interval.
    cuts: Arc<LogSummary>,
}

#[derive(Default)]
struct Registry {
    next_key: u64,
    slots: HashMap<u64, Arc<Slot>>,
    /// Subscribers naming each channel in their filter: a followed channel is never idle. Also
    /// their part of each channel's subscriber count.
    followed: HashMap<Arc<str>, usize>,
    /// Subscribers without a filter: they read, and count on, every channel they may.
    everyone: usize,
    /// Of those, the ones granted private channels, by grant set (few distinct sets: they come
    /// from the operator's credentials).
    everyone_granted: Vec<(Arc<ChannelSet>, usize)>,
}

/// The subscriber counts across the feed, channels with none left out, and their event.
#[derive(Debug, Default)]
pub struct PresenceState {
    /// Channel, subscribers, whether it is private; in the order the feed learnt the channels.
    pub counts: Vec<(Arc<str>, u64, bool)>,
    /// The `ringback.presence` frame of the public channels, for every subscriber granted none.
    public: Bytes,
}

impl PresenceState {
    /// Subscribers on `channel` across the feed.
    pub fn count(&self, channel: &str) -> u64 {
        self.counts
            .iter()
            .find(|(name, ..)| &**name == channel)
            .map_or(0, |(_, n, _)| *n)
    }
}

/// One channel the feed carries, as this server sees it now.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelState {
    pub name: Arc<str>,
    pub private: bool,
    /// This server's subscribers reading it.
    pub subscribers: u64,
    /// Its newest message: id and time (Unix ms).
    pub newest: Option<(u64, u64)>,
}

/// A channel the feed carries.
struct Channel {
    name: Arc<str>,
    /// When it was last published to (or first carried).
    last: Instant,
    /// One of the page's default channels: never forgotten.
    pinned: bool,
    /// Its newest message: id and time (Unix ms).
    newest: Option<(u64, u64)>,
}

/// What the list knows of one subscriber: its cursor, and how to cut it off.
struct Slot {
    cursor: AtomicU64,
    lagged: AtomicBool,
    cut: CancelToken,
    /// The server itself holds this subscriber back (a resume waiting its turn for the replay
    /// budget): it is not stalled, so it is never cut for lagging; if the history moves past it
    /// meanwhile, it is told of the gap in its stream instead ([`Subscription::hold_back`]).
    held_back: AtomicBool,
}

struct Ring {
    entries: VecDeque<Entry>,
    bytes: usize,
    /// The newest id appended (the first id minus one before any).
    newest: u64,
    /// Every id up to this one is gone (evicted, or from before this list existed): a resume
    /// from an older id has a gap.
    evicted_through: u64,
    /// The newest time gone with them (Unix ms): a `since` at or before it has a gap.
    evicted_time: u64,
    /// Known channels, in order of first appearance.
    channels: Vec<Channel>,
    /// Entries evicted so far; when it reaches `scan_at`, the registry is scanned for
    /// subscribers left behind. Scanning every `history / 8` evictions keeps the cost per append
    /// constant (counted in evictions, not ids: ids from a shared log are sparse).
    evictions: u64,
    scan_at: u64,
    /// Ids come from a shared log (see [`BroadcastList::follow_log`]).
    follows_log: bool,
    /// The private channels (see [`BroadcastList::set_private`]).
    private: ChannelSet,
}

impl BroadcastList {
    /// An empty list whose first id is `first_id`.
    ///
    /// The server seeds `first_id` from the clock (microseconds since the Unix epoch), so a
    /// restarted server's ids are larger than any it handed out before: a browser resuming
    /// from an old id is told of the gap instead of waiting for ids that will never come.
    pub fn new(limits: Limits, first_id: u64, channels: &[&str], metrics: Arc<Metrics>) -> Self {
        let first_id = first_id.max(1);
        let ring = Ring {
            entries: VecDeque::with_capacity(limits.history.clamp(1, 4096)),
            bytes: 0,
            newest: first_id - 1,
            evicted_through: first_id - 1,
            // What was published before this list existed is gone.
            evicted_time: unix_now(),
            channels: channels
                .iter()
                .map(|c| Channel {
                    name: Arc::from(*c),
                    last: Instant::now(),
                    pinned: true,
                    newest: None,
                })
                .collect(),
            evictions: 0,
            scan_at: 1,
            follows_log: false,
            private: ChannelSet::default(),
        };
        let (head, _) = watch::channel(first_id - 1);
        let (subscribers, _) = watch::channel(0);
        BroadcastList {
            shared: Arc::new(Shared {
                ring: RwLock::new(ring),
                head,
                registry: Mutex::new(Registry::default()),
                subscribers,
                limits,
                metrics,
                presence: RwLock::default(),
                presence_version: AtomicU64::new(0),
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
    /// subscribers granted them (see [`BroadcastList::subscribe`]) and no snapshot. Set once,
    /// at start-up, before the first append.
    pub fn set_private(&self, private: ChannelSet) {
        self.shared.ring.write_or_recover().private = private;
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
            let ring = self.shared.ring.read_or_recover();
            ring.channels.len() >= max && ring.position(channel).is_none()
        };
        if full {
            let mut ring = self.shared.ring.write_or_recover();
            if !self.room_for_one_more(&mut ring) && ring.position(channel).is_none() {
                return Err(Rejected::TooManyChannels(max));
            }
        }
        Ok(())
    }

    /// Whether the feed carries `channel` now (a publish to any other creates it).
    pub fn knows_channel(&self, channel: &str) -> bool {
        let ring = self.shared.ring.read_or_recover();
        ring.position(channel).is_some()
    }

    /// Channels the feed carries now (idle ones included until they are forgotten).
    pub fn channel_count(&self) -> usize {
        let ring = self.shared.ring.read_or_recover();
        ring.channels.len()
    }

    /// Whether one more channel fits under `max_channels`, after forgetting the idle ones if
    /// the list is full: no message for `channel_idle`, no subscriber naming them in a filter,
    /// not one of the defaults. Their entries stay in history; a message on one later carries
    /// it again (announced anew).
    fn room_for_one_more(&self, ring: &mut Ring) -> bool {
        let limits = &self.shared.limits;
        if ring.channels.len() < limits.max_channels {
            return true;
        }
        if limits.channel_idle.is_zero() {
            return false;
        }
        let now = Instant::now();
        let before = ring.channels.len();
        {
            // Lock order: the ring, then the registry (nothing takes them the other way).
            let registry = self.shared.registry.lock_or_recover();
            ring.channels.retain(|c| {
                c.pinned
                    || now.duration_since(c.last) < limits.channel_idle
                    || registry.followed.contains_key(&c.name)
            });
        }
        let forgotten = before - ring.channels.len();
        if forgotten > 0 {
            tracing::info!(forgotten, "forgot idle channels to make room for a new one");
            self.shared
                .metrics
                .channels_forgotten
                .fetch_add(forgotten as u64, Ordering::Relaxed);
        }
        ring.channels.len() < limits.max_channels
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
        // Under the lock only the id is assigned and bytes are copied.
        let (id, scan) = {
            let mut ring = self.shared.ring.write_or_recover();
            let (id, time) = match id {
                Some(id) if id <= ring.newest => return Ok(None),
                Some(id) => (id, id / 1000),
                None => (
                    ring.newest + 1,
                    unix_now().max(ring.entries.back().map_or(0, |e| e.time)),
                ),
            };
            let now = Instant::now();
            let (channel, announce) = match ring.position(channel) {
                Some(i) => {
                    let known = &mut ring.channels[i];
                    known.last = now;
                    known.newest = Some((id, time));
                    (known.name.clone(), false)
                }
                None => {
                    if !self.room_for_one_more(&mut ring) {
                        return Err(Rejected::TooManyChannels(self.shared.limits.max_channels));
                    }
                    let name: Arc<str> = Arc::from(channel);
                    ring.channels.push(Channel {
                        name: name.clone(),
                        last: now,
                        pinned: false,
                        newest: Some((id, time)),
                    });
                    (name, true)
                }
            };
            ring.newest = id;
            let private = ring.private.contains(&channel);
            // A private channel's name is in no snapshot, so a page granted it learns the name
            // from the announcement that every one of its frames carries.
            let (frame, json) = crate::feed::frame::encode_message(
                id,
                time,
                &channel,
                data_json,
                extra_json,
                announce || private,
            );
            ring.bytes += frame.len() + ENTRY_OVERHEAD;
            ring.entries.push_back(Entry {
                id,
                channel,
                frame,
                json,
                private,
                time,
            });
            let scan = self.evict(&mut ring);
            (id, scan)
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
        let mut ring = self.shared.ring.write_or_recover();
        ring.follows_log = true;
        if ring.entries.is_empty() {
            ring.evicted_through = ring.evicted_through.max(evicted_through);
            // The log's ids carry their time; what it no longer holds is older than its first.
            ring.evicted_time = evicted_through / 1000;
            ring.newest = ring.newest.max(evicted_through);
            self.shared.head.send_replace(ring.newest);
        }
    }

    /// Drops the oldest entries beyond the bounds; returns `Some(evicted_through)` when it is
    /// time to scan the registry for subscribers left behind.
    fn evict(&self, ring: &mut Ring) -> Option<u64> {
        let limits = &self.shared.limits;
        while ring.entries.len() > limits.history.max(1)
            || (ring.bytes > limits.history_bytes && ring.entries.len() > 1)
        {
            let Some(old) = ring.entries.pop_front() else {
                break;
            };
            ring.bytes -= old.frame.len() + ENTRY_OVERHEAD;
            ring.evicted_through = old.id;
            ring.evicted_time = old.time;
            ring.evictions += 1;
        }
        if ring.evictions >= ring.scan_at {
            ring.scan_at = ring.evictions + (limits.history / 8).max(1) as u64;
            Some(ring.evicted_through)
        } else {
            None
        }
    }

    /// Cuts off every subscriber whose cursor is older than `evicted_through`.
    fn cut_lagging(&self, evicted_through: u64) {
        let registry = self.shared.registry.lock_or_recover();
        for slot in registry.slots.values() {
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
        // Read `head` before the ring: an append in between is then replayed, not skipped.
        let head = self.shared.head.subscribe();
        let (cursor, gap) = {
            let ring = self.shared.ring.read_or_recover();
            let newest = ring.newest;
            let oldest = ring.entries.front().map(|e| e.id);
            // An id newer than the newest is from the future in the embedded default (a gap:
            // it was handed out by another process); behind a shared log it is simply one this
            // server has not received yet.
            let ahead = after_newest(start, newest) && !ring.follows_log;
            match start {
                Start::Live => (newest, None),
                Start::After(after) if after < ring.evicted_through || ahead => {
                    (ring.evicted_through, Some(Gap { after, oldest }))
                }
                Start::After(after) => (after, None),
                Start::Since(ms) => {
                    // After the last entry published before `ms`.
                    match ring.entries.partition_point(|e| e.time < ms) {
                        0 if ms <= ring.evicted_time => {
                            (ring.evicted_through, Some(Gap { after: 0, oldest }))
                        }
                        0 => (ring.evicted_through, None),
                        i => (ring.entries[i - 1].id, None),
                    }
                }
            }
        };
        if gap.is_some() {
            self.shared
                .metrics
                .resume_gaps
                .fetch_add(1, Ordering::Relaxed);
        }
        if matches!(start, Start::After(_) | Start::Since(_)) {
            self.shared.metrics.resumes.fetch_add(1, Ordering::Relaxed);
        }
        let slot = Arc::new(Slot {
            cursor: AtomicU64::new(cursor),
            lagged: AtomicBool::new(false),
            held_back: AtomicBool::new(false),
            cut,
        });
        let filter: Option<Box<[Arc<str>]>> =
            filter.map(|f| f.into_iter().map(Arc::from).collect());
        let key = {
            let mut registry = self.shared.registry.lock_or_recover();
            let key = registry.next_key;
            registry.next_key += 1;
            registry.slots.insert(key, slot.clone());
            for channel in filter.iter().flatten() {
                *registry.followed.entry(channel.clone()).or_default() += 1;
            }
            if filter.is_none() {
                registry.everyone += 1;
                if let Some(grants) = &grants {
                    match registry
                        .everyone_granted
                        .iter_mut()
                        .find(|(g, _)| g == grants)
                    {
                        Some((_, n)) => *n += 1,
                        None => registry.everyone_granted.push((grants.clone(), 1)),
                    }
                }
            }
            self.shared.subscribers.send_replace(registry.slots.len());
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
            },
            gap,
        )
    }

    /// Every channel the feed carries now (private ones included), with this server's
    /// subscribers reading it (those naming it in a filter, and those without a filter that may
    /// read it) and its newest message.
    pub fn channels(&self) -> Vec<ChannelState> {
        // Lock order: the ring, then the registry.
        let ring = self.shared.ring.read_or_recover();
        let registry = self.shared.registry.lock_or_recover();
        ring.channels
            .iter()
            .map(|c| {
                let private = ring.private.contains(&c.name);
                let named = registry.followed.get(&c.name).copied().unwrap_or(0);
                let everyone = if private {
                    registry
                        .everyone_granted
                        .iter()
                        .filter(|(grants, _)| grants.contains(&c.name))
                        .map(|(_, n)| n)
                        .sum()
                } else {
                    registry.everyone
                };
                ChannelState {
                    name: c.name.clone(),
                    private,
                    subscribers: (named + everyone) as u64,
                    newest: c.newest,
                }
            })
            .collect()
    }

    /// Sets the subscriber counts across the feed (channel, count, private), channels with none
    /// left out; every subscriber sends them at its next step (a `ringback.presence` event) if
    /// they changed. Returns whether they did.
    pub fn set_presence(&self, counts: Vec<(Arc<str>, u64, bool)>) -> bool {
        let mut current = self.shared.presence.write_or_recover();
        if current.counts == counts {
            return false;
        }
        let public = crate::feed::frame::encode_presence(
            counts
                .iter()
                .filter(|(_, _, private)| !private)
                .map(|(name, n, _)| (&**name, *n)),
        );
        *current = Arc::new(PresenceState { counts, public });
        drop(current);
        self.shared.presence_version.fetch_add(1, Ordering::Release);
        // Wakes every waiting subscriber, as an append does (the newest id is unchanged).
        self.shared.head.send_modify(|_| {});
        true
    }

    /// The subscriber counts set last.
    pub fn presence(&self) -> Arc<PresenceState> {
        self.shared.presence.read_or_recover().clone()
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
        let ring = self.shared.ring.read_or_recover();
        (ring.entries.len(), ring.bytes)
    }

    /// The page's first paint: every known channel, the latest `per_channel` messages of each
    /// (oldest first), and the id the live stream must resume after.
    pub fn snapshot(&self, per_channel: usize) -> app::message::Snapshot {
        let ring = self.shared.ring.read_or_recover();
        let mut counts: HashMap<&str, usize> = HashMap::new();
        let mut picked: Vec<&Entry> = Vec::new();
        for entry in ring.entries.iter().rev().filter(|e| !e.private) {
            let n = counts.entry(&entry.channel).or_default();
            if *n < per_channel {
                *n += 1;
                picked.push(entry);
            }
        }
        let messages = picked
            .into_iter()
            .rev()
            .filter_map(|e| serde_json::from_slice::<Message>(&e.json).ok())
            .collect();
        app::message::Snapshot {
            channels: ring
                .channels
                .iter()
                .filter(|c| !ring.private.contains(&c.name))
                .map(|c| c.name.to_string())
                .collect(),
            messages,
            last_id: Some(ring.newest),
            per_channel,
            publish_token: false,
        }
    }
}

impl Ring {
    /// Where `channel` is among the known channels.
    fn position(&self, channel: &str) -> Option<usize> {
        self.channels.iter().position(|c| &*c.name == channel)
    }
}

fn after_newest(start: Start, newest: u64) -> bool {
    matches!(start, Start::After(after) if after > newest)
}

/// One subscriber's view of the list: a cursor, a wake-up receiver and an optional filter.
///
/// Dropping it unregisters it at once; it holds no frames.
pub struct Subscription {
    list: BroadcastList,
    key: u64,
    slot: Arc<Slot>,
    /// The last id delivered (or skipped by the filter).
    cursor: u64,
    head: watch::Receiver<u64>,
    filter: Option<Box<[Arc<str>]>>,
    /// The private channels this subscriber may read; `None`: none.
    grants: Option<Arc<ChannelSet>>,
    /// The presence changes this subscriber has sent (see [`BroadcastList::set_presence`]).
    presence_seen: u64,
}

/// The subscriber fell behind the history and has lost messages.
#[derive(Debug, PartialEq, Eq)]
pub struct Lagged;

impl Subscription {
    /// The frames after the cursor, waiting until there is at least one.
    ///
    /// Frames ready at once are coalesced into one buffer of up to `max_bytes` (one write per
    /// socket under load); a single frame is returned as the shared `Bytes`, without a copy.
    pub async fn next(&mut self, max_bytes: usize) -> Result<Bytes, Lagged> {
        loop {
            // Mark the current version seen *before* reading, so an append after the read
            // wakes `changed()` below: no lost wake-up.
            self.head.borrow_and_update();
            if let Some(bytes) = self.try_next(max_bytes)? {
                return Ok(bytes);
            }
            if self.head.changed().await.is_err() {
                // The list is gone; nothing more will come.
                std::future::pending::<()>().await;
            }
        }
    }

    /// The frames after the cursor, if any, without waiting.
    pub fn try_next(&mut self, max_bytes: usize) -> Result<Option<Bytes>, Lagged> {
        let presence = self.list.shared.presence_version.load(Ordering::Acquire);
        if presence != self.presence_seen {
            self.presence_seen = presence;
            if let Some(frame) = self.presence_frame() {
                return Ok(Some(frame));
            }
        }
        let ring = self.list.shared.ring.read_or_recover();
        if self.cursor < ring.evicted_through {
            let evicted = ring.evicted_through;
            if self.slot.held_back.load(Ordering::Acquire) {
                // Held back by the server (a resume beyond the replay budget), not stalled: told
                // of the gap, and on live from the newest message. Continuing from the oldest
                // held would only be passed by the history again: a resume that cannot be given
                // what it missed in time goes live rather than chasing it.
                let gap = Gap {
                    after: self.cursor,
                    oldest: None,
                };
                let newest = ring.newest;
                drop(ring);
                self.cursor = newest;
                self.slot.cursor.store(newest, Ordering::Release);
                self.list
                    .shared
                    .metrics
                    .resume_gaps
                    .fetch_add(1, Ordering::Relaxed);
                return Ok(Some(Bytes::from(crate::feed::frame::encode_gap(&gap))));
            }
            drop(ring);
            self.list.cut(&self.slot, evicted);
            return Err(Lagged);
        }
        let Some(front) = ring.entries.front() else {
            return Ok(None);
        };
        // Ids increase along the list; the first entry after the cursor is found by bisection.
        let start = if self.cursor < front.id {
            0
        } else {
            ring.entries.partition_point(|e| e.id <= self.cursor)
        };
        // Where this batch ends, and its size. A frame of `SHARED_ALONE` bytes or
        // more goes alone, as the list's own bytes: copying it would double what a stalled
        // reader (or a thousand resuming ones) holds.
        let (mut end, mut size, mut count) = (start, 0, 0u64);
        let mut last = self.cursor;
        let mut first: Option<&Bytes> = None;
        for entry in ring.entries.range(start..) {
            let len = entry.frame.len();
            let wanted = self.wants(entry);
            if wanted && count > 0 && (size + len > max_bytes || len >= SHARED_ALONE) {
                break;
            }
            end += 1;
            last = entry.id;
            if wanted {
                size += len;
                count += 1;
                first.get_or_insert(&entry.frame);
                if len >= SHARED_ALONE {
                    break;
                }
            }
        }
        // One frame as it is; several copied once into a buffer of their size.
        let out = match count {
            0 => None,
            1 => first.cloned(),
            _ => {
                let mut buf = BytesMut::with_capacity(size);
                for entry in ring.entries.range(start..end).filter(|e| self.wants(e)) {
                    buf.extend_from_slice(&entry.frame);
                }
                Some(buf.freeze())
            }
        };
        drop(ring);
        self.cursor = last;
        self.slot.cursor.store(self.cursor, Ordering::Release);
        if count > 0 {
            // One shared counter, bumped once per batch rather than per message.
            let out = &self.list.shared.metrics.messages_out;
            out.fetch_add(count, Ordering::Relaxed);
        }
        Ok(out)
    }

    /// The counts this subscriber may see, as a frame: the shared one of the public channels, or
    /// its own with the private channels it is granted (encoded when they change).
    fn presence_frame(&self) -> Option<Bytes> {
        let state = self.list.presence();
        let frame = match &self.grants {
            None => state.public.clone(),
            Some(grants) => crate::feed::frame::encode_presence(
                state
                    .counts
                    .iter()
                    .filter(|(name, _, private)| !private || grants.contains(name))
                    .map(|(name, n, _)| (&**name, *n)),
            ),
        };
        (!frame.is_empty()).then_some(frame)
    }

    /// Whether this subscriber reads `entry`: its filter names the channel (or it has none),
    /// and a private channel is among its grants. This is the one place that keeps a private
    /// entry from a subscriber, live and on `Last-Event-ID` replay alike.
    fn wants(&self, entry: &Entry) -> bool {
        let channel = &*entry.channel;
        self.filter
            .as_ref()
            .is_none_or(|f| f.iter().any(|c| &**c == channel))
            && (!entry.private || self.grants.as_ref().is_some_and(|g| g.contains(channel)))
    }

    /// Marks this subscriber held back by the server (`true`: a resume waiting for the replay
    /// budget) or not: while held back it is never cut for lagging; if the history passes it
    /// meanwhile, its next read is a `ringback.gap` event (`"oldest":null`) and it goes on live
    /// from the newest message.
    pub fn hold_back(&self, held: bool) {
        self.slot.held_back.store(held, Ordering::Release);
    }

    /// The last id this subscriber has passed.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut registry = self.list.shared.registry.lock_or_recover();
        registry.slots.remove(&self.key);
        for channel in self.filter.iter().flatten() {
            if let Some(n) = registry.followed.get_mut(channel) {
                *n -= 1;
                if *n == 0 {
                    registry.followed.remove(channel);
                }
            }
        }
        if self.filter.is_none() {
            registry.everyone -= 1;
            if let Some(grants) = &self.grants {
                if let Some(i) = registry
                    .everyone_granted
                    .iter()
                    .position(|(g, _)| g == grants)
                {
                    registry.everyone_granted[i].1 -= 1;
                    if registry.everyone_granted[i].1 == 0 {
                        registry.everyone_granted.swap_remove(i);
                    }
                }
            }
        }
        self.list
            .shared
            .subscribers
            .send_replace(registry.slots.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn list(history: usize) -> BroadcastList {
        let limits = Limits {
            history,
            history_bytes: 1 << 20,
            max_message_bytes: 1024,
            max_channels: 8,
            channel_idle: Duration::ZERO,
        };
        BroadcastList::new(
            limits,
            1,
            &["red", "yellow", "blue"],
            Arc::new(Metrics::default()),
        )
    }

    fn ids(bytes: &Bytes) -> Vec<u64> {
        std::str::from_utf8(bytes)
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("id: "))
            .map(|n| n.parse().unwrap())
            .collect()
    }

    #[test]
    fn ids_increase_and_frames_are_shared() {
        let list = list(8);
        let (mut a, _) = list.subscribe(Start::Live, None, None, CancelToken::new());
        let (mut b, _) = list.subscribe(Start::Live, None, None, CancelToken::new());
        assert_eq!(list.publish("blue", &json!("hi")).unwrap(), 1);
        assert_eq!(list.publish("blue", &json!("ho")).unwrap(), 2);
        let fa = a.try_next(1).unwrap().unwrap();
        let fb = b.try_next(1).unwrap().unwrap();
        // max_bytes 1: one frame per call, and the very same allocation for both readers.
        assert_eq!(fa.as_ptr(), fb.as_ptr());
        assert_eq!(ids(&fa), vec![1]);
        assert_eq!(ids(&a.try_next(1 << 16).unwrap().unwrap()), vec![2]);
        assert_eq!(a.try_next(1 << 16).unwrap(), None);
    }

    #[test]
    fn ready_frames_are_coalesced() {
        let list = list(8);
        let (mut a, _) = list.subscribe(Start::Live, None, None, CancelToken::new());
        for i in 0..5 {
            list.publish("red", &json!(i)).unwrap();
        }
        assert_eq!(
            ids(&a.try_next(1 << 16).unwrap().unwrap()),
            vec![1, 2, 3, 4, 5]
        );
    }

    #[test]
    fn large_frames_go_alone_as_the_lists_own_bytes() {
        let mut limits = list(8).limits().clone();
        limits.max_message_bytes = 64 * 1024;
        let list = BroadcastList::new(limits, 1, &[], Arc::default());
        let (mut resuming, _) = list.subscribe(Start::After(0), None, None, CancelToken::new());
        let (mut other, _) = list.subscribe(Start::After(0), None, None, CancelToken::new());
        list.publish("red", &json!(1)).unwrap();
        list.publish("red", &json!(2)).unwrap();
        list.publish("red", &json!("x".repeat(SHARED_ALONE)))
            .unwrap();
        list.publish("red", &json!("y".repeat(SHARED_ALONE)))
            .unwrap();
        list.publish("red", &json!(5)).unwrap();
        // The small ones together; each large one alone, the same allocation for every reader;
        // then the rest.
        assert_eq!(
            ids(&resuming.try_next(1 << 20).unwrap().unwrap()),
            vec![1, 2]
        );
        let big = resuming.try_next(1 << 20).unwrap().unwrap();
        assert_eq!(ids(&big), vec![3]);
        other.try_next(1 << 20).unwrap();
        assert_eq!(
            big.as_ptr(),
            other.try_next(1 << 20).unwrap().unwrap().as_ptr()
        );
        assert_eq!(ids(&resuming.try_next(1 << 20).unwrap().unwrap()), vec![4]);
        assert_eq!(ids(&resuming.try_next(1 << 20).unwrap().unwrap()), vec![5]);
        assert_eq!(resuming.try_next(1 << 20).unwrap(), None);
    }

    #[test]
    fn a_subscriber_held_back_by_the_server_is_told_of_the_gap_not_cut() {
        let list = list(4);
        let (held_cut, stalled_cut) = (CancelToken::new(), CancelToken::new());
        let (mut held, _) = list.subscribe(Start::Live, None, None, held_cut.clone());
        let (_stalled, _) = list.subscribe(Start::Live, None, None, stalled_cut.clone());
        held.hold_back(true);
        for i in 0..8 {
            list.publish("red", &json!(i)).unwrap();
        }
        assert!(stalled_cut.is_cancelled(), "a stalled reader is cut");
        assert!(!held_cut.is_cancelled(), "one the server held back is not");
        let gap = held.try_next(1 << 16).unwrap().unwrap();
        let text = std::str::from_utf8(&gap).unwrap();
        assert_eq!(
            text,
            "event: ringback.gap\ndata: {\"after\":0,\"oldest\":null}\n\n"
        );
        // On live from the newest: what the history still holds was missed with the rest.
        held.hold_back(false);
        assert_eq!(held.try_next(1 << 16).unwrap(), None);
        list.publish("red", &json!(9)).unwrap();
        assert_eq!(ids(&held.try_next(1 << 16).unwrap().unwrap()), vec![9]);
    }

    #[tokio::test(start_paused = true)]
    async fn cuts_are_logged_as_one_line_and_a_count() {
        let (log, _guard) = crate::runtime::log_summary::tests::Captured::start();
        let list = list(4);
        let cuts: Vec<CancelToken> = (0..100).map(|_| CancelToken::new()).collect();
        let subs: Vec<_> = cuts
            .iter()
            .map(|cut| list.subscribe(Start::Live, None, None, cut.clone()).0)
            .collect();
        for i in 0..16 {
            list.publish("red", &json!(i)).unwrap();
        }
        assert!(
            cuts.iter().all(CancelToken::is_cancelled),
            "every stalled reader is cut"
        );
        let warned = |log: &crate::runtime::log_summary::tests::Captured| {
            log.lines()
                .into_iter()
                .filter(|l| l.contains("fell behind the history"))
                .collect::<Vec<_>>()
        };
        assert_eq!(warned(&log).len(), 1, "{:?}", log.lines());
        tokio::time::sleep(crate::runtime::log_summary::INTERVAL).await;
        tokio::task::yield_now().await;
        let lines = warned(&log);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[1].contains("99 more"), "{}", lines[1]);
        assert_eq!(
            list.shared
                .metrics
                .lagged_disconnects
                .load(Ordering::Relaxed),
            100
        );
        drop(subs);
    }

    #[test]
    fn filter_skips_other_channels() {
        let list = list(8);
        let (mut a, _) = list.subscribe(
            Start::Live,
            Some(vec!["red".into()]),
            None,
            CancelToken::new(),
        );
        list.publish("blue", &json!(1)).unwrap();
        list.publish("red", &json!(2)).unwrap();
        list.publish("blue", &json!(3)).unwrap();
        assert_eq!(ids(&a.try_next(1 << 16).unwrap().unwrap()), vec![2]);
        assert_eq!(a.cursor(), 3);
        assert_eq!(a.try_next(1 << 16).unwrap(), None);
    }

    /// Found by the `message_decoder` fuzz target: without serde_json's exact float parsing, a
    /// number re-serialised by the feed could parse back one bit off on the subscriber's side.
    #[test]
    fn numbers_reach_subscribers_unchanged() {
        let body = br#"{"n":255555555555551555555,"f":0.1,"e":2.5555555555555154e20,"t":1e-7}"#;
        let data: serde_json::Value = serde_json::from_slice(body).unwrap();
        let list = list(4);
        list.publish("blue", &data).unwrap();
        let (mut sub, _) = list.subscribe(Start::After(0), None, None, CancelToken::new());
        let frame = sub.try_next(1 << 16).unwrap().unwrap();
        let text = std::str::from_utf8(&frame).unwrap();
        let line = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
        let message: Message = serde_json::from_str(line).unwrap();
        assert_eq!(message.data, data);
    }

    #[test]
    fn private_entries_reach_only_granted_subscribers_live_and_on_replay() {
        let list = list(16);
        list.set_private(ChannelSet::parse(&["secret-*"]).unwrap());
        let grants = |p: &[&str]| Some(Arc::new(ChannelSet::parse(p).unwrap()));
        let sub = |start, g| list.subscribe(start, None, g, CancelToken::new()).0;
        let (mut public, mut granted, mut other) = (
            sub(Start::Live, None),
            sub(Start::Live, grants(&["secret-a"])),
            sub(Start::Live, grants(&["secret-b"])),
        );
        list.publish("blue", &json!(1)).unwrap();
        list.publish("secret-a", &json!(2)).unwrap();
        list.publish("secret-b", &json!(3)).unwrap();
        list.publish("blue", &json!(4)).unwrap();
        let read = |s: &mut Subscription| ids(&s.try_next(1 << 16).unwrap().unwrap());
        assert_eq!(read(&mut public), vec![1, 4]);
        assert_eq!(read(&mut granted), vec![1, 2, 4]);
        assert_eq!(read(&mut other), vec![1, 3, 4]);
        // Replay from Last-Event-ID applies the same rule, and a type filter cannot widen it.
        assert_eq!(read(&mut sub(Start::After(0), None)), vec![1, 4]);
        assert_eq!(
            read(&mut sub(Start::After(1), grants(&["secret-*"]))),
            vec![2, 3, 4]
        );
        let (mut filtered, _) = list.subscribe(
            Start::After(0),
            Some(vec!["secret-a".into()]),
            None,
            CancelToken::new(),
        );
        assert_eq!(filtered.try_next(1 << 16).unwrap(), None);
        assert_eq!(filtered.cursor(), 4);
        // Snapshots are for anyone: no private message, no private channel name.
        let snap = list.snapshot(10);
        assert_eq!(
            snap.messages.iter().map(|m| m.id).collect::<Vec<_>>(),
            vec![1, 4]
        );
        assert!(snap.channels.iter().all(|c| !c.starts_with("secret")));
    }

    #[test]
    fn resume_replays_and_reports_gaps() {
        let list = list(4);
        for i in 0..6 {
            list.publish("red", &json!(i)).unwrap(); // ids 1..=6; 3..=6 kept
        }
        let (mut a, gap) = list.subscribe(Start::After(4), None, None, CancelToken::new());
        assert_eq!(gap, None);
        assert_eq!(ids(&a.try_next(1 << 16).unwrap().unwrap()), vec![5, 6]);

        let (mut b, gap) = list.subscribe(Start::After(2), None, None, CancelToken::new());
        assert_eq!(gap, None, "id 2 was evicted but nothing after it was");
        assert_eq!(
            ids(&b.try_next(1 << 16).unwrap().unwrap()),
            vec![3, 4, 5, 6]
        );

        let (mut c, gap) = list.subscribe(Start::After(1), None, None, CancelToken::new());
        assert_eq!(
            gap,
            Some(Gap {
                after: 1,
                oldest: Some(3)
            })
        );
        assert_eq!(
            ids(&c.try_next(1 << 16).unwrap().unwrap()),
            vec![3, 4, 5, 6]
        );

        // An id from the future (another server's, or before a restart) is a gap too.
        let (_, gap) = list.subscribe(Start::After(99), None, None, CancelToken::new());
        assert_eq!(
            gap,
            Some(Gap {
                after: 99,
                oldest: Some(3)
            })
        );
    }

    #[test]
    fn a_list_following_a_log_takes_its_ids_and_waits_for_ids_ahead() {
        let list = list(4);
        list.follow_log(100);
        assert_eq!(list.append(105, "red", b"1", b"").unwrap(), Some(105));
        assert_eq!(
            list.append(105, "red", b"1", b"").unwrap(),
            None,
            "a replayed entry is not shown twice"
        );
        assert_eq!(list.append(103, "red", b"1", b"").unwrap(), None);
        list.append(2000, "red", b"2", br#""source_id":1"#).unwrap();
        let snap = list.snapshot(8);
        assert_eq!(snap.last_id, Some(2000));
        assert_eq!(snap.messages[1].extra["source_id"], 1);

        // Another server's id, not received here yet: no gap, it waits and gets what follows.
        let (mut ahead, gap) = list.subscribe(Start::After(3000), None, None, CancelToken::new());
        assert_eq!(gap, None);
        assert_eq!(ahead.try_next(1 << 16).unwrap(), None);
        list.append(3001, "red", b"3", b"").unwrap();
        assert_eq!(ids(&ahead.try_next(1 << 16).unwrap().unwrap()), vec![3001]);

        // Older than the log holds: a gap.
        let (_, gap) = list.subscribe(Start::After(99), None, None, CancelToken::new());
        assert_eq!(
            gap,
            Some(Gap {
                after: 99,
                oldest: Some(105)
            })
        );
    }

    #[test]
    fn since_starts_at_the_first_message_published_then_or_later() {
        // Log ids carry their time: `ms * 1000 + seq`.
        let list = list(3);
        list.follow_log(1_000_000); // the log no longer holds what was published by 1,000 ms
        for (ms, seq) in [(2000, 0), (2000, 1), (3000, 0)] {
            list.append(ms * 1000 + seq, "red", b"1", b"").unwrap();
        }
        let from = |ms| {
            let (mut sub, gap) = list.subscribe(Start::Since(ms), None, None, CancelToken::new());
            let got = sub
                .try_next(1 << 16)
                .unwrap()
                .map(|f| ids(&f))
                .unwrap_or_default();
            (got, gap)
        };
        assert_eq!(from(2000), (vec![2_000_000, 2_000_001, 3_000_000], None));
        assert_eq!(from(2001), (vec![3_000_000], None));
        assert_eq!(from(3000), (vec![3_000_000], None));
        assert_eq!(from(3001), (vec![], None), "after the newest: live");
        assert_eq!(from(1500), (vec![2_000_000, 2_000_001, 3_000_000], None));
        // At or before what the log no longer holds: the gap, then all there is.
        let gap = Some(Gap {
            after: 0,
            oldest: Some(2_000_000),
        });
        assert_eq!(
            from(1000),
            (vec![2_000_000, 2_000_001, 3_000_000], gap.clone())
        );
        // Evicting moves the horizon: 2,000 ms is partly gone now.
        list.append(4_000_000, "red", b"1", b"").unwrap(); // evicts 2,000,000
        let (got, gap) = from(2000);
        assert_eq!(got, vec![2_000_001, 3_000_000, 4_000_000]);
        assert_eq!(gap.map(|g| g.oldest), Some(Some(2_000_001)));
    }

    #[test]
    fn a_subscriber_behind_the_history_is_cut_off() {
        let list = list(8);
        let slow_cut = CancelToken::new();
        let (mut slow, _) = list.subscribe(Start::Live, None, None, slow_cut.clone());
        let (mut fast, _) = list.subscribe(Start::Live, None, None, CancelToken::new());
        for i in 0..8 {
            list.publish("red", &json!(i)).unwrap();
            assert!(fast.try_next(1 << 16).unwrap().is_some());
        }
        assert!(
            !slow_cut.is_cancelled(),
            "8 behind with a history of 8 is still whole"
        );
        list.publish("red", &json!(8)).unwrap();
        assert!(fast.try_next(1 << 16).unwrap().is_some());
        // One more eviction than the history: the scan cuts the slow one without polling it.
        assert!(slow_cut.is_cancelled());
        assert_eq!(slow.try_next(1 << 16), Err(Lagged));
        assert_eq!(
            list.shared
                .metrics
                .lagged_disconnects
                .load(Ordering::Relaxed),
            1
        );
    }

    #[test]
    fn history_is_bounded_by_bytes() {
        let limits = Limits {
            history: 1000,
            history_bytes: 2000,
            max_message_bytes: 4096,
            max_channels: 8,
            channel_idle: Duration::ZERO,
        };
        let list = BroadcastList::new(limits, 1, &[], Arc::new(Metrics::default()));
        for _ in 0..100 {
            list.publish("red", &json!("x".repeat(300))).unwrap();
        }
        let (n, bytes) = list.held();
        assert!(bytes <= 2000, "{bytes}");
        assert!((1..10).contains(&n), "{n}");
    }

    #[test]
    fn rejects_bad_input_and_keeps_going() {
        let list = list(8);
        assert!(matches!(
            list.publish("a\nb", &json!(1)),
            Err(Rejected::Channel(_))
        ));
        assert!(matches!(
            list.publish("red", &json!("x".repeat(2000))),
            Err(Rejected::TooLarge { .. })
        ));
        for c in ["c4", "c5", "c6", "c7", "c8"] {
            list.publish(c, &json!(1)).unwrap();
        }
        assert_eq!(
            list.publish("c9", &json!(1)),
            Err(Rejected::TooManyChannels(8))
        );
        assert_eq!(
            list.publish("red", &json!(1)).unwrap(),
            6,
            "rejections use no ids"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_channels_make_room_unless_followed_or_default() {
        let limits = Limits {
            history: 100,
            history_bytes: 1 << 20,
            max_message_bytes: 1024,
            max_channels: 5,
            channel_idle: Duration::from_secs(600),
        };
        let metrics = Arc::new(Metrics::default());
        let list = BroadcastList::new(limits, 1, &["red", "blue"], metrics.clone());
        let (_follower, _) = list.subscribe(
            Start::Live,
            Some(vec!["c1".into()]),
            None,
            CancelToken::new(),
        );
        for c in ["c1", "c2", "c3"] {
            list.publish(c, &json!(1)).unwrap();
        }
        assert_eq!(
            list.publish("c4", &json!(1)),
            Err(Rejected::TooManyChannels(5))
        );
        assert!(list.check("c4", 1).is_err());
        tokio::time::advance(Duration::from_secs(599)).await;
        list.publish("c3", &json!(2)).unwrap(); // c3 stays busy
        tokio::time::advance(Duration::from_secs(1)).await;
        // c2 is idle (and nobody names it); c1 is followed; c3 was just used; the defaults stay.
        assert!(list.check("c4", 1).is_ok());
        assert_eq!(metrics.channels_forgotten.load(Ordering::Relaxed), 1);
        list.publish("c4", &json!(1)).unwrap();
        assert!(!list.knows_channel("c2"));
        assert!(list.knows_channel("c1") && list.knows_channel("red"));
        assert_eq!(
            list.publish("c5", &json!(1)),
            Err(Rejected::TooManyChannels(5))
        );
        // A forgotten channel is carried again, announced anew, when it has room.
        drop(_follower);
        tokio::time::advance(Duration::from_secs(600)).await;
        let (mut sub, _) = list.subscribe(Start::Live, None, None, CancelToken::new());
        list.publish("c2", &json!(3)).unwrap();
        let frame = sub.try_next(1 << 16).unwrap().unwrap();
        assert!(std::str::from_utf8(&frame)
            .unwrap()
            .starts_with("event: ringback.channel"));
    }

    #[test]
    fn snapshot_takes_latest_per_channel() {
        let list = list(100);
        for i in 0..10 {
            list.publish(if i % 2 == 0 { "red" } else { "green" }, &json!(i))
                .unwrap();
        }
        let snap = list.snapshot(2);
        assert_eq!(snap.channels, vec!["red", "yellow", "blue", "green"]);
        let got: Vec<(String, u64)> = snap
            .messages
            .iter()
            .map(|m| (m.channel.clone(), m.id))
            .collect();
        assert_eq!(
            got,
            vec![
                ("red".into(), 7),
                ("green".into(), 8),
                ("red".into(), 9),
                ("green".into(), 10)
            ]
        );
        assert_eq!(snap.last_id, Some(10));
    }

    #[test]
    fn dropping_a_subscription_unregisters_it() {
        let list = list(8);
        let subs: Vec<_> = (0..10)
            .map(|_| {
                list.subscribe(Start::Live, None, None, CancelToken::new())
                    .0
            })
            .collect();
        assert_eq!(list.subscriber_count(), 10);
        drop(subs);
        assert_eq!(list.subscriber_count(), 0);
        assert!(list.shared.registry.lock().unwrap().slots.is_empty());
    }

    /// Many writers and readers at once on the multi-threaded runtime: every reader receives
    /// every message, in order, and none waits forever (a lost wake-up would hang this test,
    /// which the timeout turns into a failure).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_lost_wakeups_under_contention() {
        const WRITERS: u64 = 4;
        const PER_WRITER: u64 = 500;
        let list = list(4096);
        let mut readers = Vec::new();
        for _ in 0..8 {
            let (mut sub, _) = list.subscribe(Start::Live, None, None, CancelToken::new());
            readers.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                while seen.len() < (WRITERS * PER_WRITER) as usize {
                    let bytes = sub.next(1 << 16).await.expect("not lagged");
                    seen.extend(ids(&bytes));
                }
                seen
            }));
        }
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let list = list.clone();
                tokio::spawn(async move {
                    for i in 0..PER_WRITER {
                        list.publish("red", &json!([w, i])).unwrap();
                        if i % 16 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap();
        }
        for r in readers {
            let seen = tokio::time::timeout(std::time::Duration::from_secs(30), r)
                .await
                .expect("a reader stalled: lost wake-up")
                .unwrap();
            let expected: Vec<u64> = (1..=WRITERS * PER_WRITER).collect();
            assert_eq!(seen, expected);
        }
    }
}
