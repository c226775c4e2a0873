//! Writing a response to a stream (its head, then its body with flow control, within the
//! connection's send budget) and reading a request body from one.

use super::headers::strip_connection_headers;
use crate::runtime::cancel::CancelToken;
use crate::transport::h2_budget::{SendBudget, MAX_DATA_FRAME};
use axum::body::Body;
use bytes::Bytes;
use h2::server::{SendPushedResponse, SendResponse};
use h2::{Reason, RecvStream, SendStream};
use http::{header, Response};
use http_body::Frame;
use http_body_util::BodyExt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Where a response goes: a client's stream, or a promised one.
pub(super) enum Target<'a> {
    Stream(&'a mut SendResponse<Bytes>),
    Pushed(&'a mut SendPushedResponse<Bytes>),
}

/// Sends the response head; returns the stream and the body when a body is to follow.
pub(super) fn start(
    target: Target<'_>,
    response: Response<Body>,
) -> Option<(SendStream<Bytes>, Body)> {
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
pub(super) async fn pump(
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

/// A request body read from an h2 stream, releasing flow-control capacity as it is consumed.
pub(super) struct RecvBody(pub(super) RecvStream);

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
