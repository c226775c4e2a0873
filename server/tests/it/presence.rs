//! Presence over real HTTP: `GET /api/channels` and the `ringback.presence` event — counts that
//! follow subscribers in and out, private channels shown only to those granted them, and the
//! counts of several servers on one real Redis, a dead server's dropping out at its expiry.
#![allow(clippy::unwrap_used)]

use crate::support::*;
use http::StatusCode;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;

/// Reads `sse` until a `ringback.presence` event whose counts satisfy `want`; returns them.
async fn presence_until(sse: &mut SseClient, want: impl Fn(&Value) -> bool) -> Value {
    let found = tokio::time::timeout(PATIENCE, async {
        loop {
            let e = sse.next_event().await.expect("the stream stays open");
            if e.event.as_deref() == Some("ringback.presence") {
                let counts = e.json()["subscribers"].clone();
                if want(&counts) {
                    return counts;
                }
            }
        }
    })
    .await;
    found.expect("the awaited counts in time")
}

/// `GET /api/channels` (with `query`): the status and the answer.
async fn channels(addr: SocketAddr, query: &str) -> (StatusCode, Value) {
    let path = format!("/api/channels{query}");
    let (status, _, body) = request(addr, "GET", &path, &[], bytes::Bytes::new()).await;
    let body = body.collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or_default())
}

/// The `subscribers` of `channel` in a `/api/channels` answer, if listed.
fn listed(answer: &Value, channel: &str) -> Option<u64> {
    answer
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == channel)
        .map(|c| c["subscribers"].as_u64().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_list_their_subscribers_and_private_ones_only_to_those_granted() {
    let mut cfg = private_config();
    cfg.presence.presence_interval = Duration::from_millis(50);
    let server = TestServer::start(cfg).await;
    let feed = &server.state.api.feed;
    let blue = feed.publish("blue", &"hi".into()).unwrap();
    feed.publish("secret-a", &"hidden".into()).unwrap();
    let reader = hs256(json!({"exp": later(), "ringback": {"subscribe": ["secret-*"]}}));

    let mut everyone = SseClient::connect(server.addr, "/messages", &[]).await;
    let blue_only = SseClient::connect(server.addr, "/messages?type=blue", &[]).await;
    let mut granted =
        SseClient::connect(server.addr, &format!("/messages?token={reader}"), &[]).await;
    // Everyone counts on every public channel, the filtered one on blue, the granted one on
    // every channel it may read, the private one included.
    let seen = presence_until(&mut everyone, |c| c["blue"] == 3).await;
    assert_eq!(
        seen,
        json!({"red": 2, "yellow": 2, "blue": 3}),
        "no private name"
    );
    let theirs = presence_until(&mut granted, |c| c["blue"] == 3).await;
    assert_eq!(theirs["secret-a"], 1);

    let (status, public) = channels(server.addr, "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed(&public, "blue"), Some(3));
    assert_eq!(listed(&public, "red"), Some(2));
    assert_eq!(
        listed(&public, "secret-a"),
        None,
        "a private channel is hidden"
    );
    let blue_entry = public
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "blue")
        .unwrap();
    assert_eq!(blue_entry["last_id"], blue);
    assert!(blue_entry["last_time"].as_u64().unwrap() > 1_700_000_000_000);
    assert_eq!(public[0]["last_id"], Value::Null, "red has had no message");
    let (_, mine) = channels(server.addr, &format!("?token={reader}")).await;
    assert_eq!(listed(&mine, "secret-a"), Some(1));
    let (status, _) = channels(server.addr, "?token=not.a.jwt").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Leaving counts down, on the stream and in the list.
    drop(blue_only);
    presence_until(&mut everyone, |c| c["blue"] == 2).await;
    assert_eq!(listed(&channels(server.addr, "").await.1, "blue"), Some(2));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_add_up_across_servers_and_a_dead_servers_expire() {
    let redis = RedisServer::start("presence").await;
    let mut cfg = redis_config(&redis);
    cfg.presence.presence_interval = Duration::from_millis(100);
    cfg.presence.presence_expiry = Duration::from_secs(1);
    let a = TestServer::start(cfg).await;
    await_online(&a.state, true).await;
    // The other server is a process of its own, so it can die without a word.
    let (mut b, b_addr) = spawn_server(
        "presence-b",
        &[
            "--redis-url",
            &redis.url(),
            "--presence-interval",
            "100ms",
            "--presence-expiry",
            "1s",
        ],
    )
    .await;
    let mut on_a = SseClient::connect(a.addr, "/messages", &[]).await;
    let _on_b = [
        SseClient::connect(b_addr, "/messages?type=blue", &[]).await,
        SseClient::connect(b_addr, "/messages?type=blue", &[]).await,
    ];
    let both = presence_until(&mut on_a, |c| c["blue"] == 3).await;
    assert_eq!(both, json!({"red": 1, "yellow": 1, "blue": 3}));
    assert_eq!(listed(&channels(a.addr, "").await.1, "blue"), Some(3));
    assert_eq!(listed(&channels(b_addr, "").await.1, "blue"), Some(3));

    // `kill -9`: nothing withdraws its counts; they stand until they expire, then drop out.
    signal(&b, "-KILL");
    tokio::time::timeout(PATIENCE, b.wait())
        .await
        .unwrap()
        .unwrap();
    presence_until(&mut on_a, |c| c["blue"] == 1).await;
    assert_eq!(listed(&channels(a.addr, "").await.1, "blue"), Some(1));
    a.shutdown().await;
}

/// Attack: subscriptions opened and closed as fast as a client can, to make the server send
/// every stream a new count each time. The counts change with every one, but a stream receives
/// at most one `ringback.presence` per `--presence-interval` (counted in
/// `ringback_presence_updates_total`), whatever the churn. On tokio's paused clock.
#[tokio::test(start_paused = true)]
async fn churning_subscriptions_send_at_most_one_count_per_interval() {
    const INTERVAL: Duration = Duration::from_secs(1);
    const ROUNDS: u32 = 8;
    let mut cfg = config();
    cfg.presence.presence_interval = INTERVAL;
    let server = TestServer::start(cfg).await;
    let mut watcher = SseClient::connect(server.addr, "/messages", &[]).await;
    let start = tokio::time::Instant::now();
    let churn = tokio::spawn({
        let addr = server.addr;
        async move {
            // 8 intervals, 40 subscriptions each, opened and closed 25 ms apart.
            for _ in 0..ROUNDS * 40 {
                let sub = SseClient::connect(addr, "/messages?type=blue", &[]).await;
                tokio::time::sleep(INTERVAL / 80).await;
                drop(sub);
                tokio::time::sleep(INTERVAL / 80).await;
            }
        }
    });
    let end = start + INTERVAL * ROUNDS;
    let mut events = 0u32;
    loop {
        tokio::select! {
            e = watcher.next_event() => {
                if e.expect("the stream stays open").event.as_deref() == Some("ringback.presence") {
                    events += 1;
                }
            }
            _ = tokio::time::sleep_until(end) => break,
        }
    }
    churn.await.unwrap();
    let updates = server
        .state
        .api
        .metrics
        .presence_updates
        .load(std::sync::atomic::Ordering::Relaxed);
    // One per interval at most (the first tick is one interval after start).
    assert!(
        (2..=ROUNDS).contains(&events),
        "{events} presence events in {ROUNDS} intervals"
    );
    assert!(updates <= u64::from(ROUNDS) + 1, "{updates} updates");
    server.shutdown().await;
}

/// A server stopped cleanly withdraws its counts at once (not at their expiry, a minute here),
/// and while Redis is unreachable a server's counts are its own (not the last sum it read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_withdraws_its_counts_and_counts_are_local_while_redis_is_down() {
    let mut redis = RedisServer::start("presence-withdraw").await;
    let expiry = ["--presence-interval", "100ms", "--presence-expiry", "60s"];
    let mut cfg = redis_config(&redis);
    cfg.presence.presence_interval = Duration::from_millis(100);
    cfg.presence.presence_expiry = Duration::from_secs(60);
    let a = TestServer::start(cfg).await;
    await_online(&a.state, true).await;
    let mut on_a = SseClient::connect(a.addr, "/messages", &[]).await;
    let other = |name: &'static str| {
        let url = redis.url();
        async move {
            let mut args = vec!["--redis-url", &url];
            args.extend(expiry);
            spawn_server(name, &args).await
        }
    };
    // B stops cleanly (SIGTERM): its counts leave A's at once, long before their 60 s expiry
    // and while B's two streams are still draining (a 30 s window): withdrawn, not run down.
    let (mut b, b_addr) = spawn_server(
        "presence-clean",
        &[
            "--redis-url",
            &redis.url(),
            "--presence-interval",
            "100ms",
            "--presence-expiry",
            "60s",
            "--drain-window",
            "30s",
            "--shutdown-grace",
            "40s",
        ],
    )
    .await;
    let on_b = [
        SseClient::connect(b_addr, "/messages?type=blue", &[]).await,
        SseClient::connect(b_addr, "/messages?type=blue", &[]).await,
    ];
    presence_until(&mut on_a, |c| c["blue"] == 3).await;
    signal(&b, "-TERM");
    let stopped = std::time::Instant::now();
    presence_until(&mut on_a, |c| c["blue"] == 1).await;
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopped.elapsed()
    );
    drop(on_b);
    signal(&b, "-KILL");
    tokio::time::timeout(PATIENCE, b.wait())
        .await
        .expect("B stopped")
        .unwrap();
    // C dies without a word: its counts stand in Redis for their minute. With Redis gone, A
    // counts its own subscribers only, and says it could not report.
    let (mut c, c_addr) = other("presence-dead").await;
    let _on_c = SseClient::connect(c_addr, "/messages?type=blue", &[]).await;
    presence_until(&mut on_a, |c| c["blue"] == 2).await;
    signal(&c, "-KILL");
    tokio::time::timeout(PATIENCE, c.wait())
        .await
        .unwrap()
        .unwrap();
    redis.kill();
    presence_until(&mut on_a, |c| c["blue"] == 1).await;
    let failures = &a.state.api.metrics.presence_report_failures;
    assert!(failures.load(std::sync::atomic::Ordering::Relaxed) > 0);
    a.shutdown().await;
}
