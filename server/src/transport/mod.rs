//! The transport: accepting connections, telling their protocol apart, TLS, and the HTTP/1.1
//! and HTTP/2 drivers that carry requests to the Router and responses back, each bounded in
//! time and memory whatever the peer does. A driver sees the Router only as a service: imports
//! `runtime`, `encoding`, `config`, `metrics` and `site` (the push policy), never `api` or `feed`.

pub mod accept;
mod chunked;
mod date;
pub mod h2_budget;
pub mod http1;
pub mod http2;
mod hyper_conn;
pub mod keep_alive;
pub mod rewind;
pub mod shared_tcp;
pub mod sniff;
pub mod tls;
pub mod write_deadline;

use crate::config::TransportArgs;
use crate::metrics::Metrics;
use crate::runtime::cancel::CancelToken;
use crate::site::push::PushPolicy;
use axum::Router;
use std::sync::Arc;

/// What a connection's driver needs, and nothing more (as hyper's `serve_connection(io,
/// service)`): cloned into each connection's task.
#[derive(Clone)]
pub struct Transport {
    /// The one Router, every protocol's requests go to it.
    pub router: Router,
    /// TLS for connections that start with a ClientHello; `None` serves cleartext only.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Which requests are pages and what they bring (push, `103 Early Hints`).
    pub push: Arc<PushPolicy>,
    /// The event stream's path (`GET` of it is HTTP/1.1's fast path); the API names it.
    pub events_path: &'static str,
    /// Connection limits and deadlines, and the HTTP/2 limits.
    pub settings: Arc<TransportArgs>,
    /// Cancelled once at shutdown: connections drain.
    pub shutdown: CancelToken,
    /// Asks idle kept-alive connections to close when the server needs room.
    pub idle: keep_alive::IdleConnections,
    /// The log of HTTP/2 connections closed at their send budget: one line and a count per
    /// interval, however many clients stop reading at once.
    pub budget_cuts: Arc<crate::runtime::log_summary::LogSummary>,
    pub metrics: Arc<Metrics>,
}
