//! The HTTP/2 driver: the `h2` crate in front of the axum Router, with server push and
//! `103 Early Hints`.
//!
//! Every stream becomes an ordinary `http::Request` dispatched to the same Router as HTTP/1.1
//! (with `oneshot`), and its response is written back with flow control. Around a page request
//! the driver applies the push policy (`site/push.rs`): when the client allows push and does not
//! hold the assets yet, a `PUSH_PROMISE` per asset goes out *before* the page's HEADERS (a
//! promise after the page's END_STREAM makes browsers kill the connection), each pushed
//! response produced by the Router exactly as a GET would be; when the client refuses push
//! (`SETTINGS_ENABLE_PUSH=0`, every current browser), a `103` with the `Link` headers goes out
//! before the page is rendered.
//!
//! Traps this module handles, each learnt the hard way: promises need absolute URIs (scheme and
//! authority) or clients reset them; request bodies must release flow-control capacity or
//! uploads stall; `Connection::accept()` drives all I/O, so its loop never blocks and handlers
//! run in their own tasks (but event streams, once their head is out, are written by the
//! connection's task: one wake-up per message per connection, not per stream); connection-
//! specific headers are stripped and `Date` added here; a client's RST_STREAM is watched with
//! `poll_reset`, so even an idle SSE handler ends at once.
//!
//! The parts, split as hyper splits its own: this file is the connection (handshake, the
//! accept loop, idle and budget and shutdown; hyper's `proto/h2/server.rs`); [`builder`] the
//! limits applied to h2 and to hyper (its `server/conn/http2.rs`); [`stream`] one request
//! through the Router, with push or hints; [`body`] a response written with flow control and a
//! request body read (its `proto/h2/mod.rs`); [`headers`] the connection-specific headers
//! HTTP/2 forbids; [`handover`] event streams passed to the connection's task.

mod body;
mod builder;
mod handover;
mod headers;
mod stream;

use crate::runtime::connection::ClientAddr;
use crate::transport::h2_budget::{Metered, SendBudget};
use crate::transport::Transport;
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use handover::{CloseOnDrop, Handover};
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// What every stream of one connection shares.
struct Conn {
    transport: Transport,
    scheme: Scheme,
    /// The client's address, put in each request's extensions (per-address limits).
    peer: Option<ClientAddr>,
    /// Set once this connection has been pushed the manifest: never push an asset twice.
    pushed: AtomicBool,
    /// Streams being handled, for the idle timeout.
    active: AtomicUsize,
    /// Event streams handed to the connection's own task, which writes them from then on.
    event_streams: Handover,
    /// What all the connection's streams together may hold unsent (`--max-connection-buffer`).
    budget: SendBudget,
}

/// Serves one HTTP/2 connection until the client leaves, it idles out, it goes over its send
/// budget, or shutdown drains it. The client's connection preface must have arrived by
/// `preface_deadline`.
pub(crate) async fn serve_connection<IO>(
    io: IO,
    transport: Transport,
    scheme: Scheme,
    peer: Option<ClientAddr>,
    preface_deadline: Instant,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (budget, written) = SendBudget::new(transport.settings.max_connection_buffer);
    let io = Metered::new(io, written);
    let Some(connection) = handshake(io, &transport, preface_deadline).await else {
        return;
    };
    let conn = Arc::new(Conn {
        transport,
        scheme,
        peer,
        pushed: AtomicBool::new(false),
        active: AtomicUsize::new(0),
        event_streams: Handover::new(),
        budget,
    });
    // However this ends (even dropped unfinished), what is in transit is freed: each pump holds
    // the `Conn` that would hold it.
    let _close = CloseOnDrop(&conn.event_streams);
    drive(connection, &conn).await;
}

/// The client's connection preface, by `deadline`, under this server's HTTP/2 limits; `None`
/// when it fails or does not come in time (counted as a header read timeout).
async fn handshake<T>(io: T, transport: &Transport, deadline: Instant) -> Option<Connection<T>>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let handshake = transport
        .settings
        .http2
        .h2_builder()
        .handshake::<_, Bytes>(io);
    match tokio::time::timeout_at(deadline, handshake).await {
        Ok(Ok(connection)) => Some(connection),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "HTTP/2 handshake failed");
            None
        }
        Err(_) => {
            transport
                .metrics
                .cut_header_read_timeout
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!("no HTTP/2 preface within the header read timeout; closing");
            None
        }
    }
}

/// An h2 server connection over `T`.
type Connection<T> = h2::server::Connection<T, Bytes>;

/// Accepts streams (each handled in a task of its own) and writes the event streams handed
/// back, until the client leaves, the connection idles out or goes over its send budget, or
/// shutdown drains it.
async fn drive<T>(mut connection: Connection<T>, conn: &Arc<Conn>)
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let transport = &conn.transport;
    let idle_timeout = transport.settings.idle_timeout;
    // The connection's event streams, driven by this task rather than a task each: a message
    // then wakes this task once, which writes to every stream that has it and flushes once,
    // instead of a scheduler wake-up, a poll chain and a lock on the connection's stream store
    // per stream (see BENCHMARKS.md). Only the cheap part moves here: each stream's response
    // is still made by the Router in the stream's own task.
    let mut event_pumps = FuturesUnordered::new();
    // No handler outlives the connection: dropping `connection` fails every open stream, which
    // the handlers see through `poll_reset`.
    // One timer for the connection, re-armed only when it fires: resetting it on every stream
    // would cost a timer-wheel update per request.
    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle);
    // Streams accepted so far; the idle timer compares it between firings instead of reading
    // the clock on every request.
    let mut accepted: u64 = 0;
    let mut accepted_at_last_check: u64 = 0;
    let mut closing = false;
    // Made once: a `cancelled()` registers a waiter on its first poll.
    let mut shutdown = transport.shutdown.cancelled();
    let mut over_budget = conn.budget.exceeded().cancelled();
    loop {
        tokio::select! {
            next = connection.accept() => match next {
                Some(Ok((request, respond))) => {
                    accepted += 1;
                    conn.active.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(stream::handle(conn.clone(), request, respond));
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "HTTP/2 connection error");
                    break;
                }
                None => break,
            },
            pumps = poll_fn(|cx| conn.event_streams.poll_take(cx)) => event_pumps.extend(pumps),
            Some(()) = event_pumps.next(), if !event_pumps.is_empty() => {}
            _ = &mut over_budget => {
                // Dropping the connection frees everything its streams hold; the socket is
                // not draining, so a GOAWAY would only queue behind the rest.
                transport
                    .metrics
                    .cut_max_connection_buffer
                    .fetch_add(1, Ordering::Relaxed);
                let (unsent, limit) = (conn.budget.unsent(), transport.settings.max_connection_buffer);
                transport
                    .budget_cuts
                    .note(|| format!("{unsent} bytes unsent, limit {limit}"));
                break;
            }
            _ = &mut shutdown, if !closing => {
                // GOAWAY; SSE bodies end by themselves on the same signal.
                closing = true;
                connection.graceful_shutdown();
            }
            _ = &mut idle, if !closing => {
                // Idle: no stream open now and none accepted for a whole period.
                if conn.active.load(Ordering::Relaxed) == 0 && accepted == accepted_at_last_check {
                    closing = true;
                    connection.graceful_shutdown();
                } else {
                    accepted_at_last_check = accepted;
                    idle.as_mut().reset(Instant::now() + idle_timeout);
                }
            }
        }
    }
}
