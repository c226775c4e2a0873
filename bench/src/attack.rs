//! `ringback bench --attack KIND`: hostile clients opened beside the load tool's subscribers, so
//! a run measures what an attack costs the server (memory at peak and after, CPU) and what it
//! costs the honest subscribers (the canary: loss and latency). Loopback only, bounded in count
//! and time: every attacker stops with the run.
//!
//! The attacks are the ones issue 11 found; `server/tests/it/attacks.rs` asserts the bound on
//! each, this module measures them at scale.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use test_support::{small_socket, stalling_h2_client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// What the attackers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Attack {
    /// HTTP/2 (h2c) connections of `--attack-streams` event streams each, every window opened
    /// wide, that never read their sockets (4 KiB receive buffers), from 3 source addresses.
    H2Stalled,
    /// Connections that send 22 of the 24 bytes of the HTTP/2 preface, then nothing.
    PartialPreface,
    /// `POST /messages` heads declaring 1,000 bytes of body, 2 of them sent, then nothing.
    SlowBody,
    /// HTTP/1.1 request heads sent one byte a second.
    SlowHead,
}

/// How the attackers fared.
#[derive(Default)]
struct Tally {
    /// Attackers whose connection was opened.
    opened: AtomicUsize,
    /// Attackers whose connection the server closed, and after how long (ms).
    closed_after_ms: Mutex<Vec<u64>>,
}

impl Tally {
    /// Attackers the server closed, and the median and longest time it took (seconds).
    fn closed(&self) -> (usize, f64, f64) {
        let mut times = self
            .closed_after_ms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        times.sort_unstable();
        let secs = |ms: Option<&u64>| ms.map_or(0.0, |ms| *ms as f64 / 1000.0);
        (
            times.len(),
            secs(times.get(times.len() / 2)),
            secs(times.last()),
        )
    }

    fn closed_after(&self, started: Instant) {
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.closed_after_ms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ms);
    }
}

/// Starts `count` attackers of `kind` against `server` (HTTP/2 stalled: `count` streams, in
/// connections of `streams`); they run until the server closes them or `stop`.
async fn launch(
    kind: Attack,
    count: usize,
    streams: usize,
    server: SocketAddr,
    authority: &str,
    stop: CancellationToken,
) -> (Arc<Tally>, Vec<tokio::task::JoinHandle<()>>) {
    let tally = Arc::new(Tally::default());
    let mut tasks = Vec::new();
    let connections = match kind {
        Attack::H2Stalled => count.div_ceil(streams.max(1)),
        _ => count,
    };
    for i in 0..connections {
        // Addresses of their own (127.0.0.251–253), apart from the subscribers'.
        let source = Ipv4Addr::new(127, 0, 0, 251 + (i % 3) as u8);
        let bytes = match kind {
            Attack::H2Stalled => {
                let n = streams.min(count - i * streams);
                stalling_h2_client(n as u32, authority)
            }
            Attack::PartialPreface => b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..22].to_vec(),
            Attack::SlowBody => format!(
                "POST /messages HTTP/1.1\r\nhost: {authority}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\""
            )
            .into_bytes(),
            Attack::SlowHead => format!(
                "GET / HTTP/1.1\r\nhost: {authority}\r\naccept: text/html\r\nuser-agent: slow\r\n\r\n"
            )
            .into_bytes(),
        };
        let (tally, stop) = (tally.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let Ok(mut stream) = small_socket(server, source).await else {
                return;
            };
            tally.opened.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let sent = if kind == Attack::SlowHead {
                drip(&mut stream, &bytes, &stop).await
            } else {
                stream.write_all(&bytes).await.is_ok()
            };
            if !sent {
                tally.closed_after(started);
                return;
            }
            if kind == Attack::H2Stalled {
                // Never read: hold the socket until the run ends.
                stop.cancelled().await;
                return;
            }
            if until_closed(&mut stream, &stop).await {
                tally.closed_after(started);
            }
        }));
        // Pace the connects so the server's accept backlog never overflows.
        if i % 256 == 255 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    (tally, tasks)
}

/// Sends `bytes` a byte a second while the server keeps the connection open; `true` if all
/// were sent (the attack then waits for the answer).
async fn drip(stream: &mut TcpStream, bytes: &[u8], stop: &CancellationToken) -> bool {
    let mut probe = [0u8; 1];
    for b in bytes {
        if stream.write_all(&[*b]).await.is_err() {
            return false;
        }
        tokio::select! {
            _ = stop.cancelled() => return true,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            read = stream.read(&mut probe) => match read {
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            },
        }
    }
    true
}

/// Reads until the server closes the connection (`true`) or `stop` (`false`).
async fn until_closed(stream: &mut TcpStream, stop: &CancellationToken) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        tokio::select! {
            _ = stop.cancelled() => return false,
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            },
        }
    }
}

/// An attack going on beside a load run: its attackers, and the server's RSS peak meanwhile.
pub(crate) struct Running {
    kind: Attack,
    asked: usize,
    tally: Arc<Tally>,
    attackers: Vec<tokio::task::JoinHandle<()>>,
    sampler: tokio::task::JoinHandle<()>,
    peak_rss: Arc<AtomicU64>,
    stop: CancellationToken,
}

/// What an attack cost the server (RSS in bytes, CPU in seconds) and how its attackers fared.
pub(crate) struct Report {
    kind: Attack,
    asked: usize,
    opened: usize,
    closed: usize,
    closed_median_s: f64,
    closed_max_s: f64,
    rss_idle: f64,
    rss_peak: f64,
    rss_after: f64,
    server_cpu_s: f64,
}

impl Running {
    /// Starts sampling the server's RSS (its `/metrics` at `base`), then `count` attackers of
    /// `kind` (see [`launch`]).
    pub(crate) async fn start(
        kind: Attack,
        count: usize,
        streams: usize,
        server: SocketAddr,
        authority: &str,
        base: http::Uri,
    ) -> Running {
        let stop = CancellationToken::new();
        let peak_rss = Arc::new(AtomicU64::new(0));
        let sampler = tokio::spawn(sample_peak_rss(base, peak_rss.clone(), stop.clone()));
        let (tally, attackers) =
            launch(kind, count, streams, server, authority, stop.clone()).await;
        Running {
            kind,
            asked: count,
            tally,
            attackers,
            sampler,
            peak_rss,
            stop,
        }
    }

    /// Ends the attack (the attackers still open leave), lets the server settle for 2 s, and
    /// reports against the server's `idle` figures (RSS, CPU) taken before the attack.
    pub(crate) async fn finish(self, base: &http::Uri, idle: Option<(f64, f64)>) -> Report {
        self.stop.cancel();
        for attacker in self.attackers {
            let _ = attacker.await;
        }
        let _ = self.sampler.await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let settled = crate::load::server_process(base).await;
        let (closed, closed_median_s, closed_max_s) = self.tally.closed();
        let rss_idle = idle.map_or(f64::NAN, |p| p.0);
        Report {
            kind: self.kind,
            asked: self.asked,
            opened: self.tally.opened.load(Ordering::Relaxed),
            closed,
            closed_median_s,
            closed_max_s,
            rss_idle,
            rss_peak: (self.peak_rss.load(Ordering::Relaxed) as f64).max(rss_idle),
            rss_after: settled.map_or(f64::NAN, |p| p.0),
            server_cpu_s: match (idle, settled) {
                (Some((_, a)), Some((_, b))) => b - a,
                _ => f64::NAN,
            },
        }
    }
}

impl Report {
    /// The report's lines for the load tool's output.
    pub(crate) fn lines(&self) -> String {
        let mib = |b: f64| b / 1048576.0;
        format!(
            "attack        {:?}: {} asked, {} connections opened, {} closed by the server (median {:.1}s, last {:.1}s after opening)\n\
             attack cost   server RSS {:.1} MiB idle, {:.1} MiB peak (+{:.1}), {:.1} MiB after (+{:.1}); server CPU {:.2} s from attack start to settled\n",
            self.kind, self.asked, self.opened, self.closed, self.closed_median_s, self.closed_max_s,
            mib(self.rss_idle), mib(self.rss_peak), mib(self.rss_peak - self.rss_idle),
            mib(self.rss_after), mib(self.rss_after - self.rss_idle), self.server_cpu_s,
        )
    }

    /// The report for the load tool's `json` line (read by `bench/attacks.sh`).
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": format!("{:?}", self.kind), "asked": self.asked, "opened": self.opened,
            "closed": self.closed, "closed_median_s": self.closed_median_s,
            "closed_max_s": self.closed_max_s, "rss_idle": self.rss_idle,
            "rss_peak": self.rss_peak, "rss_after": self.rss_after,
            "server_cpu_s": self.server_cpu_s,
        })
    }
}

/// The server's RSS peak while a run goes on: sampled every 100 ms until `stop`.
async fn sample_peak_rss(base: http::Uri, peak: Arc<AtomicU64>, stop: CancellationToken) {
    loop {
        if let Some((rss, _)) = crate::load::server_process(&base).await {
            peak.fetch_max(rss as u64, Ordering::Relaxed);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}
