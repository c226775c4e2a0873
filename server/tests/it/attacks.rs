//! Hostile clients, over real sockets on loopback: each test tries one attack, bounded in time
//! and traffic, and asserts the bound that stops it (and its metric). Deadlines run on tokio's
//! paused clock: the runtime jumps to the next timer whenever every task waits, so a 5 s
//! deadline costs no wall time, and a client's "one byte a second" is exact.
//!
//! What the same attacks cost at scale (RSS, CPU, a canary's latency) is measured by
//! `bench/attacks.sh` (BENCHMARKS.md). The stalled-HTTP/2-readers attack needs a counting
//! allocator and lives in `server/tests/stalled.rs`.
#![allow(clippy::unwrap_used)]

use crate::support::{config, publish_ok, TestServer, PATIENCE};
use ringback::Reason;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads until the server closes the connection (EOF or reset); returns what it said. A
/// connection still open after a minute (of the paused clock) fails the test.
async fn until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server never closed the connection");
    out
}

/// The status code of the first response in `bytes`.
fn status_of(bytes: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(bytes);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

/// Sends `bytes` one at a time, `gap` apart, until the server answers or closes the
/// connection; returns how many were sent and what the server said before closing.
async fn drip(s: &mut TcpStream, bytes: &[u8], gap: Duration) -> (usize, Vec<u8>) {
    for (i, b) in bytes.iter().enumerate() {
        if s.write_all(&[*b]).await.is_err() {
            return (i, Vec::new());
        }
        let mut probe = [0u8; 1];
        tokio::select! {
            read = s.read(&mut probe) => match read {
                Ok(0) | Err(_) => return (i + 1, Vec::new()),
                Ok(_) => {
                    let mut said = probe.to_vec();
                    said.extend(until_closed(s).await);
                    return (i + 1, said);
                }
            },
            _ = tokio::time::sleep(gap) => {}
        }
    }
    (bytes.len(), Vec::new())
}

#[tokio::test(start_paused = true)]
async fn a_partial_preface_is_closed_at_the_header_deadline() {
    let server = TestServer::start(config()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    // 22 of the 24 bytes of the HTTP/2 preface, then nothing.
    s.write_all(&b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..22])
        .await
        .unwrap();
    assert!(until_closed(&mut s).await.is_empty());
    assert_eq!(started.elapsed().as_secs(), HEAD_TIMEOUT.as_secs());
    let m = &server.state.api.metrics;
    assert_eq!(m.cut_header_read_timeout.load(Ordering::Relaxed), 1);
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_half_sent_tls_handshake_is_closed_at_the_header_deadline() {
    let dir = crate::support::scratch("attack-tls");
    let server = TestServer::start_state(
        crate::support::state({
            let mut cfg = config();
            cfg.tls.data_dir = dir.clone();
            cfg
        })
        .with_tls(ringback::server_config(None, None, &dir).unwrap()),
    )
    .await;
    // A ClientHello record header that promises 512 bytes, and 3 of them.
    let mut tls = TcpStream::connect(server.addr).await.unwrap();
    tls.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01")
        .await
        .unwrap();
    let started = Instant::now();
    assert!(until_closed(&mut tls).await.is_empty());
    assert_eq!(started.elapsed().as_secs(), HEAD_TIMEOUT.as_secs());
    let m = &server.state.api.metrics;
    assert_eq!(m.cut_header_read_timeout.load(Ordering::Relaxed), 1);
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(start_paused = true)]
async fn a_dripped_request_head_is_closed_at_the_header_deadline() {
    let server = TestServer::start(config()).await;
    for head in [
        &b"GET /messages HTTP/1.1\r\nHost: t\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: t\r\nAccept: text/html\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        let started = Instant::now();
        let (sent, said) = drip(&mut s, head, Duration::from_secs(1)).await;
        assert!(sent < head.len(), "closed before the head was whole");
        assert!(said.is_empty(), "no answer to half a head");
        assert!(started.elapsed() <= HEAD_TIMEOUT + Duration::from_secs(1));
    }
    let m = &server.state.api.metrics;
    assert_eq!(m.cut_header_read_timeout.load(Ordering::Relaxed), 2);
    server.shutdown().await;
}

/// A `POST /messages` head over a fresh connection, with these extra header lines.
async fn post_head(addr: SocketAddr, length: u64) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /messages HTTP/1.1\r\nHost: t\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s
}

#[tokio::test(start_paused = true)]
async fn a_body_declared_over_the_limit_is_refused_before_it_is_read() {
    let server = TestServer::start(config()).await;
    let mut s = post_head(server.addr, 1 << 30).await;
    // Not one byte of the body is sent: the answer comes from the head alone, at once.
    let started = Instant::now();
    let answer = until_closed(&mut s).await;
    assert_eq!(status_of(&answer), 413);
    assert_eq!(started.elapsed(), Duration::ZERO);
    let m = &server.state.api.metrics;
    assert_eq!(m.rejected.get(Reason::TooLarge.index()), 1);
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_stalled_or_dripping_body_is_cut_and_its_connection_closed() {
    let server = TestServer::start({
        let mut cfg = config();
        cfg.body.body_timeout = Duration::from_secs(10);
        cfg.body.min_body_rate = 4096;
        cfg
    })
    .await;
    // Two bytes of a declared thousand, then silence: under the minimum rate after 1 s.
    let mut stalled = post_head(server.addr, 1000).await;
    stalled.write_all(b"{\"").await.unwrap();
    let started = Instant::now();
    let answer = until_closed(&mut stalled).await;
    assert_eq!(status_of(&answer), 408);
    assert!(
        started.elapsed() <= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let m = &server.state.api.metrics;
    assert_eq!(m.cut_min_body_rate.load(Ordering::Relaxed), 1);
    server.shutdown().await;

    // Without a minimum rate, a byte every 5 s is held until the body timeout, and no longer.
    let server = TestServer::start({
        let mut cfg = config();
        cfg.body.body_timeout = Duration::from_secs(10);
        cfg.body.min_body_rate = 0;
        cfg
    })
    .await;
    let mut dripping = post_head(server.addr, 1000).await;
    let started = Instant::now();
    let body = b"{\"type\":\"blue\",\"data\":\"".repeat(40);
    let (sent, said) = drip(&mut dripping, &body, Duration::from_secs(5)).await;
    assert!(sent <= 3, "{sent} bytes sent before the cut");
    assert_eq!(status_of(&said), 408);
    assert!(started.elapsed() <= Duration::from_secs(15));
    let m = &server.state.api.metrics;
    assert_eq!(m.cut_body_timeout.load(Ordering::Relaxed), 1);
    // Nothing else was lost: the server still publishes.
    publish_ok(server.addr, "blue", "after").await;
    server.shutdown().await;
}

#[tokio::test]
async fn an_http1_request_needs_exactly_one_host() {
    let server = TestServer::start(config()).await;
    let ask = |head: &'static [u8]| async move {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(head).await.unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tokio::time::timeout(PATIENCE, s.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "closed without an answer");
            answer.extend_from_slice(&buf[..n]);
        }
        status_of(&answer)
    };
    assert_eq!(ask(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n").await, 200);
    assert_eq!(ask(b"GET /healthz HTTP/1.1\r\n\r\n").await, 400);
    assert_eq!(
        ask(b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").await,
        400
    );
    // The event stream's own HTTP/1.1 path goes through the same check.
    assert_eq!(ask(b"GET /messages HTTP/1.1\r\n\r\n").await, 400);
    assert_eq!(
        ask(b"GET /messages HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n").await,
        400
    );
    // HTTP/1.0 has no Host requirement.
    assert_eq!(ask(b"GET /healthz HTTP/1.0\r\n\r\n").await, 200);
    let m = &server.state.api.metrics;
    assert_eq!(m.bad_host.load(Ordering::Relaxed), 4);
    server.shutdown().await;
}

/// `POST /messages` of one message on `channel`, from `from` (a loopback address of its own).
async fn publish_from(from: [u8; 4], to: SocketAddr, channel: &str) -> u16 {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    let mut s = socket.connect(to).await.unwrap();
    let body = serde_json::json!({ "type": channel, "data": "x" }).to_string();
    let request = format!(
        "POST /messages HTTP/1.1\r\nHost: t\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).await.unwrap();
    status_of(&until_closed(&mut s).await)
}

#[tokio::test(start_paused = true)]
async fn one_address_cannot_take_every_channel_and_idle_ones_are_forgotten() {
    let server = TestServer::start({
        let mut cfg = config();
        // Room for 5 channels beyond the 3 defaults.
        cfg.feed.max_channels = 8;
        cfg.limits.new_channel_rate = 1.0;
        cfg.limits.new_channel_burst = 3;
        cfg.feed.channel_idle = Duration::from_secs(600);
        cfg
    })
    .await;
    let (a, b) = ([127, 0, 0, 2], [127, 0, 0, 3]);
    for i in 0..3 {
        assert_eq!(publish_from(a, server.addr, &format!("a{i}")).await, 202);
    }
    // The attacker's allowance is spent: a fourth new channel is refused, an old one is not.
    assert_eq!(publish_from(a, server.addr, "a3").await, 429);
    assert_eq!(publish_from(a, server.addr, "a0").await, 202);
    // Another address still gets its channels.
    assert_eq!(publish_from(b, server.addr, "b0").await, 202);
    assert_eq!(publish_from(b, server.addr, "b1").await, 202);
    assert_eq!(
        publish_from(b, server.addr, "b2").await,
        429 /* --max-channels */
    );
    let m = &server.state.api.metrics;
    assert_eq!(m.rejected.get(Reason::NewChannelRate.index()), 1);
    assert_eq!(m.rejected.get(Reason::TooManyChannels.index()), 1);
    // Ten minutes on, the attacker's channels are idle: forgotten when room is needed.
    tokio::time::advance(Duration::from_secs(600)).await;
    assert_eq!(publish_from(b, server.addr, "b2").await, 202);
    assert!(m.channels_forgotten.load(Ordering::Relaxed) >= 3);
    assert_eq!(
        server.state.api.feed.channel_count(),
        4,
        "3 defaults and b2"
    );
    server.shutdown().await;
}

/// Sends one HTTP/1.1 request on `s` (kept alive) and reads its answer: status and body.
async fn exchange(s: &mut TcpStream, request: &str) -> Option<(u16, String)> {
    tokio::time::timeout(Duration::from_secs(60), exchange_inner(s, request))
        .await
        .expect("an answer (or the connection's end) within a minute")
}

async fn exchange_inner(s: &mut TcpStream, request: &str) -> Option<(u16, String)> {
    s.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&answer[..end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if answer.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&answer[end + 4..end + 4 + length]);
                return Some((status_of(&answer), body.into_owned()));
            }
        }
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
}

fn post_request(data: &str) -> String {
    let body = serde_json::json!({ "type": "blue", "data": data }).to_string();
    format!(
        "POST /messages HTTP/1.1\r\nHost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A publisher's pooled connection: kept alive between publishes for `--keep-alive-timeout`,
/// not the header deadline; a later head that starts still has the header deadline from its
/// first byte; and past the keep-alive, the connection is closed (and counted).
#[tokio::test(start_paused = true)]
async fn a_kept_alive_connection_waits_for_its_next_request() {
    let server = TestServer::start(config()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(exchange(&mut s, &post_request("1")).await.unwrap().0, 202);
    // Idle 30 s (six header deadlines): the next publish on the same connection is served.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(exchange(&mut s, &post_request("2")).await.unwrap().0, 202);
    // A head that starts dripping has the header deadline from its first byte.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let started = Instant::now();
    let (sent, said) = drip(&mut s, post_request("3").as_bytes(), Duration::from_secs(1)).await;
    assert!(said.is_empty() && sent < 10, "{sent} bytes, then {said:?}");
    assert!(started.elapsed() <= HEAD_TIMEOUT + Duration::from_secs(1));
    let m = &server.state.api.metrics;
    assert_eq!(m.cut_header_read_timeout.load(Ordering::Relaxed), 1);
    // Idle past the keep-alive timeout: closed, counted.
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(exchange(&mut s, &post_request("4")).await.unwrap().0, 202);
    let idle = Instant::now();
    tokio::time::sleep(Duration::from_secs(70)).await;
    assert!(until_closed(&mut s).await.is_empty());
    assert_eq!(idle.elapsed(), Duration::from_secs(75));
    assert_eq!(m.cut_keep_alive_timeout.load(Ordering::Relaxed), 1);
    server.shutdown().await;
}

/// Connections that idle between requests pin nothing a client with a request could use: when
/// the server holds `--max-connections`, the idle ones are closed to make room.
#[tokio::test(start_paused = true)]
async fn idle_kept_alive_connections_make_room_at_the_connection_limit() {
    let server = TestServer::start({
        let mut cfg = config();
        cfg.transport.max_connections = 8;
        cfg
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..8 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        let (status, _) = exchange(&mut s, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(status, 200);
        idle.push(s);
    }
    // The server is full of idle connections; one more client with a request is served at
    // once, not after the keep-alive timeout.
    let started = Instant::now();
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let answered = tokio::time::timeout(
        Duration::from_secs(5),
        exchange(&mut s, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"),
    )
    .await
    .expect("an idle connection made room");
    assert_eq!(answered.unwrap().0, 200);
    assert!(started.elapsed() < Duration::from_secs(1));
    let m = &server.state.api.metrics;
    assert_eq!(m.idle_reclaimed.load(Ordering::Relaxed), 8);
    for mut s in idle {
        assert!(until_closed(&mut s).await.is_empty());
    }
    server.shutdown().await;
}
