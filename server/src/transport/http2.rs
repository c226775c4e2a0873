//! The HTTP/2 driver: the `h2` crate in front of the axum Router, with server push and
//! `103 Early Hints`.
//!
//! Every stream becomes an ordinary `http::Request` dispatched to the same Router as HTTP/1.1
//! (with `oneshot`), and its response is written back with flow control. Around a page request
//! the driver applies the push policy (`push.rs`): when the client allows push and does not
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

use crate::config::Http2Limits;
use crate::runtime::cancel::CancelToken;
use crate::runtime::connection::{ClientAddr, StreamCut};
use crate::runtime::lock::MutexExt;
use crate::site::push::PagePlan;
use crate::transport::h2_budget::{Metered, SendBudget, MAX_DATA_FRAME};
use crate::transport::Transport;
use axum::body::Body;
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::task::AtomicWaker;
use h2::server::{SendPushedResponse, SendResponse};
use h2::{Reason, RecvStream, SendStream};
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tower::ServiceExt;

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

/// The HTTP/2 limits (`--h2-*`, [`Http2Limits`]), applied in one place to this driver's h2 and,
/// for `--http2-driver hyper`, to hyper's HTTP/2.
impl Http2Limits {
    /// An h2 server builder with these limits (h2's own defaults are unlike hyper's: 64 KiB
    /// windows, unlimited streams, 16 MiB header lists).
    fn h2_builder(&self) -> h2::server::Builder {
        let mut builder = h2::server::Builder::new();
        builder
            .max_concurrent_streams(self.h2_max_concurrent_streams)
            .max_header_list_size(self.h2_max_header_list_size)
            .initial_window_size(self.h2_stream_window)
            .initial_connection_window_size(self.h2_connection_window)
            .max_send_buffer_size(self.h2_max_send_buffer)
            .max_pending_accept_reset_streams(self.h2_max_pending_accept_resets)
            .max_local_error_reset_streams(Some(self.h2_max_local_error_resets));
        builder
    }

    /// The same limits on hyper's HTTP/2.
    pub(crate) fn apply_to_hyper<E>(
        &self,
        builder: &mut hyper_util::server::conn::auto::Http2Builder<'_, E>,
    ) {
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .max_concurrent_streams(self.h2_max_concurrent_streams)
            .max_header_list_size(self.h2_max_header_list_size)
            .initial_stream_window_size(self.h2_stream_window)
            .initial_connection_window_size(self.h2_connection_window)
            .max_send_buf_size(self.h2_max_send_buffer)
            .max_pending_accept_reset_streams(self.h2_max_pending_accept_resets)
            .max_local_error_reset_streams(self.h2_max_local_error_resets);
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

/// One event stream's remaining life: its body copied to its `SendStream`.
type EventPump = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Event streams on their way from their handlers' tasks to the connection's task. Not an
/// `mpsc` channel: one allocates a block of 32 slots (~1 KB) for every connection, and an idle
/// browser connection has handed over its one event stream long ago. This holds nothing while
/// nothing is in transit, and its receiving side is one flag to read.
struct Handover {
    /// `None` once the connection's task has ended: what arrives then is dropped, not kept
    /// (a pump holds the `Conn` that would hold it).
    pumps: Mutex<Option<Vec<EventPump>>>,
    /// Set when `pumps` has something for the connection's task.
    ready: AtomicBool,
    waker: AtomicWaker,
}

impl Handover {
    fn new() -> Self {
        Handover {
            pumps: Mutex::new(Some(Vec::new())),
            ready: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        }
    }

    /// Hands `pump` to the connection's task; dropped if that task has ended.
    fn give(&self, pump: EventPump) {
        let mut pumps = self.pumps.lock_or_recover();
        match pumps.as_mut() {
            Some(pumps) => pumps.push(pump),
            None => return,
        }
        drop(pumps);
        self.ready.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// The pumps handed over since the last call; `Pending` (and a wake-up registered) when
    /// there are none.
    fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Vec<EventPump>> {
        if !self.ready.swap(false, Ordering::AcqRel) {
            self.waker.register(cx.waker());
            // A `give` between the check and the registration has set the flag again.
            if !self.ready.swap(false, Ordering::AcqRel) {
                return Poll::Pending;
            }
        }
        let mut pumps = self.pumps.lock_or_recover();
        Poll::Ready(pumps.as_mut().map(std::mem::take).unwrap_or_default())
    }

    /// The connection's task has ended: drops what is in transit and whatever comes later.
    fn close(&self) {
        let pumps = self.pumps.lock_or_recover().take();
        drop(pumps);
    }
}

/// Closes a [`Handover`] when dropped.
struct CloseOnDrop<'a>(&'a Handover);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Serves one HTTP/2 connection until the client leaves, it idles out, it goes over its send
/// budget, or shutdown drains it. The client's connection preface must have arrived by
/// `preface_deadline`.
pub(crate) async fn serve<IO>(
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
                    tokio::spawn(handle(conn.clone(), request, respond));
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

/// Decrements the active-stream count when a handler ends, however it ends.
struct Active(Arc<Conn>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn handle(conn: Arc<Conn>, request: Request<RecvStream>, mut respond: SendResponse<Bytes>) {
    let _active = Active(conn.clone());
    // HTTP/2 carries the authority in the URI, where axum's `Host` extractor finds it; no Host
    // header is synthesised (that would cost an allocation per request).
    let (parts, recv) = request.into_parts();
    if let Some(plan) = conn
        .transport
        .push
        .plan(&parts.method, parts.uri.path(), &parts.headers)
    {
        let authority = parts
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                parts
                    .headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            });
        if let Some(authority) = authority {
            let accept = parts.headers.get(header::ACCEPT_ENCODING).cloned();
            announce_assets(&conn, &mut respond, plan, &authority, accept);
        }
    }

    let mut req = Request::from_parts(parts, Body::new(RecvBody(recv)));
    if let Some(peer) = conn.peer {
        req.extensions_mut().insert(peer);
    }
    let response = tokio::select! {
        r = conn.transport.router.clone().oneshot(req) => match r {
            Ok(r) => r,
            Err(never) => match never {},
        },
        _ = poll_fn(|cx| respond.poll_reset(cx)) => return,
    };
    // A streaming handler (SSE) hands over its cut-off switch with the response.
    let cut = response
        .extensions()
        .get::<StreamCut>()
        .map(|c| c.0.clone());
    let Some((mut stream, body)) = start(Target::Stream(&mut respond), response) else {
        return;
    };
    match cut {
        // An event stream: from here on the connection's task writes it (see `serve`).
        Some(cut) => {
            let pump = async move {
                let active = _active;
                pump(body, &mut stream, Some(&cut), &active.0.budget).await;
            };
            // Dropped only when the connection is gone, and the stream with it.
            conn.event_streams.give(Box::pin(pump));
        }
        None => pump(body, &mut stream, None, &conn.budget).await,
    }
}

/// Sends the promises (or the hints) for a page, before anything of the page itself.
fn announce_assets(
    conn: &Arc<Conn>,
    respond: &mut SendResponse<Bytes>,
    plan: PagePlan,
    authority: &str,
    accept_encoding: Option<HeaderValue>,
) {
    let policy = &conn.transport.push;
    let metrics = &conn.transport.metrics;
    if plan.may_push && !plan.cached && !conn.pushed.swap(true, Ordering::AcqRel) {
        let mut promised = 0;
        for asset in policy.manifest.assets() {
            let uri = format!("{}://{authority}{}", conn.scheme.as_str(), asset.path);
            // The promised request carries the page's Accept-Encoding, so the pushed response
            // is the variant the browser would have fetched.
            let mut promise = Request::get(uri);
            if let Some(accept) = &accept_encoding {
                promise = promise.header(header::ACCEPT_ENCODING, accept.clone());
            }
            let Ok(promise) = promise.body(()) else {
                continue;
            };
            match respond.push_request(promise) {
                Ok(pushed) => {
                    promised += 1;
                    metrics.pushes.fetch_add(1, Ordering::Relaxed);
                    let path = asset.path.clone();
                    let host = authority.to_owned();
                    let accept = accept_encoding.clone();
                    tokio::spawn(push_one(conn.clone(), pushed, path, host, accept));
                }
                // The client refuses push (SETTINGS_ENABLE_PUSH=0) or cannot take more.
                Err(_) => break,
            }
        }
        if promised > 0 {
            return;
        }
        conn.pushed.store(false, Ordering::Release);
    } else if plan.may_push && (plan.cached || conn.pushed.load(Ordering::Acquire)) {
        return; // the browser holds the assets, or this connection already received them
    }
    if !conn.transport.settings.early_hints {
        return;
    }
    let mut hints = Response::builder().status(StatusCode::EARLY_HINTS);
    for link in policy.links() {
        hints = hints.header(header::LINK, link.clone());
    }
    if let Ok(hints) = hints.body(()) {
        if respond.send_informational(hints).is_ok() {
            metrics.hints.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Produces one pushed response with the Router, exactly as a GET of `path` would be.
async fn push_one(
    conn: Arc<Conn>,
    mut pushed: SendPushedResponse<Bytes>,
    path: String,
    host: String,
    accept_encoding: Option<HeaderValue>,
) {
    let mut req = Request::get(path).header(header::HOST, host);
    if let Some(accept) = accept_encoding {
        req = req.header(header::ACCEPT_ENCODING, accept);
    }
    let Ok(req) = req.body(Body::empty()) else {
        return;
    };
    let response = tokio::select! {
        r = conn.transport.router.clone().oneshot(req) => match r {
            Ok(r) => r,
            Err(never) => match never {},
        },
        _ = poll_fn(|cx| pushed.poll_reset(cx)) => return,
    };
    if let Some((mut stream, body)) = start(Target::Pushed(&mut pushed), response) {
        pump(body, &mut stream, None, &conn.budget).await;
    }
}

/// Where a response goes: a client's stream, or a promised one.
enum Target<'a> {
    Stream(&'a mut SendResponse<Bytes>),
    Pushed(&'a mut SendPushedResponse<Bytes>),
}

/// Sends the response head; returns the stream and the body when a body is to follow.
fn start(target: Target<'_>, response: Response<Body>) -> Option<(SendStream<Bytes>, Body)> {
    let (mut parts, body) = response.into_parts();
    strip_connection_headers(&mut parts.headers);
    if !parts.headers.contains_key(header::DATE) {
        parts
            .headers
            .insert(header::DATE, crate::transport::date::now());
    }
    let end = http_body::Body::is_end_stream(&body);
    let head = Response::from_parts(parts, ());
    let sent = match target {
        Target::Stream(r) => r.send_response(head, end),
        Target::Pushed(r) => r.send_response(head, end),
    };
    let stream = sent.ok()?;
    (!end).then_some((stream, body))
}

/// Copies body frames to the stream, waiting for flow-control capacity, within the
/// connection's send budget.
async fn pump(
    mut body: Body,
    stream: &mut SendStream<Bytes>,
    cut: Option<&CancelToken>,
    budget: &SendBudget,
) {
    // Made once per stream, not once per frame: a `cancelled()` registers a waiter when polled.
    let cut = async move {
        match cut {
            Some(token) => token.cancelled().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(cut);
    loop {
        // The frame first: when one is ready (a delivery) neither the cut-off token nor the
        // connection's stream store (a lock shared by the connection's streams) is touched. A
        // reset stream is still noticed: its next `send_data` fails.
        let frame = tokio::select! {
            biased;
            frame = body.frame() => frame,
            _ = &mut cut => {
                stream.send_reset(Reason::CANCEL);
                return;
            }
            _ = poll_fn(|cx| stream.poll_reset(cx)) => return,
        };
        match frame {
            None => {
                send_frame(stream, Bytes::new(), true, budget);
                return;
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "response body failed");
                stream.send_reset(Reason::INTERNAL_ERROR);
                return;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    // END_STREAM rides on the last chunk rather than an empty frame of its own.
                    let last = http_body::Body::is_end_stream(&body);
                    if !send_all(stream, data, last, cut.as_mut(), budget).await || last {
                        return;
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        let _ = stream.send_trailers(trailers);
                    }
                    return;
                }
            },
        }
    }
}

async fn send_all(
    stream: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
    mut cut: Pin<&mut impl Future<Output = ()>>,
    budget: &SendBudget,
) -> bool {
    if data.is_empty() {
        return !end || send_frame(stream, data, true, budget);
    }
    while !data.is_empty() {
        stream.reserve_capacity(data.len());
        // Capacity already assigned and not yet used (a frame of at most `MAX_DATA_FRAME`
        // leaves the rest of a larger grant): `poll_capacity` would wait for an increase.
        let n = match stream.capacity() {
            0 => {
                // Capacity first, as above; the cut-off matters when there is none (a stalled
                // client).
                let capacity = tokio::select! {
                    biased;
                    c = poll_fn(|cx| stream.poll_capacity(cx)) => c,
                    _ = cut.as_mut() => {
                        stream.send_reset(Reason::CANCEL);
                        return false;
                    }
                };
                match capacity {
                    Some(Ok(0)) => continue,
                    Some(Ok(n)) => n,
                    _ => return false,
                }
            }
            n => n,
        };
        let chunk = data.split_to(n.min(data.len()).min(MAX_DATA_FRAME));
        if !send_frame(stream, chunk, end && data.is_empty(), budget) {
            return false;
        }
    }
    true
}

/// Hands h2 one DATA frame, within the connection's send budget (an over-budget connection is
/// closed by its task; this stream is reset at once).
fn send_frame(stream: &mut SendStream<Bytes>, data: Bytes, end: bool, budget: &SendBudget) -> bool {
    if !budget.take(data.len()) {
        stream.send_reset(Reason::CANCEL);
        return false;
    }
    stream.send_data(data, end).is_ok()
}

/// Headers that mean something only to one HTTP/1.1 connection; HTTP/2 forbids them.
fn strip_connection_headers(headers: &mut HeaderMap) {
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

/// A request body read from an h2 stream, releasing flow-control capacity as it is consumed.
struct RecvBody(RecvStream);

impl http_body::Body for RecvBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        match self.0.poll_data(cx) {
            Poll::Ready(Some(Ok(data))) => {
                let _ = self.0.flow_control().release_capacity(data.len());
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => match self.0.poll_trailers(cx) {
                Poll::Ready(Ok(Some(t))) => Poll::Ready(Some(Ok(Frame::trailers(t)))),
                Poll::Ready(Ok(None)) => Poll::Ready(None),
                Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
                Poll::Pending => Poll::Pending,
            },
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }
}
