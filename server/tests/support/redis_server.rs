//! Real `redis-server` and `redis-sentinel` processes on free ports, started by the test, and a
//! server following one.
#![allow(clippy::unwrap_used)]

use super::server::config;
use super::{free_port, scratch, PATIENCE};
use ringback::config::ServeArgs;
use ringback::server::AppState;
use std::time::Duration;

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

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
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
