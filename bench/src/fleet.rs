//! `ringback-bench fleet`: a fleet of browsers and a publisher through a deploy or a crash,
//! behind a load balancer (`bench/deploy.sh` runs HAProxy in front of two servers on one Redis).
//!
//! Each subscriber behaves as an `EventSource` does: it reconnects after its stream ends or its
//! connection fails, waiting the last `retry:` the server sent (3 s before any, as Chromium),
//! with `Last-Event-ID`; a response that is not `200 text/event-stream` ends it for good (as
//! it ends a browser's), and is counted. Each counts what it missed (a jump in the messages'
//! sequence numbers, or a `ringback.gap`) and what it got twice. The publisher sends at a fixed
//! rate, each message with an `Idempotency-Key`, and sends it again (on a new connection) until
//! it is answered, as a careful backend does.
//!
//! The run is split into phases by `SIGUSR1` (the script marks the event: a deploy, a crash,
//! and after). Each phase reports the latency of live deliveries (messages published while the
//! subscriber's connection was open: replays after a reconnection are not latency), and the
//! reconnections it saw: first to last, and the peak per second at each server (HAProxy names
//! the server in a response header, `x-server`). The end reports the subscribers per server.

use crate::histogram::Histogram;
use crate::load::now_us;
use clap::Args;
use http::Uri;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Args)]
pub struct FleetArgs {
    /// The load balancer's base URL (HTTP/1.1, IPv4).
    #[arg(long, default_value = ringback::config::defaults::PUBLISH_URL)]
    pub url: String,
    /// Browsers to hold open.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Messages published per second.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// How long to publish, e.g. `60s`.
    #[arg(long, value_parser = ringback::config::parse_duration, default_value = "60s")]
    pub duration: Duration,
    /// How long to wait after the last publish for every browser to have everything.
    #[arg(long, value_parser = ringback::config::parse_duration, default_value = "30s")]
    pub drain: Duration,
    /// Padding bytes in each message.
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Loopback source addresses to connect from (127.0.0.2, …).
    #[arg(long, default_value_t = 50)]
    pub sources: usize,
    /// Names of the phases `SIGUSR1` moves through (the first is the one the run starts in).
    #[arg(long, value_delimiter = ',', default_value = "quiet,event,after")]
    pub phases: Vec<String>,
}

/// What one phase saw.
#[derive(Default)]
struct Phase {
    /// Live deliveries' latency.
    latency: Histogram,
    /// Reconnections: when (since the phase began) and at which server.
    reconnects: Mutex<Vec<(Duration, String)>>,
    /// Connections refused or failed before a response (a server gone, no server up).
    failed_connects: AtomicU64,
    began: Mutex<Option<Instant>>,
}

/// What the whole fleet saw.
#[derive(Default)]
struct Fleet {
    phases: Vec<Phase>,
    phase: AtomicUsize,
    /// Browsers whose first stream opened.
    opened: AtomicUsize,
    /// Messages received (once), and received again.
    received: AtomicU64,
    duplicates: AtomicU64,
    /// `ringback.gap` events (the server said messages were lost), `ringback.refused` (shed),
    /// `ringback.end` (ended on purpose).
    gaps_told: AtomicU64,
    shed: AtomicU64,
    ends: AtomicU64,
    /// Responses a plain EventSource gives up on (not `200 text/event-stream`), and their status
    /// lines.
    fatal: AtomicU64,
    fatal_statuses: Mutex<HashMap<String, u64>>,
    /// What each browser received, when it stopped.
    seen: Mutex<Vec<Seen>>,
    /// Open streams by server now.
    by_server: Mutex<HashMap<String, usize>>,
}

impl Fleet {
    fn phase(&self) -> &Phase {
        let i = self
            .phase
            .load(Ordering::Relaxed)
            .min(self.phases.len() - 1);
        &self.phases[i]
    }
}

/// An open stream, counted at its server until dropped.
struct AtServer<'a> {
    fleet: &'a Fleet,
    server: String,
}

impl Drop for AtServer<'_> {
    fn drop(&mut self) {
        let mut by = self
            .fleet
            .by_server
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = by.get_mut(&self.server) {
            *n -= 1;
        }
    }
}

/// One browser's EventSource state across its connections.
struct Browser {
    last_id: Option<String>,
    retry: Duration,
    seen: Seen,
    streams: u64,
}

/// How a stream ended.
enum Ended {
    /// Reconnect after `retry:` (a network error, or the server ended the stream).
    Again,
    /// A response a plain EventSource fails on for good.
    Fatal,
}

async fn connect(server: SocketAddr, source: Ipv4Addr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    let tcp = socket.connect(server).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// How a response body ends.
enum Framing {
    Chunked(crate::load::Dechunker),
    /// Bytes of the body still to come.
    Length(usize),
}

impl Framing {
    fn feed(&mut self, bytes: &[u8], body: &mut Vec<u8>) {
        match self {
            Framing::Chunked(d) => d.feed(bytes, body),
            Framing::Length(left) => {
                let n = bytes.len().min(*left);
                body.extend_from_slice(&bytes[..n]);
                *left -= n;
            }
        }
    }

    fn ended(&self) -> bool {
        match self {
            Framing::Chunked(d) => d.ended(),
            Framing::Length(left) => *left == 0,
        }
    }
}

/// The messages one browser received, by sequence number (the publisher's tasks may reach the
/// feed out of order, so a jump is not yet a loss).
#[derive(Default)]
struct Seen {
    bits: Vec<u64>,
}

impl Seen {
    /// Marks `n`; `false` if it was already marked.
    fn mark(&mut self, n: u64) -> bool {
        let (word, bit) = ((n / 64) as usize, n % 64);
        if self.bits.len() <= word {
            self.bits.resize(word + 1, 0);
        }
        let had = self.bits[word] & (1 << bit) != 0;
        self.bits[word] |= 1 << bit;
        !had
    }

    /// How many of `1..=count` were never marked.
    fn missing(&self, count: u64) -> u64 {
        (1..=count)
            .filter(|n| {
                let (word, bit) = ((n / 64) as usize, n % 64);
                self.bits.get(word).is_none_or(|w| w & (1 << bit) == 0)
            })
            .count() as u64
    }
}

/// The SSE fields of one event being read.
#[derive(Default)]
struct Pending {
    event: Vec<u8>,
    data: Vec<u8>,
    id: Option<String>,
}

impl Browser {
    /// One connection: request, response head, events until the end.
    async fn stream(
        &mut self,
        server: SocketAddr,
        source: Ipv4Addr,
        host: &str,
        fleet: &Fleet,
        stop: &CancellationToken,
    ) -> Ended {
        let Ok(mut tcp) = connect(server, source).await else {
            fleet
                .phase()
                .failed_connects
                .fetch_add(1, Ordering::Relaxed);
            return Ended::Again;
        };
        let resume = self
            .last_id
            .as_ref()
            .map(|id| format!("Last-Event-ID: {id}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET /messages HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n{resume}\r\n"
        );
        if tcp.write_all(request.as_bytes()).await.is_err() {
            fleet
                .phase()
                .failed_connects
                .fetch_add(1, Ordering::Relaxed);
            return Ended::Again;
        }
        let mut buf = vec![0u8; 16 * 1024];
        let mut head = Vec::new();
        let body_start = loop {
            let n = tokio::select! {
                _ = stop.cancelled() => return Ended::Again,
                n = tcp.read(&mut buf) => n,
            };
            match n {
                Ok(0) | Err(_) => {
                    fleet
                        .phase()
                        .failed_connects
                        .fetch_add(1, Ordering::Relaxed);
                    return Ended::Again;
                }
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
            if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
        };
        let text = String::from_utf8_lossy(&head[..body_start]).to_ascii_lowercase();
        let header = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
        };
        // A 502/503 from the balancer, a 5xx or 4xx from a server: EventSource gives up.
        if !text.starts_with("http/1.1 200")
            || !header("content-type:").is_some_and(|t| t.starts_with("text/event-stream"))
        {
            fleet.fatal.fetch_add(1, Ordering::Relaxed);
            let status = text.lines().next().unwrap_or_default().to_owned();
            *fleet
                .fatal_statuses
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(status)
                .or_default() += 1;
            return Ended::Fatal;
        }
        let opened_us = now_us();
        let served_by = header("x-server:").unwrap_or_else(|| "?".into());
        if self.streams == 0 {
            fleet.opened.fetch_add(1, Ordering::Relaxed);
        } else {
            let phase = fleet.phase();
            let since = phase
                .began
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .map_or(Duration::ZERO, |b| b.elapsed());
            phase
                .reconnects
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((since, served_by.clone()));
        }
        self.streams += 1;
        *fleet
            .by_server
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(served_by.clone())
            .or_default() += 1;
        let _at = AtServer {
            fleet,
            server: served_by,
        };
        // The body ends at its last chunk, or its length: a load balancer keeps the connection
        // open after it, and EventSource reconnects at the end of the body, not of the socket.
        let mut framing = match header("content-length:").and_then(|l| l.parse::<usize>().ok()) {
            Some(length) => Framing::Length(length),
            None => Framing::Chunked(crate::load::Dechunker::default()),
        };
        let mut body = Vec::new();
        framing.feed(&head[body_start..], &mut body);
        let mut pending = Pending::default();
        loop {
            self.dispatch(&mut body, &mut pending, opened_us, fleet);
            if framing.ended() {
                return Ended::Again;
            }
            let n = tokio::select! {
                _ = stop.cancelled() => return Ended::Again,
                n = tcp.read(&mut buf) => n,
            };
            match n {
                Ok(0) | Err(_) => return Ended::Again,
                Ok(n) => framing.feed(&buf[..n], &mut body),
            }
        }
    }

    /// Reads the whole lines in `body` as the SSE algorithm does, dispatching each event.
    fn dispatch(
        &mut self,
        body: &mut Vec<u8>,
        pending: &mut Pending,
        opened_us: u64,
        fleet: &Fleet,
    ) {
        // Bytes, not strings: the tool reads every event of thousands of browsers on one core.
        let mut at = 0;
        while let Some(nl) = body[at..].iter().position(|b| *b == b'\n') {
            let line = &body[at..at + nl];
            at += nl + 1;
            if line.is_empty() {
                if let Some(id) = pending.id.take() {
                    self.last_id = Some(id);
                }
                if !pending.data.is_empty() {
                    self.event(pending, opened_us, fleet);
                }
                pending.data.clear();
                pending.event.clear();
                continue;
            }
            let colon = line.iter().position(|b| *b == b':').unwrap_or(line.len());
            let (field, mut value) = (&line[..colon], line.get(colon + 1..).unwrap_or(&[]));
            if value.first() == Some(&b' ') {
                value = &value[1..];
            }
            match field {
                b"retry" => {
                    if let Some(ms) = number_in(value) {
                        self.retry = Duration::from_millis(ms);
                    }
                }
                b"id" => pending.id = Some(String::from_utf8_lossy(value).into_owned()),
                b"event" => {
                    pending.event.clear();
                    pending.event.extend_from_slice(value);
                }
                b"data" => pending.data.extend_from_slice(value),
                _ => {}
            }
        }
        body.drain(..at);
    }

    fn event(&mut self, pending: &Pending, opened_us: u64, fleet: &Fleet) {
        let counter = match pending.event.as_slice() {
            b"ringback.gap" => &fleet.gaps_told,
            b"ringback.refused" => &fleet.shed,
            b"ringback.end" => &fleet.ends,
            b"load" => {
                let number = |key: &[u8]| {
                    let at = pending.data.windows(key.len()).position(|w| w == key)? + key.len();
                    number_in(&pending.data[at..])
                };
                let (Some(n), Some(t)) = (number(b"\"n\":"), number(b"\"t\":")) else {
                    return;
                };
                if !self.seen.mark(n) {
                    fleet.duplicates.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                fleet.received.fetch_add(1, Ordering::Relaxed);
                if t >= opened_us {
                    fleet.phase().latency.record(now_us().saturating_sub(t), 1);
                }
                return;
            }
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The decimal number at the start of `bytes`.
fn number_in(bytes: &[u8]) -> Option<u64> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    (digits > 0).then(|| {
        bytes[..digits]
            .iter()
            .fold(0u64, |n, b| n * 10 + u64::from(b - b'0'))
    })
}

/// One browser until `stop`.
async fn browser(
    server: SocketAddr,
    source: Ipv4Addr,
    host: String,
    fleet: Arc<Fleet>,
    stop: CancellationToken,
) {
    let mut b = Browser {
        last_id: None,
        retry: Duration::from_secs(3),
        seen: Seen::default(),
        streams: 0,
    };
    while !stop.is_cancelled() {
        if let Ended::Fatal = b.stream(server, source, &host, &fleet, &stop).await {
            break;
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(b.retry) => {}
        }
    }
    fleet
        .seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(b.seen);
}

/// What the publisher did.
#[derive(Default)]
struct Published {
    answered: AtomicU64,
    /// Publishes sent more than once (their first try got no answer), those the server had
    /// already written (answered with `Idempotent-Replayed`), and those given up on.
    retried: AtomicU64,
    replayed: AtomicU64,
    gave_up: AtomicU64,
}

/// Message `n` with its publish time.
fn message(n: u64, pad: &str) -> bytes::Bytes {
    bytes::Bytes::from(format!(
        r#"{{"type":"load","data":{{"t":{},"n":{n},"pad":"{pad}"}}}}"#,
        now_us()
    ))
}

/// Publishes message `n` until it is answered `202` (at most a minute), each try on a pooled
/// keep-alive connection or a new one.
async fn publish_one(
    base: Uri,
    n: u64,
    body: bytes::Bytes,
    run: u64,
    pool: Arc<Mutex<Vec<ringback::client::Connection>>>,
    published: Arc<Published>,
) {
    let key = format!("fleet-{run}-{n}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut tries = 0;
    while Instant::now() < deadline {
        tries += 1;
        let pooled = pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let sender = match pooled {
            Some(s) => Some(s),
            None => ringback::client::Connection::open(&base).await.ok(),
        };
        if let Some(mut sender) = sender {
            let options = ringback::client::PostOptions {
                token: None,
                idempotency_key: Some(&key),
            };
            let sent = tokio::time::timeout(
                Duration::from_secs(5),
                sender.post_json("/messages", body.clone(), options),
            )
            .await;
            if let Ok(Ok(answer)) = sent {
                if answer.status == http::StatusCode::ACCEPTED {
                    if tries > 1 {
                        published.retried.fetch_add(1, Ordering::Relaxed);
                    }
                    if answer.headers.contains_key("idempotent-replayed") {
                        published.replayed.fetch_add(1, Ordering::Relaxed);
                    }
                    published.answered.fetch_add(1, Ordering::Relaxed);
                    pool.lock().unwrap_or_else(|e| e.into_inner()).push(sender);
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100 * tries.min(10))).await;
    }
    published.gave_up.fetch_add(1, Ordering::Relaxed);
}

/// Runs the fleet and returns its report.
pub async fn run(args: &FleetArgs) -> Result<String, String> {
    ringback::raise_open_files_limit();
    let base: Uri = args.url.parse().map_err(|e| format!("bad --url: {e}"))?;
    let authority = base.authority().ok_or("no host in --url")?.clone();
    let server: SocketAddr =
        tokio::net::lookup_host((authority.host(), authority.port_u16().unwrap_or(80)))
            .await
            .map_err(|e| e.to_string())?
            .find(SocketAddr::is_ipv4)
            .ok_or("--url must resolve to an IPv4 address")?;
    let fleet = Arc::new(Fleet {
        phases: args.phases.iter().map(|_| Phase::default()).collect(),
        ..Fleet::default()
    });
    *fleet.phases[0]
        .began
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    let stop = CancellationToken::new();
    let mut browsers = Vec::with_capacity(args.subscribers);
    for i in 0..args.subscribers {
        let source = Ipv4Addr::new(127, 0, 0, 2 + (i % args.sources.max(1)) as u8);
        browsers.push(tokio::spawn(browser(
            server,
            source,
            authority.to_string(),
            fleet.clone(),
            stop.clone(),
        )));
        if i % 256 == 255 {
            while i + 1 - fleet.opened.load(Ordering::Relaxed) > 512 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while fleet.opened.load(Ordering::Relaxed) < args.subscribers && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let opened = fleet.opened.load(Ordering::Relaxed);
    eprintln!(
        "fleet: {opened} of {} browsers live; publishing",
        args.subscribers
    );
    // `SIGUSR1`: the next phase.
    let phases = {
        let fleet = fleet.clone();
        let names = args.phases.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let Ok(mut usr1) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
            else {
                return;
            };
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = usr1.recv() => {}
                }
                let next = (fleet.phase.load(Ordering::Relaxed) + 1).min(names.len() - 1);
                *fleet.phases[next]
                    .began
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                fleet.phase.store(next, Ordering::Relaxed);
                eprintln!("fleet: phase {}", names[next]);
            }
        })
    };
    // The publisher: one task per message, on schedule whatever the ones before are going
    // through.
    let published = Arc::new(Published::default());
    let pool = Arc::new(Mutex::new(Vec::new()));
    let run = now_us();
    let count = (args.rate * args.duration.as_secs_f64()).round().max(1.0) as u64;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate.max(0.001)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let pad = "x".repeat(args.payload);
    let mut publishes = Vec::with_capacity(count as usize);
    for n in 1..=count {
        tick.tick().await;
        publishes.push(tokio::spawn(publish_one(
            base.clone(),
            n,
            message(n, &pad),
            run,
            pool.clone(),
            published.clone(),
        )));
    }
    for p in publishes {
        let _ = p.await;
    }
    // Drain: every browser has every message, or the time is up.
    let drain_until = Instant::now() + args.drain;
    while Instant::now() < drain_until
        && fleet.received.load(Ordering::Relaxed) < count * opened as u64
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let by_server = fleet
        .by_server
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    stop.cancel();
    for b in browsers {
        let _ = b.await;
    }
    let _ = phases.await;
    let lost: u64 = fleet
        .seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|seen| seen.missing(count))
        .sum();
    Ok(report(
        args, &fleet, &published, count, opened, lost, &by_server,
    ))
}

fn report(
    args: &FleetArgs,
    fleet: &Fleet,
    published: &Published,
    count: u64,
    opened: usize,
    lost: u64,
    by_server: &HashMap<String, usize>,
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let ms = |us: u64| us as f64 / 1000.0;
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "fleet         {opened} browsers through {}; {count} messages at {}/s",
        args.url, args.rate
    );
    let _ = writeln!(
        out,
        "publisher     {} answered, {} sent again, {} of those already written (answered as before), {} given up",
        get(&published.answered), get(&published.retried), get(&published.replayed), get(&published.gave_up)
    );
    let _ = writeln!(
        out,
        "messages      {} lost, {} duplicated (per browser, summed); {} told of a gap; {} shed, {} streams ended by the server, {} refused for good",
        lost, get(&fleet.duplicates), get(&fleet.gaps_told), get(&fleet.shed), get(&fleet.ends), get(&fleet.fatal)
    );
    let mut phases = Vec::new();
    for (name, phase) in args.phases.iter().zip(&fleet.phases) {
        let reconnects = phase
            .reconnects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let first = reconnects.iter().map(|(t, _)| *t).min();
        let last = reconnects.iter().map(|(t, _)| *t).max();
        let span = match (first, last) {
            (Some(a), Some(b)) => (b - a).as_secs_f64(),
            _ => 0.0,
        };
        let mut per_second: HashMap<(&str, u64), u64> = HashMap::new();
        for (t, server) in &reconnects {
            *per_second
                .entry((server.as_str(), t.as_secs()))
                .or_default() += 1;
        }
        let mut peaks: HashMap<&str, u64> = HashMap::new();
        for ((server, _), n) in per_second {
            let peak = peaks.entry(server).or_default();
            *peak = (*peak).max(n);
        }
        let mut peaks: Vec<(&str, u64)> = peaks.into_iter().collect();
        peaks.sort();
        let _ = writeln!(
            out,
            "phase {name:<8} live p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms ({} deliveries); {} reconnections over {span:.1} s, peak/s by server {peaks:?}; {} failed connects",
            ms(phase.latency.percentile(0.5)),
            ms(phase.latency.percentile(0.99)),
            ms(phase.latency.max_us()),
            phase.latency.count(),
            reconnects.len(),
            get(&phase.failed_connects)
        );
        phases.push(serde_json::json!({
            "name": name,
            "p50_ms": ms(phase.latency.percentile(0.5)),
            "p99_ms": ms(phase.latency.percentile(0.99)),
            "max_ms": ms(phase.latency.max_us()),
            "live_deliveries": phase.latency.count(),
            "reconnections": reconnects.len(),
            "reconnect_span_s": span,
            "peak_reconnects_per_s": peaks.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect::<HashMap<_, _>>(),
            "failed_connects": get(&phase.failed_connects),
        }));
    }
    let fatal = fleet
        .fatal_statuses
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if !fatal.is_empty() {
        let _ = writeln!(out, "refused for good, by status: {fatal:?}");
    }
    let mut servers: Vec<(&String, &usize)> = by_server.iter().collect();
    servers.sort();
    let _ = writeln!(out, "at the end    streams by server {servers:?}");
    let _ = write!(
        out,
        "json {}",
        serde_json::json!({
            "browsers": opened, "published": count,
            "answered": get(&published.answered), "retried": get(&published.retried),
            "replayed": get(&published.replayed), "gave_up": get(&published.gave_up),
            "lost": lost, "duplicated": get(&fleet.duplicates),
            "gaps_told": get(&fleet.gaps_told), "shed": get(&fleet.shed), "ends": get(&fleet.ends),
            "fatal": get(&fleet.fatal), "phases": phases, "by_server": by_server,
        })
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn browser() -> Browser {
        Browser {
            last_id: None,
            retry: Duration::from_secs(3),
            seen: Seen::default(),
            streams: 1,
        }
    }

    fn fleet() -> Fleet {
        Fleet {
            phases: vec![Phase::default()],
            ..Fleet::default()
        }
    }

    #[test]
    fn events_are_read_as_an_event_source_reads_them() {
        let (mut b, f) = (browser(), fleet());
        let mut pending = Pending::default();
        let load = |id: u64, n: u64| {
            format!(
                "id: {id}\nevent: load\ndata: {{\"id\":{id},\"data\":{{\"t\":1,\"n\":{n}}}}}\n\n"
            )
        };
        let text = format!(
            "retry: 2500\n\n{}{}: heartbeat\n\nevent: ringback.gap\ndata: {{}}\n\n{}{}retry: 700\nevent: ringback.end\ndata: {{\"reason\":\"draining\"}}\n\n{}",
            load(10, 1),
            load(11, 2),
            load(13, 4),
            load(13, 4),
            &load(14, 5)[..20]
        );
        let mut body = text.into_bytes();
        b.dispatch(&mut body, &mut pending, 0, &f);
        // The half-sent event waits for the rest of its lines.
        assert_eq!(b.seen.missing(4), 1);
        assert_eq!(
            b.last_id.as_deref(),
            Some("13"),
            "control events keep the last id"
        );
        assert_eq!(f.received.load(Ordering::Relaxed), 3);
        assert_eq!(f.duplicates.load(Ordering::Relaxed), 1);
        assert_eq!(f.gaps_told.load(Ordering::Relaxed), 1);
        assert_eq!(f.ends.load(Ordering::Relaxed), 1);
        assert_eq!(b.retry, Duration::from_millis(700));
        body.extend_from_slice(&load(14, 5).as_bytes()[20..]);
        b.dispatch(&mut body, &mut pending, 0, &f);
        assert_eq!(b.seen.missing(5), 1, "3 never came");
        assert_eq!(b.last_id.as_deref(), Some("14"));
        assert!(body.is_empty());
    }
}
