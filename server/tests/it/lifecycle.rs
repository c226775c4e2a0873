//! Browsers and publishers over days: refusals an EventSource survives (shed answers), `retry:`
//! spread across streams, streams that end at their token's expiry, `415` for anything but
//! JSON, and idempotent publishing. (The drain window's spread and the endings' frames are unit
//! tests in `api/events.rs`; the kept-alive connection, an attack test in `attacks.rs`.)
#![allow(clippy::unwrap_used)]

use crate::support::*;
use http::StatusCode;
use http_body_util::BodyExt;
use ringback::Reason;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A whole response over its own connection (`connection: close`): status, headers (lower
/// case), body.
async fn whole(addr: SocketAddr, source: [u8; 4], head: &str) -> (u16, String, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(PATIENCE, s.read_to_end(&mut all))
        .await
        .expect("the server ends the response")
        .unwrap();
    let text = String::from_utf8(all).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    (status, head.to_lowercase(), body.to_owned())
}

/// Asserts a shed answer: `200 text/event-stream`, a whole body of `retry:` within `[lo, hi]`
/// ms and one `ringback.refused` event with `reason` and the same delay, and nothing else.
fn assert_shed((status, head, body): &(u16, String, String), reason: &str, lo: u64, hi: u64) {
    assert_eq!(*status, 200, "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    assert!(
        head.contains("content-length:"),
        "a whole body that ends: {head}"
    );
    let ms: u64 = body
        .strip_prefix("retry: ")
        .and_then(|b| b.lines().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("retry first: {body:?}"));
    assert!((lo..=hi).contains(&ms), "retry {ms} not in {lo}..={hi}");
    assert_eq!(
        *body,
        format!(
            "retry: {ms}\nevent: ringback.refused\ndata: {{\"reason\":\"{reason}\",\"retry_ms\":{ms}}}\n\n"
        )
    );
}

/// An event stream held open from `source`, once its head has arrived.
async fn hold(addr: SocketAddr, source: [u8; 4]) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    s.write_all(b"GET /messages HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(PATIENCE, s.read_exact(&mut byte))
            .await
            .expect("a response head in time")
            .unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"));
    s
}

const GET_MESSAGES: &str = "GET /messages HTTP/1.1\r\nhost: t\r\nlast-event-id: 0\r\n\r\n";

#[tokio::test]
async fn transient_refusals_are_shed_as_event_streams_that_end() {
    let server = TestServer::start({
        let mut cfg = config();
        cfg.limits.max_subscribers = 3;
        cfg.limits.max_subscribers_per_ip = 2;
        cfg
    })
    .await;
    let addr = server.addr;
    for i in 0..3 {
        publish_ok(addr, "blue", &format!("history {i}")).await;
    }
    let _a1 = hold(addr, [127, 0, 0, 1]).await;
    let _a2 = hold(addr, [127, 0, 0, 1]).await;
    let m = &server.state.api.metrics;
    let resumes = m.resumes.load(std::sync::atomic::Ordering::Relaxed);
    // This address holds its share: shed, with a resume asked for, and no history read.
    let per_ip = whole(addr, [127, 0, 0, 1], GET_MESSAGES).await;
    assert_shed(&per_ip, "subscribers_per_ip", 2000, 8000);
    // Another address takes the last place; the next is shed: the server is full.
    let _b1 = hold(addr, [127, 0, 0, 2]).await;
    let mut subs = server.state.api.feed.watch_subscribers();
    let full = whole(addr, [127, 0, 0, 3], GET_MESSAGES).await;
    assert_shed(&full, "subscribers", 2000, 8000);
    let held = *subs.borrow_and_update();
    assert_eq!(held, 3, "a shed answer holds no subscriber slot");
    assert_eq!(
        m.resumes.load(std::sync::atomic::Ordering::Relaxed),
        resumes,
        "a shed answer reads no history"
    );
    assert_eq!(m.refused.get(Reason::Subscribers.index()), 1);
    assert_eq!(m.refused.get(Reason::SubscribersPerIp.index()), 1);
    // Permanent refusals keep their status: stopping is right there.
    let (bad, head, _) = whole(
        addr,
        [127, 0, 0, 5],
        "GET /messages?type=a%20b HTTP/1.1\r\nhost: t\r\n\r\n",
    )
    .await;
    assert_eq!(bad, 400);
    assert!(head.contains("application/json"));
    // A server told to stop sheds the subscriptions still reaching it (a request in flight on
    // a kept-alive connection, an HTTP/2 stream opened before its GOAWAY) as draining, and is
    // no longer ready. (New connections are not accepted by then: the Router is asked directly.)
    server.state.api.shutdown.cancel();
    let router = ringback::server::router(server.state.clone());
    let ask = |path: &str| {
        let request = http::Request::get(path)
            .header("host", "t")
            .header("last-event-id", "0")
            .body(axum::body::Body::empty())
            .unwrap();
        tower::ServiceExt::oneshot(router.clone(), request)
    };
    let response = ask("/messages").await.unwrap();
    // A whole body of known length: every driver sends it with its length, and ends it.
    let known = http_body::Body::size_hint(response.body())
        .exact()
        .is_some();
    let head = format!(
        "content-type: {}\r\n{}",
        response.headers()["content-type"].to_str().unwrap(),
        if known { "content-length: known" } else { "" }
    );
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let draining = (status, head, String::from_utf8(body.to_vec()).unwrap());
    assert_shed(&draining, "draining", 2000, 6000);
    assert_eq!(m.refused.get(Reason::Draining.index()), 1);
    assert_eq!(ask("/readyz").await.unwrap().status(), 503);
    server.shutdown().await;
}

#[tokio::test]
async fn a_shed_subscriber_comes_back_once_there_is_room() {
    let server = TestServer::start({
        let mut cfg = config();
        cfg.limits.max_subscribers = 1;
        cfg
    })
    .await;
    let first = SseClient::connect(server.addr, "/messages", &[]).await;
    let shed = whole(server.addr, [127, 0, 0, 1], GET_MESSAGES).await;
    assert_shed(&shed, "subscribers", 2000, 8000);
    drop(first);
    let mut subs = server.state.api.feed.watch_subscribers();
    tokio::time::timeout(PATIENCE, subs.wait_for(|n| *n == 0))
        .await
        .unwrap()
        .unwrap();
    let mut back = SseClient::connect(server.addr, "/messages", &[]).await;
    assert_eq!(back.status, StatusCode::OK);
    let id = publish_ok(server.addr, "red", "in").await;
    assert_eq!(back.next_message().await.unwrap().id, Some(id.to_string()));
    server.shutdown().await;
}

/// The first `retry:` of a new stream, in ms.
async fn first_retry(addr: SocketAddr) -> u64 {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /messages HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let text = String::from_utf8_lossy(&seen);
        if let Some(ms) = text
            .split("retry: ")
            .nth(1)
            .and_then(|t| t.split_once('\n'))
            .and_then(|(n, _)| n.parse().ok())
        {
            return ms;
        }
        let n = tokio::time::timeout(PATIENCE, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "the stream opens with its retry");
        seen.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn every_stream_has_a_retry_of_its_own_within_the_documented_range() {
    let server = TestServer::start(config()).await; // --retry 2s: 2000..=4000
    let mut retries = Vec::new();
    for _ in 0..40 {
        retries.push(first_retry(server.addr).await);
    }
    assert!(
        retries.iter().all(|ms| (2000..=4000).contains(ms)),
        "{retries:?}"
    );
    let distinct: std::collections::HashSet<_> = retries.iter().collect();
    assert!(
        distinct.len() >= 30,
        "{} distinct of 40: {retries:?}",
        distinct.len()
    );
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_stream_granted_private_channels_ends_at_its_tokens_expiry() {
    let server = TestServer::start(private_config()).await;
    let exp = jsonwebtoken::get_current_timestamp() + 120;
    let token = hs256(serde_json::json!({"exp": exp, "ringback": {"subscribe": ["secret-*"]}}));
    let started = tokio::time::Instant::now();
    let mut private =
        SseClient::connect(server.addr, &format!("/messages?token={token}"), &[]).await;
    let mut public = SseClient::connect(server.addr, "/messages", &[]).await;
    // Publishing needs a credential on this server: straight into the feed.
    let feed = &server.state.api.feed;
    let id = feed.publish("secret-a", &"for the granted".into()).unwrap();
    assert_eq!(
        private.next_message().await.unwrap().id,
        Some(id.to_string())
    );
    // Two minutes on: the token has expired, and its stream ends, saying why.
    tokio::time::sleep(Duration::from_secs(118)).await;
    let end = loop {
        let e = private.next_event().await.expect("the end event");
        if e.event.as_deref() == Some("ringback.end") {
            break e;
        }
    };
    let lived = started.elapsed();
    assert!(
        lived > Duration::from_secs(118) && lived <= Duration::from_secs(120),
        "{lived:?}"
    );
    assert_eq!(end.json()["reason"], "token_expired");
    let retry = end.json()["retry_ms"].as_u64().unwrap();
    assert!((500..=2000).contains(&retry), "{retry}");
    assert_eq!(private.retry, Some(retry));
    assert_eq!(private.next_event().await, None, "the stream ended");
    // The private message published after the expiry reaches nobody; public streams go on.
    feed.publish("secret-a", &"too late".into()).unwrap();
    let id = feed.publish("blue", &"public".into()).unwrap();
    assert_eq!(
        public.next_message().await.unwrap().id,
        Some(id.to_string())
    );
    let m = &server.state.api.metrics;
    assert_eq!(
        m.ends_token_expired
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    server.shutdown().await;
}

#[tokio::test]
async fn publishing_takes_json_only() {
    let server = TestServer::start(config()).await;
    let mut watcher = SseClient::connect(server.addr, "/messages", &[]).await;
    let body = r#"{"type":"blue","data":"cross-site"}"#;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let headers: Vec<(&str, &str)> = content_type
            .map(|t| ("content-type", t))
            .into_iter()
            .collect();
        let (status, _, answer) = request(server.addr, "POST", "/messages", &headers, body).await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}"
        );
        let answer = answer.collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&answer).unwrap();
        assert!(json["error"].as_str().unwrap().contains("application/json"));
    }
    let m = &server.state.api.metrics;
    assert_eq!(m.rejected.get(Reason::UnsupportedMediaType.index()), 4);
    // Nothing was published; JSON is.
    let id = publish_ok(server.addr, "blue", "json").await;
    assert_eq!(
        watcher.next_message().await.unwrap().id,
        Some(id.to_string())
    );
    server.shutdown().await;
}

/// `POST /messages` with an `Idempotency-Key`: the status, whether the answer was replayed,
/// and the id (or the error).
pub async fn publish_keyed(
    addr: SocketAddr,
    key: &str,
    data: &str,
) -> (StatusCode, bool, serde_json::Value) {
    let body = serde_json::json!({ "type": "blue", "data": data }).to_string();
    let (status, headers, answer) = request(
        addr,
        "POST",
        "/messages",
        &[
            ("content-type", "application/json"),
            ("idempotency-key", key),
        ],
        body,
    )
    .await;
    let answer = answer.collect().await.unwrap().to_bytes();
    let replayed = headers
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    (status, replayed, serde_json::from_slice(&answer).unwrap())
}

#[tokio::test]
async fn a_publish_repeated_with_its_idempotency_key_is_delivered_once() {
    let server = TestServer::start(config()).await;
    let mut watcher = SseClient::connect(server.addr, "/messages", &[]).await;
    let (status, replayed, first) = publish_keyed(server.addr, "order-17", "once").await;
    assert_eq!((status, replayed), (StatusCode::ACCEPTED, false));
    let (status, replayed, again) = publish_keyed(server.addr, "order-17", "once").await;
    assert_eq!((status, replayed), (StatusCode::ACCEPTED, true));
    assert_eq!(again["id"], first["id"], "answered as the first was");
    // The same key for another message is the publisher's bug: said, not hidden.
    let (status, _, err) = publish_keyed(server.addr, "order-17", "other").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    for bad in ["", &"k".repeat(129), "with space"] {
        let (status, _, _) = publish_keyed(server.addr, bad, "x").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}");
    }
    // Two keys on one publish: which one would it be? Refused.
    let (status, _, _) = request(
        server.addr,
        "POST",
        "/messages",
        &[
            ("content-type", "application/json"),
            ("idempotency-key", "a"),
            ("idempotency-key", "b"),
        ],
        r#"{"type":"blue","data":"x"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "two keys");
    // Delivered once: the next message the watcher sees after it is the sentinel.
    let sentinel = publish_ok(server.addr, "blue", "sentinel").await;
    assert_eq!(
        watcher.next_message().await.unwrap().id,
        Some(first["id"].to_string())
    );
    assert_eq!(
        watcher.next_message().await.unwrap().id,
        Some(sentinel.to_string())
    );
    let m = &server.state.api.metrics;
    assert_eq!(
        m.idempotent_replays
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(m.rejected.get(Reason::IdempotencyKeyReused.index()), 1);
    assert_eq!(m.rejected.get(Reason::BadIdempotencyKey.index()), 4);
    server.shutdown().await;
}

#[tokio::test]
async fn ringback_publish_retries_with_one_key() {
    let server = TestServer::start(config()).await;
    let mut watcher = SseClient::connect(server.addr, "/messages", &[]).await;
    let args = ringback::config::PublishArgs {
        channel: "yellow".into(),
        data: "sent twice".into(),
        json: false,
        url: format!("http://{}", server.addr),
        token: None,
        idempotency_key: Some("deploy-42".into()),
        retries: 0,
    };
    let first = ringback::client::publish(&args).await.unwrap();
    let again = ringback::client::publish(&args).await.unwrap();
    assert_eq!(first, again);
    let sentinel = publish_ok(server.addr, "yellow", "sentinel").await;
    assert_eq!(
        watcher.next_message().await.unwrap().id,
        Some(first.to_string())
    );
    assert_eq!(
        watcher.next_message().await.unwrap().id,
        Some(sentinel.to_string())
    );
    server.shutdown().await;
}

/// `ringback publish`, the binary: the id on success; the server's error and exit status 1 on a
/// refusal; and a publish that got no answer (here `503`: the server's Redis is not up yet) sent
/// again with backoff until it is answered, under one key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publish_command_reports_refusals_and_retries_what_got_no_answer() {
    let server = TestServer::start(config()).await;
    let run = |args: Vec<String>| async move {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_ringback"))
            .arg("publish")
            .args(args)
            .output()
            .await
            .unwrap()
    };
    let url = format!("http://{}", server.addr);
    let ok = run(vec![
        "--type".into(),
        "blue".into(),
        "hi".into(),
        "--url".into(),
        url.clone(),
    ])
    .await;
    assert!(ok.status.success());
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("published id "));
    let refused = run(vec![
        "--type".into(),
        "no good".into(),
        "hi".into(),
        "--url".into(),
        url,
    ])
    .await;
    assert_eq!(refused.status.code(), Some(1));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("400") && said.contains("channel"), "{said}");
    server.shutdown().await;

    // Redis comes up while the command waits between its tries: it publishes once.
    let mut redis = RedisServer::not_started("publish-retries");
    let server = TestServer::start(redis_config(&redis)).await;
    let url = format!("http://{}", server.addr);
    let publishing = tokio::spawn(run(vec![
        "--type".into(),
        "red".into(),
        "once".into(),
        "--url".into(),
        url,
        "--retries".into(),
        "6".into(),
    ]));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    redis.restart().await;
    let done = tokio::time::timeout(PATIENCE, publishing)
        .await
        .unwrap()
        .unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let log = redis.cli(&["xlen", "ringback:{feed}:log"]).await.unwrap();
    assert_eq!(log, "1", "published once");
    server.shutdown().await;
}
