//! Access and limits over real HTTP: JWT publishers, private channels (live and on replay),
//! CORS, subscriber limits, the publish rate, and the write deadline.
#![allow(clippy::unwrap_used)]

use crate::support::{
    config, hs256, later, private_config, request, until, SseClient, TestServer, PATIENCE,
};
use http::StatusCode;
use http_body_util::BodyExt;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use ringback::Reason;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `POST /messages` with a bearer credential; the status and the JSON answer.
async fn post(
    addr: SocketAddr,
    token: Option<&str>,
    channel: &str,
    data: &str,
) -> (StatusCode, http::HeaderMap, serde_json::Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    headers.extend(auth.as_deref().map(|a| ("authorization", a)));
    let body = json!({ "type": channel, "data": data }).to_string();
    let (status, h, answer) = request(addr, "POST", "/messages", &headers, body).await;
    let answer = answer.collect().await.unwrap().to_bytes();
    (
        status,
        h,
        serde_json::from_slice(&answer).unwrap_or_default(),
    )
}

/// Reads the stream's messages until one carries `last`; returns their channel/data pairs.
async fn read_until(sse: &mut SseClient, last: &str) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    loop {
        let e = sse.next_message().await.expect("stream open");
        let m = e.json();
        let data = m["data"].as_str().unwrap().to_owned();
        assert_eq!(e.event.as_deref(), m["type"].as_str());
        seen.push((m["type"].as_str().unwrap().to_owned(), data.clone()));
        if data == last {
            return seen;
        }
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(c, d)| (c.to_string(), d.to_string()))
        .collect()
}

#[tokio::test]
async fn jwt_publishers_publish_only_to_their_channels() {
    let server = TestServer::start(private_config()).await;
    let mut sse = SseClient::connect(server.addr, "/messages", &[]).await;
    let blue_only = hs256(json!({"sub": "svc", "exp": later(), "ringback": {"publish": ["blue"]}}));

    let (status, _, _) = post(server.addr, Some(&blue_only), "blue", "allowed").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, h, answer) = post(server.addr, Some(&blue_only), "red", "forbidden").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("`red`"),
        "{answer}"
    );
    assert!(h.get("www-authenticate").is_none());

    let expired = hs256(json!({"exp": 1_000_000, "ringback": {"publish": ["*"]}}));
    let (status, h, answer) = post(server.addr, Some(&expired), "blue", "expired").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(h["www-authenticate"], "Bearer");
    assert!(
        answer["error"].as_str().unwrap().contains("expired"),
        "{answer}"
    );
    let (status, _, _) = post(server.addr, None, "blue", "anonymous").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // RS256, signed with the private half of the configured public key.
    let key = EncodingKey::from_rsa_pem(include_bytes!("../fixtures/jwt-rs256.key")).unwrap();
    let claims = json!({"exp": later(), "ringback": {"publish": ["yellow"]}});
    let rs = encode(&Header::new(Algorithm::RS256), &claims, &key).unwrap();
    let (status, _, _) = post(server.addr, Some(&rs), "yellow", "rs256").await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // Exactly the two allowed messages reached the subscriber.
    assert_eq!(
        read_until(&mut sse, "rs256").await,
        pairs(&[("blue", "allowed"), ("yellow", "rs256")])
    );
    let m = &server.state.api.metrics;
    assert_eq!(m.rejected.get(Reason::Forbidden.index()), 1);
    assert_eq!(m.rejected.get(Reason::Unauthorized.index()), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn private_channels_reach_only_granted_subscribers_live_and_on_replay() {
    let server = TestServer::start(private_config()).await;
    let publisher = hs256(json!({"exp": later(), "ringback": {"publish": ["*"]}}));
    let a_reader = hs256(json!({"exp": later(), "ringback": {"subscribe": ["secret-a"]}}));
    let all_reader = hs256(json!({"exp": later(), "ringback": {"subscribe": ["secret-*"]}}));
    let cookie = format!("theme=dark; ringback_token={a_reader}");

    let mut public = SseClient::connect(server.addr, "/messages", &[]).await;
    let mut by_cookie = SseClient::connect(server.addr, "/messages", &[("cookie", &cookie)]).await;
    let by_query_path = format!("/messages?token={all_reader}");
    let mut by_query = SseClient::connect(server.addr, &by_query_path, &[]).await;
    assert_eq!(by_cookie.status, StatusCode::OK);
    assert_eq!(by_query.status, StatusCode::OK);

    let first = post(server.addr, Some(&publisher), "blue", "public 1")
        .await
        .2["id"]
        .as_u64()
        .unwrap();
    for (channel, data) in [
        ("secret-a", "for a"),
        ("secret-b", "for b"),
        ("blue", "public 2"),
    ] {
        let (status, _, _) = post(server.addr, Some(&publisher), channel, data).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let everything = [
        ("blue", "public 1"),
        ("secret-a", "for a"),
        ("secret-b", "for b"),
        ("blue", "public 2"),
    ];
    assert_eq!(
        read_until(&mut public, "public 2").await,
        pairs(&[everything[0], everything[3]])
    );
    assert_eq!(
        read_until(&mut by_cookie, "public 2").await,
        pairs(&[everything[0], everything[1], everything[3]])
    );
    assert_eq!(
        read_until(&mut by_query, "public 2").await,
        pairs(&everything)
    );

    // Replay from Last-Event-ID follows the same rule.
    let before = (first - 1).to_string();
    let mut replay =
        SseClient::connect(server.addr, "/messages", &[("last-event-id", &before)]).await;
    assert_eq!(
        read_until(&mut replay, "public 2").await,
        pairs(&[everything[0], everything[3]])
    );
    let mut replay = SseClient::connect(
        server.addr,
        "/messages",
        &[("last-event-id", &before), ("cookie", &cookie)],
    )
    .await;
    assert_eq!(
        read_until(&mut replay, "public 2").await,
        pairs(&[everything[0], everything[1], everything[3]])
    );

    // Asking for a private channel without the right is a 403; a bad credential is a 401.
    let denied = SseClient::connect(server.addr, "/messages?type=secret-a", &[]).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let denied = SseClient::connect(
        server.addr,
        "/messages?type=secret-b",
        &[("cookie", &cookie)],
    )
    .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let bad = SseClient::connect(server.addr, "/messages?token=not.a.jwt", &[]).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    // A stale cookie is sent by the browser on its own: the public feed still opens.
    let stale = SseClient::connect(
        server.addr,
        "/messages",
        &[("cookie", "ringback_token=not.a.jwt")],
    )
    .await;
    assert_eq!(stale.status, StatusCode::OK);
    let m = &server.state.api.metrics;
    assert_eq!(m.refused.get(Reason::Forbidden.index()), 2);
    assert_eq!(m.refused.get(Reason::Unauthorized.index()), 1);

    // The page (first paint, served to anyone) shows neither private messages nor their names.
    let (status, _, page) = request(server.addr, "GET", "/", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    let page = String::from_utf8(page.collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(page.contains("public 2"));
    assert!(
        !page.contains("for a") && !page.contains("secret-"),
        "{page}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn cors_allows_the_listed_origins_with_credentials_and_no_others() {
    let server = TestServer::start({
        let mut cfg = config();
        cfg.limits.cors_origins = vec!["https://app.example".into()];
        cfg
    })
    .await;
    let preflight = |origin: &'static str| {
        let addr = server.addr;
        async move {
            request(
                addr,
                "OPTIONS",
                "/messages",
                &[
                    ("origin", origin),
                    ("access-control-request-method", "POST"),
                    (
                        "access-control-request-headers",
                        "authorization,content-type",
                    ),
                ],
                "",
            )
            .await
        }
    };
    let (status, h, _) = preflight("https://app.example").await;
    assert!(status.is_success(), "{status}");
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert!(h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
    let (_, h, _) = preflight("https://evil.example").await;
    assert!(h.get("access-control-allow-origin").is_none());
    let sse = SseClient::connect(
        server.addr,
        "/messages",
        &[("origin", "https://app.example")],
    )
    .await;
    assert_eq!(
        sse.headers["access-control-allow-origin"],
        "https://app.example"
    );
    server.shutdown().await;

    let any = TestServer::start({
        let mut cfg = config();
        cfg.limits.cors_origins = vec!["*".into()];
        cfg
    })
    .await;
    let sse = SseClient::connect(any.addr, "/messages", &[("origin", "https://x.example")]).await;
    assert_eq!(sse.headers["access-control-allow-origin"], "*");
    assert!(sse
        .headers
        .get("access-control-allow-credentials")
        .is_none());
    any.shutdown().await;

    let leptos = leptos::config::LeptosOptions::builder()
        .output_name("ringback")
        .build();
    for bad in [
        vec!["*", "https://a.example"],
        vec!["https://a.example/path"],
        vec!["a.example"],
    ] {
        let cfg = {
            let mut cfg = config();
            cfg.limits.cors_origins = bad.iter().map(|s| s.to_string()).collect();
            cfg
        };
        assert!(
            ringback::server::AppState::new(cfg, leptos.clone()).is_err(),
            "{bad:?}"
        );
    }
}

/// Opens `GET /messages` from `source` (a loopback address) and returns what it got (`"200"`
/// for a stream, `"shed:<reason>"` for a shed answer, or another status) and the socket.
async fn subscribe_from(
    source: [u8; 4],
    addr: SocketAddr,
    headers: &str,
) -> (String, tokio::net::TcpStream) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    stream
        .write_all(format!("GET /messages HTTP/1.1\r\nhost: t\r\n{headers}\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(PATIENCE, stream.read_exact(&mut byte))
            .await
            .expect("a response head in time")
            .unwrap();
        head.push(byte[0]);
    }
    let status = std::str::from_utf8(&head[9..12]).unwrap().to_owned();
    let head = String::from_utf8_lossy(&head).to_lowercase();
    if status == "200" && head.contains("content-length") {
        // A shed answer: a whole event stream that says why.
        let mut body = String::new();
        tokio::time::timeout(PATIENCE, stream.read_to_string(&mut body))
            .await
            .unwrap()
            .unwrap();
        let reason = body
            .split("\"reason\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_else(|| panic!("a shed answer says why: {body:?}"));
        return (format!("shed:{reason}"), stream);
    }
    (status, stream)
}

#[tokio::test]
async fn subscribers_are_limited_per_address_and_in_total() {
    let server = TestServer::start({
        let mut cfg = config();
        cfg.limits.max_subscribers = 3;
        cfg.limits.max_subscribers_per_ip = 2;
        cfg
    })
    .await;
    let addr = server.addr;
    let (s1, a1) = subscribe_from([127, 0, 0, 1], addr, "").await;
    let (s2, _a2) = subscribe_from([127, 0, 0, 1], addr, "").await;
    let (s3, _) = subscribe_from([127, 0, 0, 1], addr, "").await;
    assert_eq!(
        (s1.as_str(), s2.as_str(), s3.as_str()),
        ("200", "200", "shed:subscribers_per_ip")
    );
    let (s4, _b1) = subscribe_from([127, 0, 0, 2], addr, "").await;
    let (s5, _) = subscribe_from([127, 0, 0, 3], addr, "").await;
    assert_eq!((s4.as_str(), s5.as_str()), ("200", "shed:subscribers"));
    // A subscriber leaves: its place is free again.
    drop(a1);
    let mut subs = server.state.api.feed.watch_subscribers();
    until(&mut subs, |n| *n == 2).await;
    let (s6, _a3) = subscribe_from([127, 0, 0, 1], addr, "").await;
    assert_eq!(s6, "200");
    let m = &server.state.api.metrics;
    assert_eq!(m.refused.get(Reason::SubscribersPerIp.index()), 1);
    assert_eq!(m.refused.get(Reason::Subscribers.index()), 1);
    server.shutdown().await;

    // Behind a trusted proxy, the address is the one the proxy appended to X-Forwarded-For.
    let server = TestServer::start({
        let mut cfg = config();
        cfg.limits.max_subscribers_per_ip = 1;
        cfg.limits.trust_forwarded_for = true;
        cfg
    })
    .await;
    let via = |ip: &str| format!("x-forwarded-for: 10.9.9.9, {ip}\r\n");
    let (a, _a) = subscribe_from([127, 0, 0, 1], server.addr, &via("198.51.100.1")).await;
    let (b, _b) = subscribe_from([127, 0, 0, 1], server.addr, &via("198.51.100.2")).await;
    let (c, _c) = subscribe_from([127, 0, 0, 1], server.addr, &via("198.51.100.1")).await;
    assert_eq!(
        (a.as_str(), b.as_str(), c.as_str()),
        ("200", "200", "shed:subscribers_per_ip")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn failed_credentials_are_limited_per_address() {
    let server = TestServer::start({
        let mut cfg = config();
        cfg.auth.publish_token = vec!["alice".into()];
        cfg.limits.publish_rate = 0.01;
        cfg.limits.publish_burst = 2;
        cfg
    })
    .await;
    for guess in ["guess-1", "guess-2"] {
        let (status, _, answer) = post(server.addr, Some(guess), "blue", "x").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    }
    // The address has spent its allowance on failures: refused before any credential is
    // checked, the right one included, so a right guess cannot be told from a wrong one.
    for token in ["guess-3", "alice"] {
        let (status, h, answer) = post(server.addr, Some(token), "blue", "x").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{token}: {answer}");
        assert!(h.contains_key("retry-after"));
    }
    assert_eq!(
        server
            .state
            .api
            .metrics
            .rejected
            .get(Reason::RateLimited.index()),
        2
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_publish_rate_is_limited_per_credential() {
    let server = TestServer::start({
        let mut cfg = config();
        cfg.auth.publish_token = vec!["alice".into(), "bob".into()];
        cfg.limits.publish_rate = 0.01;
        cfg.limits.publish_burst = 2;
        cfg
    })
    .await;
    let mut sse = SseClient::connect(server.addr, "/messages", &[]).await;
    assert_eq!(
        post(server.addr, Some("alice"), "blue", "a1").await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        post(server.addr, Some("alice"), "blue", "a2").await.0,
        StatusCode::ACCEPTED
    );
    let (status, h, answer) = post(server.addr, Some("alice"), "blue", "a3").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=100).contains(&retry), "{retry}");
    assert!(
        answer["error"].as_str().unwrap().contains("rate"),
        "{answer}"
    );
    // Another credential has its own allowance.
    assert_eq!(
        post(server.addr, Some("bob"), "blue", "b1").await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        read_until(&mut sse, "b1").await,
        pairs(&[("blue", "a1"), ("blue", "a2"), ("blue", "b1")])
    );
    assert_eq!(
        server
            .state
            .api
            .metrics
            .rejected
            .get(Reason::RateLimited.index()),
        1
    );
    server.shutdown().await;
}

#[tokio::test]
async fn channel_names_and_filters_are_bounded() {
    let server = TestServer::start({
        let mut cfg = config();
        cfg.events.max_filter_channels = 2;
        cfg
    })
    .await;
    let long = "x".repeat(65);
    let (status, _, answer) = post(server.addr, None, &long, "too long").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["error"].as_str().unwrap().contains("64"), "{answer}");
    let three = SseClient::connect(server.addr, "/messages?type=a&type=b&type=c", &[]).await;
    assert_eq!(three.status, StatusCode::BAD_REQUEST);
    let bad = SseClient::connect(server.addr, "/messages?type=a.b", &[]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let resume = SseClient::connect(server.addr, "/messages", &[("last-event-id", "12ab")]).await;
    assert_eq!(resume.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        server
            .state
            .api
            .metrics
            .refused
            .get(Reason::BadRequest.index()),
        3
    );
    server.shutdown().await;
}

/// A subscriber whose socket stops taking bytes is closed at the write deadline, well before it
/// would fall behind the history.
#[tokio::test]
async fn a_stalled_socket_is_closed_at_the_write_deadline() {
    const SIZE: usize = 60 * 1024;
    let server = TestServer::start({
        let mut cfg = config();
        cfg.transport.write_timeout = Duration::from_millis(500);
        cfg.feed.max_message_bytes = 2 * SIZE;
        cfg.feed.history_bytes = 64 << 20;
        cfg
    })
    .await;
    let localhost = std::net::Ipv4Addr::LOCALHOST;
    let mut stalled = test_support::small_socket(server.addr, localhost)
        .await
        .unwrap();
    stalled
        .write_all(b"GET /messages HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut subs = server.state.api.feed.watch_subscribers();
    until(&mut subs, |n| *n == 1).await;
    // More than the socket buffers hold (loopback's send buffer grows to a few MiB), less than
    // the history (1,024 messages, 64 MiB).
    let payload = serde_json::Value::String("x".repeat(SIZE));
    for _ in 0..300 {
        server.state.api.feed.publish("blue", &payload).unwrap();
    }
    tokio::time::timeout(PATIENCE, subs.wait_for(|n| *n == 0))
        .await
        .expect("the stalled subscriber was dropped")
        .unwrap();
    let m = &server.state.api.metrics;
    assert_eq!(m.write_timeouts.load(Ordering::Relaxed), 1);
    assert_eq!(m.lagged_disconnects.load(Ordering::Relaxed), 0);
    server.shutdown().await;
}

/// `--max-connections`: beyond it, a new connection waits in the kernel's backlog (it is not
/// refused) and is served as soon as another closes.
#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let server = TestServer::start({
        let mut cfg = config();
        cfg.transport.max_connections = 1;
        cfg
    })
    .await;
    let first = SseClient::connect(server.addr, "/messages", &[]).await;
    assert_eq!(first.status, StatusCode::OK);
    let waiting = tokio::spawn(request(server.addr, "GET", "/healthz", &[], ""));
    // A negative check needs a bound: in 300 ms the waiting connection is not served.
    let early = tokio::time::timeout(Duration::from_millis(300), async {
        while server.state.api.metrics.connections.load(Ordering::Relaxed) < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(
        early.is_err(),
        "a second connection was accepted beyond the limit"
    );
    drop(first);
    let (status, _, _) = tokio::time::timeout(PATIENCE, waiting)
        .await
        .expect("served once the first closed")
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    server.shutdown().await;
}

/// `--jwt-audience`: a JWT naming another audience is refused, to publish and to read; one
/// naming this one, or none, is taken (`aud` is checked when present).
#[tokio::test]
async fn jwt_audience_is_checked_when_present() {
    let mut cfg = private_config();
    cfg.auth.jwt_audience = Some("feed.example".into());
    let server = TestServer::start(cfg).await;
    let token = |aud: Option<&str>| {
        let mut claims =
            json!({"exp": later(), "ringback": {"publish": ["*"], "subscribe": ["*"]}});
        if let Some(aud) = aud {
            claims["aud"] = aud.into();
        }
        hs256(claims)
    };
    for (aud, want) in [
        (Some("feed.example"), StatusCode::ACCEPTED),
        (None, StatusCode::ACCEPTED),
        (Some("other.example"), StatusCode::UNAUTHORIZED),
    ] {
        let (status, _, answer) = post(server.addr, Some(&token(aud)), "blue", "x").await;
        assert_eq!(status, want, "publish, aud {aud:?}: {answer}");
        let path = format!("/messages?token={}", token(aud));
        let (status, _, _) = request(server.addr, "GET", &path, &[], bytes::Bytes::new()).await;
        let want = if want == StatusCode::ACCEPTED {
            StatusCode::OK
        } else {
            want
        };
        assert_eq!(status, want, "subscribe, aud {aud:?}");
    }
    server.shutdown().await;
}
