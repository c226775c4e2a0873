//! Helpers for the integration tests: a real server on `127.0.0.1:0`, a real HTTP/1.1 client
//! (hyper), and an SSE reader that parses events as EventSource would.
#![allow(dead_code, clippy::unwrap_used)]

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use ringback::config::ServeArgs;
use ringback::server::AppState;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A bound on how long a test waits for an event that should arrive; reaching it is a failure,
/// never a pass.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Waits until `rx`'s value satisfies `want`, for at most `PATIENCE`: a lost wake-up or a value
/// that never comes fails the test, it never hangs it.
pub async fn until<T>(rx: &mut tokio::sync::watch::Receiver<T>, want: impl FnMut(&T) -> bool) {
    let seen = tokio::time::timeout(PATIENCE, rx.wait_for(want)).await;
    seen.expect("the awaited value in time")
        .expect("its sender is alive");
}

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
        let task = tokio::spawn(ringback::server::run(listener, state.clone(), async move {
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

/// One request over a fresh HTTP/1.1 connection, answered (its head) within `PATIENCE`.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> (StatusCode, HeaderMap, Incoming) {
    let body = body.into();
    tokio::time::timeout(PATIENCE, request_inner(addr, method, path, headers, body))
        .await
        .unwrap_or_else(|_| panic!("no answer to {method} {path} in time"))
}

async fn request_inner(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
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
        .send_request(builder.body(Full::new(body)).unwrap())
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
    let bytes = tokio::time::timeout(PATIENCE, body.collect())
        .await
        .expect("the answer's body in time")
        .unwrap()
        .to_bytes();
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
    AppState::new(config, leptos).expect("usable configuration")
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ringback-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The test configuration: defaults, with overrides applied by the caller; presence counts are
/// gathered once an hour, so their events (whose timing is the clock's) interleave only with
/// the streams of the tests that ask for them (`presence.rs`).
pub fn config() -> ServeArgs {
    let mut cfg = ServeArgs::default();
    cfg.presence.presence_interval = Duration::from_secs(3600);
    cfg
}

/// Publishes `count` copies of `payload` on `channel` straight into the feed, never more than 8
/// ahead of what the reader reports through `progress` (so only a stalled subscriber can fall
/// behind a small history). Returns the ids.
pub async fn publish_keeping_pace(
    feed: &ringback::BroadcastList,
    channel: &str,
    payload: &serde_json::Value,
    count: usize,
    progress: &mut tokio::sync::watch::Receiver<usize>,
) -> Vec<u64> {
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        until(progress, |n| i < *n + 8).await;
        ids.push(feed.publish(channel, payload).unwrap());
    }
    ids
}

/// Publishes `count` copies of `payload` on `channel` straight into the feed while `reader`
/// reads them, never more than 8 ahead of it; returns the ids published and the ids the reader
/// received, in order. The reader's stream must stay open throughout.
pub async fn publish_to_reader(
    feed: &ringback::BroadcastList,
    mut reader: SseClient,
    channel: &str,
    payload: &serde_json::Value,
    count: usize,
) -> (Vec<u64>, Vec<u64>) {
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0usize);
    let reading = tokio::spawn(async move {
        let mut ids = Vec::new();
        while ids.len() < count {
            let e = reader
                .next_message()
                .await
                .expect("the reader's stream stays open");
            ids.push(e.id.unwrap().parse::<u64>().unwrap());
            progress_tx.send_replace(ids.len());
        }
        ids
    });
    let published = publish_keeping_pace(feed, channel, payload, count, &mut progress).await;
    let received = tokio::time::timeout(PATIENCE, reading)
        .await
        .unwrap()
        .unwrap();
    (published, received)
}

/// A real `redis-server`, started by the test on a free port (never the machine's default
/// instance), in its own directory, killed when dropped.
pub struct RedisServer {
    pub port: u16,
    dir: std::path::PathBuf,
    child: Option<std::process::Child>,
    /// The primary this one replicates when started (`--replicaof`).
    replica_of: Option<u16>,
}

impl RedisServer {
    /// Starts Redis with an append-only file synced on every write, so a `kill -9` loses
    /// nothing it acknowledged (as a production Redis that keeps the feed's log would be set).
    pub async fn start(name: &str) -> RedisServer {
        let mut redis = Self::not_started(name);
        redis.restart().await;
        redis
    }

    /// A Redis on a free port that is not running yet (`restart` starts it).
    pub fn not_started(name: &str) -> RedisServer {
        RedisServer {
            port: free_port(),
            dir: scratch(&format!("redis-{name}")),
            child: None,
            replica_of: None,
        }
    }

    /// A replica of the Redis on `primary`'s port, started and in sync.
    pub async fn start_replica(name: &str, primary: u16) -> RedisServer {
        let mut redis = Self::not_started(name);
        redis.replica_of = Some(primary);
        redis.restart().await;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !redis
            .cli(&["INFO", "replication"])
            .await
            .is_some_and(|i| i.contains("master_link_status:up"))
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the replica did not sync"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// `kill -9`, then wait for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `kill -9`, and its data gone with it (a primary replaced by an empty one).
    pub fn kill_and_lose_data(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
        std::fs::create_dir_all(&self.dir).unwrap();
    }

    /// Starts (again) on the same port and directory, and waits until it answers `PING`.
    pub async fn restart(&mut self) {
        self.kill();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .args(
                self.replica_of
                    .map(|p| {
                        vec![
                            "--replicaof".to_owned(),
                            "127.0.0.1".to_owned(),
                            p.to_string(),
                        ]
                    })
                    .unwrap_or_default(),
            )
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/setup.sh --test installs it)");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if self.cli(&["PING"]).await.as_deref() == Some("PONG") {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs `redis-cli` against this server; its output, trimmed, if it succeeded.
    pub async fn cli(&self, args: &[&str]) -> Option<String> {
        redis_cli(self.port, args).await
    }
}

/// Runs `redis-cli` against the Redis (or Sentinel) on `port`; its output, trimmed, if it
/// succeeded.
async fn redis_cli(port: u16, args: &[&str]) -> Option<String> {
    let out = tokio::process::Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !text.starts_with("Could not connect")).then_some(text)
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A real `redis-sentinel` on a free port, watching the primary on `primary` as `feed` (quorum
/// 2, down after 1 s), killed when dropped.
pub struct RedisSentinel {
    pub port: u16,
    dir: std::path::PathBuf,
    child: std::process::Child,
}

impl RedisSentinel {
    /// The name the Sentinels know the primary by.
    pub const MASTER: &'static str = "feed";

    pub async fn start(name: &str, primary: u16) -> RedisSentinel {
        let port = free_port();
        let dir = scratch(&format!("sentinel-{name}"));
        let conf = dir.join("sentinel.conf");
        // Sentinel rewrites its configuration file as it learns: it must be its own, writable.
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor {m} 127.0.0.1 {primary} 2\n\
                 sentinel down-after-milliseconds {m} 1000\n\
                 sentinel failover-timeout {m} 10000\n\
                 sentinel parallel-syncs {m} 1\n",
                dir.display(),
                m = Self::MASTER,
            ),
        )
        .unwrap();
        let child = std::process::Command::new("redis-sentinel")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-sentinel is installed (scripts/setup.sh --test installs it)");
        let sentinel = RedisSentinel { port, dir, child };
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while sentinel.cli(&["PING"]).await.as_deref() != Some("PONG") {
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-sentinel did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sentinel
    }

    /// Runs `redis-cli` against this Sentinel; its output, trimmed, if it succeeded.
    pub async fn cli(&self, args: &[&str]) -> Option<String> {
        redis_cli(self.port, args).await
    }

    /// The port of the primary this Sentinel names now.
    pub async fn primary_port(&self) -> Option<u16> {
        let answer = self
            .cli(&["SENTINEL", "get-master-addr-by-name", Self::MASTER])
            .await?;
        answer.lines().nth(1)?.trim().parse().ok()
    }

    /// Waits until this Sentinel knows `replicas` replicas and `others` other Sentinels (a
    /// failover needs them: the quorum's votes and a replica to promote).
    pub async fn await_peers(&self, replicas: usize, others: usize) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let count = |reply: Option<String>| {
                reply.map_or(0, |r| r.lines().filter(|l| l.trim() == "name").count())
            };
            let r = count(self.cli(&["SENTINEL", "replicas", Self::MASTER]).await);
            let s = count(self.cli(&["SENTINEL", "sentinels", Self::MASTER]).await);
            if r >= replicas && s >= others {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the Sentinel found {r} replicas and {s} Sentinels"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Configuration for a server following `redis`.
pub fn redis_config(redis: &RedisServer) -> ServeArgs {
    let mut cfg = config();
    cfg.redis.redis_url = Some(redis.url());
    cfg.redis.redis_backoff_max = Duration::from_millis(500);
    cfg
}

/// Waits until the server's Redis ingest is `online` (or not).
pub async fn await_online(state: &AppState, online: bool) {
    let mut rx = state
        .api
        .source
        .watch_online()
        .expect("a Redis-backed server");
    tokio::time::timeout(PATIENCE, rx.wait_for(|o| *o == online))
        .await
        .expect("the Redis ingest changed state in time")
        .unwrap();
}

/// A TCP proxy in front of a real server that the test can cut (closing every connection
/// through it and refusing new ones) and restore: a network partition between one Ringback
/// server and Redis, while others still reach it.
pub struct Proxy {
    pub port: u16,
    open: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    pub async fn start(upstream: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (open, _) = tokio::sync::watch::channel(true);
        let gate = open.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let mut gate = gate.subscribe();
                if !*gate.borrow_and_update() {
                    continue; // dropped: the connection is refused
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = gate.wait_for(|open| !*open) => {}
                    }
                });
            }
        });
        Proxy { port, open }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn cut(&self) {
        self.open.send_replace(false);
    }

    pub fn restore(&self) {
        self.open.send_replace(true);
    }
}

/// The HS256 key of [`private_config`]'s servers.
pub const SECRET: &str = "integration-test-secret";

/// A JWT signed with [`SECRET`].
pub fn hs256(claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// An hour from now, as a JWT `exp`.
pub fn later() -> u64 {
    jsonwebtoken::get_current_timestamp() + 3600
}

/// A configuration with JWT keys (HS256 [`SECRET`], the fixture RS256 key) and `secret-*`
/// private.
pub fn private_config() -> ServeArgs {
    let mut cfg = config();
    cfg.auth.jwt_secret = Some(SECRET.into());
    cfg.auth.jwt_public_key =
        Some(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt-rs256.pub").into());
    cfg.auth.private_channels = vec!["secret-*".into()];
    cfg
}

/// The `ringback` binary serving on a free port, started and awaited by its "live" line.
pub async fn spawn_server(name: &str, extra: &[&str]) -> (tokio::process::Child, SocketAddr) {
    let (child, addr, _) = spawn_logged(name, extra).await;
    (child, addr)
}

/// The same, keeping every line it writes (its logs go to stdout).
pub async fn spawn_logged(
    name: &str,
    extra: &[&str],
) -> (
    tokio::process::Child,
    SocketAddr,
    std::sync::Arc<std::sync::Mutex<String>>,
) {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let data = scratch(name);
    let log_level = if extra.contains(&"--log") {
        &[][..]
    } else {
        &["--log", "warn"][..]
    };
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ringback"))
        .args(["--addr", &addr.to_string()])
        .args(log_level)
        .arg("--data-dir")
        .arg(&data)
        .args(extra)
        .env("LEPTOS_OUTPUT_NAME", "ringback")
        .env_remove("LEPTOS_HASH_FILES")
        .env_remove("REDIS_URL")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("Ringback is live") {
                return;
            }
        }
        panic!("the server exited before serving");
    })
    .await
    .expect("the server started");
    // Keep draining stdout so the child never blocks on a full pipe.
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    tokio::spawn({
        let log = log.clone();
        async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        }
    });
    (child, addr, log)
}

pub fn signal(child: &tokio::process::Child, sig: &str) {
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap();
    assert!(status.success());
}
