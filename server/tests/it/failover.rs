//! Redis failing over under Sentinel, with real processes on free ports: a primary, two
//! replicas, three Sentinels, two Ringback servers following `redis+sentinel://` with
//! `--redis-min-replicas 1`; publishers and subscribers on both; `kill -9` of the primary while
//! messages flow. (Two replicas: with one, the promoted primary has none left, and with
//! `--redis-min-replicas 1` every publish is refused until one rejoins, which Sentinel arranges
//! only when the old primary comes back.)
#![allow(clippy::unwrap_used)]

use crate::support::*;
use http::StatusCode;
use http_body_util::BodyExt;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `POST /messages`: the id when acknowledged (`202`), else the status (an answer, never
/// silence: the request itself has a deadline).
async fn publish(addr: SocketAddr, n: usize) -> Result<u64, StatusCode> {
    let body = serde_json::json!({ "type": "blue", "data": n }).to_string();
    let headers = [("content-type", "application/json")];
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        request(addr, "POST", "/messages", &headers, body),
    )
    .await
    .expect("every publish is answered");
    let (status, _, body) = answer;
    if status != StatusCode::ACCEPTED {
        return Err(status);
    }
    let body = body.collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    Ok(json["id"].as_u64().unwrap())
}

/// Records whether `/readyz` answered 503 at some point, and 200 after it.
fn watch_readiness(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(bool, bool)> {
    tokio::spawn(async move {
        let (mut went_down, mut came_back) = (false, false);
        while !stop.load(Ordering::Relaxed) {
            let status = request(addr, "GET", "/readyz", &[], bytes::Bytes::new())
                .await
                .0;
            match status {
                StatusCode::SERVICE_UNAVAILABLE => went_down = true,
                StatusCode::OK if went_down => came_back = true,
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (went_down, came_back)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_loses_nothing_acknowledged() {
    let mut primary = RedisServer::start("fo-primary").await;
    let replica = RedisServer::start_replica("fo-replica", primary.port).await;
    let second = RedisServer::start_replica("fo-second", primary.port).await;
    let mut sentinels = Vec::new();
    for i in 0..3 {
        sentinels.push(RedisSentinel::start(&format!("fo-{i}"), primary.port).await);
    }
    for s in &sentinels {
        s.await_peers(2, 2).await;
    }
    let url = format!(
        "redis+sentinel://{}/{}",
        sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect::<Vec<_>>()
            .join(","),
        RedisSentinel::MASTER
    );
    let start = || {
        let mut cfg = config();
        cfg.redis.redis_url = Some(url.clone());
        cfg.redis.redis_min_replicas = 1;
        cfg.redis.redis_timeout = Duration::from_secs(1);
        cfg.redis.redis_backoff_max = Duration::from_millis(300);
        TestServer::start(cfg)
    };
    let (a, b) = (start().await, start().await);
    await_online(&a.state, true).await;
    await_online(&b.state, true).await;
    let (newest_tx, newest_rx) = tokio::sync::watch::channel(u64::MAX);
    let mut readers = Vec::new();
    for addr in [a.addr, b.addr] {
        let mut sse = SseClient::connect(addr, "/messages", &[]).await;
        let mut newest = newest_rx.clone();
        // Every message delivered, with when it arrived, until the newest acknowledged one
        // (known once the publishers have stopped).
        readers.push(tokio::spawn(async move {
            let mut got: Vec<(u64, tokio::time::Instant)> = Vec::new();
            while got.last().is_none_or(|(id, _)| *id < *newest.borrow()) {
                let e = tokio::select! {
                    e = sse.next_message() => e.expect("the stream stays open"),
                    _ = newest.changed() => continue,
                };
                got.push((e.id.unwrap().parse().unwrap(), tokio::time::Instant::now()));
            }
            got
        }));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let ready_a = watch_readiness(a.addr, stop.clone());
    let ready_b = watch_readiness(b.addr, stop.clone());

    // Publishers on both servers, one message at a time each, until told to stop.
    let acked = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(Mutex::new(Vec::new()));
    let mut publishers = Vec::new();
    for (k, addr) in [a.addr, b.addr].into_iter().enumerate() {
        let (acked, refused, stop) = (acked.clone(), refused.clone(), stop.clone());
        publishers.push(tokio::spawn(async move {
            let mut n = k;
            while !stop.load(Ordering::Relaxed) {
                match publish(addr, n).await {
                    Ok(id) => acked.lock().unwrap().push(id),
                    Err(status) => refused.lock().unwrap().push(status),
                }
                n += 2;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    let acked_count = || acked.lock().unwrap().len();
    let patience = |what: &'static str| {
        let deadline = tokio::time::Instant::now() + 3 * PATIENCE;
        move || assert!(tokio::time::Instant::now() < deadline, "{what}")
    };

    // Messages flow; then the primary dies mid-stream.
    let check = patience("messages are acknowledged before the failover");
    while acked_count() < 20 {
        check();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = acked_count();
    let old_port = primary.port;
    primary.kill();
    let killed_at = tokio::time::Instant::now();

    // Sentinel promotes a replica and points the other at it: publishes reach a replica again
    // and are acknowledged again.
    let check = patience("Sentinel promotes the replica");
    let mut promoted = None;
    while promoted.is_none() {
        promoted = sentinels[0]
            .primary_port()
            .await
            .filter(|p| [replica.port, second.port].contains(p));
        check();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let check = patience("publishes are acknowledged again after the failover");
    while acked_count() < before + 20 {
        check();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for p in publishers {
        p.await.unwrap();
    }
    let acked: BTreeSet<u64> = acked.lock().unwrap().iter().copied().collect();
    let refused = refused.lock().unwrap().clone();
    newest_tx.send_replace(*acked.last().unwrap());
    eprintln!(
        "{} acknowledged, {} refused ({:?}); the primary moved from {old_port} to {}",
        acked.len(),
        refused.len(),
        refused.iter().collect::<BTreeSet<_>>(),
        promoted.unwrap_or_default(),
    );
    assert!(
        refused
            .iter()
            .all(|s| *s == StatusCode::SERVICE_UNAVAILABLE),
        "a publish that is not acknowledged is refused with 503: {refused:?}"
    );
    assert!(
        !refused.is_empty(),
        "the failover was noticed by the publishers"
    );

    // Every acknowledged message reached both subscribers, once each, in one increasing order.
    let mut orders = Vec::new();
    for (server, reader) in ["a", "b"].into_iter().zip(readers) {
        let got = reader.await.unwrap();
        // The longest silence a subscriber saw around the kill: the failover's gap as a
        // browser sees it.
        let gap = got
            .windows(2)
            .filter(|w| w[1].1 > killed_at)
            .map(|w| w[1].1 - w[0].1)
            .max()
            .unwrap_or_default();
        eprintln!(
            "subscriber on {server}: {} messages, longest gap after the kill {gap:?}",
            got.len()
        );
        let ids: Vec<u64> = got.into_iter().map(|(id, _)| id).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "ids only increase, each once: {ids:?}"
        );
        let got: BTreeSet<u64> = ids.iter().copied().collect();
        let missing: Vec<_> = acked.difference(&got).collect();
        assert!(
            missing.is_empty(),
            "acknowledged but not delivered: {missing:?}"
        );
        orders.push(
            ids.into_iter()
                .filter(|id| acked.contains(id))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(orders[0], orders[1], "one order on both servers");

    stop.store(true, Ordering::Relaxed);
    for (server, ready) in [("a", ready_a), ("b", ready_b)] {
        let (went_down, came_back) = ready.await.unwrap();
        assert!(
            went_down && came_back,
            "server {server}'s /readyz went 503 and back"
        );
    }
    drop((replica, second));
    a.shutdown().await;
    b.shutdown().await;
}
