//! The wire types shared by the server and the WASM client.
//!
//! Both sides serialise the same structs, so a field renamed here is renamed everywhere at once.
//! Validation lives here too: the server rejects a bad message at the door, and the client can
//! trust that an event name it receives is a channel token.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The longest channel name accepted, in bytes.
pub const MAX_CHANNEL_LEN: usize = 64;

/// SSE event name of the frame the feed sends before the first message on a channel it has not
/// carried before. EventSource only dispatches named events to listeners registered for that
/// exact name, so a client must learn a new channel's name before its first message arrives.
/// The `.` cannot appear in a channel name, so no channel can shadow it.
pub const EVENT_CHANNEL: &str = "ringback.channel";

/// SSE event name sent when a resume asks for messages older than the history holds: the client
/// has missed messages and must reload its snapshot rather than show a silent gap.
pub const EVENT_GAP: &str = "ringback.gap";

/// SSE event name of the feed's source state (`{"online":bool}`), sent at the start of every
/// stream and on each change when the feed follows Redis: the page shows "source offline"
/// while its server cannot reach Redis (streams stay open, messages resume when it returns).
pub const EVENT_SOURCE: &str = "ringback.source";

/// SSE event name of the feed's subscriber counts ([`Presence`]), sent at the start of every
/// stream and whenever they change, at most once per `--presence-interval`. No `id:` either.
pub const EVENT_PRESENCE: &str = "ringback.presence";

/// SSE event name of a stream shed instead of served (the server is full, this address holds
/// its share, the server is draining): `{"reason":"<label>","retry_ms":<ms>}`, after a `retry:`
/// of the same delay, then the stream ends. The browser reconnects by itself after that delay.
pub const EVENT_REFUSED: &str = "ringback.refused";

/// SSE event name of the last event of a stream the server ends on purpose: `{"reason":
/// "token_expired" | "draining" | "max_age", "retry_ms":<ms>}`, after a `retry:` of that delay.
pub const EVENT_END: &str = "ringback.end";

/// Body of the `ringback.presence` event: every count at once, so a stream that missed one
/// (a slow reader) is right again with the next.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Presence {
    /// Subscribers per channel across the feed (every server on one Redis); a channel with none
    /// is left out.
    pub subscribers: BTreeMap<String, u64>,
}

/// Body of the `ringback.source` event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceState {
    pub online: bool,
}

/// The key under which a Redis publisher's own `id` is kept in the message: `id` itself is the
/// feed's id (the SSE `id:`), the one a client resumes from.
pub const SOURCE_ID_FIELD: &str = "source_id";

/// The key under which a Redis publisher's own `time` is kept: `time` itself is the feed's.
pub const SOURCE_TIME_FIELD: &str = "source_time";

/// The channels a page's address asks to follow (`?type=a&type=b`, the filter of `GET
/// /messages`), valid names only, each once, in order; empty: every channel.
pub fn followed_in_query(query: &str) -> Vec<String> {
    let mut followed: Vec<String> = Vec::new();
    for (key, value) in query.split('&').filter_map(|pair| pair.split_once('=')) {
        if key == "type" && validate_channel(value).is_ok() && !followed.iter().any(|f| f == value)
        {
            followed.push(value.to_owned());
        }
    }
    followed
}

/// The query that follows `followed` (`type=a&type=b`; empty for every channel). Channel names
/// are tokens: nothing to escape.
pub fn follow_query(followed: &[String]) -> String {
    followed
        .iter()
        .map(|c| format!("type={c}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The channels every page shows, with their colours, even before any message arrives.
pub const DEFAULT_CHANNELS: [&str; 3] = ["red", "yellow", "blue"];

/// One message as it travels on the feed: `data:` of every SSE frame is exactly this, as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Assigned by the feed, strictly increasing; also the frame's SSE `id:`.
    pub id: u64,
    /// The channel, also the frame's SSE `event:`.
    #[serde(rename = "type")]
    pub channel: String,
    /// The publisher's payload, any JSON value (usually a string).
    pub data: serde_json::Value,
    /// When it was published, in Unix milliseconds, the same on every server: the feed's clock
    /// (embedded) or the Redis log id's (`ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<u64>,
    /// A Redis publisher's own further fields, kept as they came (its `id` as `source_id`).
    #[serde(flatten, default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Message {
    /// The payload as display text: a JSON string shows bare, anything else as compact JSON.
    pub fn text(&self) -> String {
        match &self.data {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

/// Body of the `ringback.channel` event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChannelAnnounce {
    #[serde(rename = "type")]
    pub channel: String,
}

/// Body of the `ringback.gap` event: ids after `after` up to `resumed_at` are gone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    /// The id the client asked to resume after (0 when it asked by time, `?since=`).
    pub after: u64,
    /// The oldest id the feed still holds; the stream continues from there.
    pub oldest: Option<u64>,
}

/// What the page renders on first paint, and where its live stream starts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Every channel the feed knows, defaults first, then in order of first appearance.
    pub channels: Vec<String>,
    /// The latest messages, oldest first, at most `per_channel` of each channel.
    pub messages: Vec<Message>,
    /// The feed's newest id when the snapshot was taken: the live stream resumes after it, so
    /// nothing between first paint and the first live event is lost or shown twice.
    pub last_id: Option<u64>,
    /// How many messages each box keeps, so a fast feed cannot grow the DOM without bound.
    pub per_channel: usize,
    /// Publishing needs a token (credentials are configured): the compose box asks for one.
    #[serde(default)]
    pub publish_token: bool,
}

/// Why a channel name was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelError {
    Empty,
    TooLong,
    BadChar,
}

impl std::fmt::Display for ChannelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChannelError::Empty => write!(f, "`type` must not be empty"),
            ChannelError::TooLong => write!(f, "`type` must be at most {MAX_CHANNEL_LEN} bytes"),
            ChannelError::BadChar => {
                write!(f, "`type` may contain only letters, digits, `-` and `_`")
            }
        }
    }
}

/// Checks that `name` is a short token: ASCII letters, digits, `-`, `_`.
///
/// This is what makes the SSE `event:` line safe: no CR, LF or NUL can reach it (CWE-93), and no
/// `.` can collide with the feed's own control events.
pub fn validate_channel(name: &str) -> Result<(), ChannelError> {
    if name.is_empty() {
        return Err(ChannelError::Empty);
    }
    if name.len() > MAX_CHANNEL_LEN {
        return Err(ChannelError::TooLong);
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ChannelError::BadChar);
    }
    Ok(())
}

/// The colour of a channel's box: the original three keep theirs, any other gets a stable hue
/// derived from its name, so the same channel looks the same on every page.
pub fn channel_color(name: &str) -> String {
    match name {
        "red" => "#eb598f".to_owned(),
        "yellow" => "#fdcd3b".to_owned(),
        "blue" => "#5596f5".to_owned(),
        other => {
            // FNV-1a: tiny, stable across platforms and builds.
            let hash = other.bytes().fold(0x811c_9dc5_u32, |h, b| {
                (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
            });
            format!("hsl({}, 65%, 62%)", hash % 360)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_tokens() {
        assert_eq!(validate_channel("blue"), Ok(()));
        assert_eq!(validate_channel("a-b_C9"), Ok(()));
        assert_eq!(validate_channel(""), Err(ChannelError::Empty));
        assert_eq!(validate_channel("a\nb"), Err(ChannelError::BadChar));
        assert_eq!(validate_channel("a\rb"), Err(ChannelError::BadChar));
        assert_eq!(validate_channel("a\0"), Err(ChannelError::BadChar));
        assert_eq!(validate_channel("ringback.gap"), Err(ChannelError::BadChar));
        assert_eq!(validate_channel("blé"), Err(ChannelError::BadChar));
        assert_eq!(
            validate_channel(&"x".repeat(65)),
            Err(ChannelError::TooLong)
        );
        assert_eq!(validate_channel(&"x".repeat(64)), Ok(()));
    }

    #[test]
    fn message_json_uses_type() {
        let m = Message {
            id: 7,
            channel: "blue".into(),
            data: "hi".into(),
            time: Some(1_795_000_000_000),
            extra: Default::default(),
        };
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(
            json,
            r#"{"id":7,"type":"blue","data":"hi","time":1795000000000}"#
        );
        assert_eq!(serde_json::from_str::<Message>(&json).unwrap(), m);
        // A Redis publisher's own fields travel with the message.
        let json = r#"{"id":8,"type":"blue","data":"hi","time":8,"by":"cli","source_id":1}"#;
        let m: Message = serde_json::from_str(json).unwrap();
        assert_eq!(m.extra["source_id"], 1);
        assert_eq!(serde_json::to_string(&m).unwrap(), json);
    }

    #[test]
    fn the_followed_channels_come_from_the_address() {
        assert!(followed_in_query("").is_empty());
        assert_eq!(
            followed_in_query("type=red&x=1&type=a%0Ab&type=blue&type=red"),
            vec!["red".to_owned(), "blue".to_owned()]
        );
        assert_eq!(
            follow_query(&followed_in_query("type=red&type=blue")),
            "type=red&type=blue"
        );
        assert_eq!(follow_query(&[]), "");
    }

    #[test]
    fn colours() {
        assert_eq!(channel_color("red"), "#eb598f");
        assert_eq!(channel_color("yellow"), "#fdcd3b");
        assert_eq!(channel_color("blue"), "#5596f5");
        // Any other name: a hue of its own, the same on every page and build (FNV-1a).
        assert_eq!(channel_color("green"), "hsl(4, 65%, 62%)");
        assert_eq!(channel_color("orders"), "hsl(140, 65%, 62%)");
    }
}
