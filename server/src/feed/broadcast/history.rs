//! The history: the list's entries in id order, bounded by count and by bytes; where a
//! subscriber starting at a point begins; and the batch of frames after a cursor.

use crate::config::FeedLimits;
use crate::feed::frame::gzip::{Alone, Crc, Deflated, GzipStream};
use app::message::Gap;
use app::time::unix_now;
use bytes::{Bytes, BytesMut};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Per-entry bookkeeping counted against the byte bound on top of the frame itself.
const ENTRY_OVERHEAD: usize = std::mem::size_of::<Entry>();

/// What an entry holds when appended: its frame, its compressed forms, its bookkeeping (a
/// frame's alone output, made later, is counted in `History::made`).
fn entry_size(entry: &Entry) -> usize {
    let deflated = entry
        .deflated
        .as_ref()
        .map_or(0, |d| d.size() + std::mem::size_of::<Deflated>());
    entry.frame.len() + deflated + ENTRY_OVERHEAD
}

/// A frame this large or larger is handed to a subscriber alone, as the list's shared bytes,
/// never copied into a batch: what a stalled or resuming reader holds of it is then a reference.
/// Smaller frames ready together are copied into one buffer (one write for many).
pub(super) const SHARED_ALONE: usize = 4096;

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
    /// The frame compressed, for compressed streams (`--stream-compression`); made on append.
    /// Boxed: an entry of a list that does not compress is one pointer larger, not five.
    pub deflated: Option<Box<Deflated>>,
}

/// A public frame as the writers' pass takes it ([`History::public_after`]).
pub struct PublicFrame {
    pub id: u64,
    pub frame: Bytes,
    /// Its shared compressed output and its plain text's CRC, if it has one (a frame appended
    /// while the list compressed for some stream: see `feed::frame::gzip`).
    pub shared: Option<(Bytes, Crc)>,
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

pub(super) struct History {
    entries: VecDeque<Entry>,
    bytes: usize,
    /// The bytes of the frames' alone outputs made since they were appended (by readers, under
    /// the list's read lock: hence atomic), counted against the byte bound with `bytes`.
    made: AtomicUsize,
    /// The newest id appended (the first id minus one before any).
    pub newest: u64,
    /// Every id up to this one is gone (evicted, or from before this list existed): a resume
    /// from an older id has a gap.
    pub evicted_through: u64,
    /// The newest time gone with them (Unix ms): a `since` at or before it has a gap.
    evicted_time: u64,
    /// Entries evicted so far; when it reaches `scan_at`, the registry is scanned for
    /// subscribers left behind. Scanning every `history / 8` evictions keeps the cost per append
    /// constant (counted in evictions, not ids: ids from a shared log are sparse).
    evictions: u64,
    scan_at: u64,
    /// Ids come from a shared log (see [`History::follow_log`]).
    follows_log: bool,
}

/// The frames after a cursor that one read hands over.
pub(super) struct Batch {
    /// One frame as the list holds it, or several copied into one buffer; `None`: nothing the
    /// reader wants.
    pub bytes: Option<Bytes>,
    /// The id the reader has passed (what it wants, and what it skipped).
    pub last: u64,
    /// The messages in `bytes`.
    pub count: u64,
}

impl History {
    /// An empty history whose first id will be `first_id` (at least 1).
    pub fn new(first_id: u64, limits: &FeedLimits) -> Self {
        History {
            entries: VecDeque::with_capacity(limits.history.clamp(1, 4096)),
            bytes: 0,
            made: AtomicUsize::new(0),
            newest: first_id - 1,
            evicted_through: first_id - 1,
            // What was published before this list existed is gone.
            evicted_time: unix_now(),
            evictions: 0,
            scan_at: 1,
            follows_log: false,
        }
    }

    /// The id and time of the next entry: `id` if it comes from a log (`None` if the history
    /// already holds it or a newer one), else the next id and the clock (never earlier than
    /// the entry before).
    pub fn next(&self, id: Option<u64>) -> Option<(u64, u64)> {
        match id {
            Some(id) if id <= self.newest => None,
            Some(id) => Some((id, id / 1000)),
            None => Some((
                self.newest + 1,
                unix_now().max(self.entries.back().map_or(0, |e| e.time)),
            )),
        }
    }

    pub fn push(&mut self, entry: Entry) {
        self.newest = entry.id;
        self.bytes += entry_size(&entry);
        self.entries.push_back(entry);
    }

    /// Drops the oldest entries beyond the bounds; returns `Some(evicted_through)` when it is
    /// time to scan the registry for subscribers left behind.
    pub fn evict(&mut self, limits: &FeedLimits) -> Option<u64> {
        while self.entries.len() > limits.history.max(1)
            || (self.bytes + self.made.load(Ordering::Relaxed) > limits.history_bytes
                && self.entries.len() > 1)
        {
            let Some(old) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= entry_size(&old);
            if let Some(deflated) = &old.deflated {
                self.made
                    .fetch_sub(deflated.alone_made(), Ordering::Relaxed);
            }
            self.evicted_through = old.id;
            self.evicted_time = old.time;
            self.evictions += 1;
        }
        if self.evictions >= self.scan_at {
            self.scan_at = self.evictions + (limits.history / 8).max(1) as u64;
            Some(self.evicted_through)
        } else {
            None
        }
    }

    /// Follows a shared log whose oldest entries up to `evicted_through` are gone (see
    /// `BroadcastList::follow_log`); returns whether the newest id was set from it (only
    /// before the first entry).
    pub fn follow_log(&mut self, evicted_through: u64) -> bool {
        self.follows_log = true;
        if !self.entries.is_empty() {
            return false;
        }
        self.evicted_through = self.evicted_through.max(evicted_through);
        // The log's ids carry their time; what it no longer holds is older than its first.
        self.evicted_time = evicted_through / 1000;
        self.newest = self.newest.max(evicted_through);
        true
    }

    /// The cursor a subscriber starting at `start` begins after, and the gap if `start` asks
    /// for messages the history no longer holds.
    pub fn start(&self, start: Start) -> (u64, Option<Gap>) {
        let oldest = self.entries.front().map(|e| e.id);
        // An id newer than the newest is from the future in the embedded default (a gap: it was
        // handed out by another process); behind a shared log it is simply one this server has
        // not received yet.
        let ahead =
            matches!(start, Start::After(after) if after > self.newest) && !self.follows_log;
        match start {
            Start::Live => (self.newest, None),
            Start::After(after) if after < self.evicted_through || ahead => {
                (self.evicted_through, Some(Gap { after, oldest }))
            }
            Start::After(after) => (after, None),
            Start::Since(ms) => {
                // After the last entry published before `ms`.
                match self.entries.partition_point(|e| e.time < ms) {
                    0 if ms <= self.evicted_time => {
                        (self.evicted_through, Some(Gap { after: 0, oldest }))
                    }
                    0 => (self.evicted_through, None),
                    i => (self.entries[i - 1].id, None),
                }
            }
        }
    }

    /// The index of the first entry after `cursor` (the length if none is). A live reader is
    /// most often just one message behind: the newest entry is looked at first, then ids (which
    /// increase along the list) are bisected.
    fn first_after(&self, cursor: u64) -> usize {
        let len = self.entries.len();
        match (self.entries.front(), self.entries.back()) {
            (Some(front), _) if cursor < front.id => 0,
            (_, Some(back)) if back.id <= cursor => len,
            _ if len >= 2 && self.entries[len - 2].id <= cursor => len - 1,
            _ => self.entries.partition_point(|e| e.id <= cursor),
        }
    }

    /// Every public frame after `cursor`, into `out`, if the history still holds them all and
    /// they come to at most `max_bytes`; `false` (and `out` left empty) if not.
    pub fn public_after(&self, cursor: u64, max_bytes: usize, out: &mut Vec<PublicFrame>) -> bool {
        out.clear();
        if cursor < self.evicted_through {
            return false;
        }
        let mut size = 0;
        for entry in self.entries.range(self.first_after(cursor)..) {
            if entry.private {
                continue;
            }
            size += entry.frame.len();
            if size > max_bytes {
                out.clear();
                return false;
            }
            out.push(PublicFrame {
                id: entry.id,
                frame: entry.frame.clone(),
                shared: entry
                    .deflated
                    .as_ref()
                    .and_then(|d| Some((d.shared.clone()?, d.crc))),
            });
        }
        true
    }

    /// The frames after `cursor` that `wants`, up to `max_bytes` (at least one).
    ///
    /// A frame of [`SHARED_ALONE`] bytes or more goes alone, as the list's own bytes: copying it
    /// would double what a stalled reader (or a thousand resuming ones) holds. One frame is
    /// handed over as it is; several are copied once into a buffer of their size.
    pub fn batch(&self, cursor: u64, max_bytes: usize, wants: impl Fn(&Entry) -> bool) -> Batch {
        if self.entries.is_empty() {
            return Batch {
                bytes: None,
                last: cursor,
                count: 0,
            };
        }
        let start = self.first_after(cursor);
        let (mut end, mut size, mut count) = (start, 0, 0u64);
        let mut last = cursor;
        let mut first: Option<&Bytes> = None;
        for entry in self.entries.range(start..) {
            let len = entry.frame.len();
            let wanted = wants(entry);
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
        let bytes = match count {
            0 => None,
            1 => first.cloned(),
            _ => {
                let mut buf = BytesMut::with_capacity(size);
                for entry in self.entries.range(start..end).filter(|e| wants(e)) {
                    buf.extend_from_slice(&entry.frame);
                }
                Some(buf.freeze())
            }
        };
        Batch { bytes, last, count }
    }

    /// The frames after `cursor` that `wants`, compressed for `stream` (`whole`: the reader
    /// reads every public frame, so it may take the shared compressor's output), up to about
    /// `max_bytes` of output (at least one frame).
    pub fn batch_gzip(
        &self,
        cursor: u64,
        max_bytes: usize,
        wants: impl Fn(&Entry) -> bool,
        whole: bool,
        stream: &mut GzipStream,
    ) -> Batch {
        let start = self.first_after(cursor);
        let mut out = Gather::default();
        let (mut last, mut count) = (cursor, 0u64);
        for entry in self.entries.range(start..) {
            if count > 0 && out.len() >= max_bytes {
                break;
            }
            last = entry.id;
            if wants(entry) {
                if let Some(header) = stream.header() {
                    out.push_slice(header);
                }
                match &entry.deflated {
                    Some(forms) => out.push(stream.take(&entry.frame, forms, whole, &self.made)),
                    // Appended before the list compressed (it does from start-up on).
                    None => {
                        let mut buf = BytesMut::new();
                        stream.other(&mut buf, &Alone::new(&entry.frame));
                        out.push_slice(&buf);
                    }
                }
                count += 1;
            }
        }
        Batch {
            bytes: out.into_bytes(),
            last,
            count,
        }
    }

    /// The latest `per_channel` public entries of each channel, oldest first.
    pub fn latest(&self, per_channel: usize) -> Vec<&Entry> {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        let mut picked: Vec<&Entry> = Vec::new();
        for entry in self.entries.iter().rev().filter(|e| !e.private) {
            let n = counts.entry(&entry.channel).or_default();
            if *n < per_channel {
                *n += 1;
                picked.push(entry);
            }
        }
        picked.reverse();
        picked
    }

    /// Entries and bytes held.
    pub fn held(&self) -> (usize, usize) {
        (
            self.entries.len(),
            self.bytes + self.made.load(Ordering::Relaxed),
        )
    }
}

/// Bytes gathered for one write: one piece handed over as it is (the list's shared bytes, no
/// copy), several copied into one buffer.
#[derive(Default)]
struct Gather {
    single: Option<Bytes>,
    buf: BytesMut,
}

impl Gather {
    fn len(&self) -> usize {
        self.single.as_ref().map_or(0, Bytes::len) + self.buf.len()
    }

    fn push(&mut self, bytes: &Bytes) {
        if self.single.is_none() && self.buf.is_empty() {
            self.single = Some(bytes.clone());
        } else {
            self.push_slice(bytes);
        }
    }

    fn push_slice(&mut self, bytes: &[u8]) {
        if let Some(single) = self.single.take() {
            self.buf.extend_from_slice(&single);
        }
        self.buf.extend_from_slice(bytes);
    }

    fn into_bytes(self) -> Option<Bytes> {
        match self.single {
            Some(single) => Some(single),
            None => (!self.buf.is_empty()).then(|| self.buf.freeze()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where a reader at any cursor starts, with sparse ids (a shared log's): the newest entry's
    /// shortcut and the bisection agree with a plain scan.
    #[test]
    fn a_reader_starts_at_the_first_entry_after_its_cursor() {
        let limits = FeedLimits {
            history: 64,
            history_bytes: 1 << 20,
            max_message_bytes: 1024,
            max_channels: 8,
            channel_idle: std::time::Duration::ZERO,
        };
        let mut history = History::new(1, &limits);
        for len in 0..6u64 {
            let ids: Vec<u64> = history.entries.iter().map(|e| e.id).collect();
            for cursor in 0..=len * 10 + 12 {
                let scan = ids.iter().position(|&id| id > cursor).unwrap_or(ids.len());
                assert_eq!(history.first_after(cursor), scan, "{ids:?} after {cursor}");
            }
            let id = 10 * len + 5;
            history.push(Entry {
                id,
                channel: Arc::from("red"),
                frame: Bytes::new(),
                json: Bytes::new(),
                private: false,
                time: id,
                deflated: None,
            });
        }
    }
}
