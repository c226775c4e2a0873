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

use crate::runtime::branches::Branches;
use crate::runtime::cancel::Cancelled;
use crate::runtime::connection::ClientAddr;
use crate::transport::h2_budget::{Metered, SendBudget};
use crate::transport::Transport;
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use handover::{CloseOnDrop, EventPump, Handover};
use std::future::{poll_fn, Future};
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

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
async fn drive<T>(connection: Connection<T>, conn: &Arc<Conn>)
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let transport = &conn.transport;
    // One timer for the connection, re-armed only when it fires: resetting it on every stream
    // would cost a timer-wheel update per request.
    let idle = tokio::time::sleep(transport.settings.idle_timeout);
    tokio::pin!(idle);
    let mut driver = Driver {
        connection,
        conn,
        event_pumps: FuturesUnordered::new(),
        idle,
        accepted: 0,
        accepted_at_last_check: 0,
        closing: false,
        shutdown: transport.shutdown.cancelled(),
        over_budget: conn.budget.exceeded().cancelled(),
    };
    // Each source is polled when it was woken, not whenever any was: a delivery wakes its
    // pump, whose data wakes h2, which writes it, all in one poll of this task (see
    // `runtime::branches`). The rarely woken sources share a branch.
    let branches = Branches::new(3);
    poll_fn(|cx| {
        branches.poll(cx, |mut woken, branches| {
            if woken & RARE != 0 {
                match driver.rare(&mut branches.context(RARE_BRANCH)) {
                    ControlFlow::Continue(more) => woken |= more,
                    ControlFlow::Break(()) => return Poll::Ready(()),
                }
            }
            // The pumps before h2, so what they hand it goes out in the same round.
            if woken & PUMPS != 0 {
                driver.pumps(&mut branches.context(PUMPS_BRANCH));
            }
            if woken & ACCEPT != 0 {
                return driver.accept(&mut branches.context(ACCEPT_BRANCH));
            }
            Poll::Pending
        })
    })
    .await
}

/// The branches of [`drive`]: h2's connection (its I/O, streams accepted, data flushed), the
/// event streams' pumps, and the rest (streams handed over, the budget, shutdown, the idle
/// timer).
const ACCEPT_BRANCH: u32 = 0;
const PUMPS_BRANCH: u32 = 1;
const RARE_BRANCH: u32 = 2;
const ACCEPT: u32 = Branches::bit(ACCEPT_BRANCH);
const PUMPS: u32 = Branches::bit(PUMPS_BRANCH);
const RARE: u32 = Branches::bit(RARE_BRANCH);

/// What [`drive`] keeps. Each source is polled until it waits (or ends): a source is polled
/// again only once it wakes its branch, and one left ready has registered no wake-up.
struct Driver<'a, T> {
    /// No handler outlives the connection: dropping it fails every open stream, which the
    /// handlers see through `poll_reset`.
    connection: Connection<T>,
    conn: &'a Arc<Conn>,
    /// The connection's event streams, driven by this task rather than a task each: a message
    /// then wakes this task once, which writes to every stream that has it and flushes once,
    /// instead of a scheduler wake-up, a poll chain and a lock on the connection's stream
    /// store per stream (see BENCHMARKS.md). Only the cheap part moves here: each stream's
    /// response is still made by the Router in the stream's own task.
    event_pumps: FuturesUnordered<EventPump>,
    idle: Pin<&'a mut Sleep>,
    /// Streams accepted so far; the idle timer compares it between firings instead of reading
    /// the clock on every request.
    accepted: u64,
    accepted_at_last_check: u64,
    closing: bool,
    /// Made once: a `cancelled()` registers a waiter on its first poll.
    shutdown: Cancelled,
    over_budget: Cancelled,
}

impl<T> Driver<'_, T>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    /// Streams handed over, the budget, shutdown and the idle timer: `Break` when the
    /// connection is to be dropped now, else the branches this makes work for.
    fn rare(&mut self, cx: &mut Context<'_>) -> ControlFlow<(), u32> {
        let transport = &self.conn.transport;
        let mut more = 0;
        while let Poll::Ready(pumps) = self.conn.event_streams.poll_take(cx) {
            self.event_pumps.extend(pumps);
            more |= PUMPS;
        }
        if Pin::new(&mut self.over_budget).poll(cx).is_ready() {
            // Dropping the connection frees everything its streams hold; the socket is not
            // draining, so a GOAWAY would only queue behind the rest.
            transport
                .metrics
                .cut_max_connection_buffer
                .fetch_add(1, Ordering::Relaxed);
            let (unsent, limit) = (
                self.conn.budget.unsent(),
                transport.settings.max_connection_buffer,
            );
            transport
                .budget_cuts
                .note(|| format!("{unsent} bytes unsent, limit {limit}"));
            return ControlFlow::Break(());
        }
        if !self.closing && Pin::new(&mut self.shutdown).poll(cx).is_ready() {
            // GOAWAY; SSE bodies end by themselves on the same signal.
            self.close();
            more |= ACCEPT;
        }
        if !self.closing && self.idle.as_mut().poll(cx).is_ready() {
            // Idle: no stream open now and none accepted for a whole period.
            if self.conn.active.load(Ordering::Relaxed) == 0
                && self.accepted == self.accepted_at_last_check
            {
                self.close();
                more |= ACCEPT;
            } else {
                self.accepted_at_last_check = self.accepted;
                let next = Instant::now() + transport.settings.idle_timeout;
                self.idle.as_mut().reset(next);
                // Polled again to register the new deadline (a round more if it has passed).
                if self.idle.as_mut().poll(cx).is_ready() {
                    cx.waker().wake_by_ref();
                }
            }
        }
        ControlFlow::Continue(more)
    }

    /// GOAWAY, then the open streams run to their ends.
    fn close(&mut self) {
        self.closing = true;
        self.connection.graceful_shutdown();
    }

    /// Runs the event streams that have something to do.
    fn pumps(&mut self, cx: &mut Context<'_>) {
        while let Poll::Ready(Some(())) = self.event_pumps.poll_next_unpin(cx) {}
    }

    /// h2's connection: its I/O, what the pumps handed it, new streams (each handled in a task
    /// of its own); `Ready` when the connection is over.
    fn accept(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match ready!(self.connection.poll_accept(cx)) {
                Some(Ok((request, respond))) => {
                    self.accepted += 1;
                    self.conn.active.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(stream::handle(self.conn.clone(), request, respond));
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "HTTP/2 connection error");
                    return Poll::Ready(());
                }
                None => return Poll::Ready(()),
            }
        }
    }
}
