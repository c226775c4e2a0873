//! The browser's one connection to the feed: an EventSource (through gloo-net) turned into a
//! stream of [`LiveEvent`]s.
//!
//! EventSource dispatches a named event only to listeners registered for that name, and there is
//! no wildcard. The wrapper therefore listens to every channel the snapshot named, and to the
//! feed's `ringback.channel` event, which the server sends before the first message on a new
//! channel; it subscribes to the new name before the next event is dispatched, so nothing on the
//! new channel is missed.

use crate::message::{
    Gap, Message, SourceState, EVENT_CHANNEL, EVENT_END, EVENT_GAP, EVENT_PRESENCE, EVENT_REFUSED,
    EVENT_SOURCE,
};
use futures::channel::oneshot;
use futures::stream::{SelectAll, StreamExt};
use futures::FutureExt;
use gloo_net::eventsource::futures::{EventSource, EventSourceSubscription};
use gloo_net::eventsource::State;
use wasm_bindgen::JsCast;

/// The first delay before re-creating an EventSource that the browser gave up on.
const RECONNECT_MIN_MS: u32 = 500;
/// The longest such delay.
const RECONNECT_MAX_MS: u32 = 10_000;

/// What the page needs to know about its feed connection.
#[derive(Clone, Debug, PartialEq)]
pub enum LiveEvent {
    /// The stream is open and delivering.
    Open,
    /// The stream broke; the browser (or this wrapper) is reconnecting with `Last-Event-ID`.
    Reconnecting,
    /// A new channel exists on the feed.
    Channel(String),
    Message(Message),
    /// Messages were lost between the resume point and the oldest the feed holds.
    Gap(Gap),
    /// Whether the server reaches its message source (Redis) now.
    Source(SourceState),
    /// Subscribers per channel across the feed, all at once: the `subscribers` object of a
    /// [`crate::message::Presence`].
    Presence(js_sys::Object),
    /// The server shed the stream or ended it on purpose, and why (`ringback.refused`,
    /// `ringback.end`: `subscribers`, `draining`, `token_expired`, …); the browser comes back
    /// after the `retry:` it was given.
    Ended(String),
}

/// Follows the feed from after `last_id` until `cancel` fires, calling `on_event` for each event:
/// only the channels in `followed` if any (the page's `?type=`), every one otherwise.
///
/// The browser reconnects by itself after a network error or a stream the server ended (a shed
/// one included), sending `Last-Event-ID`, after the server's `retry:`. When it gives up (an HTTP
/// error closes the EventSource for good) this loop creates a new one from the last id it saw,
/// with exponential backoff, jittered so the pages of one outage do not retry in step.
pub async fn follow(
    mut last_id: Option<u64>,
    followed: Vec<String>,
    channels: Vec<String>,
    mut cancel: oneshot::Receiver<()>,
    mut on_event: impl FnMut(LiveEvent),
) {
    let mut known = channels;
    let mut backoff = RECONNECT_MIN_MS;
    loop {
        let mut query = crate::message::follow_query(&followed);
        if let Some(id) = last_id {
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str(&format!("lastEventId={id}"));
        }
        let url = if query.is_empty() {
            "/messages".to_owned()
        } else {
            format!("/messages?{query}")
        };
        let Ok(mut es) = EventSource::new(&url) else {
            return;
        };
        let mut streams: SelectAll<EventSourceSubscription> = SelectAll::new();
        for name in [
            "open",
            "error",
            EVENT_CHANNEL,
            EVENT_GAP,
            EVENT_SOURCE,
            EVENT_PRESENCE,
            EVENT_REFUSED,
            EVENT_END,
        ]
        .into_iter()
        .map(str::to_owned)
        .chain(known.iter().cloned())
        {
            if let Ok(sub) = es.subscribe(name) {
                streams.push(sub);
            }
        }
        loop {
            let next = futures::select_biased! {
                _ = (&mut cancel).fuse() => return,
                next = streams.next() => next,
            };
            let Some(Ok((name, event))) = next else {
                // gloo ends or errors the subscriptions once the EventSource is closed.
                break;
            };
            match name.as_str() {
                "open" => {
                    backoff = RECONNECT_MIN_MS;
                    on_event(LiveEvent::Open);
                }
                "error" => {
                    on_event(LiveEvent::Reconnecting);
                    if es.state() == State::Closed {
                        break;
                    }
                }
                EVENT_CHANNEL => {
                    if let Some(channel) =
                        field(json(&event).as_ref(), "type").and_then(|c| c.as_string())
                    {
                        if !known.contains(&channel) {
                            if let Ok(sub) = es.subscribe(channel.clone()) {
                                streams.push(sub);
                            }
                            known.push(channel.clone());
                            on_event(LiveEvent::Channel(channel));
                        }
                    }
                }
                EVENT_GAP => {
                    let body = json(&event);
                    let number = |key| field(body.as_ref(), key).and_then(|n| n.as_f64());
                    on_event(LiveEvent::Gap(Gap {
                        after: number("after").unwrap_or_default() as u64,
                        oldest: number("oldest").map(|n| n as u64),
                    }));
                }
                EVENT_SOURCE => {
                    if let Some(online) =
                        field(json(&event).as_ref(), "online").and_then(|o| o.as_bool())
                    {
                        on_event(LiveEvent::Source(SourceState { online }));
                    }
                }
                EVENT_REFUSED | EVENT_END => {
                    if let Some(reason) =
                        field(json(&event).as_ref(), "reason").and_then(|r| r.as_string())
                    {
                        on_event(LiveEvent::Ended(reason));
                    }
                }
                EVENT_PRESENCE => {
                    let counts =
                        field(json(&event).as_ref(), "subscribers").and_then(|c| c.dyn_into().ok());
                    if let Some(counts) = counts {
                        on_event(LiveEvent::Presence(counts));
                    }
                }
                _ => {
                    if let Some(message) = parse::<Message>(&event) {
                        last_id = Some(message.id);
                        on_event(LiveEvent::Message(message));
                    }
                }
            }
        }
        drop(streams);
        es.close();
        futures::select_biased! {
            _ = (&mut cancel).fuse() => return,
            _ = sleep_ms(jittered(backoff)).fuse() => {}
        }
        backoff = (backoff * 2).min(RECONNECT_MAX_MS);
    }
}

/// A message: the one event parsed by serde (the page keeps it, as its snapshot does).
fn parse<T: serde::de::DeserializeOwned>(event: &web_sys::MessageEvent) -> Option<T> {
    let text = event.data().as_string()?;
    serde_json::from_str(&text).ok()
}

/// A control event's JSON (`ringback.*`), read by the browser's own `JSON`: each type parsed
/// by serde costs the WASM a deserializer of its own, and these are a field or two.
fn json(event: &web_sys::MessageEvent) -> Option<wasm_bindgen::JsValue> {
    js_sys::JSON::parse(&event.data().as_string()?).ok()
}

/// One field of a control event's JSON.
fn field(body: Option<&wasm_bindgen::JsValue>, key: &str) -> Option<wasm_bindgen::JsValue> {
    js_sys::Reflect::get(body?, &key.into()).ok()
}

/// A delay drawn between half of `ms` and `ms`.
fn jittered(ms: u32) -> u32 {
    (f64::from(ms) * (0.5 + 0.5 * js_sys::Math::random())) as u32
}

async fn sleep_ms(ms: u32) {
    let (tx, rx) = oneshot::channel::<()>();
    leptos::prelude::set_timeout(
        move || {
            let _ = tx.send(());
        },
        std::time::Duration::from_millis(u64::from(ms)),
    );
    let _ = rx.await;
}
