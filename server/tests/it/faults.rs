//! Tests on the real binary: SIGTERM with 1,000 open streams, `kill -9` of one server
//! mid-stream behind a shared Redis (`kill -9` of Redis itself is in `redis.rs`), and logs that
//! never show a credential.
#![allow(clippy::unwrap_used)]

use crate::support::{
    signal, spawn_logged, spawn_server, RedisServer, SseClient, TestServer, PATIENCE,
};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Opens an SSE stream over raw HTTP/1.1 and reads up to its `retry:` preamble.
async fn open(addr: SocketAddr) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /messages HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(6).any(|w| w == b"retry:") {
        let n = tokio::time::timeout(PATIENCE, s.read(&mut buf))
            .await
            .expect("the stream opens in time")
            .unwrap();
        assert!(n > 0, "stream closed early");
        got.extend_from_slice(&buf[..n]);
    }
    (s, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_1000_open_streams_cleanly_within_the_grace_period() {
    const STREAMS: usize = 1000;
    let (mut child, addr) = spawn_server("sigterm", &["--shutdown-grace", "10s"]).await;
    let mut streams = Vec::with_capacity(STREAMS);
    for _ in 0..STREAMS {
        streams.push(open(addr).await);
    }
    let readers: Vec<_> = streams
        .into_iter()
        .map(|(mut s, mut got)| {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) => return Ok(got),
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                        Err(e) => return Err(e),
                    }
                }
            })
        })
        .collect();
    signal(&child, "-TERM");
    // Every stream ends, within the drain window, with its parting `retry:` and `ringback.end`,
    // and the chunked body's last chunk: a clean end EventSource reconnects from, not a reset.
    let all = tokio::time::timeout(PATIENCE, futures::future::join_all(readers))
        .await
        .expect("every stream closed in time");
    for (i, got) in all.into_iter().enumerate() {
        let got = got
            .unwrap()
            .unwrap_or_else(|e| panic!("stream {i} was reset: {e}"));
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.ends_with("\n\n\r\n0\r\n\r\n"),
            "stream {i} did not end cleanly: {text:?}"
        );
        assert_eq!(text.matches("retry:").count(), 2, "stream {i}: {text:?}");
        assert!(
            text.contains("event: ringback.end\ndata: {\"reason\":\"draining\""),
            "stream {i} says why it ends: {text:?}"
        );
    }
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("the server exited")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn kill_9_of_one_server_mid_stream_loses_nothing() {
    let redis = RedisServer::start("faults-kill").await;
    let url = redis.url();
    let (mut a, a_addr) = spawn_server("kill-a", &["--redis-url", &url]).await;
    let b = TestServer::start(crate::support::redis_config(&redis)).await;
    crate::support::await_online(&b.state, true).await;

    let mut sse = SseClient::connect(a_addr, "/messages", &[]).await;
    let mut last = None;
    for n in 0..3 {
        crate::support::publish_ok(b.addr, "blue", &format!("before {n}")).await;
        let e = sse.next_message().await.unwrap();
        assert_eq!(e.json()["data"], format!("before {n}"));
        last = e.id;
    }
    signal(&a, "-KILL");
    assert_eq!(sse.next_event().await, None, "A's stream broke off");
    let status = tokio::time::timeout(PATIENCE, a.wait())
        .await
        .expect("A died")
        .unwrap();
    assert!(!status.success());

    // While the browser waits to reconnect, the feed goes on on B.
    for n in 0..3 {
        crate::support::publish_ok(b.addr, "blue", &format!("during {n}")).await;
    }
    let last = last.unwrap();
    let mut resumed = SseClient::connect(b.addr, "/messages", &[("last-event-id", &last)]).await;
    for n in 0..3 {
        let e = resumed.next_message().await.unwrap();
        assert_eq!(
            e.json()["data"],
            format!("during {n}"),
            "missed ones, in order, once"
        );
    }
    crate::support::publish_ok(b.addr, "blue", "after").await;
    let e = resumed.next_message().await.unwrap();
    assert_eq!(e.json()["data"], "after");
    b.shutdown().await;
}

#[tokio::test]
async fn no_credential_reaches_the_logs() {
    const SECRET: &str = "log-test-jwt-secret";
    const TOKEN: &str = "static-publish-token-0123456789";
    let (mut child, addr, log) = spawn_logged(
        "logs",
        &[
            "--log",
            "debug",
            "--publish-token",
            TOKEN,
            "--jwt-secret",
            SECRET,
            "--private-channels",
            "secret-*",
        ],
    )
    .await;
    let jwt = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"exp": 4_000_000_000u64, "ringback": {"subscribe": ["*"]}}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let body = r#"{"type":"blue","data":"x"}"#;
    let bearer = format!("Bearer {TOKEN}");
    let wrong = format!("Bearer {TOKEN}-wrong");
    for (auth, want) in [(&bearer, 202), (&wrong, 401)] {
        let headers = [
            ("content-type", "application/json"),
            ("authorization", auth),
        ];
        let (status, _, _) =
            crate::support::request(addr, "POST", "/messages", &headers, body).await;
        assert_eq!(status, want, "{auth}");
    }
    let cookie = format!("ringback_token={jwt}-stale");
    let query = format!("/messages?token={jwt}");
    drop(SseClient::connect(addr, &query, &[]).await);
    drop(SseClient::connect(addr, "/messages?token=bad.jwt.value", &[]).await);
    drop(SseClient::connect(addr, "/messages", &[("cookie", &cookie)]).await);
    // The server has handled all of it once it answers the next request.
    let (status, _, _) = crate::support::request(addr, "GET", "/healthz", &[], "").await;
    assert_eq!(status, http::StatusCode::OK);
    signal(&child, "-TERM");
    tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("a graceful stop in time")
        .unwrap();
    let log = log.lock().unwrap().clone();
    // Every request's access line was written (the 401 for the bad query token among them).
    assert!(
        log.matches("answered").count() >= 6 && log.contains("status=401"),
        "debug logs were written: {log}"
    );
    for secret in [TOKEN, SECRET, &jwt, "bad.jwt.value"] {
        assert!(
            !log.contains(secret),
            "{secret:?} appears in the log:\n{log}"
        );
    }
}
