//! The subscriber registry: every live subscription's slot (its cursor, and how to cut it off),
//! and who reads which channel, for each channel's subscriber count and so that a followed
//! channel is never forgotten as idle.

use crate::feed::channels::ChannelSet;
use crate::runtime::cancel::CancelToken;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

/// What the list knows of one subscriber: its cursor, and how to cut it off.
pub(super) struct Slot {
    pub cursor: AtomicU64,
    pub lagged: AtomicBool,
    pub cut: CancelToken,
    /// The server itself holds this subscriber back (a resume waiting its turn for the replay
    /// budget): it is not stalled, so it is never cut for lagging; if the history moves past it
    /// meanwhile, it is told of the gap in its stream instead (`Subscription::hold_back`).
    pub held_back: AtomicBool,
}

impl Slot {
    pub fn new(cursor: u64, cut: CancelToken) -> Slot {
        Slot {
            cursor: AtomicU64::new(cursor),
            lagged: AtomicBool::new(false),
            held_back: AtomicBool::new(false),
            cut,
        }
    }
}

#[derive(Default)]
pub(super) struct Registry {
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

impl Registry {
    /// Registers a subscriber reading `filter`'s channels (every one without) and the private
    /// channels in `grants`; returns its key.
    pub fn add(
        &mut self,
        slot: Arc<Slot>,
        filter: Option<&[Arc<str>]>,
        grants: Option<&Arc<ChannelSet>>,
    ) -> u64 {
        let key = self.next_key;
        self.next_key += 1;
        self.slots.insert(key, slot);
        for channel in filter.iter().copied().flatten() {
            *self.followed.entry(channel.clone()).or_default() += 1;
        }
        if filter.is_none() {
            self.everyone += 1;
            if let Some(grants) = grants {
                match self.everyone_granted.iter_mut().find(|(g, _)| g == grants) {
                    Some((_, n)) => *n += 1,
                    None => self.everyone_granted.push((grants.clone(), 1)),
                }
            }
        }
        key
    }

    /// Unregisters the subscriber `add` registered under `key` with these `filter` and
    /// `grants`.
    pub fn remove(
        &mut self,
        key: u64,
        filter: Option<&[Arc<str>]>,
        grants: Option<&Arc<ChannelSet>>,
    ) {
        self.slots.remove(&key);
        for channel in filter.iter().copied().flatten() {
            if let Some(n) = self.followed.get_mut(channel) {
                *n -= 1;
                if *n == 0 {
                    self.followed.remove(channel);
                }
            }
        }
        if filter.is_none() {
            self.everyone -= 1;
            if let Some(grants) = grants {
                if let Some(i) = self.everyone_granted.iter().position(|(g, _)| g == grants) {
                    self.everyone_granted[i].1 -= 1;
                    if self.everyone_granted[i].1 == 0 {
                        self.everyone_granted.swap_remove(i);
                    }
                }
            }
        }
    }

    /// Live subscribers.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn slots(&self) -> impl Iterator<Item = &Arc<Slot>> {
        self.slots.values()
    }

    /// Whether a subscriber names `channel` in its filter.
    pub fn follows(&self, channel: &str) -> bool {
        self.followed.contains_key(channel)
    }

    /// Subscribers reading `channel`: those naming it in a filter, and those without a filter
    /// that may read it.
    pub fn readers(&self, channel: &Arc<str>, private: bool) -> u64 {
        let named = self.followed.get(channel).copied().unwrap_or(0);
        let everyone = if private {
            self.everyone_granted
                .iter()
                .filter(|(grants, _)| grants.contains(channel))
                .map(|(_, n)| n)
                .sum()
        } else {
            self.everyone
        };
        (named + everyone) as u64
    }
}
