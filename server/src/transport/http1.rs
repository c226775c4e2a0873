//! HTTP/1.1: `GET` of the event stream's path (`/messages`, passed in as
//! [`Transport::events_path`]) served by this module, everything else by hyper.
//!
//! Why a path of our own for one request: hyper keeps a read buffer and a write buffer (8 KiB
//! each, at least) for the whole life of a connection. An SSE subscriber's connection lives for
//! hours and, after its request head, sends nothing; so most of the ~25 KiB an idle HTTP/1.1
//! subscriber cost was hyper's buffers (BENCHMARKS.md). Here the head is read into a buffer that
//! is freed once parsed, the response head is written once, and each frame goes from the
//! broadcast list's shared bytes straight to the socket as one chunk (one vectored write: size
//! line, frame, CRLF). An idle subscriber then holds its task, its socket and its stream.
//!
//! Over cleartext TCP the connection is also handed to the feed with the request
//! ([`DirectWriter`], `shared_tcp.rs`): while the stream waits for frames, the feed's writers
//! write each new one to its socket themselves, without waking this task; it is woken when the
//! socket does not take one whole, and writes the rest first.
//!
//! The request still goes through the one axum Router (auth, limits, metrics, request ids), so
//! only the HTTP/1.1 framing is ours, and only for the simplest request there is: `GET`,
//! HTTP/1.1, the event stream's path, no body, no `Upgrade`, nothing sent after the head. Anything else
//! (another path, a body, a pipelined request, a head that does not parse or is too large) goes
//! to hyper with the bytes already read put back in front ([`Rewind`]), so hyper answers it
//! exactly as before, errors included.
//!
//! The response carries `connection: close`: an event stream ends only when the server ends it
//! (shutdown, `--max-stream-age`) or the client leaves, and EventSource opens a new connection to
//! reconnect anyway, so keeping this one alive would buy nothing.

use crate::runtime::cancel::CancelToken;
use crate::runtime::connection::{ClientAddr, ConnectionCut, DirectWriter};
use crate::transport::chunked::Chunk;
use crate::transport::rewind::Rewind;
use crate::transport::shared_tcp::TcpShare;
use crate::transport::Transport;
use axum::body::Body;
use axum::Router;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Version};
use http_body::Body as _;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;
use tower::ServiceExt;

/// The largest request head the fast path reads before leaving the request to hyper (which
/// answers `431` beyond its own limit).
const MAX_HEAD: usize = 16 * 1024;
/// Headers the fast path parses; a request with more goes to hyper.
const MAX_HEADERS: usize = 64;

/// Serves one HTTP/1.1 connection (cleartext, or TLS that did not negotiate `h2`).
///
/// `first` holds the bytes already read from `io` (by the listener, to tell the protocol). The
/// first request head must be whole by `head_deadline` (`--header-read-timeout` after the
/// connection was accepted), however slowly its bytes drip in. `direct`: the connection as the
/// feed may write an event stream's frames to it from outside this task (cleartext TCP).
pub(crate) async fn serve_connection<IO>(
    mut io: IO,
    first: Bytes,
    transport: Transport,
    peer: Option<ClientAddr>,
    head_deadline: Instant,
    direct: Option<Arc<TcpShare>>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Not cut short by shutdown: a request on its way is answered (a subscription is shed as
    // `draining`, so its browser comes back elsewhere), within the same header deadline. A
    // connection dropped without an answer is a `502` at a load balancer, which a plain
    // EventSource never retries after.
    let head = tokio::time::timeout_at(
        head_deadline,
        read_head(&mut io, first, transport.events_path),
    )
    .await;
    match head {
        Ok(Ok(Head::Events(request))) => {
            serve_events(io, request, transport.router, peer, direct).await
        }
        // Boxed (`to_hyper`): the fast path's task should not be sized for hyper's connection.
        Ok(Ok(Head::Other(read))) => {
            let head_started = head_deadline - transport.settings.header_read_timeout;
            to_hyper(Rewind::new(read, io), transport, peer, head_started).await
        }
        Ok(Err(_)) => {} // closed or failed
        Err(_) => {
            transport
                .metrics
                .cut_header_read_timeout
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!("no whole request head within the header read timeout; closing");
        }
    }
}

/// hyper's HTTP/1.1 for `io`, boxed by a plain function: the large future is then made on
/// that function's stack and moved to the heap, never laid out in the caller's future.
fn to_hyper<IO>(
    io: Rewind<IO>,
    transport: Transport,
    peer: Option<ClientAddr>,
    head_started: Instant,
) -> Pin<Box<dyn std::future::Future<Output = ()> + Send>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    Box::pin(crate::transport::hyper_conn::serve_http1_with_hyper(
        io,
        transport,
        peer,
        head_started,
    ))
}

/// What the first request on a connection is.
#[derive(Debug)]
enum Head {
    /// `GET /messages` as the fast path takes it (boxed: the other variant is small).
    Events(Box<Request<Body>>),
    /// Anything else: the bytes read so far, for hyper.
    Other(Bytes),
}

/// Reads until the request head is complete (or cannot be the fast path's), starting with
/// `first`, the bytes the listener read to tell the protocol.
async fn read_head<IO: AsyncRead + Unpin>(
    io: &mut IO,
    first: Bytes,
    events_path: &str,
) -> io::Result<Head> {
    let mut buf = Vec::with_capacity(first.len().max(1024));
    buf.extend_from_slice(&first);
    drop(first);
    loop {
        if !buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Request::new(&mut headers);
            match parsed.parse(&buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let fast = (len == buf.len())
                        .then(|| events_request(&parsed, events_path))
                        .flatten();
                    return Ok(match fast {
                        Some(request) => Head::Events(Box::new(request)),
                        None => Head::Other(Bytes::from(buf)),
                    });
                }
                Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
                // Too large, too many headers, or malformed: hyper has the answers for those.
                Ok(httparse::Status::Partial) | Err(_) => {
                    return Ok(Head::Other(Bytes::from(buf)));
                }
            }
        }
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity());
        }
        if io.read_buf(&mut buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// The request, if it is one the fast path serves: a `GET` of `events_path`.
fn events_request(parsed: &httparse::Request<'_, '_>, events_path: &str) -> Option<Request<Body>> {
    let path = parsed.path?;
    let is_events = path
        .strip_prefix(events_path)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('?'));
    if parsed.method != Some("GET") || parsed.version != Some(1) || !is_events {
        return None;
    }
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .version(Version::HTTP_11);
    for h in parsed.headers.iter() {
        let name = h.name.as_bytes();
        let has_body = name.eq_ignore_ascii_case(b"transfer-encoding")
            || (name.eq_ignore_ascii_case(b"content-length") && h.value != b"0");
        if has_body || name.eq_ignore_ascii_case(b"upgrade") {
            return None;
        }
        request = request.header(h.name, h.value);
    }
    request.body(Body::empty()).ok()
}

/// Answers `GET /messages` through the Router and writes the response with our own framing.
async fn serve_events<IO>(
    mut io: IO,
    request: Box<Request<Body>>,
    router: Router,
    peer: Option<ClientAddr>,
    direct: Option<Arc<TcpShare>>,
) where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    // The connection's cut-off switch, as hyper's connections have (see `ConnectionCut`).
    let cut = CancelToken::new();
    // Boxed: the request, the Router's future and the response live only until the answer is
    // bytes, and the task that then streams for hours is not sized for them (they were most of
    // an idle subscriber's task: 2,128 bytes in all).
    let answer = Box::pin(answer(request, router, peer, &cut, direct.clone())).await;
    let served = async {
        match answer {
            Ok(Answer::Whole(bytes)) => io.write_all(&bytes).await?,
            Ok(Answer::Stream(head, body)) => {
                io.write_all(&head).await?;
                drop(head);
                stream_chunks(&mut io, body, direct.as_deref()).await?;
            }
            Err(e) => return Err(e),
        }
        io.shutdown().await
    };
    tokio::select! {
        biased;
        result = served => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "event stream connection ended");
            }
        }
        // Fell behind the history: close even while a write waits on a client not reading.
        _ = cut.cancelled() => tracing::debug!("closed the connection of a subscriber that fell behind"),
    }
}

/// A response as bytes to write.
enum Answer {
    /// A refusal (400, 401, 403, 429, 503): small, and whole.
    Whole(Vec<u8>),
    /// The event stream: its head, then its body in chunks.
    Stream(Vec<u8>, Body),
}

/// The Router's answer to `request`, carrying the connection's switch `cut`, its peer and (over
/// cleartext TCP) the connection as the feed may write to it.
async fn answer(
    mut request: Box<Request<Body>>,
    router: Router,
    peer: Option<ClientAddr>,
    cut: &CancelToken,
    direct: Option<Arc<TcpShare>>,
) -> io::Result<Answer> {
    request.extensions_mut().insert(ConnectionCut(cut.clone()));
    if let Some(peer) = peer {
        request.extensions_mut().insert(peer);
    }
    if let Some(share) = direct {
        request.extensions_mut().insert(DirectWriter(share));
    }
    let Ok(response) = router.oneshot(*request).await;
    let (parts, body) = response.into_parts();
    let length = body.size_hint().exact();
    // The head as bytes; the response's parts (headers, extensions) are dropped here rather
    // than kept for the life of the stream.
    let mut head = response_head(parts, length);
    if length.is_none() {
        return Ok(Answer::Stream(head, body));
    }
    let body = http_body_util::BodyExt::collect(body)
        .await
        .map_err(io::Error::other)?;
    head.extend_from_slice(&body.to_bytes());
    Ok(Answer::Whole(head))
}

/// The status line and headers, for a body of `length` bytes (chunked when unknown).
fn response_head(parts: http::response::Parts, length: Option<u64>) -> Vec<u8> {
    let mut head = Vec::with_capacity(512);
    let reason = parts.status.canonical_reason().unwrap_or("");
    head.extend_from_slice(format!("HTTP/1.1 {} {reason}\r\n", parts.status.as_u16()).as_bytes());
    let mut headers = parts.headers;
    headers.remove(header::CONNECTION);
    headers.remove(header::TRANSFER_ENCODING);
    if !headers.contains_key(header::DATE) {
        headers.insert(header::DATE, crate::transport::date::now());
    }
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    match length {
        Some(n) => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        None => {
            headers.insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
        }
    }
    for (name, value) in &headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// Writes each data frame of `body` as one chunk until the body ends or the client leaves.
///
/// The client sends nothing after its request; reading anyway is how its leaving is noticed at
/// once (EOF), not at the next heartbeat's failed write.
///
/// `direct`: the feed's writers may write chunks too while the body waits for frames; the rest
/// of one they wrote in part goes before this task's next chunk.
async fn stream_chunks<IO>(io: &mut IO, mut body: Body, direct: Option<&TcpShare>) -> io::Result<()>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let mut chunk = Chunk::default();
    // The chunk being written holds a writer's rest: writers wait until it is written.
    let mut owing = false;
    let mut scratch = [0u8; 64];
    poll_fn(|cx| {
        // The client's side, once per wake-up: its close ends the stream. A read that is
        // pending keeps this task's waker registered until the socket has something, so
        // polling it again for each frame of the same wake-up would only register it again.
        loop {
            let mut read = ReadBuf::new(&mut scratch);
            match Pin::new(&mut *io).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if read.filled().is_empty() => {
                    return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                // Bytes after the request: ignored (nothing more is read from this connection).
                Poll::Ready(Ok(())) => continue,
                Poll::Pending => break,
            }
        }
        loop {
            if !chunk.is_empty() {
                // A writer's chunk, written in part while the body waited, goes first.
                if let Some(rest) = direct.and_then(TcpShare::take_rest) {
                    chunk = std::mem::take(&mut chunk).after(rest);
                    owing = true;
                }
                ready!(chunk.poll_write(io, cx))?;
                if let (true, Some(share)) = (owing, direct) {
                    owing = false;
                    share.paid();
                }
            }
            if chunk.last {
                return Poll::Ready(Ok(()));
            }
            let Poll::Ready(frame) = Pin::new(&mut body).poll_frame(cx) else {
                // Handed back by a writer with a chunk written in part: its rest goes now.
                if let Some(rest) = direct.and_then(TcpShare::take_rest) {
                    chunk = Chunk::default().after(rest);
                    owing = true;
                    continue;
                }
                return Poll::Pending;
            };
            match frame {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        chunk = Chunk::data(data);
                    }
                }
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
                None => chunk = Chunk::last(),
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_of(bytes: &'static [u8]) -> Head {
        // The listener has read the first few bytes; the rest come from the socket.
        let first = Bytes::from_static(&bytes[..bytes.len().min(5)]);
        let mut io = &bytes[first.len()..];
        futures::executor::block_on(read_head(&mut io, first, "/messages")).unwrap()
    }

    #[test]
    fn only_a_plain_get_of_the_event_stream_takes_the_fast_path() {
        let events = |b: &'static [u8]| matches!(head_of(b), Head::Events(_));
        assert!(events(b"GET /messages HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(events(
            b"GET /messages?type=red&lastEventId=4 HTTP/1.1\r\nLast-Event-ID: 3\r\nContent-Length: 0\r\n\r\n"
        ));
        for other in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"GET /messagesx HTTP/1.1\r\n\r\n",
            b"POST /messages HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
            b"GET /messages HTTP/1.0\r\n\r\n",
            b"GET /messages HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
            b"GET /messages HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /messages HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            // A pipelined second request: hyper serves both.
            b"GET /messages HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            b"GET /messages HTTP/1.1\r\nBad Header\r\n\r\n",
        ] {
            let Head::Other(read) = head_of(other) else {
                panic!("fast path for {:?}", String::from_utf8_lossy(other));
            };
            assert_eq!(&read[..], other, "every byte read is handed to hyper");
        }
    }

    #[test]
    fn the_request_keeps_its_headers() {
        let Head::Events(request) =
            head_of(b"GET /messages?type=a HTTP/1.1\r\nLast-Event-ID: 7\r\nCookie: t=1\r\n\r\n")
        else {
            panic!("fast path expected");
        };
        assert_eq!(request.uri(), "/messages?type=a");
        assert_eq!(request.headers()["last-event-id"], "7");
        assert_eq!(request.headers()["cookie"], "t=1");
    }
}
