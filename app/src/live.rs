//! The page's view of the feed: the browser's one stream, as a stream of [`LiveEvent`]s.
//!
//! The stream itself is held by `feed.js` (served as a hashed asset beside the WASM and loaded
//! before it): one EventSource per browser, shared by its tabs through a SharedWorker, or a
//! leader tab elected with the Web Locks API and a BroadcastChannel where there is no
//! SharedWorker, or the tab's own otherwise. It follows the union of the tabs' channels, passes
//! each tab only its own channels' messages after the last id it has seen (so nothing is lost or
//! shown twice when the stream is opened again from an earlier id), reconnects with jittered
//! backoff when the browser gives up, and is back at once when a phone wakes (visible again,
//! online again, restored from the back/forward cache). This module binds its `RingbackFeed`
//! and reads the events.

use crate::message::{
    Gap, Message, SourceState, EVENT_CHANNEL, EVENT_END, EVENT_GAP, EVENT_PRESENCE, EVENT_REFUSED,
    EVENT_SOURCE,
};
use futures::channel::oneshot;
use js_sys::{Array, Object, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

/// What the page needs to know about its feed connection.
#[derive(Clone, Debug, PartialEq)]
pub enum LiveEvent {
    /// The stream is open and delivering.
    Open,
    /// The stream broke; it is being opened again from the last id.
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

#[wasm_bindgen]
extern "C" {
    /// `feed.js`'s `RingbackFeed`.
    type RingbackFeed;

    #[wasm_bindgen(constructor, catch)]
    fn new(
        options: &JsValue,
        on_event: &Closure<dyn FnMut(String, String)>,
    ) -> Result<RingbackFeed, JsValue>;

    #[wasm_bindgen(method)]
    fn close(this: &RingbackFeed);
}

/// Follows the feed from after `last_id` until `cancel` fires, calling `on_event` for each event:
/// only the channels in `followed` if any (the page's `?type=`), every one otherwise; `channels`
/// are the ones the page knows.
pub async fn follow(
    last_id: Option<u64>,
    followed: Vec<String>,
    channels: Vec<String>,
    cancel: oneshot::Receiver<()>,
    mut on_event: impl FnMut(LiveEvent) + 'static,
) {
    let strings = |names: &[String]| names.iter().map(JsValue::from).collect::<Array>();
    let options = Object::new();
    let filter: JsValue = if followed.is_empty() {
        JsValue::NULL
    } else {
        strings(&followed).into()
    };
    let after = last_id.map_or(JsValue::NULL, |id| JsValue::from(id as f64));
    let _ = Reflect::set(&options, &"filter".into(), &filter);
    let _ = Reflect::set(&options, &"channels".into(), &strings(&channels));
    let _ = Reflect::set(&options, &"after".into(), &after);
    let callback = Closure::<dyn FnMut(String, String)>::new(move |kind: String, data: String| {
        if let Some(event) = read(&kind, &data) {
            on_event(event);
        }
    });
    let Ok(feed) = RingbackFeed::new(&options, &callback) else {
        // `feed.js` did not load: nothing to follow.
        return;
    };
    let _ = cancel.await;
    feed.close();
    drop(callback);
}

/// One event of the feed, as the page sees it (`None`: one it does not use).
fn read(kind: &str, data: &str) -> Option<LiveEvent> {
    let json = || js_sys::JSON::parse(data).ok();
    let field = |key: &str| json().and_then(|body| Reflect::get(&body, &key.into()).ok());
    Some(match kind {
        "open" => LiveEvent::Open,
        "error" => LiveEvent::Reconnecting,
        EVENT_CHANNEL => LiveEvent::Channel(field("type")?.as_string()?),
        EVENT_GAP => {
            let body = json()?;
            let number = |key: &str| Reflect::get(&body, &key.into()).ok()?.as_f64();
            LiveEvent::Gap(Gap {
                after: number("after").unwrap_or_default() as u64,
                oldest: number("oldest").map(|n| n as u64),
            })
        }
        EVENT_SOURCE => LiveEvent::Source(SourceState {
            online: field("online")?.as_bool()?,
        }),
        EVENT_PRESENCE => LiveEvent::Presence(field("subscribers")?.dyn_into().ok()?),
        EVENT_REFUSED | EVENT_END => LiveEvent::Ended(field("reason")?.as_string()?),
        _ => LiveEvent::Message(serde_json::from_str(data).ok()?),
    })
}
