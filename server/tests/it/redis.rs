//! Several servers on one real Redis (started by each test on a free port): one feed, the same
//! ids everywhere, resume across servers and restarts, Redis faults, garbage input.
#![allow(clippy::unwrap_used)]

use crate::support::*;
use http::StatusCode;
use http_body_util::BodyExt;
use ringback::config::ServeArgs;

async fn server(config: ServeArgs) -> TestServer {
    let s = TestServer::start(config).await;
    await_online(&s.state, true).await;
    s
}

/// `(id, channel, data)` of the next message event.
async fn next(sse: &mut SseClient) -> (u64, String, serde_json::Value) {
    let e = sse.next_message().await.expect("the stream stays open");
    let json = e.json();
    let id: u64 = e.id.unwrap().parse().unwrap();
    assert_eq!(json["id"], id, "data.id is the SSE id");
    (id, e.event.unwrap(), json)
}

async fn get_status(addr: std::net::SocketAddr, path: &str) -> StatusCode {
    request(addr, "GET", path, &[], bytes::Bytes::new()).await.0
}

async fn metrics(addr: std::net::SocketAddr) -> String {
    let (_, _, body) = request(addr, "GET", "/metrics", &[], bytes::Bytes::new()).await;
    String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_publish_reaches_every_server_once_under_one_id() {
    let redis = RedisServer::start("seed").await;
    let a = server(redis_config(&redis)).await;
    let b = server(redis_config(&redis)).await;
    let mut on_a = SseClient::connect(a.addr, "/messages", &[]).await;
    let mut on_b = SseClient::connect(b.addr, "/messages", &[]).await;

    // Exactly the original's command line.
    let receivers = redis
        .cli(&[
            "publish",
            "events",
            r#"{"id":1,"data":"an important message","type":"blue"}"#,
        ])
        .await
        .unwrap();
    assert_eq!(receivers, "2", "both servers subscribe to `events`");
    let (id_a, channel, json) = next(&mut on_a).await;
    assert_eq!(channel, "blue");
    assert_eq!(json["data"], "an important message");
    assert_eq!(json["source_id"], 1, "the publisher's own id is kept");
    let (id_b, _, json_b) = next(&mut on_b).await;
    assert_eq!(id_a, id_b, "the same id on every server");
    assert_eq!(json, json_b);

    // Both servers sequence every Pub/Sub message; each is still written to the log once,
    // identical payloads included, in publish order.
    for i in 0..100 {
        let payload = format!(r#"{{"type":"red","data":"m{}"}}"#, i % 10);
        redis.cli(&["publish", "events", &payload]).await.unwrap();
    }
    let mut ids = Vec::new();
    for i in 0..100 {
        let (id, _, json) = next(&mut on_a).await;
        assert_eq!(json["data"], format!("m{}", i % 10));
        let (id_b, _, _) = next(&mut on_b).await;
        assert_eq!(id, id_b);
        ids.push(id);
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase");
    let log_len = redis.cli(&["xlen", "ringback:{feed}:log"]).await.unwrap();
    assert_eq!(log_len, "101", "each message written once");
    a.shutdown().await;
    b.shutdown().await;
}

/// A burst of `PUBLISH`es (one pipeline) reaches each server's sequencer all at once: it goes
/// in batches, one script call for many messages, and still each message is written once, in
/// order, identical payloads included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_publishes_is_sequenced_in_batches() {
    const BURST: usize = 300;
    let redis = RedisServer::start("burst").await;
    let a = server(redis_config(&redis)).await;
    let b = server(redis_config(&redis)).await;
    let mut on_a = SseClient::connect(a.addr, "/messages", &[]).await;
    let mut on_b = SseClient::connect(b.addr, "/messages", &[]).await;
    redis.cli(&["config", "resetstat"]).await.unwrap();
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut burst = redis::pipe();
    for i in 0..BURST {
        let payload = format!(r#"{{"type":"red","data":"m{}"}}"#, i % 7);
        burst.cmd("PUBLISH").arg("events").arg(payload);
    }
    let receivers: Vec<u32> = burst.query_async(&mut conn).await.unwrap();
    assert!(receivers.iter().all(|r| *r == 2), "both servers subscribe");
    let mut ids = Vec::new();
    for i in 0..BURST {
        let (id, _, json) = next(&mut on_a).await;
        assert_eq!(json["data"], format!("m{}", i % 7), "in publish order");
        assert_eq!(next(&mut on_b).await.0, id, "the same id on both servers");
        ids.push(id);
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase");
    let log_len = redis.cli(&["xlen", "ringback:{feed}:log"]).await.unwrap();
    assert_eq!(log_len, BURST.to_string(), "each message written once");
    let stats = redis.cli(&["info", "commandstats"]).await.unwrap();
    let calls: usize = ["evalsha", "eval"]
        .iter()
        .filter_map(|cmd| {
            let line = stats
                .lines()
                .find(|l| l.starts_with(&format!("cmdstat_{cmd}:")))?;
            line.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum();
    eprintln!("{BURST} messages sequenced by 2 servers in {calls} script calls");
    assert!(
        calls < BURST,
        "batches: {calls} script calls for {BURST} messages on each of 2 servers"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_on_one_resume_on_the_other_with_exactly_the_missed_messages() {
    let redis = RedisServer::start("resume").await;
    let a = server(redis_config(&redis)).await;
    let b = server(redis_config(&redis)).await;
    let mut on_a = SseClient::connect(a.addr, "/messages", &[]).await;
    let mut on_b = SseClient::connect(b.addr, "/messages", &[]).await;

    let first = publish_ok(a.addr, "blue", "one").await;
    assert_eq!(next(&mut on_a).await.0, first);
    assert_eq!(
        next(&mut on_b).await.0,
        first,
        "published on A, received on B"
    );
    drop(on_a); // the browser loses A

    let mut missed = Vec::new();
    for i in 0..5 {
        let server = if i % 2 == 0 { b.addr } else { a.addr };
        missed.push(publish_ok(server, "yellow", &format!("missed {i}")).await);
    }
    // It reconnects to B, which has received them all by the time B's own stream shows them.
    for id in &missed {
        assert_eq!(next(&mut on_b).await.0, *id);
    }
    let last = first.to_string();
    let mut resumed =
        SseClient::connect(b.addr, "/messages", &[("last-event-id", last.as_str())]).await;
    for id in &missed {
        assert_eq!(next(&mut resumed).await.0, *id);
    }
    let live = publish_ok(a.addr, "yellow", "live").await;
    assert_eq!(next(&mut resumed).await.0, live, "no duplicate, then live");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_resumes_a_client_with_none_lost_or_duplicated() {
    let redis = RedisServer::start("restart").await;
    let a = server(redis_config(&redis)).await;
    let b = server(redis_config(&redis)).await;
    let mut sse = SseClient::connect(a.addr, "/messages", &[]).await;
    let seen = publish_ok(b.addr, "red", "before").await;
    assert_eq!(next(&mut sse).await.0, seen);

    // A goes down mid-stream; the stream ends, as EventSource would see it.
    let addr_a = a.addr;
    a.shutdown().await;
    assert!(sse.next_message().await.is_none(), "the stream ended");
    let mut while_down = Vec::new();
    for i in 0..3 {
        while_down.push(publish_ok(b.addr, "red", &format!("while down {i}")).await);
    }
    // A new A, which never saw those live, on a fresh port, resumes the client.
    let a2 = server(redis_config(&redis)).await;
    assert_ne!(a2.addr, addr_a);
    let last = seen.to_string();
    let mut resumed =
        SseClient::connect(a2.addr, "/messages", &[("last-event-id", last.as_str())]).await;
    for id in &while_down {
        assert_eq!(next(&mut resumed).await.0, *id);
    }
    let after = publish_ok(a2.addr, "red", "after").await;
    assert_eq!(next(&mut resumed).await.0, after);

    // A server whose history holds fewer messages than the client missed tells it of the gap.
    let small = server({
        let mut cfg = redis_config(&redis);
        cfg.feed.history = 2;
        cfg
    })
    .await;
    let mut old =
        SseClient::connect(small.addr, "/messages", &[("last-event-id", last.as_str())]).await;
    let gap = old.next_event().await.unwrap();
    assert_eq!(gap.event.as_deref(), Some("ringback.gap"), "{gap:?}");
    assert_eq!(gap.json()["after"], seen);
    small.shutdown().await;
    a2.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_mid_stream() {
    let mut redis = RedisServer::start("kill").await;
    let a = server(redis_config(&redis)).await;
    let mut sse = SseClient::connect(a.addr, "/messages", &[]).await;
    let online = sse.next_event().await.unwrap();
    assert_eq!(online.event.as_deref(), Some("ringback.source"));
    assert_eq!(online.data, r#"{"online":true}"#);
    let before = publish_ok(a.addr, "blue", "before").await;
    assert_eq!(next(&mut sse).await.0, before);

    redis.kill();
    await_online(&a.state, false).await;
    let offline = sse.next_event().await.expect("the stream stays open");
    assert_eq!(offline.data, r#"{"online":false}"#);
    assert_eq!(
        get_status(a.addr, "/readyz").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(get_status(a.addr, "/healthz").await, StatusCode::OK);
    assert_eq!(
        get_status(a.addr, "/").await,
        StatusCode::OK,
        "pages still served"
    );
    let (status, json) = publish(a.addr, r#"{"type":"blue","data":"lost?"}"#).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{json}");
    assert!(json["error"].as_str().unwrap().contains("Redis"), "{json}");

    redis.restart().await;
    await_online(&a.state, true).await;
    let back = sse.next_event().await.unwrap();
    assert_eq!(back.data, r#"{"online":true}"#);
    assert_eq!(get_status(a.addr, "/readyz").await, StatusCode::OK);
    // What Redis accepted before the kill is still in its log, and is not shown again.
    assert_eq!(
        redis.cli(&["xlen", "ringback:{feed}:log"]).await.unwrap(),
        "1"
    );
    let after = publish_ok(a.addr, "blue", "after").await;
    assert!(after > before);
    assert_eq!(next(&mut sse).await.0, after);
    assert!(metrics(a.addr)
        .await
        .contains("ringback_redis_connects_total 2"));
    a.shutdown().await;
}

/// Redis comes back without the log this server has read (a replica promoted before it had
/// the newest entries, or a primary that lost its data): the server says so, and raises the id
/// counter past everything it served, so what comes next follows it in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_went_backwards_is_noticed_and_ids_continue_after_it() {
    let mut redis = RedisServer::start("rewind").await;
    let a = server(redis_config(&redis)).await;
    let mut sse = SseClient::connect(a.addr, "/messages", &[]).await;
    let served = publish_ok(a.addr, "blue", "served").await;
    assert_eq!(next(&mut sse).await.0, served);

    redis.kill_and_lose_data();
    await_online(&a.state, false).await;
    redis.restart().await;
    await_online(&a.state, true).await;
    assert!(metrics(a.addr)
        .await
        .contains("ringback_redis_log_rewinds_total 1"));
    let counter: u64 = redis
        .cli(&["get", "ringback:{feed}:last"])
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        counter >= served,
        "the counter ({counter}) continues after {served}"
    );
    let next_id = publish_ok(a.addr, "blue", "after").await;
    assert!(next_id > served);
    let (id, _, json) = next(&mut sse).await;
    assert_eq!((id, json["data"].as_str()), (next_id, Some("after")));
    a.shutdown().await;
}

/// `?since=<Unix ms>` starts at the first message of that time or later: the log's ids carry
/// their time (`ms-seq`), the same on every server. A `Last-Event-ID` takes precedence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_starts_at_a_time_in_the_log() {
    let redis = RedisServer::start("since").await;
    for (id, data) in [("2000-0", "a"), ("2000-1", "b"), ("3000-0", "c")] {
        let msg = format!(r#"{{"type":"red","data":"{data}"}}"#);
        let args = [
            "xadd",
            "ringback:{feed}:log",
            id,
            "src",
            "t",
            "h",
            "",
            "msg",
            &msg,
        ];
        redis.cli(&args).await.unwrap();
    }
    let a = server(redis_config(&redis)).await;
    let mut sse = SseClient::connect(a.addr, "/messages?since=2001", &[]).await;
    let (id, _, json) = next(&mut sse).await;
    assert_eq!((id, json["data"].as_str()), (3_000_000, Some("c")));
    let mut sse = SseClient::connect(a.addr, "/messages?since=1500", &[]).await;
    assert_eq!(next(&mut sse).await.0, 2_000_000);
    assert_eq!(next(&mut sse).await.0, 2_000_001);
    let headers = [("last-event-id", "2000001")];
    let mut sse = SseClient::connect(a.addr, "/messages?since=1500", &headers).await;
    assert_eq!(next(&mut sse).await.0, 3_000_000, "Last-Event-ID first");
    // After the newest: live from now on.
    let mut sse = SseClient::connect(a.addr, "/messages?since=4000", &[]).await;
    let live = publish_ok(a.addr, "red", "live").await;
    assert_eq!(next(&mut sse).await.0, live);
    assert_eq!(
        get_status(a.addr, "/messages?since=soon").await,
        StatusCode::BAD_REQUEST
    );
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_cut_off_from_redis_recovers_what_others_published() {
    let redis = RedisServer::start("partition").await;
    let proxy = Proxy::start(redis.port).await;
    let a = server({
        let mut cfg = redis_config(&redis);
        cfg.redis.redis_url = Some(proxy.url());
        cfg
    })
    .await;
    let b = server(redis_config(&redis)).await;
    let mut sse = SseClient::connect(a.addr, "/messages", &[]).await;

    proxy.cut();
    await_online(&a.state, false).await;
    let mut expected = Vec::new();
    for i in 0..3 {
        expected.push(publish_ok(b.addr, "red", &format!("during {i}")).await);
    }
    // A seed-style message too: B alone writes it to the log.
    redis
        .cli(&[
            "publish",
            "events",
            r#"{"type":"red","data":"seed during"}"#,
        ])
        .await
        .unwrap();
    proxy.restore();
    await_online(&a.state, true).await;
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(next(&mut sse).await);
    }
    let ids: Vec<u64> = got.iter().map(|m| m.0).collect();
    assert_eq!(&ids[..3], &expected[..], "nothing missed, in order");
    assert_eq!(got[3].2["data"], "seed during");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_redis_is_counted_and_dropped() {
    let redis = RedisServer::start("garbage").await;
    let a = server({
        let mut cfg = redis_config(&redis);
        cfg.feed.max_message_bytes = 1024;
        cfg
    })
    .await;
    let mut sse = SseClient::connect(a.addr, "/messages", &[]).await;
    let big = format!(r#"{{"type":"red","data":"{}"}}"#, "x".repeat(2000));
    for bad in [
        "not json",
        "[1,2,3]",
        r#"{"data":"no type"}"#,
        r#"{"type":"nodata"}"#,
        r#"{"type":"bad type!","data":1}"#,
        big.as_str(),
    ] {
        redis.cli(&["publish", "events", bad]).await.unwrap();
    }
    // A publisher writing straight into the log with nonsense is refused too.
    let nonsense = redis
        .cli(&["xadd", "ringback:{feed}:log", "*", "msg", "nonsense"])
        .await
        .unwrap();
    // ... and one whose id is no feed id (seq ≥ 1000): read once and passed, never re-read.
    let (ms, _) = nonsense.split_once('-').unwrap();
    let odd = format!("{ms}-1000");
    let good = format!(r#"{{"type":"red","data":"{}"}}"#, "ok");
    redis
        .cli(&["xadd", "ringback:{feed}:log", &odd, "msg", &good])
        .await
        .unwrap();
    redis
        .cli(&["publish", "events", r#"{"type":"red","data":"good"}"#])
        .await
        .unwrap();
    let (_, channel, json) = next(&mut sse).await;
    assert_eq!((channel.as_str(), &json["data"]), ("red", &"good".into()));
    let text = metrics(a.addr).await;
    for line in [
        "ringback_redis_rejected_total{reason=\"bad_json\"} 6",
        "ringback_redis_rejected_total{reason=\"bad_type\"} 1",
        "ringback_redis_rejected_total{reason=\"too_large\"} 1",
        "ringback_messages_in_total{source=\"redis\"} 7",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    assert_eq!(get_status(a.addr, "/readyz").await, StatusCode::OK);
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_already_in_the_log_is_not_mistaken_for_a_new_one() {
    let redis = RedisServer::start("repeat").await;
    let payload = r#"{"type":"red","data":"again"}"#;
    let a = server(redis_config(&redis)).await;
    let mut sse = SseClient::connect(a.addr, "/messages", &[]).await;
    redis.cli(&["publish", "events", payload]).await.unwrap();
    let first = next(&mut sse).await.0;
    a.shutdown().await;
    // The id counter is lost (an evicting maxmemory policy, an operator's DEL); the log is not.
    redis.cli(&["del", "ringback:{feed}:last"]).await.unwrap();
    let b = server(redis_config(&redis)).await;
    let mut sse = SseClient::connect(b.addr, "/messages", &[]).await;
    redis.cli(&["publish", "events", payload]).await.unwrap();
    let (second, _, json) = next(&mut sse).await;
    assert!(second > first);
    assert_eq!(json["data"], "again");
    assert_eq!(
        redis.cli(&["xlen", "ringback:{feed}:log"]).await.unwrap(),
        "2"
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_up() {
    let mut redis = RedisServer::not_started("late");
    // Held until Redis starts, so no other test's server can take the port meanwhile; each
    // connection it accepts is closed at once: a failed attempt of the ingest.
    let refuser = tokio::net::TcpListener::bind(("127.0.0.1", redis.port))
        .await
        .unwrap();
    let a = TestServer::start(redis_config(&redis)).await;
    // Serving, but not ready: pages yes, publishing no, streams open and waiting.
    assert_eq!(get_status(a.addr, "/healthz").await, StatusCode::OK);
    assert_eq!(
        get_status(a.addr, "/readyz").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(get_status(a.addr, "/").await, StatusCode::OK);
    let (status, _) = publish(a.addr, r#"{"type":"blue","data":"too early"}"#).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let mut sse = SseClient::connect(a.addr, "/messages", &[]).await;
    let offline = sse.next_event().await.unwrap();
    assert_eq!(offline.data, r#"{"online":false}"#);
    // Three more attempts fail: still offline, which is no news to the stream.
    for _ in 0..3 {
        let attempt = tokio::time::timeout(PATIENCE, refuser.accept()).await;
        drop(attempt.expect("the ingest retries").unwrap());
    }
    drop(refuser);

    redis.restart().await;
    await_online(&a.state, true).await;
    assert_eq!(sse.next_event().await.unwrap().data, r#"{"online":true}"#);
    let id = publish_ok(a.addr, "blue", "on time").await;
    assert_eq!(next(&mut sse).await.0, id);
    a.shutdown().await;
}

/// A publisher whose server died before it answered retries through another server with the
/// same `Idempotency-Key`: answered with the first id, delivered once on every server. The keys
/// kept in Redis are bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_repeated_on_another_server_delivers_once() {
    let redis = RedisServer::start("idempotency").await;
    let cfg = || {
        let mut cfg = redis_config(&redis);
        cfg.idempotency.idempotency_keys = 3;
        cfg
    };
    let a = server(cfg()).await;
    let b = server(cfg()).await;
    let mut on_a = SseClient::connect(a.addr, "/messages", &[]).await;
    let mut on_b = SseClient::connect(b.addr, "/messages", &[]).await;
    let keyed = |addr, key: &'static str, data: &'static str| async move {
        crate::lifecycle::publish_keyed(addr, key, data).await
    };
    let (status, replayed, first) = keyed(a.addr, "order-1", "once").await;
    assert_eq!((status, replayed), (StatusCode::ACCEPTED, false), "{first}");
    let (status, replayed, again) = keyed(b.addr, "order-1", "once").await;
    assert_eq!((status, replayed), (StatusCode::ACCEPTED, true), "{again}");
    assert_eq!(again["id"], first["id"]);
    let (status, _, _) = keyed(b.addr, "order-1", "another").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let sentinel = publish_ok(a.addr, "blue", "sentinel").await;
    for sse in [&mut on_a, &mut on_b] {
        assert_eq!(next(sse).await.0, first["id"].as_u64().unwrap());
        assert_eq!(next(sse).await.0, sentinel, "delivered once");
    }
    // Bounded: three keys kept at most, the oldest forgotten first (and counted).
    for key in ["k2", "k3", "k4", "k5"] {
        assert_eq!(keyed(a.addr, key, "x").await.0, StatusCode::ACCEPTED);
    }
    let kept = redis.cli(&["hlen", "ringback:{feed}:keys"]).await.unwrap();
    assert_eq!(kept, "3");
    assert!(metrics(a.addr)
        .await
        .contains("ringback_idempotency_evictions_total 2"));
    let (_, replayed, _) = keyed(b.addr, "k5", "x").await;
    assert!(replayed, "a kept key still answers");
    let (_, replayed, _) = keyed(b.addr, "order-1", "once").await;
    assert!(!replayed, "a forgotten key publishes again");
    assert!(metrics(b.addr)
        .await
        .contains("ringback_idempotent_replays_total 2"));
    a.shutdown().await;
    b.shutdown().await;
}

/// `--redis-min-replicas`: with fewer replicas than asked, a publish written to the primary is
/// not acknowledged (`503`, `ringback_redis_unreplicated_total`); with enough, it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_short_of_its_replicas_is_not_acknowledged() {
    let redis = RedisServer::start("min-replicas").await;
    let mut cfg = redis_config(&redis);
    cfg.redis.redis_min_replicas = 1;
    cfg.redis.redis_timeout = std::time::Duration::from_millis(400);
    let a = server(cfg).await;
    let body = r#"{"type":"blue","data":"unreplicated"}"#;
    let (status, json) = publish(a.addr, body).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{json}");
    assert!(
        json["error"].as_str().unwrap().contains("replicas"),
        "{json}"
    );
    assert!(metrics(a.addr)
        .await
        .contains("ringback_redis_unreplicated_total 1"));
    // A replica joins: the next publish reaches it, and is acknowledged.
    let replica = RedisServer::start_replica("min-replicas-replica", redis.port).await;
    let acked = tokio::time::timeout(PATIENCE, async {
        loop {
            let (status, _) = publish(a.addr, r#"{"type":"blue","data":"replicated"}"#).await;
            if status == StatusCode::ACCEPTED {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        acked.is_ok(),
        "a publish acknowledged once a replica has it"
    );
    drop(replica);
    a.shutdown().await;
}
