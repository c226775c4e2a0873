//! The site: the cargo-leptos asset manifest, served from memory, the push policy (which
//! requests are pages, what they bring: push, `103 Early Hints`, `Link`), and the page's
//! first paint built from the feed.

pub mod assets;
pub mod push;
pub mod snapshot;
