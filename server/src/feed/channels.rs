//! Sets of channels given as patterns (`name`, `prefix*`, `*`): private channels, and what a
//! credential may publish or read.

use app::message::validate_channel;

/// A set of channels given as patterns: `name`, `prefix*`, or `*`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelSet {
    any: bool,
    exact: Vec<Box<str>>,
    prefixes: Vec<Box<str>>,
}

impl ChannelSet {
    /// Every channel.
    pub fn all() -> Self {
        ChannelSet {
            any: true,
            ..ChannelSet::default()
        }
    }

    /// Parses patterns; each must be a channel name, optionally ending in `*`.
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<Self, String> {
        let mut set = ChannelSet::default();
        for pattern in patterns.iter().map(|p| p.as_ref().trim()) {
            if pattern == "*" {
                set.any = true;
            } else if let Some(prefix) = pattern.strip_suffix('*') {
                validate_channel(prefix)
                    .map_err(|e| format!("bad channel pattern {pattern:?}: {e}"))?;
                set.prefixes.push(prefix.into());
            } else {
                validate_channel(pattern)
                    .map_err(|e| format!("bad channel pattern {pattern:?}: {e}"))?;
                set.exact.push(pattern.into());
            }
        }
        Ok(set)
    }

    pub fn contains(&self, channel: &str) -> bool {
        self.any
            || self.exact.iter().any(|c| &**c == channel)
            || self.prefixes.iter().any(|p| channel.starts_with(&**p))
    }

    pub fn is_empty(&self) -> bool {
        !self.any && self.exact.is_empty() && self.prefixes.is_empty()
    }
}
