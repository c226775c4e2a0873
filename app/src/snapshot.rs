//! The first paint: a server function that returns the broadcast list's latest messages.
//!
//! During server rendering the resource that calls it runs in-process and its result is
//! serialised into the page; the WASM reads it back while hydrating, so the snapshot is fetched
//! once per page load. After a gap the client calls it again over HTTP (`POST /api/snapshot`).

use crate::message::Snapshot;
use leptos::prelude::*;

/// How the server hands the feed to the app without the app depending on the server crate: the
/// server puts one of these in the Leptos context of every render and server-function call.
#[cfg(feature = "ssr")]
#[derive(Clone)]
pub struct SnapshotSource(pub std::sync::Arc<dyn Fn() -> Snapshot + Send + Sync>);

/// The latest messages of every channel, and the id the live stream continues after.
#[server(endpoint = "snapshot")]
pub async fn get_snapshot() -> Result<Snapshot, ServerFnError> {
    let source = use_context::<SnapshotSource>()
        .ok_or_else(|| ServerFnError::new("the feed is not available to this request"))?;
    Ok((source.0)())
}
