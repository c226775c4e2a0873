//! What the fuzz targets share: an SSE parser written from the WHATWG algorithm, independent of
//! the server's encoder and of its test helpers, the round-trip check every target ends in, and
//! the decoder check itself, which `server/tests/it/fuzz_corpus.rs` also runs over the kept corpus
//! on stable Rust (this file is included there by path).

use ringback::config::FeedLimits;
use ringback::{BroadcastList, Start};
use std::sync::Arc;

/// One dispatched event: its `id` (the last-event-id buffer after it), `event` and `data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

/// Parses a stream as EventSource does: lines end in CR, LF or CRLF; a blank line dispatches.
pub fn parse(stream: &str) -> Vec<Event> {
    let mut events = Vec::new();
    let (mut id, mut event, mut data): (Option<String>, String, Option<String>) =
        (None, String::new(), None);
    let mut rest = stream;
    while !rest.is_empty() {
        let end = rest.find(['\r', '\n']).unwrap_or(rest.len());
        let line = &rest[..end];
        rest = &rest[end..];
        if let Some(r) = rest.strip_prefix("\r\n") {
            rest = r;
        } else if !rest.is_empty() {
            rest = &rest[1..];
        }
        if line.is_empty() {
            if let Some(d) = data.take() {
                events.push(Event {
                    id: id.clone(),
                    event: if event.is_empty() {
                        "message".into()
                    } else {
                        event.clone()
                    },
                    data: d,
                });
            }
            event.clear();
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (line, ""),
        };
        match field {
            "event" => event = value.to_owned(),
            "data" => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_owned()),
            },
            "id" if !value.contains('\0') => id = Some(value.to_owned()),
            _ => {}
        }
    }
    events
}

/// Checks that `frame` is exactly one message event (optionally preceded by a channel
/// announcement) carrying `id`, `channel` and a JSON message whose `data` is `data`.
pub fn check_frame(frame: &[u8], id: u64, channel: &str, data: &serde_json::Value) {
    let text = std::str::from_utf8(frame).expect("frames are UTF-8");
    assert!(text.ends_with("\n\n"), "a frame ends with a blank line");
    let events = parse(text);
    let message = match events.as_slice() {
        [m] => m,
        [announce, m] => {
            assert_eq!(announce.event, app::message::EVENT_CHANNEL);
            assert_eq!(announce.id, None, "an announcement carries no id");
            m
        }
        other => panic!("a frame is one message: {other:?}"),
    };
    assert_eq!(message.id.as_deref(), Some(id.to_string().as_str()));
    assert_eq!(message.event, channel);
    let parsed: app::message::Message =
        serde_json::from_str(&message.data).expect("data is the message JSON");
    assert_eq!(parsed.id, id);
    assert_eq!(parsed.channel, channel);
    assert_eq!(&parsed.data, data);
}

const MAX: usize = 64 * 1024;

fn list() -> BroadcastList {
    let limits = FeedLimits {
        history: 4,
        history_bytes: 1 << 20,
        max_message_bytes: MAX,
        max_channels: 16,
        channel_idle: std::time::Duration::ZERO,
    };
    BroadcastList::new(limits, 1, &[], Arc::default())
}

fn last_frame(list: &BroadcastList) -> bytes::Bytes {
    let cut = ringback::CancelToken::new();
    let (mut sub, _) = list.subscribe(Start::After(0), None, None, cut);
    sub.try_next(usize::MAX)
        .expect("not lagging")
        .expect("one frame")
}

/// The message decoders, fed any bytes: a Redis Pub/Sub payload (`normalise`, then the split
/// of the log entry that the broadcast list appends) and a `POST /messages` body. Whatever is
/// accepted becomes one well-formed frame with the same channel and data; the rest is refused
/// without a panic.
pub fn message_decoder(payload: &[u8]) {
    if let Ok((channel, message)) = ringback::normalise(payload, MAX) {
        let (split_channel, data_json, extra_json) =
            ringback::split_message(message.as_bytes()).expect("normalised splits");
        assert_eq!(split_channel, channel);
        let data: serde_json::Value = serde_json::from_slice(&data_json).expect("data is JSON");
        let list = list();
        if list.append(7000, &channel, &data_json, &extra_json).is_ok() {
            check_frame(&last_frame(&list), 7000, &channel, &data);
        }
    }
    if let Ok(request) = serde_json::from_slice::<ringback::PublishRequest>(payload) {
        let list = list();
        if let Ok(id) = list.publish(&request.channel, &request.data) {
            check_frame(&last_frame(&list), id, &request.channel, &request.data);
        }
    }
}
