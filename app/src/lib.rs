//! Ringback's user interface and the types the server and the browser share.
//!
//! # Layout
//! - [`message`]: the wire types (a message, the snapshot, control events) and their validation.
//! - [`snapshot`]: the server function that renders the feed's latest messages on first paint.
//! - [`live`]: the page's view of the browser's one stream, held by `js/feed.js` (hydrate only).
//! - [`components`]: the page: one box per channel with its subscribers, the channel picker,
//!   the compose box, connection state.
//! - [`publish`]: the compose box's `POST /messages`, and refusals in words.
//! - [`time`]: when a message was published, in words ("12 s ago") and exactly.
//!
//! The `ssr` feature builds the server side (used by the `server` crate); `hydrate` builds the
//! browser side (used by `frontend`). Server-only crates never reach the WASM.

pub mod components;
#[cfg(feature = "hydrate")]
pub mod live;
pub mod message;
pub mod publish;
pub mod snapshot;
pub mod time;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, HashedStylesheet, MetaTags, Title};

/// `js/feed.js`: the browser's one stream, shared by its tabs (see `live`). The server serves
/// it as a hashed asset and gives the page its path ([`FeedScript`]).
#[cfg(feature = "ssr")]
pub const FEED_SCRIPT: &str = include_str!("../js/feed.js");

/// Where the page loads the feed script from: the context the server renders the page with.
#[derive(Clone, Debug)]
pub struct FeedScript(pub String);

/// The HTML document around the app, rendered on the server only. The feed script runs before
/// the WASM (both deferred, in document order), which follows the feed through it.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    let feed = use_context::<FeedScript>().map(|s| view! { <script defer src=s.0></script> });
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <AutoReload options=options.clone()/>
                <HashedStylesheet options=options.clone() id="leptos"/>
                {feed}
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Title text="Ringback"/>
        <main>
            <components::FeedPage/>
        </main>
    }
}
