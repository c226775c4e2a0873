//! The page: one box per channel, messages arriving live with their subscribers, the channel
//! picker, the compose box, and the connection's state.

use crate::message::{channel_color, follow_query, followed_in_query, Message, Snapshot};
use crate::snapshot::get_snapshot;
use leptos::prelude::*;
use std::collections::VecDeque;

/// The connection state shown in the header; `data-state` carries the same word for tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    Connecting,
    Live,
    Reconnecting,
}

impl ConnState {
    fn word(self) -> &'static str {
        match self {
            ConnState::Connecting => "connecting",
            ConnState::Live => "live",
            ConnState::Reconnecting => "reconnecting",
        }
    }
}

/// One channel's box. The messages live in their own signal so a message on `blue` re-renders
/// only the blue box; so does its subscriber count.
#[derive(Clone)]
struct Channel {
    name: String,
    messages: RwSignal<VecDeque<Message>>,
    /// Subscribers plus one: 0 until the stream says (then nothing is shown). A `u64` signal,
    /// the type the page's clock already is: a signal of another type costs the WASM ~1 KB.
    subscribers: RwSignal<u64>,
}

impl Channel {
    fn new(name: String) -> Self {
        Channel {
            name,
            messages: RwSignal::new(VecDeque::new()),
            subscribers: RwSignal::new(0),
        }
    }
}

/// Loads the snapshot (server-rendered on first paint) and shows the feed.
#[component]
pub fn FeedPage() -> impl IntoView {
    let snapshot = Resource::new(|| (), |_| get_snapshot());
    view! {
        <Suspense fallback=|| view! { <p class="loading">"Loading the feed…"</p> }>
            {move || {
                snapshot
                    .get()
                    .map(|result| match result {
                        Ok(snap) => {
                            view! { <Feed snapshot=snap reload=move || snapshot.refetch()/> }
                                .into_any()
                        }
                        Err(e) => {
                            view! { <p class="error">"The feed is unavailable: " {e.to_string()}</p> }
                                .into_any()
                        }
                    })
            }}
        </Suspense>
    }
}

/// The channels this page follows, from its address (`?type=a&type=b`); empty: all.
fn followed() -> Vec<String> {
    #[cfg(feature = "ssr")]
    let query = use_context::<http::request::Parts>()
        .and_then(|parts| parts.uri.query().map(str::to_owned));
    #[cfg(all(feature = "hydrate", not(feature = "ssr")))]
    let query = web_sys::window()
        .and_then(|w| w.location().search().ok())
        .map(|s| s.trim_start_matches('?').to_owned());
    #[cfg(not(any(feature = "ssr", feature = "hydrate")))]
    let query: Option<String> = None;
    followed_in_query(query.as_deref().unwrap_or_default())
}

/// The page's address with `name` followed or no longer followed.
fn toggled(followed: &[String], name: &str) -> String {
    let mut next: Vec<String> = followed.iter().filter(|c| *c != name).cloned().collect();
    if next.len() == followed.len() {
        next.push(name.to_owned());
    }
    match follow_query(&next) {
        query if query.is_empty() => "/".to_owned(),
        query => format!("/?{query}"),
    }
}

/// The live feed from one snapshot on: renders it, then follows the stream from its `last_id`.
#[component]
fn Feed(snapshot: Snapshot, reload: impl Fn() + Send + Sync + 'static) -> impl IntoView {
    let per_channel = snapshot.per_channel.max(1);
    let followed = followed();
    let follows = |name: &str| followed.is_empty() || followed.iter().any(|f| f == name);
    // The boxes: the followed channels, or every channel the feed knows.
    let shown: Vec<String> = if followed.is_empty() {
        snapshot.channels.clone()
    } else {
        followed.clone()
    };
    let channels: RwSignal<Vec<Channel>> = RwSignal::new(
        shown
            .iter()
            .map(|name| Channel::new(name.clone()))
            .collect(),
    );
    for message in snapshot.messages.iter().filter(|m| follows(&m.channel)) {
        deliver(channels, message.clone(), per_channel);
    }
    // The picker: every channel the feed knows, and the followed ones even if it does not yet.
    let mut known = snapshot.channels.clone();
    known.extend(
        followed
            .iter()
            .filter(|f| !known.contains(f))
            .cloned()
            .collect::<Vec<_>>(),
    );
    let picker = known
        .into_iter()
        .map(|name| {
            let on = followed.contains(&name);
            let href = toggled(&followed, &name);
            let style = format!("--accent: {}", channel_color(&name));
            let label = name.clone();
            view! {
                <a href=href class:on=on data-channel=name style=style>
                    {label}
                </a>
            }
        })
        .collect_view();
    let all = followed.is_empty();
    let state = RwSignal::new(ConnState::Connecting);
    // The clock the messages' ages are read against, ticking once a second on the page.
    let now = RwSignal::new(crate::time::unix_now());
    // Whether the server reaches its source (Redis); only a Redis-backed server says otherwise.
    let source_online = RwSignal::new(true);
    // Why the server last shed or ended the stream, until it is live again.
    let ended = RwSignal::new(String::new());
    let compose_channels = shown.clone();
    let publish_token = snapshot.publish_token;

    #[cfg(feature = "hydrate")]
    {
        use crate::live::{follow, LiveEvent};
        let (cancel_tx, cancel_rx) = futures::channel::oneshot::channel::<()>();
        let cancel_tx = StoredValue::new_local(Some(cancel_tx));
        let names = shown.clone();
        let follow_only = followed.clone();
        let last_id = snapshot.last_id;
        let reload = std::rc::Rc::new(reload);
        leptos::task::spawn_local(follow(
            last_id,
            follow_only,
            names,
            cancel_rx,
            move |event| match event {
                LiveEvent::Open => {
                    ended.set(String::new());
                    state.set(ConnState::Live);
                }
                LiveEvent::Ended(reason) => {
                    ended.set(reason);
                    state.set(ConnState::Reconnecting);
                }
                LiveEvent::Reconnecting => state.set(ConnState::Reconnecting),
                LiveEvent::Channel(name) => ensure_channel(channels, &name),
                LiveEvent::Message(message) => deliver(channels, message, per_channel),
                LiveEvent::Gap(_) => reload(),
                LiveEvent::Source(source) => source_online.set(source.online),
                LiveEvent::Presence(counts) => show_counts(channels, &counts),
            },
        ));
        // The compose box's listeners, once the box is in the document.
        leptos::prelude::set_timeout(crate::publish::attach, std::time::Duration::ZERO);
        let tick = leptos::leptos_dom::helpers::set_interval_with_handle(
            move || now.set(crate::time::unix_now()),
            std::time::Duration::from_secs(1),
        )
        .ok();
        on_cleanup(move || {
            if let Some(tick) = tick {
                tick.clear();
            }
        });
        // A reload renders a new `Feed`; the old one's stream must stop with it.
        on_cleanup(move || {
            if let Some(tx) = cancel_tx.try_update_value(Option::take).flatten() {
                let _ = tx.send(());
            }
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = reload;

    view! {
        <header class="bar">
            <h1>"Ringback"</h1>
            <span class="state" data-state=move || state.get().word()>
                {move || state.get().word()}
            </span>
            <span class="reason" data-reason=move || ended.get()>
                {move || ended_words(&ended.get())}
            </span>
            <Show when=move || !source_online.get()>
                <span class="source" data-source="offline" title="The server cannot reach Redis: \
                    open streams stay up and catch up when it returns">
                    "source offline"
                </span>
            </Show>
        </header>
        <nav class="picker" aria-label="Channels to follow">
            <a href="/" class:on=all data-channel="">"all"</a>
            {picker}
        </nav>
        <Compose channels=compose_channels token=publish_token/>
        <section class="channels">
            <For each=move || channels.get() key=|c| c.name.clone() let:channel>
                <ChannelBox
                    name=channel.name
                    messages=channel.messages
                    subscribers=channel.subscribers
                    now=now
                />
            </For>
        </section>
    }
}

#[component]
fn ChannelBox(
    name: String,
    messages: RwSignal<VecDeque<Message>>,
    now: RwSignal<u64>,
    subscribers: RwSignal<u64>,
) -> impl IntoView {
    let style = format!("--accent: {}", channel_color(&name));
    let title = name.clone();
    view! {
        <article class="channel" data-channel=name style=style>
            // Its subscribers now, an attribute the stylesheet shows ("3 reading"), as the age.
            <h2 data-count=move || {
                subscribers.get().checked_sub(1).map(|n| n.to_string())
            }>{title}</h2>
            <ol class="messages">
                <For each=move || messages.get() key=|m| m.id let:message>
                    // The age is an attribute the stylesheet shows after the text, so the
                    // item's text stays the message's.
                    <li
                        data-id=message.id
                        data-ago=move || message.time.map(|t| crate::time::ago(now.get(), t))
                        title=message.time.map(crate::time::utc)
                    >
                        {message.text()}
                    </li>
                </For>
            </ol>
        </article>
    }
}

/// The compose box: a channel (one of the page's, or a new name), a text, send. With
/// credentials configured it asks for a token, kept in the browser session only; a refusal is
/// shown in words. Markup only, and as HTML text ([`compose_html`]): its behaviour is plain DOM
/// listeners (`publish::attach`). Every element and attribute the framework hydrates costs the
/// WASM code of its own; these cost none (BENCHMARKS.md, the WASM's size).
#[component]
fn Compose(channels: Vec<String>, token: bool) -> impl IntoView {
    view! { <div class="compose-box" inner_html=compose_html(&channels, token)></div> }
}

/// The compose box's form. Channel names are validated tokens: nothing in them to escape.
fn compose_html(channels: &[String], token: bool) -> String {
    let first = channels.first().map_or("", String::as_str);
    let options: String = channels
        .iter()
        .map(|c| format!(r#"<option value="{c}"></option>"#))
        .collect();
    let token = if token {
        r#"<input name="token" type="password" autocomplete="off" placeholder="Publish token" aria-label="Publish token">"#
    } else {
        ""
    };
    format!(
        r#"<form class="compose" aria-label="Publish a message"><input name="channel" list="ringback-channels" value="{first}" required maxlength="64" pattern="[A-Za-z0-9_\-]+" aria-label="Channel"><datalist id="ringback-channels">{options}</datalist><input name="text" required autocomplete="off" placeholder="Message" aria-label="Message">{token}<button type="submit">Send</button><p class="status" role="status"></p></form>"#
    )
}

/// What the header says of a stream the server shed or ended (`ringback.refused`,
/// `ringback.end`): its reason in words; nothing for a routine end.
fn ended_words(reason: &str) -> &'static str {
    match reason {
        "subscribers" => "server full; retrying",
        "subscribers_per_ip" => "too many streams from this address; retrying",
        "draining" => "server restarting; reconnecting",
        "token_expired" => "session expired; reconnecting",
        _ => "",
    }
}

/// Shows each box's subscribers across the feed: `counts` is the `ringback.presence` body's
/// `subscribers` object (a channel it leaves out has none).
#[cfg(feature = "hydrate")]
fn show_counts(channels: RwSignal<Vec<Channel>>, counts: &js_sys::Object) {
    channels.with_untracked(|cs| {
        for c in cs {
            let n = js_sys::Reflect::get(counts, &c.name.as_str().into())
                .ok()
                .and_then(|n| n.as_f64())
                .map_or(0, |n| n as u64);
            if c.subscribers.get_untracked() != n + 1 {
                c.subscribers.set(n + 1);
            }
        }
    });
}

/// Adds a box for `name` if the page does not have one yet.
fn ensure_channel(channels: RwSignal<Vec<Channel>>, name: &str) {
    if channels.with_untracked(|cs| cs.iter().all(|c| c.name != name)) {
        channels.update(|cs| {
            cs.push(Channel::new(name.to_owned()));
        });
    }
}

/// Appends `message` to its box, dropping the oldest beyond `per_channel` so the DOM stays
/// bounded however fast the feed runs.
fn deliver(channels: RwSignal<Vec<Channel>>, message: Message, per_channel: usize) {
    ensure_channel(channels, &message.channel);
    let target = channels.with_untracked(|cs| {
        cs.iter()
            .find(|c| c.name == message.channel)
            .map(|c| c.messages)
    });
    if let Some(messages) = target {
        messages.update(|ms| {
            if ms.back().is_some_and(|last| last.id >= message.id) {
                return; // already shown: a resume never duplicates a message on screen
            }
            ms.push_back(message);
            while ms.len() > per_channel {
                ms.pop_front();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compose_box_offers_the_pages_channels_and_asks_for_a_token_only_when_needed() {
        let channels = ["red".to_owned(), "team-a".to_owned()];
        let open = compose_html(&channels, false);
        assert!(open.contains(r#"name="channel" list="ringback-channels" value="red""#));
        assert!(open.contains(r#"<option value="team-a"></option>"#));
        assert!(!open.contains(r#"name="token""#));
        assert!(compose_html(&channels, true).contains(r#"name="token" type="password""#));
    }
}
