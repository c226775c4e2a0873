//! The wire format of an event stream, plain and compressed: every frame a stream carries is an
//! [`Event`] (axum's `response/sse.rs` is the model), written here and nowhere else; its
//! compressed forms are [`gzip`]'s.
//!
//! Every field that reaches a frame is either a number (`id:`, `retry:`), a validated channel
//! token (`event:`, see [`app::message::validate_channel`]), a label of ours, or JSON produced by
//! serde_json, which escapes every control character: no input can put a line break where the
//! protocol does not expect one. (The proofs, a property test and a fuzz target, read frames
//! back with an independent parser: `api/events.rs` and `fuzz/`.)

pub mod gzip;

use app::message::{Gap, EVENT_CHANNEL, EVENT_GAP, EVENT_PRESENCE, EVENT_SOURCE};
use bytes::{BufMut, Bytes, BytesMut};
use std::ops::Range;
use std::time::Duration;

/// The heartbeat's bytes: a comment line, ignored by EventSource.
pub const HEARTBEAT: &[u8] = b":\n\n";

/// One frame of an event stream.
#[derive(Clone, Copy, Debug)]
pub enum Event<'a> {
    /// A published message: `id:`, `event:` (its channel), `data:` (the message as JSON).
    Message(Message<'a>),
    /// `ringback.presence`: subscribers per channel, `{"subscribers":{"<channel>":n,...}}`
    /// (the channels are validated tokens: nothing to escape). No `id:`: it never moves a
    /// client's `Last-Event-ID`.
    Presence(&'a [(&'a str, u64)]),
    /// `ringback.gap`: a resume asked for messages the history no longer holds.
    Gap(&'a Gap),
    /// `ringback.source`: whether this server reaches its source (Redis) now. No `id:` either.
    Source { online: bool },
    /// `retry: <ms>`: how long the client's EventSource waits before it reconnects.
    Retry(Duration),
    /// The last words of a stream the server ends or refuses on purpose: its `retry:` (when to
    /// come back) and one `event` (`ringback.refused`, `ringback.end`) whose data says why and
    /// repeats the delay: `{"reason":"<label>","retry_ms":<ms>}`. `reason` is a label of ours
    /// (a token).
    Ending {
        event: &'a str,
        reason: &'a str,
        retry: Duration,
    },
    /// A comment line: ignored by EventSource, keeps proxies and NATs from closing an idle
    /// stream.
    Heartbeat,
}

/// A message as its frame carries it.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    pub id: u64,
    /// When it was published (Unix ms, the message's `time`).
    pub time: u64,
    pub channel: &'a str,
    /// The message's `data`, as JSON.
    pub data_json: &'a [u8],
    /// The publisher's own further members of the message object (`"k":v,...`, serialised by
    /// serde_json, never `id`, `type`, `data` or `time`), or nothing.
    pub extra_json: &'a [u8],
    /// The frame is preceded by a `ringback.channel` event naming the channel, so a browser
    /// subscribes to the new event name before the message is dispatched.
    pub announce: bool,
}

impl Event<'_> {
    /// Appends the frame to `out`; returns where its (last) `data:` value lies in `out`, empty
    /// for a frame without data.
    pub fn write(&self, out: &mut BytesMut) -> Range<usize> {
        match self {
            Event::Message(m) => {
                if m.announce {
                    out.put_slice(b"event: ");
                    out.put_slice(EVENT_CHANNEL.as_bytes());
                    out.put_slice(b"\ndata: {\"type\":\"");
                    out.put_slice(m.channel.as_bytes());
                    out.put_slice(b"\"}\n\n");
                }
                let num = m.id.to_string();
                let num = num.as_bytes();
                out.put_slice(b"id: ");
                out.put_slice(num);
                out.put_slice(b"\n");
                data(out, m.channel, |out| {
                    out.put_slice(b"{\"id\":");
                    out.put_slice(num);
                    out.put_slice(b",\"type\":\"");
                    out.put_slice(m.channel.as_bytes());
                    out.put_slice(b"\",\"data\":");
                    out.put_slice(m.data_json);
                    out.put_slice(b",\"time\":");
                    out.put_slice(m.time.to_string().as_bytes());
                    if !m.extra_json.is_empty() {
                        out.put_slice(b",");
                        out.put_slice(m.extra_json);
                    }
                    out.put_slice(b"}");
                })
            }
            Event::Presence(counts) => data(out, EVENT_PRESENCE, |out| {
                out.put_slice(b"{\"subscribers\":{");
                for (i, (channel, n)) in counts.iter().enumerate() {
                    if i > 0 {
                        out.put_slice(b",");
                    }
                    out.put_slice(b"\"");
                    out.put_slice(channel.as_bytes());
                    out.put_slice(b"\":");
                    out.put_slice(n.to_string().as_bytes());
                }
                out.put_slice(b"}}");
            }),
            Event::Gap(gap) => data(out, EVENT_GAP, |out| {
                // A struct of numbers always serialises; `{}` is the fallback that cannot happen.
                let json = serde_json::to_vec(gap).unwrap_or_else(|_| b"{}".to_vec());
                out.put_slice(&json);
            }),
            Event::Source { online } => data(out, EVENT_SOURCE, |out| {
                out.put_slice(if *online {
                    b"{\"online\":true}"
                } else {
                    b"{\"online\":false}"
                });
            }),
            Event::Retry(retry) => {
                retry_line(out, *retry);
                out.put_slice(b"\n");
                0..0
            }
            Event::Ending {
                event,
                reason,
                retry,
            } => {
                let ms = retry_line(out, *retry);
                data(out, event, |out| {
                    out.put_slice(b"{\"reason\":\"");
                    out.put_slice(reason.as_bytes());
                    out.put_slice(b"\",\"retry_ms\":");
                    out.put_slice(ms.as_bytes());
                    out.put_slice(b"}");
                })
            }
            Event::Heartbeat => {
                out.put_slice(HEARTBEAT);
                0..0
            }
        }
    }

    /// The frame on its own.
    pub fn to_bytes(&self) -> Bytes {
        if let Event::Heartbeat = self {
            return Bytes::from_static(HEARTBEAT);
        }
        let mut out = BytesMut::with_capacity(self.size_hint());
        self.write(&mut out);
        out.freeze()
    }

    /// About how many bytes the frame takes.
    fn size_hint(&self) -> usize {
        match self {
            Event::Message(m) => 64 + 2 * m.channel.len() + m.data_json.len() + m.extra_json.len(),
            _ => 128,
        }
    }
}

/// Several frames as one piece, in order (a stream's first bytes: `retry:`, then a gap, then the
/// source's state).
pub fn frames(events: &[Event]) -> Bytes {
    let mut out = BytesMut::with_capacity(events.iter().map(Event::size_hint).sum());
    for event in events {
        event.write(&mut out);
    }
    out.freeze()
}

impl Message<'_> {
    /// The message's frame, and the slice of it holding the message JSON (for first paints),
    /// without a copy.
    pub fn encode(&self) -> (Bytes, Bytes) {
        let event = Event::Message(*self);
        let mut out = BytesMut::with_capacity(event.size_hint());
        let json = event.write(&mut out);
        let frame = out.freeze();
        let json = frame.slice(json);
        (frame, json)
    }
}

/// `event: <name>` and `data: <value>` then the blank line that dispatches the event; returns
/// where the value lies.
fn data(out: &mut BytesMut, name: &str, value: impl FnOnce(&mut BytesMut)) -> Range<usize> {
    out.put_slice(b"event: ");
    out.put_slice(name.as_bytes());
    out.put_slice(b"\ndata: ");
    let start = out.len();
    value(out);
    let end = out.len();
    out.put_slice(b"\n\n");
    start..end
}

/// `retry: <ms>` and its line break; returns the milliseconds as written.
fn retry_line(out: &mut BytesMut, retry: Duration) -> String {
    let ms = retry.as_millis().to_string();
    out.put_slice(b"retry: ");
    out.put_slice(ms.as_bytes());
    out.put_slice(b"\n");
    ms
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

    pub(crate) fn message<'a>(
        id: u64,
        channel: &'a str,
        data_json: &'a [u8],
        extra_json: &'a [u8],
        announce: bool,
    ) -> Message<'a> {
        Message {
            id,
            time: 8,
            channel,
            data_json,
            extra_json,
            announce,
        }
    }

    /// Each frame of a stream's own, byte for byte; several in one piece, in order.
    #[test]
    fn control_frames_are_written_as_the_protocol_says() {
        let text = |e: Event| String::from_utf8(e.to_bytes().to_vec()).unwrap();
        assert_eq!(
            text(Event::Retry(Duration::from_millis(2500))),
            "retry: 2500\n\n"
        );
        assert_eq!(text(Event::Heartbeat), ":\n\n");
        assert_eq!(
            text(Event::Source { online: false }),
            "event: ringback.source\ndata: {\"online\":false}\n\n"
        );
        let gap = Gap {
            after: 3,
            oldest: Some(9),
        };
        assert_eq!(
            text(Event::Gap(&gap)),
            format!(
                "event: ringback.gap\ndata: {}\n\n",
                serde_json::to_string(&gap).unwrap()
            )
        );
        let ending = Event::Ending {
            event: "ringback.end",
            reason: "draining",
            retry: Duration::from_secs(3),
        };
        assert_eq!(
            text(ending),
            "retry: 3000\nevent: ringback.end\ndata: {\"reason\":\"draining\",\"retry_ms\":3000}\n\n"
        );
        let all = frames(&[
            Event::Retry(Duration::from_secs(1)),
            Event::Source { online: true },
        ]);
        assert_eq!(
            &all[..],
            b"retry: 1000\n\nevent: ringback.source\ndata: {\"online\":true}\n\n"
        );
    }

    /// A message's frame, and the slice of it that is the message's JSON.
    #[test]
    fn a_message_frame_carries_its_json() {
        let (frame, json) = message(42, "blue", b"\"hi\"", b"\"k\":1", false).encode();
        assert_eq!(
            &frame[..],
            b"id: 42\nevent: blue\ndata: {\"id\":42,\"type\":\"blue\",\"data\":\"hi\",\"time\":8,\"k\":1}\n\n"
        );
        assert_eq!(
            &json[..],
            &frame["id: 42\nevent: blue\ndata: ".len()..frame.len() - 2]
        );
    }

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
        let counts = body(&Event::Presence(&[("red", 2), ("a-b_1", 10)]).to_bytes());
        assert_eq!(
            counts.subscribers,
            [("red".to_owned(), 2), ("a-b_1".to_owned(), 10)].into()
        );
        assert!(body(&Event::Presence(&[]).to_bytes())
            .subscribers
            .is_empty());
    }

    /// A channel's announcement is the page's wire type, `app::message::ChannelAnnounce`.
    #[test]
    fn the_announcement_carries_the_wire_type() {
        let (frame, _) = message(7, "team-a", b"1", b"", true).encode();
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
