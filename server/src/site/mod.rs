//! The site: the cargo-leptos asset manifest, served from memory, and the push policy (which
//! requests are pages, what they bring: push, `103 Early Hints`, `Link`).

pub mod assets;
pub mod push;
