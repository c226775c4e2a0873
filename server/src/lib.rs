//! Ringback, the server: ingest, the broadcast list, the API, the page, and the transport.
//!
//! # Layout
//! Folders are layers; a module imports only from the layers before it (a test,
//! `tests/it/layers.rs`, reads every `use crate::` line to hold the rule):
//!
//! ```text
//! config, metrics        settings and counters; import nothing from the crate
//! runtime/               cancellation, jitter, signals, process stats, digests, cookies,
//!                        what a connection tells its requests
//! feed/                  the broadcast list, the frame encoder, channels, the source
//!                        (in-process bus or Redis), the demo
//! api/     site/         the Router's handlers (events, publish, metrics, health; auth,
//!                        limits, guard, errors) | the asset manifest and push policy
//! transport/             accept loop, listener, TLS, HTTP/1.1 and HTTP/2 drivers; a driver
//!                        gets a `Transport` (the Router as a service), never the API
//! server                 the composition root: builds the parts and wires them
//! main.rs                the binary; also `ringback publish` (`client`)
//! ```
//!
//! Follow one message: `api/publish.rs` (or `feed/redis_ingest.rs`) → `feed/source.rs` →
//! `feed/broadcast.rs` (encoded once by `feed/frame.rs`) → `api/events.rs` → the drivers in
//! `transport/`.

pub mod api;
pub mod client;
pub mod config;
pub mod feed;
pub mod metrics;
pub mod runtime;
pub mod server;
pub mod site;
pub mod transport;
