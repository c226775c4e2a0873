//! The Ringback server: ingest, broadcast list, SSE, publish API and the Leptos page.
//!
//! Follow one message from its publisher to the browser by opening the files in this order.
//!
//! # Layout
//! - [`config`]: flags, environment variables and every default.
//! - [`publish`]: `POST /messages`, the HTTP way in (the in-process bus of the embedded default).
//! - [`demo`]: the demo source that keeps a fresh page alive.
//! - [`broadcast`]: the bounded, shared list of encoded frames that every subscriber reads.
//! - [`sse`]: the one frame encoder, and `GET /messages`.
//! - [`server`]: the Router, the listener, and notify-then-drain shutdown.
//! - [`shutdown`]: SIGINT/SIGTERM.
//! - [`error`]: client errors with their status codes.
//! - [`metrics`]: counters and `GET /metrics`.
//! - [`client`]: `ringback publish`.

pub mod broadcast;
pub mod client;
pub mod config;
pub mod demo;
pub mod error;
pub mod metrics;
pub mod publish;
pub mod server;
pub mod shutdown;
pub mod sse;
