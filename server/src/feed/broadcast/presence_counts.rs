//! The feed's subscriber counts as the list carries them to its subscribers: set by
//! `feed/presence.rs` at most once per interval, versioned so that each subscriber sends the
//! newest (one shared `ringback.presence` frame) at its next step.

use crate::feed::frame::gzip::Alone;
use crate::feed::frame::Event;
use crate::runtime::lock::RwLockExt;
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

/// The subscriber counts across the feed, channels with none left out, and their event.
#[derive(Debug, Default)]
pub struct PresenceState {
    /// Channel, subscribers, whether it is private; in the order the feed learnt the channels.
    pub counts: Vec<(Arc<str>, u64, bool)>,
    /// The `ringback.presence` frame of the public channels, for every subscriber granted none.
    public: Bytes,
    /// The same, compressed once for every compressed stream that needs it.
    public_alone: OnceLock<Alone>,
}

impl PresenceState {
    /// Subscribers on `channel` across the feed.
    pub fn count(&self, channel: &str) -> u64 {
        self.counts
            .iter()
            .find(|(name, ..)| &**name == channel)
            .map_or(0, |(_, n, _)| *n)
    }

    /// The counts a subscriber granted `grants` may see, as a frame: the shared one of the
    /// public channels, or its own with the private channels it is granted (encoded when they
    /// change); `None` when there are none.
    pub fn frame_for(&self, grants: Option<&crate::feed::channels::ChannelSet>) -> Option<Bytes> {
        let frame = match grants {
            None => self.public.clone(),
            Some(grants) => presence(
                self.counts
                    .iter()
                    .filter(|(name, _, private)| !private || grants.contains(name)),
            ),
        };
        (!frame.is_empty()).then_some(frame)
    }

    /// The public counts' frame compressed alone (made by the first compressed stream that
    /// sends it, once); `None` when there are none.
    pub fn public_alone(&self) -> Option<&Alone> {
        (!self.public.is_empty())
            .then(|| self.public_alone.get_or_init(|| Alone::new(&self.public)))
    }
}

/// The `ringback.presence` frame of `counts`.
fn presence<'a>(counts: impl Iterator<Item = &'a (Arc<str>, u64, bool)>) -> Bytes {
    let counts: Vec<(&str, u64)> = counts.map(|(name, n, _)| (&**name, *n)).collect();
    Event::Presence(&counts).to_bytes()
}

/// The counts set last, and how often they changed.
#[derive(Default)]
pub(super) struct PresenceCounts {
    state: RwLock<Arc<PresenceState>>,
    version: AtomicU64,
}

impl PresenceCounts {
    /// Sets the counts (channel, count, private); returns whether they changed.
    pub fn set(&self, counts: Vec<(Arc<str>, u64, bool)>) -> bool {
        let mut current = self.state.write_or_recover();
        if current.counts == counts {
            return false;
        }
        let public = presence(counts.iter().filter(|(_, _, private)| !private));
        *current = Arc::new(PresenceState {
            counts,
            public,
            public_alone: OnceLock::new(),
        });
        drop(current);
        self.version.fetch_add(1, Ordering::Release);
        true
    }

    pub fn get(&self) -> Arc<PresenceState> {
        self.state.read_or_recover().clone()
    }

    /// How many times the counts changed: a subscriber that has sent fewer sends them.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }
}
