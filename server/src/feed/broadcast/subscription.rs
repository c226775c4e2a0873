//! One subscriber's view of the list: a cursor, a wake-up receiver, an optional filter and the
//! private channels it may read.

use super::direct::{Parking, Writers};
use super::history::Entry;
use super::registry::Slot;
use super::BroadcastList;
use crate::feed::channels::ChannelSet;
use crate::feed::frame::gzip::{self, Alone, GzipStream};
use crate::feed::frame::{self, Event};
use crate::runtime::connection::WriteNow;
use crate::runtime::lock::{MutexExt, RwLockExt};
use app::message::Gap;
use bytes::{Bytes, BytesMut};
use std::future::poll_fn;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::time::Instant;

/// One subscriber's view of the list.
///
/// Dropping it unregisters it at once; it holds no frames.
pub struct Subscription {
    pub(super) list: BroadcastList,
    pub(super) key: u64,
    pub(super) slot: Arc<Slot>,
    /// The last id delivered (or skipped by the filter).
    pub(super) cursor: u64,
    pub(super) head: watch::Receiver<u64>,
    pub(super) filter: Option<Box<[Arc<str>]>>,
    /// The private channels this subscriber may read; `None`: none.
    pub(super) grants: Option<Arc<ChannelSet>>,
    /// The presence changes this subscriber has sent (see `BroadcastList::set_presence`).
    pub(super) presence_seen: u64,
    /// Where this subscriber's compressed stream stands; `None`: its stream is plain.
    pub(super) gzip: Option<GzipStream>,
    /// Its place among the direct subscribers (`direct.rs`), if its frames are written so.
    pub(super) direct: Option<Arc<Parking>>,
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
            if let Some(parking) = self.direct.clone() {
                self.park(&parking).await;
            } else if self.head.changed().await.is_err() {
                // The list is gone; nothing more will come.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Waits parked while the writers write for this subscriber, until they hand it back (or
    /// this future is dropped: its task woke for something else). Either way it then stands
    /// where the writers left it.
    async fn park(&mut self, parking: &Parking) {
        parking.park(self.cursor, self.presence_seen, self.gzip);
        let unpark = Unpark {
            parking,
            cursor: &mut self.cursor,
            gzip: &mut self.gzip,
        };
        // A change between the read that found nothing and parking: no writer may have seen
        // this subscriber parked, so it reads for itself (as `next` marks the version seen
        // before reading).
        if !self.head.has_changed().unwrap_or(false) {
            poll_fn(|cx| parking.poll_handed_back(cx)).await;
        }
        drop(unpark);
    }

    /// Writes this subscriber's frames through `writer` while it waits for them (see
    /// `direct.rs`): only a subscriber that reads every public frame (plain, or compressed
    /// while in step with the shared compressor), and whose stream takes `max_bytes` in one
    /// piece. Call after `compress`.
    pub fn write_directly(&mut self, writer: Arc<dyn WriteNow>, max_bytes: usize) {
        if self.filter.is_some() || self.grants.is_some() {
            return;
        }
        let shared = &self.list.shared;
        let writers = shared.writers.get_or_init(|| Writers::start(shared));
        let parking = writers.register(writer, self.slot.clone(), max_bytes, self.cursor);
        self.direct = Some(parking);
    }

    /// Its frames are no longer written by the writers (if they were).
    fn leave_writers(&mut self) {
        if let (Some(parking), Some(writers)) = (self.direct.take(), self.list.shared.writers.get())
        {
            writers.unregister(&parking);
        }
    }

    /// When the writers last wrote for this subscriber, if they have since this was last asked.
    pub fn take_written(&mut self) -> Option<Instant> {
        self.direct.as_ref()?.take_written()
    }

    /// The frames after the cursor, if any, without waiting.
    pub fn try_next(&mut self, max_bytes: usize) -> Result<Option<Bytes>, Lagged> {
        let shared = &self.list.shared;
        let presence = shared.presence.version();
        if presence != self.presence_seen {
            self.presence_seen = presence;
            let counts = shared.presence.get();
            if self.gzip.is_some() && self.grants.is_none() {
                if let Some(alone) = counts.public_alone() {
                    return Ok(Some(self.encode_alone(alone)));
                }
            } else if let Some(frame) = counts.frame_for(self.grants.as_deref()) {
                return Ok(Some(self.encode(frame)));
            }
        }
        let state = shared.state.read_or_recover();
        let history = &state.history;
        if self.cursor < history.evicted_through {
            let evicted = history.evicted_through;
            if self.slot.held_back.load(Ordering::Acquire) {
                // Held back by the server (a resume beyond the replay budget), not stalled: told
                // of the gap, and on live from the newest message. Continuing from the oldest
                // held would only be passed by the history again: a resume that cannot be given
                // what it missed in time goes live rather than chasing it.
                let gap = Gap {
                    after: self.cursor,
                    oldest: None,
                };
                let newest = history.newest;
                drop(state);
                self.cursor = newest;
                self.slot.cursor.store(newest, Ordering::Release);
                shared.metrics.resume_gaps.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(self.send(&[Event::Gap(&gap)])));
            }
            drop(state);
            self.list.cut(&self.slot, evicted);
            return Err(Lagged);
        }
        let batch = match self.gzip.as_mut() {
            None => history.batch(self.cursor, max_bytes, |e| self.wants(e)),
            Some(stream) => {
                let (filter, grants) = (&self.filter, &self.grants);
                let wants = |e: &Entry| wants(filter, grants, e);
                history.batch_gzip(self.cursor, max_bytes, wants, filter.is_none(), stream)
            }
        };
        drop(state);
        self.cursor = batch.last;
        self.slot.cursor.store(self.cursor, Ordering::Release);
        if batch.count > 0 {
            // One shared counter, bumped once per batch rather than per message.
            let out = &shared.metrics.messages_out;
            out.fetch_add(batch.count, Ordering::Relaxed);
        }
        Ok(batch.bytes)
    }

    /// Whether this subscriber reads `entry`: its filter names the channel (or it has none),
    /// and a private channel is among its grants.
    fn wants(&self, entry: &Entry) -> bool {
        wants(&self.filter, &self.grants, entry)
    }

    /// Makes this subscriber's stream gzip-compressed (see `feed::frame::gzip`): every frame
    /// handed over from now on, its own (`send`) included, is compressed, and `finish` ends it.
    pub fn compress(&mut self) {
        self.leave_writers();
        if self.gzip.is_none() {
            self.list.shared.compressed.fetch_add(1, Ordering::Relaxed);
        }
        self.gzip = Some(GzipStream::default());
    }

    /// Frames of this subscriber's own (its preamble, a source change, an ending) as its stream
    /// carries them: compressed alone, in one piece, on a compressed stream.
    pub fn send(&mut self, events: &[Event]) -> Bytes {
        self.encode(frame::frames(events))
    }

    /// A frame made for this subscriber (or a presence frame shared by those with its grants)
    /// as its stream carries it.
    fn encode(&mut self, frame: Bytes) -> Bytes {
        if self.gzip.is_none() {
            return frame;
        }
        self.encode_alone(&Alone::new(&frame))
    }

    /// A heartbeat as this subscriber's stream carries it.
    pub fn heartbeat(&mut self) -> Bytes {
        if self.gzip.is_none() {
            return Bytes::from_static(frame::HEARTBEAT);
        }
        self.encode_alone(gzip::heartbeat())
    }

    fn encode_alone(&mut self, alone: &Alone) -> Bytes {
        let mut out = BytesMut::new();
        if let Some(stream) = self.gzip.as_mut() {
            stream.other(&mut out, alone);
            // Out of step with the shared compressor now: asks for a reset point soon.
            let wanted = &self.list.shared.reset_wanted;
            if !wanted.load(Ordering::Relaxed) {
                wanted.store(true, Ordering::Relaxed);
            }
        }
        out.freeze()
    }

    /// What ends this subscriber's stream as a valid one: a compressed stream's trailer.
    pub fn finish(&mut self) -> Option<Bytes> {
        let stream = self.gzip.as_mut()?;
        let mut out = BytesMut::new();
        stream.finish(&mut out);
        Some(out.freeze())
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

/// Whether a subscriber reading `filter`'s channels (every one without) and granted `grants`
/// reads `entry`: the one place that keeps a private entry from a subscriber, live and on
/// `Last-Event-ID` replay alike.
fn wants(
    filter: &Option<Box<[Arc<str>]>>,
    grants: &Option<Arc<ChannelSet>>,
    entry: &Entry,
) -> bool {
    let channel = &*entry.channel;
    filter
        .as_ref()
        .is_none_or(|f| f.iter().any(|c| &**c == channel))
        && (!entry.private || grants.as_ref().is_some_and(|g| g.contains(channel)))
}

/// Takes a parked subscriber back when its wait ends, however it ends.
struct Unpark<'a> {
    parking: &'a Parking,
    cursor: &'a mut u64,
    gzip: &'a mut Option<GzipStream>,
}

impl Drop for Unpark<'_> {
    fn drop(&mut self) {
        // Parked with the stream's state: `Some` exactly when it is compressed.
        (*self.cursor, *self.gzip) = self.parking.unpark();
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.leave_writers();
        let shared = &self.list.shared;
        if self.gzip.is_some() {
            shared.compressed.fetch_sub(1, Ordering::Relaxed);
        }
        let mut registry = shared.registry.lock_or_recover();
        registry.remove(self.key, self.filter.as_deref(), self.grants.as_ref());
        shared.subscribers.send_replace(registry.len());
    }
}
