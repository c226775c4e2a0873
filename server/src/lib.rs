//! The Ringback server: ingest, broadcast list, SSE, publish API and the Leptos page.
//!
//! Follow one message from its publisher to the browser by opening the files in this order.
//!
//! # Layout
//! - [`config`]: flags, environment variables and every default.
//! - [`publish`]: `POST /messages`, the HTTP way in (the in-process bus of the embedded default).
//! - [`auth`]: who may publish and who may read private channels (bearer tokens, JWTs).
//! - [`cookie`]: the one cookie parser (the auth cookie, the asset cookie).
//! - [`limits`]: subscribers per address and in total, publish rate per credential.
//! - [`source`]: where publishers append: the in-process bus or Redis.
//! - [`redis_ingest`]: following Redis: the shared log, Pub/Sub input, reconnection.
//! - [`demo`]: the demo source that keeps a fresh page alive.
//! - [`broadcast`]: the bounded, shared list of encoded frames that every subscriber reads.
//! - [`sse`]: the one frame encoder, and `GET /messages`.
//! - [`server`]: the Router, the accept loop, and notify-then-drain shutdown.
//! - [`listener`]: one port for TLS, h2c and HTTP/1.1, told apart by their first bytes.
//! - [`rewind`]: bytes read to tell a request apart, put back in front of the connection.
//! - [`write_deadline`]: closes a connection whose writes make no progress.
//! - [`tls`]: certificates (given, or self-signed and kept) and the rustls configuration.
//! - [`http1`]: `GET /messages` over HTTP/1.1 without hyper's buffers; the rest to hyper.
//! - [`http2`]: the HTTP/2 driver on the `h2` crate: dispatch, push, 103 Early Hints.
//! - [`h2_budget`]: one budget of unsent bytes for all the streams of an HTTP/2 connection.
//! - [`push`]: which requests are pages and what they bring; `Link` headers and the cookie.
//! - [`assets`]: the cargo-leptos asset manifest, served from memory.
//! - [`jitter`]: randomness that spreads reconnection herds.
//! - [`shutdown`]: the signals (SIGINT, SIGTERM) that start a graceful shutdown.
//! - [`cancel`]: the cancellation token for shutdown and cut-offs, polled without locks.
//! - [`error`]: client errors with their status codes.
//! - [`guard`]: what every request must be: one `Host` (HTTP/1.1), a body that arrives in time.
//! - [`metrics`]: counters and `GET /metrics`.
//! - [`trace`]: request ids and their log spans.
//! - [`client`]: `ringback publish`.
//! - [`pageload`]: `ringback pageload`, the push benchmark.
//! - [`load`]: `ringback bench`, the load tool.
//! - [`attack`]: `ringback bench --attack`, hostile clients beside the load tool's subscribers.

pub mod assets;
pub mod attack;
pub mod auth;
pub mod broadcast;
pub mod cancel;
pub mod client;
pub mod config;
pub mod cookie;
pub mod demo;
pub mod error;
pub mod guard;
pub mod h2_budget;
pub mod http1;
pub mod http2;
pub mod jitter;
pub mod limits;
pub mod listener;
pub mod load;
pub mod metrics;
pub mod pageload;
pub mod publish;
pub mod push;
pub mod redis_ingest;
pub mod rewind;
pub mod server;
pub mod shutdown;
pub mod source;
pub mod sse;
pub mod tls;
pub mod trace;
pub mod write_deadline;
