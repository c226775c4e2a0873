//! What a connection tells the requests it carries, put in their extensions by the transport
//! and read by the handlers: the peer's address, and the switches that close the connection or
//! reset one of its streams.

use crate::runtime::cancel::CancelToken;
use bytes::Bytes;
use std::net::SocketAddr;

/// The peer address of a request's connection (HTTP/1.1 and HTTP/2).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

/// An HTTP/1.1 connection's cut-off switch, put in each of its requests' extensions:
/// cancelling it closes the connection. This is how a subscriber that fell behind the history
/// is disconnected even while its stalled socket keeps hyper from polling its body.
#[derive(Clone, Debug)]
pub struct ConnectionCut(pub CancelToken);

/// The switch of one streaming response, put in the *response's* extensions by the SSE handler;
/// the HTTP/2 driver resets the stream when it fires (one HTTP/2 stream, not the connection).
#[derive(Clone, Debug)]
pub struct StreamCut(pub CancelToken);

/// The most the HTTP/2 driver hands h2 in one DATA frame: the protocol's smallest maximum frame
/// size, which every peer accepts, so h2 sends each exactly as handed. An HTTP/2 event stream
/// batches at most this much (`api/events.rs`).
pub const MAX_DATA_FRAME: usize = 16_384;

/// An event stream's connection as its frames may be written to from outside the connection's
/// task, put in the request's extensions by a transport that can (HTTP/1.1 over cleartext TCP):
/// the feed writes each new frame to a waiting subscriber's socket at once, and wakes its task
/// only when the socket does not take it (`feed::broadcast`'s direct writes).
#[derive(Clone)]
pub struct DirectWriter(pub std::sync::Arc<dyn WriteNow>);

/// A connection that takes an event stream's frames from outside its task, without waiting.
pub trait WriteNow: Send + Sync {
    /// Writes `frames` (whole SSE frames) as the stream's next bytes, now, in the stream's own
    /// framing. Called only while the connection's task waits for frames, never beside its own
    /// writes. The same `frames` go to many connections in a row: framing them may be done once.
    fn write_now(&self, frames: &Bytes) -> Written;
}

/// How much of a [`WriteNow::write_now`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Every byte.
    Whole,
    /// Some: the connection keeps the rest, and its task (which must be woken) writes it before
    /// anything else.
    Part,
    /// None (the socket is full, or failed): the connection's task writes the frames itself.
    Nothing,
}
