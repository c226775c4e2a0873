//! Helpers for the integration tests: a real server on `127.0.0.1:0`, a real HTTP/1.1 client
//! (hyper), and an SSE reader that parses events as EventSource would.
#![allow(dead_code, clippy::unwrap_used)]

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use server::config::ServeArgs;
use server::server::AppState;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A bound on how long a test waits for an event that should arrive; reaching it is a failure,
/// never a pass.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub struct TestServer {
    pub addr: SocketAddr,
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(config: ServeArgs) -> TestServer {
        Self::start_state(state(config)).await
    }

    pub async fn start_state(state: AppState) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::server::run(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            state,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Starts a graceful shutdown and waits for `run` to return.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(PATIENCE, task)
                .await
                .expect("shutdown finished")
                .unwrap();
        }
    }
}

/// One request over a fresh HTTP/1.1 connection.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> (StatusCode, HeaderMap, Incoming) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let response = sender
        .send_request(builder.body(Full::new(body.into())).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    (parts.status, parts.headers, body)
}

/// `POST /messages` with `body`; returns the status and the JSON answer.
pub async fn publish(addr: SocketAddr, body: &str) -> (StatusCode, serde_json::Value) {
    let (status, _, body) = request(
        addr,
        "POST",
        "/messages",
        &[("content-type", "application/json")],
        body.to_owned(),
    )
    .await;
    let bytes = body.collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

/// Publishes `data` on `channel`; returns the id.
pub async fn publish_ok(addr: SocketAddr, channel: &str, data: &str) -> u64 {
    let body = serde_json::json!({ "type": channel, "data": data }).to_string();
    let (status, json) = publish(addr, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{json}");
    json["id"].as_u64().unwrap()
}

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
}

impl SseClient {
    /// Opens the stream and waits for its response head: the subscription exists from then on.
    pub async fn connect(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> SseClient {
        let (status, headers, body) = request(addr, "GET", path, headers, Bytes::new()).await;
        SseClient {
            status,
            headers,
            body,
            buf: String::new(),
            retry: None,
            comments: 0,
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
                        self.buf.push_str(std::str::from_utf8(&bytes).unwrap());
                    }
                }
                _ => return None,
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

/// The server state for `config`, rendering pages without hashed files (tests add a manifest
/// with `with_assets` where they need one).
pub fn state(config: ServeArgs) -> AppState {
    let site_root = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/site");
    let leptos = leptos::config::LeptosOptions::builder()
        .output_name("ringback")
        .site_root(site_root)
        .build();
    AppState::new(config, leptos)
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ringback-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The test configuration: defaults, with overrides applied by the caller.
pub fn config() -> ServeArgs {
    ServeArgs::default()
}

/// Publishes `count` copies of `payload` on `channel` straight into the feed, never more than 8
/// ahead of what the reader reports through `progress` (so only a stalled subscriber can fall
/// behind a small history). Returns the ids.
pub async fn publish_keeping_pace(
    feed: &server::broadcast::BroadcastList,
    channel: &str,
    payload: &serde_json::Value,
    count: usize,
    progress: &mut tokio::sync::watch::Receiver<usize>,
) -> Vec<u64> {
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        progress.wait_for(|n| i < *n + 8).await.unwrap();
        ids.push(feed.publish(channel, payload).unwrap());
    }
    ids
}
