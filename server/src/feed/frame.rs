//! The one frame encoder: a message as a server-sent event.
//!
//! Frames are encoded here and nowhere else. Every field that reaches a frame is either a number
//! (`id:`), a validated channel token (`event:`, see [`app::message::validate_channel`]) or JSON
//! produced by serde_json, which escapes every control character: no input can put a line break
//! where the protocol does not expect one. (The proofs, a property test and a fuzz target, read
//! frames back with an independent parser: `api/events.rs` and `fuzz/`.)

use app::message::{Gap, EVENT_CHANNEL, EVENT_GAP, EVENT_PRESENCE, EVENT_SOURCE};
use bytes::{BufMut, Bytes, BytesMut};
use std::time::Duration;

/// A comment line: ignored by EventSource, keeps proxies and NATs from closing an idle stream.
pub const HEARTBEAT: &[u8] = b":\n\n";

/// `retry: <ms>`: how long the client's EventSource waits before it reconnects.
pub fn encode_retry(retry: Duration) -> String {
    format!("retry: {}\n\n", retry.as_millis())
}

/// The `ringback.gap` event: a resume asked for messages the history no longer holds.
pub fn encode_gap(gap: &Gap) -> String {
    let json = serde_json::to_string(gap).unwrap_or_else(|_| "{}".to_owned());
    format!("event: {EVENT_GAP}\ndata: {json}\n\n")
}

/// The `ringback.source` event: whether this server reaches its source (Redis) now. It carries
/// no `id:`, so it never moves the client's `Last-Event-ID`.
pub fn encode_source(online: bool) -> String {
    format!("event: {EVENT_SOURCE}\ndata: {{\"online\":{online}}}\n\n")
}

/// The last words of a stream the server ends or refuses on purpose: its `retry:` (when to come
/// back) and one `event` (`ringback.refused`, `ringback.end`) whose data says why and repeats the
/// delay: `{"reason":"<label>","retry_ms":<ms>}`. `reason` is a label of ours (a token).
pub fn encode_ending(event: &str, reason: &str, retry: Duration) -> Bytes {
    let ms = retry.as_millis();
    Bytes::from(format!(
        "retry: {ms}\nevent: {event}\ndata: {{\"reason\":\"{reason}\",\"retry_ms\":{ms}}}\n\n"
    ))
}

/// Encodes one message's frame; returns it and the slice of it holding the message JSON.
///
/// `time` is when it was published (Unix ms, the message's `time`); `extra_json` holds the
/// publisher's own further members of the message object (`"k":v,...`, serialised by
/// serde_json, never `id`, `type`, `data` or `time`), or nothing.
///
/// With `announce`, the frame is preceded by a `ringback.channel` event naming the channel, so a
/// browser subscribes to the new event name before the message is dispatched.
pub fn encode_message(
    id: u64,
    time: u64,
    channel: &str,
    data_json: &[u8],
    extra_json: &[u8],
    announce: bool,
) -> (Bytes, Bytes) {
    let mut buf =
        BytesMut::with_capacity(64 + 2 * channel.len() + data_json.len() + extra_json.len());
    if announce {
        buf.put_slice(b"event: ");
        buf.put_slice(EVENT_CHANNEL.as_bytes());
        buf.put_slice(b"\ndata: {\"type\":\"");
        buf.put_slice(channel.as_bytes());
        buf.put_slice(b"\"}\n\n");
    }
    let num = id.to_string();
    buf.put_slice(b"id: ");
    buf.put_slice(num.as_bytes());
    buf.put_slice(b"\nevent: ");
    buf.put_slice(channel.as_bytes());
    buf.put_slice(b"\ndata: ");
    let json_start = buf.len();
    buf.put_slice(b"{\"id\":");
    buf.put_slice(num.as_bytes());
    buf.put_slice(b",\"type\":\"");
    buf.put_slice(channel.as_bytes());
    buf.put_slice(b"\",\"data\":");
    buf.put_slice(data_json);
    buf.put_slice(b",\"time\":");
    buf.put_slice(time.to_string().as_bytes());
    if !extra_json.is_empty() {
        buf.put_slice(b",");
        buf.put_slice(extra_json);
    }
    buf.put_slice(b"}");
    let json_end = buf.len();
    buf.put_slice(b"\n\n");
    let frame = buf.freeze();
    let json = frame.slice(json_start..json_end);
    (frame, json)
}

/// Encodes the `ringback.presence` event: `counts` as `{"subscribers":{"<channel>":n,...}}`
/// (the channels are validated tokens: nothing to escape). No `id:`: it never moves a client's
/// `Last-Event-ID`.
pub fn encode_presence<'a>(counts: impl IntoIterator<Item = (&'a str, u64)>) -> Bytes {
    let mut buf = BytesMut::with_capacity(128);
    buf.put_slice(b"event: ");
    buf.put_slice(EVENT_PRESENCE.as_bytes());
    buf.put_slice(b"\ndata: {\"subscribers\":{");
    for (i, (channel, n)) in counts.into_iter().enumerate() {
        if i > 0 {
            buf.put_slice(b",");
        }
        buf.put_slice(b"\"");
        buf.put_slice(channel.as_bytes());
        buf.put_slice(b"\":");
        buf.put_slice(n.to_string().as_bytes());
    }
    buf.put_slice(b"}}\n\n");
    buf.freeze()
}

/// The members of a JSON object without its braces (`"k":v,...`, or nothing for an empty one):
/// the form [`encode_message`] takes a publisher's further fields in.
pub fn object_members(fields: &serde_json::Map<String, serde_json::Value>) -> Vec<u8> {
    if fields.is_empty() {
        return Vec::new();
    }
    // A map of strings and values always serialises; `{}` is the fallback that cannot happen.
    let all = serde_json::to_vec(fields).unwrap_or_else(|_| b"{}".to_vec());
    all[1..all.len() - 1].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The presence event's data is the page's wire type, `app::message::Presence`.
    #[test]
    fn the_presence_event_carries_the_wire_type() {
        let body = |frame: &Bytes| {
            let text = std::str::from_utf8(frame).unwrap().to_owned();
            let data = text
                .strip_prefix("event: ringback.presence\ndata: ")
                .and_then(|t| t.strip_suffix("\n\n"))
                .unwrap()
                .to_owned();
            serde_json::from_str::<app::message::Presence>(&data).unwrap()
        };
        let counts = body(&encode_presence([("red", 2), ("a-b_1", 10)]));
        assert_eq!(
            counts.subscribers,
            [("red".to_owned(), 2), ("a-b_1".to_owned(), 10)].into()
        );
        assert!(body(&encode_presence([])).subscribers.is_empty());
    }

    /// A channel's announcement is the page's wire type, `app::message::ChannelAnnounce`.
    #[test]
    fn the_announcement_carries_the_wire_type() {
        let (frame, _) = encode_message(7, 8, "team-a", b"1", b"", true);
        let text = std::str::from_utf8(&frame).unwrap();
        let data = text
            .strip_prefix("event: ringback.channel\ndata: ")
            .and_then(|t| t.split_once("\n\n"))
            .unwrap()
            .0;
        let announce: app::message::ChannelAnnounce = serde_json::from_str(data).unwrap();
        assert_eq!(announce.channel, "team-a");
    }
}
