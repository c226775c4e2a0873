//! The channel table: the channels the feed carries, in order of first appearance, which of them
//! are private, each one's newest message, and forgetting idle ones to make room.

use crate::feed::channels::ChannelSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

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

pub(super) struct ChannelTable {
    channels: Vec<Channel>,
    /// The private channels (see `BroadcastList::set_private`).
    private: ChannelSet,
}

impl ChannelTable {
    /// The page's default channels, carried (and never forgotten) from the start.
    pub fn new(defaults: &[&str]) -> Self {
        ChannelTable {
            channels: defaults
                .iter()
                .map(|c| Channel {
                    name: Arc::from(*c),
                    last: Instant::now(),
                    pinned: true,
                    newest: None,
                })
                .collect(),
            private: ChannelSet::default(),
        }
    }

    pub fn set_private(&mut self, private: ChannelSet) {
        self.private = private;
    }

    pub fn is_private(&self, channel: &str) -> bool {
        self.private.contains(channel)
    }

    pub fn len(&self) -> usize {
        self.channels.len()
    }

    pub fn knows(&self, channel: &str) -> bool {
        self.position(channel).is_some()
    }

    fn position(&self, channel: &str) -> Option<usize> {
        self.channels.iter().position(|c| &*c.name == channel)
    }

    /// Records a message `id` at `time` on a channel the table carries: its shared name, or
    /// `None` if the table does not carry it.
    pub fn touch(&mut self, channel: &str, id: u64, time: u64) -> Option<Arc<str>> {
        let i = self.position(channel)?;
        let known = &mut self.channels[i];
        known.last = Instant::now();
        known.newest = Some((id, time));
        Some(known.name.clone())
    }

    /// Carries a new channel from now on, with its first message `id` at `time`.
    pub fn add(&mut self, channel: &str, id: u64, time: u64) -> Arc<str> {
        let name: Arc<str> = Arc::from(channel);
        self.channels.push(Channel {
            name: name.clone(),
            last: Instant::now(),
            pinned: false,
            newest: Some((id, time)),
        });
        name
    }

    /// Forgets the channels idle for `idle` or longer that nobody `followed` and that are not
    /// defaults; returns how many. Their entries stay in history; a message on one later
    /// carries it again (announced anew).
    pub fn forget_idle(&mut self, idle: Duration, followed: impl Fn(&str) -> bool) -> usize {
        let now = Instant::now();
        let before = self.channels.len();
        self.channels
            .retain(|c| c.pinned || now.duration_since(c.last) < idle || followed(&c.name));
        before - self.channels.len()
    }

    /// The public channels' names, in order of first appearance (what anyone may see).
    pub fn public_names(&self) -> Vec<Arc<str>> {
        self.channels
            .iter()
            .filter(|c| !self.private.contains(&c.name))
            .map(|c| c.name.clone())
            .collect()
    }

    /// Every channel (private ones included), with its `subscribers(name, private)`.
    pub fn states(&self, subscribers: impl Fn(&Arc<str>, bool) -> u64) -> Vec<ChannelState> {
        self.channels
            .iter()
            .map(|c| {
                let private = self.private.contains(&c.name);
                ChannelState {
                    name: c.name.clone(),
                    private,
                    subscribers: subscribers(&c.name, private),
                    newest: c.newest,
                }
            })
            .collect()
    }
}
