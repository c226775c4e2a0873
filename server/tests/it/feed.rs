//! The live feed over real TCP: publish → SSE, filters, resume, errors, lag cut-off, shutdown.
#![allow(clippy::unwrap_used)]

use crate::support::{
    config, publish, publish_ok, request, until, SseClient, TestServer, PATIENCE,
};
use http::StatusCode;
use http_body_util::BodyExt;
use ringback::Reason;
use std::sync::atomic::Ordering;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn publish_reaches_every_subscriber_as_an_sse_frame() {
    // With compression off, a browser that offers every encoding it decodes gets the plain
    // stream (compressed streams, the default: `compression.rs`).
    let mut cfg = config();
    cfg.events.stream_compression = ringback::config::StreamCompression::Off;
    let server = TestServer::start(cfg).await;
    let encodings = [("accept-encoding", "gzip, deflate, br, zstd")];
    let mut a = SseClient::connect(server.addr, "/messages", &encodings).await;
    let mut b = SseClient::connect(server.addr, "/messages", &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["content-type"], "text/event-stream");
    assert_eq!(a.headers["cache-control"], "no-store");
    assert_eq!(a.headers["x-accel-buffering"], "no");
    // HTTP/1.1's event stream is the connection's last response (see `http1.rs`).
    assert_eq!(a.headers["connection"], "close");
    assert_eq!(a.headers["transfer-encoding"], "chunked");
    assert!(a.headers.get("content-encoding").is_none());

    let id = publish_ok(server.addr, "blue", "hello").await;
    assert!(id < 1 << 53, "an id is exact as a JavaScript number: {id}");
    for client in [&mut a, &mut b] {
        let e = client.next_message().await.unwrap();
        assert_eq!(e.id, Some(id.to_string()));
        assert_eq!(e.event.as_deref(), Some("blue"));
        let mut json = e.json();
        let time = json.as_object_mut().unwrap().remove("time");
        assert!(
            time.and_then(|t| t.as_u64())
                .is_some_and(|t| t > 1_700_000_000_000),
            "the message carries when it was published (Unix ms)"
        );
        assert_eq!(
            json,
            serde_json::json!({ "id": id, "type": "blue", "data": "hello" })
        );
        let retry = client.retry.expect("the stream announces its retry");
        assert!(
            (2000..=4000).contains(&retry),
            "between 1× and 2× --retry: {retry}"
        );
    }
    let next = publish_ok(server.addr, "red", "again").await;
    assert!(next > id, "ids strictly increase");
    assert_eq!(a.next_message().await.unwrap().id, Some(next.to_string()));
    server.shutdown().await;
}

#[tokio::test]
async fn a_new_channel_is_announced_before_its_first_message() {
    let server = TestServer::start(config()).await;
    let mut a = SseClient::connect(server.addr, "/messages", &[]).await;
    publish_ok(server.addr, "green", "first").await;
    publish_ok(server.addr, "green", "second").await;
    let announce = a.next_event().await.unwrap();
    assert_eq!(announce.event.as_deref(), Some("ringback.channel"));
    assert_eq!(announce.json(), serde_json::json!({ "type": "green" }));
    assert_eq!(a.next_event().await.unwrap().json()["data"], "first");
    // Only the first message on a channel is announced.
    assert_eq!(a.next_event().await.unwrap().json()["data"], "second");
    server.shutdown().await;
}

#[tokio::test]
async fn type_filter_delivers_only_named_channels() {
    let server = TestServer::start(config()).await;
    let mut reds = SseClient::connect(server.addr, "/messages?type=red&type=yellow", &[]).await;
    publish_ok(server.addr, "blue", "b").await;
    let red = publish_ok(server.addr, "red", "r").await;
    publish_ok(server.addr, "blue", "b2").await;
    let yellow = publish_ok(server.addr, "yellow", "y").await;
    assert_eq!(reds.next_message().await.unwrap().id, Some(red.to_string()));
    assert_eq!(
        reds.next_message().await.unwrap().id,
        Some(yellow.to_string())
    );

    let (status, _, _) =
        crate::support::request(server.addr, "GET", "/messages?type=bad%0Aname", &[], "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    server.shutdown().await;
}

#[tokio::test]
async fn last_event_id_replays_exactly_what_was_missed() {
    let server = TestServer::start(config()).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(publish_ok(server.addr, "red", &format!("m{i}")).await);
    }
    let resume_from = ids[1].to_string();
    // By header, as EventSource does on reconnect.
    let mut a =
        SseClient::connect(server.addr, "/messages", &[("last-event-id", &resume_from)]).await;
    // By query parameter, as the page does for its first connection.
    let mut b = SseClient::connect(
        server.addr,
        &format!("/messages?lastEventId={resume_from}"),
        &[],
    )
    .await;
    let live = publish_ok(server.addr, "red", "live").await;
    for client in [&mut a, &mut b] {
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(
                client
                    .next_message()
                    .await
                    .unwrap()
                    .id
                    .unwrap()
                    .parse::<u64>()
                    .unwrap(),
            );
        }
        assert_eq!(
            got,
            vec![ids[2], ids[3], ids[4], live],
            "no gap, no duplicate"
        );
    }
    // Without Last-Event-ID a subscriber starts at the newest: only what comes next.
    let mut c = SseClient::connect(server.addr, "/messages", &[]).await;
    let after = publish_ok(server.addr, "red", "after").await;
    assert_eq!(c.next_message().await.unwrap().id, Some(after.to_string()));

    let (status, _, body) = crate::support::request(
        server.addr,
        "GET",
        "/messages",
        &[("last-event-id", "x1")],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let json: serde_json::Value =
        serde_json::from_slice(&body.collect().await.unwrap().to_bytes()).unwrap();
    assert!(json["error"].as_str().unwrap().contains("Last-Event-ID"));
    server.shutdown().await;
}

#[tokio::test]
async fn resume_beyond_history_is_told_of_the_gap() {
    let mut cfg = config();
    cfg.feed.history = 4;
    let server = TestServer::start(cfg).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(publish_ok(server.addr, "red", &format!("m{i}")).await);
    }
    let mut a = SseClient::connect(
        server.addr,
        "/messages",
        &[("last-event-id", &ids[2].to_string())],
    )
    .await;
    let gap = a.next_event().await.unwrap();
    assert_eq!(gap.event.as_deref(), Some("ringback.gap"));
    assert_eq!(
        gap.json(),
        serde_json::json!({ "after": ids[2], "oldest": ids[6] })
    );
    // Then it continues from the oldest message still held.
    assert_eq!(a.next_message().await.unwrap().id, Some(ids[6].to_string()));
    assert_eq!(
        server.state.api.metrics.resume_gaps.load(Ordering::Relaxed),
        1
    );
    server.shutdown().await;
}

#[tokio::test]
async fn bad_publishes_are_refused_counted_and_harmless() {
    let mut cfg = config();
    cfg.feed.max_message_bytes = 1024;
    let server = TestServer::start(cfg).await;
    let mut watcher = SseClient::connect(server.addr, "/messages", &[]).await;
    let cases = [
        ("not json", StatusCode::BAD_REQUEST),
        (r#"{"type":"blue"}"#, StatusCode::BAD_REQUEST),
        (r#"{"data":"x"}"#, StatusCode::BAD_REQUEST),
        (r#"{"type":"bl ue","data":"x"}"#, StatusCode::BAD_REQUEST),
        (r#"{"type":"a\nb","data":"x"}"#, StatusCode::BAD_REQUEST),
        (r#"{"type":"","data":"x"}"#, StatusCode::BAD_REQUEST),
        (
            r#"{"type":"ringback.gap","data":"x"}"#,
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (body, status) in cases {
        let (got, json) = publish(server.addr, body).await;
        assert_eq!(got, status, "{body}");
        assert!(json["error"].is_string(), "{body}: {json}");
    }
    let big = serde_json::json!({ "type": "blue", "data": "x".repeat(2000) }).to_string();
    let (got, json) = publish(server.addr, &big).await;
    assert_eq!(got, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(json["error"].as_str().unwrap().contains("1024"));

    let m = &server.state.api.metrics;
    assert_eq!(m.rejected.get(Reason::BadJson.index()), 3);
    assert_eq!(m.rejected.get(Reason::BadType.index()), 4);
    assert_eq!(m.rejected.get(Reason::TooLarge.index()), 1);

    // Nothing reached subscribers, and the next good message does.
    let id = publish_ok(server.addr, "blue", "fine").await;
    let e = watcher.next_message().await.unwrap();
    assert_eq!(e.id, Some(id.to_string()));
    assert_eq!(e.json()["data"], "fine");
    server.shutdown().await;
}

/// A subscriber that never reads is cut off once it falls behind the history, while another
/// keeps receiving every message; the list's memory stays within its bounds throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_reading_subscriber_is_cut_off_while_others_keep_up() {
    const MESSAGES: usize = 300;
    const SIZE: usize = 64 * 1024;
    let mut cfg = config();
    cfg.feed.history = 16;
    cfg.feed.max_message_bytes = 2 * SIZE;
    let server = TestServer::start(cfg).await;

    // The stalled client: a small receive buffer, and it never reads.
    let localhost = std::net::Ipv4Addr::LOCALHOST;
    let mut stalled = test_support::small_socket(server.addr, localhost)
        .await
        .unwrap();
    stalled
        .write_all(b"GET /messages HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();

    let reader = SseClient::connect(server.addr, "/messages", &[]).await;
    let mut subs = server.state.api.feed.watch_subscribers();
    until(&mut subs, |n| *n == 2).await;

    let payload = serde_json::Value::String("x".repeat(SIZE));
    let (published, received) = crate::support::publish_to_reader(
        &server.state.api.feed,
        reader,
        "blue",
        &payload,
        MESSAGES,
    )
    .await;
    assert_eq!(
        received, published,
        "the reading subscriber got every message in order"
    );
    assert_eq!(
        server
            .state
            .api
            .metrics
            .lagged_disconnects
            .load(Ordering::Relaxed),
        1
    );

    // The server closed the stalled connection: reading it now ends, short of everything.
    let mut total = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let ended = tokio::time::timeout(PATIENCE, async {
        loop {
            match stalled.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the stalled connection was closed by the server"
    );
    assert!(
        total < MESSAGES * SIZE,
        "the stalled client did not get everything ({total} bytes)"
    );
    until(&mut subs, |n| *n == 0).await;
    let (held, bytes) = server.state.api.feed.held();
    assert!(
        held <= 16 && bytes <= 16 * (SIZE + 512),
        "history bounded: {held} entries, {bytes} bytes"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_open_streams_and_returns() {
    let server = TestServer::start(config()).await;
    let mut a = SseClient::connect(server.addr, "/messages", &[]).await;
    let id = publish_ok(server.addr, "red", "before").await;
    assert_eq!(a.next_message().await.unwrap().id, Some(id.to_string()));
    let stopping = tokio::spawn(server.shutdown());
    // Its last words, within the drain window: why, and a `retry:` of 1–3× the usual 2 s, so
    // clients do not return as one herd.
    let last = a.next_event().await.unwrap();
    assert_eq!(last.event.as_deref(), Some("ringback.end"));
    assert_eq!(last.json()["reason"], "draining");
    let retry = a.retry.unwrap();
    assert!((2000..=6000).contains(&retry), "{retry}");
    assert_eq!(last.json()["retry_ms"], retry);
    assert_eq!(
        a.next_event().await,
        None,
        "the stream ends so EventSource reconnects elsewhere"
    );
    tokio::time::timeout(PATIENCE, stopping)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn the_page_is_server_rendered_with_the_latest_messages() {
    let server = TestServer::start(config()).await;
    let id = publish_ok(server.addr, "blue", "rendered on the server").await;
    publish_ok(server.addr, "purple", "a new channel").await;
    let (status, headers, body) = crate::support::request(server.addr, "GET", "/", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
    for needle in [
        "rendered on the server",
        r#"data-channel="red""#,
        r#"data-channel="yellow""#,
        r#"data-channel="blue""#,
        r#"data-channel="purple""#,
        &format!(r#"data-id="{id}""#),
    ] {
        assert!(html.contains(needle), "page lacks {needle}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_paths_are_a_plain_404() {
    let server = TestServer::start(config()).await;
    for path in ["/no-such-page", "/pkg/no-such-file.js"] {
        let (status, _, body) = crate::support::request(server.addr, "GET", path, &[], "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        let text = body.collect().await.unwrap().to_bytes();
        assert_eq!(&text[..], b"Page not found.\n", "a plain 404, not the app");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn healthz_and_metrics_answer() {
    let server = TestServer::start(config()).await;
    let mut a = SseClient::connect(server.addr, "/messages", &[]).await;
    let mut b = SseClient::connect(server.addr, "/messages?type=red", &[]).await;
    let _c = SseClient::connect(server.addr, "/messages?type=blue", &[]).await;
    publish_ok(server.addr, "red", "x").await;
    a.next_message().await.unwrap();
    b.next_message().await.unwrap();
    let (status, _, _) = crate::support::request(server.addr, "GET", "/healthz", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = crate::support::request(server.addr, "GET", "/metrics", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(
        text.contains("ringback_messages_in_total{source=\"http\"} 1"),
        "{text}"
    );
    // Two of the three subscribers take the message; the third's filter skips it.
    assert!(text.contains("ringback_messages_out_total 2\n"), "{text}");
    for family in [
        "ringback_subscribers 3\n",
        "ringback_rejected_total{reason=\"rate_limited\"} 0",
        "ringback_subscriptions_refused_total{reason=\"subscribers_per_ip\"} 0",
        "ringback_write_timeouts_total 0",
        "ringback_lagged_disconnects_total 0",
        "ringback_early_hints_total 0",
        "ringback_redis_up 0",
        "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes ",
        "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total ",
    ] {
        assert!(text.contains(family), "{family} in {text}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn the_publish_command_reaches_subscribers() {
    let server = TestServer::start(config()).await;
    let mut a = SseClient::connect(server.addr, "/messages", &[]).await;
    let args = ringback::config::PublishArgs {
        channel: "yellow".into(),
        data: "from the command".into(),
        json: false,
        url: format!("http://{}", server.addr),
        token: None,
        idempotency_key: None,
        retries: 0,
    };
    let id = ringback::client::publish(&args).await.unwrap();
    let e = a.next_message().await.unwrap();
    assert_eq!(e.id, Some(id.to_string()));
    assert_eq!(e.json()["data"], "from the command");
    let bad = ringback::config::PublishArgs {
        channel: "no good".into(),
        ..args
    };
    let err = ringback::client::publish(&bad).await.unwrap_err();
    assert!(err.contains("400"), "{err}");
    server.shutdown().await;
}

#[tokio::test]
async fn publishing_requires_a_valid_token_when_tokens_are_set() {
    let server = TestServer::start({
        let mut cfg = config();
        cfg.auth.publish_token = vec!["s3cret".into(), "other".into()];
        cfg
    })
    .await;
    let mut sse = SseClient::connect(server.addr, "/messages", &[]).await;
    let body = r#"{"type":"red","data":"refused"}"#;
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Basic s3cret"),
        Some("Bearer s3cre"),
    ] {
        let mut headers = vec![("content-type", "application/json")];
        headers.extend(auth.map(|a| ("authorization", a)));
        let (status, h, answer) = request(server.addr, "POST", "/messages", &headers, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(h["www-authenticate"], "Bearer");
        let answer = answer.collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&answer).unwrap();
        assert!(json["error"].as_str().unwrap().contains("token"), "{json}");
    }
    // Refused before the body is looked at: a bad body without a token is a 401, not a 400.
    let (status, _, _) = request(server.addr, "POST", "/messages", &[], "not json").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let mut args = ringback::config::PublishArgs {
        channel: "red".into(),
        data: "with the token".into(),
        json: false,
        url: format!("http://{}", server.addr),
        token: Some("other".into()),
        idempotency_key: None,
        retries: 0,
    };
    let id = ringback::client::publish(&args).await.unwrap();
    // The first message the subscriber sees is the authorised one: nothing refused got through.
    let e = sse.next_message().await.unwrap();
    assert_eq!(e.id, Some(id.to_string()));
    assert_eq!(e.json()["data"], "with the token");
    args.token = None;
    let err = ringback::client::publish(&args).await.unwrap_err();
    assert!(err.contains("401"), "{err}");
    assert_eq!(
        server
            .state
            .api
            .metrics
            .rejected
            .get(Reason::Unauthorized.index()),
        6
    );
    server.shutdown().await;
}

#[tokio::test]
async fn every_response_names_its_request_id() {
    let server = TestServer::start(config()).await;
    let (_, a, _) = request(server.addr, "GET", "/healthz", &[], "").await;
    let (_, b, _) = request(server.addr, "GET", "/healthz", &[], "").await;
    assert_ne!(a["x-request-id"], b["x-request-id"]);
    let (_, kept, _) = request(
        server.addr,
        "GET",
        "/healthz",
        &[("x-request-id", "proxy-42")],
        "",
    )
    .await;
    assert_eq!(kept["x-request-id"], "proxy-42");
    let forged = "x".repeat(65);
    let (_, replaced, _) = request(
        server.addr,
        "GET",
        "/healthz",
        &[("x-request-id", &forged)],
        "",
    )
    .await;
    assert_ne!(replaced["x-request-id"], forged.as_str());
    // Errors and streams carry it too.
    let json = [("content-type", "application/json")];
    let (status, h, _) = request(server.addr, "POST", "/messages", &json, "nope").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(h.contains_key("x-request-id"));
    server.shutdown().await;
}

/// Reads from `s` until `needle` has arrived; returns everything read.
async fn read_until(s: &mut tokio::net::TcpStream, needle: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(PATIENCE, async {
        while !got.windows(needle.len()).any(|w| w == needle) {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the bytes arrived");
    got
}

#[tokio::test]
async fn the_http1_event_stream_is_chunked_and_other_requests_stay_on_hyper() {
    let server = TestServer::start(config()).await;
    // The head in two writes: the fast path waits for the rest of it.
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET /messages?type=blue HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    s.write_all(b"Content-Length: 0\r\n\r\n").await.unwrap();
    let head = read_until(&mut s, b"\n\n").await;
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    for line in [
        "content-type: text/event-stream\r\n",
        "transfer-encoding: chunked\r\n",
        "connection: close\r\n",
        "x-request-id: ",
        "date: ",
    ] {
        assert!(head.contains(line), "{line:?} in {head}");
    }
    let id = publish_ok(server.addr, "blue", "chunked").await;
    let frame = format!("id: {id}\nevent: blue\ndata: ");
    let got = read_until(&mut s, b"\n\n\r\n").await;
    let text = String::from_utf8(got).unwrap();
    let (size, rest) = text.split_once("\r\n").unwrap();
    let size = usize::from_str_radix(size, 16).unwrap();
    assert_eq!(size + 2, rest.len(), "one chunk, one frame: {text:?}");
    assert!(rest.starts_with(&frame), "{text:?}");

    // HTTP/1.0 cannot be chunked: hyper answers it, as before.
    let mut s10 = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    s10.write_all(b"GET /messages HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let head = read_until(&mut s10, b"\n\n").await;
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.0 200 ok\r\n"), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");

    // Two pipelined requests: hyper serves both, in order.
    let mut p = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    p.write_all(
        b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /messages HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .await
    .unwrap();
    let both = read_until(&mut p, b"\n\n").await;
    let both = String::from_utf8(both).unwrap();
    assert!(both.starts_with("HTTP/1.1 200 OK\r\n"), "{both}");
    assert_eq!(both.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{both}");
    server.shutdown().await;
}

/// `POST /messages` takes exactly `type` and `data`: a field more is a `400`, not silently
/// dropped (a publisher's typo would otherwise lose what it meant).
#[tokio::test]
async fn a_publish_with_an_unknown_field_is_refused() {
    let server = TestServer::start(config()).await;
    let (status, json) = publish(server.addr, r#"{"type":"blue","data":"x","colour":"red"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert!(json["error"].as_str().unwrap().contains("colour"), "{json}");
    let m = &server.state.api.metrics;
    assert_eq!(m.rejected.get(Reason::BadJson.index()), 1);
    server.shutdown().await;
}

/// `?since=` on the embedded feed: from the first message published at that time or later; a
/// time from before the server started (its history cannot hold it) is told of the gap.
#[tokio::test]
async fn since_starts_at_a_time_in_the_embedded_history() {
    let server = TestServer::start(config()).await;
    let feed = &server.state.api.feed;
    let first = feed.publish("red", &"early".into()).unwrap();
    // The clock moves on (messages a millisecond apart at least).
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let since = ringback_now_ms();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let second = feed.publish("red", &"later".into()).unwrap();
    let third = feed.publish("blue", &"later still".into()).unwrap();
    let mut sse = SseClient::connect(server.addr, &format!("/messages?since={since}"), &[]).await;
    for want in [second, third] {
        assert_eq!(sse.next_message().await.unwrap().id, Some(want.to_string()));
    }
    // From before the first message: it, and everything after.
    let mut all = SseClient::connect(
        server.addr,
        &format!("/messages?since={}", since - 10_000),
        &[],
    )
    .await;
    let e = all.next_event().await.unwrap();
    assert_eq!(
        e.event.as_deref(),
        Some("ringback.gap"),
        "before the server's start: a gap"
    );
    assert_eq!(
        all.next_message().await.unwrap().id,
        Some(first.to_string())
    );
    server.shutdown().await;
}

fn ringback_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Embedded ids start from the clock, so a restarted server's are larger than any it gave out
/// before, and a browser resuming from one of those is told of the gap, not left waiting.
#[tokio::test]
async fn ids_keep_increasing_across_an_embedded_restart() {
    let server = TestServer::start(config()).await;
    let before = publish_ok(server.addr, "red", "before").await;
    server.shutdown().await;
    let server = TestServer::start(config()).await;
    let after = publish_ok(server.addr, "red", "after").await;
    assert!(after > before, "{after} > {before}");
    let mut resumed = SseClient::connect(
        server.addr,
        "/messages",
        &[("last-event-id", &before.to_string())],
    )
    .await;
    let e = resumed.next_event().await.unwrap();
    assert_eq!(e.event.as_deref(), Some("ringback.gap"));
    assert_eq!(
        resumed.next_message().await.unwrap().id,
        Some(after.to_string())
    );
    server.shutdown().await;
}

/// A body over `--max-message-bytes` sent without a `Content-Length` (chunked) is cut at the
/// limit and refused (`413`), not read to its end.
#[tokio::test]
async fn a_chunked_body_over_the_limit_is_refused() {
    let mut cfg = config();
    cfg.feed.max_message_bytes = 1024;
    let server = TestServer::start(cfg).await;
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    s.write_all(
        b"POST /messages HTTP/1.1\r\nHost: t\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
    )
    .await
    .unwrap();
    // 1 KiB chunks, 64 of them: the server answers once the limit is passed, whatever follows.
    let (mut rx, mut tx) = s.into_split();
    let writer = tokio::spawn(async move {
        let chunk = format!("400\r\n{}\r\n", "x".repeat(1024));
        for _ in 0..64 {
            if tx.write_all(chunk.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(PATIENCE, async {
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            match rx.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("an answer in time");
    writer.abort();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413"), "{text:?}");
    let m = &server.state.api.metrics;
    assert_eq!(m.rejected.get(Reason::TooLarge.index()), 1);
    server.shutdown().await;
}

/// `POST /api/snapshot`, the server function the page calls after a gap: every channel, the
/// latest `--ui-messages` of each, and the id the stream continues after, taken together.
#[tokio::test]
async fn the_snapshot_is_the_latest_messages_of_each_channel_and_their_id() {
    let mut cfg = config();
    cfg.site.ui_messages = 2;
    let server = TestServer::start(cfg).await;
    let mut red = Vec::new();
    for i in 0..3 {
        red.push(publish_ok(server.addr, "red", &format!("r{i}")).await);
    }
    let blue = publish_ok(server.addr, "blue", "b0").await;
    let (status, headers, body) = request(
        server.addr,
        "POST",
        "/api/snapshot",
        &[("content-type", "application/x-www-form-urlencoded")],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"].to_str().unwrap().contains("json"));
    let snapshot: serde_json::Value =
        serde_json::from_slice(&body.collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(
        snapshot["last_id"], blue,
        "the newest id, taken with the messages"
    );
    assert_eq!(snapshot["per_channel"], 2);
    let ids: Vec<u64> = snapshot["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![red[1], red[2], blue],
        "the latest two of red, and blue's"
    );
    let channels = snapshot["channels"].as_array().unwrap();
    for c in ["red", "yellow", "blue"] {
        assert!(channels.contains(&c.into()), "{c} in {channels:?}");
    }
    server.shutdown().await;
}

/// A plain HTTP/1.1 subscriber's frames are written straight to its socket while it waits
/// (`feed/broadcast/direct.rs`); one that stops reading fills its socket mid-chunk, and is handed
/// back to its own task, which writes the rest of that chunk before anything else. Read again,
/// the stream is whole: valid chunks, every message once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_and_reads_again_misses_nothing() {
    const MESSAGES: u64 = 200;
    const SIZE: usize = 20_000;
    let mut cfg = config();
    cfg.feed.history = 1024;
    cfg.feed.history_bytes = 64 << 20;
    cfg.feed.max_message_bytes = 2 * SIZE;
    cfg.events.stream_compression = ringback::config::StreamCompression::Off;
    let server = TestServer::start(cfg).await;
    let localhost = std::net::Ipv4Addr::LOCALHOST;
    let mut slow = test_support::small_socket(server.addr, localhost)
        .await
        .unwrap();
    slow.write_all(b"GET /messages HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut subs = server.state.api.feed.watch_subscribers();
    until(&mut subs, |n| *n == 1).await;
    let feed = &server.state.api.feed;
    let first = feed.newest_id() + 1;
    // Some while it reads, the rest (more than its socket's buffers hold) while it does not.
    let payload = serde_json::Value::String("x".repeat(SIZE));
    let mut wire = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    for i in 0..MESSAGES {
        feed.publish("blue", &payload).unwrap();
        if i < 10 {
            let n = slow.read(&mut buf).await.unwrap();
            wire.extend_from_slice(&buf[..n]);
        }
    }
    // Everything, then the end of the stream at shutdown.
    let reading = tokio::spawn(async move {
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => return wire,
                Ok(n) => wire.extend_from_slice(&buf[..n]),
            }
        }
    });
    let newest = tokio::time::timeout(PATIENCE, async {
        loop {
            let last = feed.newest_id();
            let delivered = server
                .state
                .api
                .metrics
                .messages_out
                .load(Ordering::Relaxed);
            if delivered >= MESSAGES {
                return last;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("every message delivered");
    assert_eq!(newest, first + MESSAGES - 1);
    server.shutdown().await;
    let wire = tokio::time::timeout(PATIENCE, reading)
        .await
        .unwrap()
        .unwrap();

    // The head, then chunks until the last one.
    let head_end = wire.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let mut rest = &wire[head_end..];
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = std::str::from_utf8(&rest[..line_end]).unwrap();
        let size = usize::from_str_radix(size, 16).expect("a chunk's size line");
        rest = &rest[line_end + 2..];
        if size == 0 {
            break;
        }
        body.extend_from_slice(&rest[..size]);
        assert_eq!(&rest[size..size + 2], b"\r\n", "a chunk ends with CRLF");
        rest = &rest[size + 2..];
    }
    let received: Vec<u64> = std::str::from_utf8(&body)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|n| n.parse().unwrap())
        .collect();
    let expected: Vec<u64> = (first..first + MESSAGES).collect();
    assert_eq!(received, expected, "every message once, in order");
}
