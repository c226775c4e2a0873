//! Ringback, the server: ingest, the broadcast list, the API, the page, and the transport.
//!
//! # Layout
//! Folders are layers; a module imports only from the layers before it (a test,
//! `tests/it/layers.rs`, reads every `use crate::` line to hold the rule):
//!
//! ```text
//! config, metrics        settings and counters; import nothing from the crate
//! encoding/              SHA-256 and hex, cookie values; imports nothing from the crate
//! runtime/               cancellation, jitter, signals, process stats, locks,
//!                        what a connection tells its requests, log lines that do not amplify
//! feed/                  the broadcast list (`broadcast/`: history, channel table, registry,
//!                        subscription, presence counts), the frame encoder, channels, the
//!                        source (in-process bus or Redis), idempotency keys, presence, the demo
//! api/     site/         the Router's handlers (events, publish, channels, metrics, health; auth,
//!                        limits, guard, refusals) | the asset manifest, push policy, first paint
//! transport/             accept loop, listener, TLS, HTTP/1.1 and HTTP/2 drivers; a driver
//!                        gets a `Transport` (the Router as a service), never the API
//! server                 the composition root: builds the parts and wires them
//! main.rs                the binary; also `ringback publish` (`client`)
//! ```
//!
//! Follow one message: `api/publish.rs` (or `feed/redis/`) → `feed/source.rs` →
//! `feed/broadcast/` (encoded once by `feed/frame/`) → `api/events.rs` → the drivers in
//! `transport/`.

mod api;
pub mod client;
pub mod config;
mod encoding;
mod feed;
pub mod metrics;
mod runtime;
pub mod server;
mod site;
mod transport;

// What the binaries, tests, benches and fuzz targets reach of the layers, and nothing more.
pub use api::events::{parse_last_event_id, SubscribeParams};
pub use api::publish::PublishRequest;
pub use api::refusal::Reason;
pub use feed::broadcast::{BroadcastList, Start};
pub use feed::demo::message as demo_message;
pub use feed::frame::{object_members, Event, Message};
pub use feed::redis::{normalise, split_message};
pub use runtime::cancel::CancelToken;
pub use runtime::process::{process_stats, raise_open_files_limit, ProcessStats};
pub use runtime::shutdown::signal;
pub use site::assets::{AssetManifest, ManifestError};
pub use transport::tls::{dev_ca_path, dev_cert_paths, server_config};
