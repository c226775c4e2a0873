//! An SSE client on a real connection that parses events as EventSource would, decoding a
//! gzip-compressed stream chunk by chunk as a browser does.
#![allow(clippy::unwrap_used)]

use super::client::request;
use super::PATIENCE;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::io::Write;
use std::net::SocketAddr;

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

impl Event {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

/// An open `GET /messages` stream.
pub struct SseClient {
    pub status: StatusCode,
    pub headers: HeaderMap,
    body: Incoming,
    buf: String,
    pub retry: Option<u64>,
    pub comments: usize,
    /// A `content-encoding: gzip` stream's decoder, fed each chunk as it arrives.
    gzip: Option<flate2::write::GzDecoder<Vec<u8>>>,
    /// Bytes received on the wire, and once decoded.
    pub wire_bytes: usize,
    pub plain_bytes: usize,
    /// Set when the server ends a compressed stream: whether it ended whole (a final block and
    /// a trailer whose CRC-32 and length match everything decoded).
    pub ended_whole: Option<bool>,
}

impl SseClient {
    /// Opens the stream and waits for its response head: the subscription exists from then on.
    pub async fn connect(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> SseClient {
        let (status, headers, body) = request(addr, "GET", path, headers, Bytes::new()).await;
        let gzip = (headers.get("content-encoding").map(|v| v.as_bytes()) == Some(b"gzip"))
            .then(|| flate2::write::GzDecoder::new(Vec::new()));
        SseClient {
            status,
            headers,
            body,
            buf: String::new(),
            retry: None,
            comments: 0,
            gzip,
            wire_bytes: 0,
            plain_bytes: 0,
            ended_whole: None,
        }
    }

    /// The next dispatched event, or `None` when the server ends the stream.
    pub async fn next_event(&mut self) -> Option<Event> {
        tokio::time::timeout(PATIENCE, self.next_event_inner())
            .await
            .expect("an event in time")
    }

    async fn next_event_inner(&mut self) -> Option<Event> {
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, None, Vec::new());
                for line in block.lines() {
                    if line.starts_with(':') {
                        self.comments += 1;
                        continue;
                    }
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "id" => id = Some(value.to_owned()),
                        "event" => event = Some(value.to_owned()),
                        "data" => data.push(value.to_owned()),
                        "retry" => self.retry = value.parse().ok(),
                        _ => {}
                    }
                }
                if !data.is_empty() {
                    return Some(Event {
                        id,
                        event,
                        data: data.join("\n"),
                    });
                }
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(bytes) = frame.into_data() {
                        self.wire_bytes += bytes.len();
                        let plain = match self.gzip.as_mut() {
                            Some(decoder) => {
                                // Everything sent so far decodes now: the stream is flushed
                                // after each frame.
                                decoder.write_all(&bytes).unwrap();
                                decoder.flush().unwrap();
                                std::mem::take(decoder.get_mut())
                            }
                            None => bytes.to_vec(),
                        };
                        self.plain_bytes += plain.len();
                        self.buf.push_str(std::str::from_utf8(&plain).unwrap());
                    }
                }
                _ => {
                    if let Some(decoder) = self.gzip.take() {
                        self.ended_whole = Some(decoder.finish().is_ok());
                    }
                    return None;
                }
            }
        }
    }

    /// The next event that carries a message (skipping `ringback.*` control events).
    pub async fn next_message(&mut self) -> Option<Event> {
        loop {
            let e = self.next_event().await?;
            if !e.event.as_deref().unwrap_or("").starts_with("ringback.") {
                return Some(e);
            }
        }
    }
}
