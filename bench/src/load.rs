//! `ringback bench`: the load tool. Opens N SSE subscribers, publishes at a fixed rate, and
//! reports deliveries, publish → receive latency, losses, and the server's memory and CPU.
//!
//! It shares the machine's cores with the server, so it is built to cost little: subscribers
//! are raw HTTP/1.1 connections (one task each, one reused read buffer, no allocation per
//! event), events are scanned for the two numbers the tool needs (`"t":` the publish time in
//! microseconds, `"n":` the sequence number) rather than parsed as JSON, the clock is read once
//! per socket read rather than once per event, and latencies go into one shared log-linear
//! histogram of atomic counters.
//!
//! With `--http2-streams M`, subscribers are HTTP/2 streams instead, M to a connection (h2c,
//! prior knowledge, through the `h2` crate): the way past the process's 20,000 open files.
//!
//! Subscribers bind to several loopback source addresses (127.0.0.2, 127.0.0.3, …) so their
//! count is not capped by one address's ephemeral ports; the tool raises its own open-file
//! limit to the hard limit, and stops by itself after `--duration` plus `--drain`.

use crate::args::{Feed, LoadArgs};
use crate::histogram::Histogram;
use bytes::Bytes;
use http::{Request, Uri};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

/// Counters shared by every subscriber task.
struct Shared {
    latency: Histogram,
    deliveries: AtomicU64,
    /// Event-stream body bytes as they came (compressed or not), and once decoded.
    wire_bytes: AtomicU64,
    plain_bytes: AtomicU64,
    duplicates: AtomicU64,
    connected: AtomicUsize,
    failed: AtomicUsize,
    /// Per-subscriber receive counts, filled in as each subscriber ends.
    received: std::sync::Mutex<Vec<u64>>,
}

pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(0))
}

/// Finds `needle` in `hay` from `from`.
fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn number_at(hay: &[u8], at: usize) -> u64 {
    hay[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0u64, |n, b| n * 10 + u64::from(b - b'0'))
}

/// Scans complete SSE events in `buf` for load messages; returns how many bytes it consumed and
/// calls `on` with each message's `(t, seq)`: its publish time and its place in the stream, the
/// event's `id:` (the server's order, whichever publisher sent it first) or, without one, its
/// `n`. The data's fields may come in any order (the server re-serialises `data`), so each is
/// looked for within its own event.
fn scan_events(buf: &[u8], mut on: impl FnMut(u64, u64)) -> usize {
    let mut at = 0;
    while let Some(end) = find(buf, b"\n\n", at) {
        let event = &buf[at..end];
        if let (Some(t), Some(n)) = (find(event, b"\"t\":", 0), find(event, b"\"n\":", 0)) {
            let id = if event.starts_with(b"id: ") {
                Some(4)
            } else {
                find(event, b"\nid: ", 0).map(|at| at + 5)
            };
            on(
                number_at(event, t + 4),
                number_at(event, id.unwrap_or(n + 4)),
            );
        }
        at = end + 2;
    }
    at
}

/// Decodes HTTP/1.1 chunked framing incrementally, appending the payload to `out`.
#[derive(Default)]
pub(crate) struct Dechunker {
    /// Payload bytes left in the current chunk.
    left: usize,
    /// Partial chunk-size line carried between reads.
    line: Vec<u8>,
    /// Bytes of the CRLF after a chunk's payload still to skip.
    skip: usize,
    /// The last chunk (size 0) has arrived: the body is whole.
    ended: bool,
}

impl Dechunker {
    /// Whether the body's last chunk has arrived.
    pub(crate) fn ended(&self) -> bool {
        self.ended
    }

    pub(crate) fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() && !self.ended {
            if self.skip > 0 {
                let n = self.skip.min(input.len());
                self.skip -= n;
                input = &input[n..];
            } else if self.left > 0 {
                let n = self.left.min(input.len());
                out.extend_from_slice(&input[..n]);
                self.left -= n;
                input = &input[n..];
                if self.left == 0 {
                    self.skip = 2;
                }
            } else if let Some(nl) = input.iter().position(|b| *b == b'\n') {
                self.line.extend_from_slice(&input[..nl]);
                input = &input[nl + 1..];
                let hex: String = self
                    .line
                    .iter()
                    .take_while(|b| b.is_ascii_hexdigit())
                    .map(|b| *b as char)
                    .collect();
                self.line.clear();
                self.left = usize::from_str_radix(&hex, 16).unwrap_or(0);
                self.ended = self.left == 0 && !hex.is_empty();
            } else {
                self.line.extend_from_slice(input);
                input = &[];
            }
        }
    }
}

/// A gzip stream decoded as it arrives: its header skipped, its deflate blocks inflated (each
/// chunk the server sends ends flushed, so every event in it decodes at once).
pub(crate) struct Gunzip {
    header_left: usize,
    inflate: flate2::Decompress,
}

impl Gunzip {
    pub(crate) fn new() -> Self {
        Gunzip {
            header_left: 10,
            inflate: flate2::Decompress::new(false),
        }
    }

    /// Appends what `input` decodes to to `out`.
    pub(crate) fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        let skip = self.header_left.min(input.len());
        self.header_left -= skip;
        input = &input[skip..];
        while !input.is_empty() {
            out.reserve(input.len() * 8 + 256);
            let before = self.inflate.total_in();
            let status = self
                .inflate
                .decompress_vec(input, out, flate2::FlushDecompress::Sync);
            let used = usize::try_from(self.inflate.total_in() - before).unwrap_or(input.len());
            input = &input[used..];
            // The trailer, after the final block, or a corrupt stream: nothing more to decode.
            if !matches!(status, Ok(flate2::Status::Ok | flate2::Status::BufError))
                || (used == 0 && out.len() < out.capacity())
            {
                break;
            }
        }
    }
}

/// Whether a response head says its body is gzip-encoded.
fn gzip_head(head: &[u8]) -> bool {
    String::from_utf8_lossy(head)
        .to_ascii_lowercase()
        .contains("\r\ncontent-encoding: gzip")
}

/// What one subscriber has received: counts, and the last sequence number for duplicates.
#[derive(Default)]
struct Tally {
    received: u64,
    last_n: u64,
}

impl Tally {
    /// Records the complete events in `buf` (read at `now`); returns the bytes consumed.
    fn scan(&mut self, buf: &[u8], now: u64, shared: &Shared) -> usize {
        let mut batch = 0u64;
        let consumed = scan_events(buf, |t, seq| {
            if seq <= self.last_n && self.received > 0 {
                shared.duplicates.fetch_add(1, Ordering::Relaxed);
                return;
            }
            self.last_n = seq;
            self.received += 1;
            batch += 1;
            shared.latency.record(now.saturating_sub(t), 1);
        });
        shared.deliveries.fetch_add(batch, Ordering::Relaxed);
        consumed
    }

    fn finish(self, shared: &Shared) {
        shared
            .received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.received);
    }
}

/// A subscriber's connection: TCP, or TLS over it.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Connects from `source` to `server`; with `tls`, over TLS offering `alpn` (the certificate
/// is not verified: the server's default is a development certificate, and this is loopback).
async fn connect(
    server: SocketAddr,
    source: Ipv4Addr,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> std::io::Result<Box<dyn Io>> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    let tcp = socket.connect(server).await?;
    tcp.set_nodelay(true)?;
    let Some(tls) = tls else {
        return Ok(Box::new(tcp));
    };
    let name = rustls::pki_types::ServerName::IpAddress(server.ip().into());
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await?;
    Ok(Box::new(stream))
}

/// One subscriber: connects from `source`, reads until `stop`, records every message.
async fn subscriber(
    server: SocketAddr,
    source: Ipv4Addr,
    host: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    gzip: bool,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let connect =
        async {
            let mut stream = connect(server, source, tls.as_ref()).await?;
            stream
                .write_all(
                    format!(
                    "GET /messages HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n{}\r\n",
                    if gzip { "Accept-Encoding: gzip\r\n" } else { "" }
                )
                    .as_bytes(),
                )
                .await?;
            Ok::<Box<dyn Io>, std::io::Error>(stream)
        };
    let mut stream = match connect.await {
        Ok(s) => s,
        Err(_) => {
            shared.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let mut read = vec![0u8; 16 * 1024];
    let mut events: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut head: Vec<u8> = Vec::new();
    let mut chunks = Dechunker::default();
    let mut in_body = false;
    let mut tally = Tally::default();
    let mut gunzip: Option<(Gunzip, Vec<u8>)> = None;
    loop {
        let n = tokio::select! {
            _ = stop.cancelled() => break,
            n = stream.read(&mut read) => match n { Ok(0) | Err(_) => break, Ok(n) => n },
        };
        let now = now_us();
        let mut input = &read[..n];
        let rest;
        if !in_body {
            head.extend_from_slice(input);
            let Some(end) = find(&head, b"\r\n\r\n", 0) else {
                continue;
            };
            if !head.starts_with(b"HTTP/1.1 200") {
                shared.failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            in_body = true;
            shared.connected.fetch_add(1, Ordering::Relaxed);
            if gzip_head(&head[..end + 2]) {
                gunzip = Some((Gunzip::new(), Vec::new()));
            }
            rest = head.split_off(end + 4);
            input = &rest;
        }
        shared
            .wire_bytes
            .fetch_add(input.len() as u64, Ordering::Relaxed);
        let plain_before = events.len();
        match gunzip.as_mut() {
            Some((gunzip, body)) => {
                chunks.feed(input, body);
                gunzip.feed(body, &mut events);
                body.clear();
            }
            None => chunks.feed(input, &mut events),
        }
        shared
            .plain_bytes
            .fetch_add((events.len() - plain_before) as u64, Ordering::Relaxed);
        let consumed = tally.scan(&events, now, &shared);
        if consumed > 0 {
            events.drain(..consumed);
        }
    }
    if in_body {
        tally.finish(&shared);
    }
}

/// One HTTP/2 connection from `source` carrying `streams` subscribers: h2c with prior
/// knowledge, or with `tls` TLS and ALPN `h2` (with one stream, the shape of a browser).
#[allow(clippy::too_many_arguments)]
async fn h2_connection(
    server: SocketAddr,
    source: Ipv4Addr,
    host: String,
    streams: usize,
    tls: Option<Arc<rustls::ClientConfig>>,
    gzip: bool,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let failed = |n: usize| {
        shared.failed.fetch_add(n, Ordering::Relaxed);
    };
    let Ok(tcp) = connect(server, source, tls.as_ref()).await else {
        return failed(streams);
    };
    let mut builder = h2::client::Builder::new();
    builder
        .enable_push(false)
        .initial_window_size(256 * 1024)
        .initial_connection_window_size(1 << 30);
    let Ok((client, connection)) = builder.handshake::<_, Bytes>(tcp).await else {
        return failed(streams);
    };
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut tasks = Vec::with_capacity(streams);
    for _ in 0..streams {
        let mut request = Request::get(format!("http://{host}/messages"));
        if gzip {
            request = request.header("accept-encoding", "gzip");
        }
        let request = request.body(());
        let sent = match (client.clone().ready().await, request) {
            (Ok(mut c), Ok(request)) => c.send_request(request, true).ok(),
            _ => None,
        };
        match sent {
            Some((response, _)) => {
                tasks.push(tokio::spawn(h2_stream(
                    response,
                    shared.clone(),
                    stop.clone(),
                )));
            }
            None => failed(1),
        }
    }
    for task in tasks {
        let _ = task.await;
    }
    drop(client);
    driver.abort();
}

/// One HTTP/2 subscriber stream: reads until `stop`, records every message.
async fn h2_stream(
    response: h2::client::ResponseFuture,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let response = tokio::select! {
        _ = stop.cancelled() => return,
        r = response => r,
    };
    let (mut body, mut gunzip) = match response {
        Ok(r) if r.status() == http::StatusCode::OK => {
            let gzip = r.headers().get("content-encoding").map(|v| v.as_bytes()) == Some(b"gzip");
            (r.into_body(), gzip.then(Gunzip::new))
        }
        _ => {
            shared.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let mut plain = Vec::new();
    shared.connected.fetch_add(1, Ordering::Relaxed);
    let mut tally = Tally::default();
    // Events usually arrive whole, one or more to a DATA frame; only a split one is copied.
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let data = tokio::select! {
            _ = stop.cancelled() => break,
            d = body.data() => match d { Some(Ok(d)) => d, _ => break },
        };
        let _ = body.flow_control().release_capacity(data.len());
        let now = now_us();
        shared
            .wire_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        let data = match gunzip.as_mut() {
            Some(gunzip) => {
                plain.clear();
                gunzip.feed(&data, &mut plain);
                Bytes::copy_from_slice(&plain)
            }
            None => data,
        };
        shared
            .plain_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        if carry.is_empty() {
            let used = tally.scan(&data, now, &shared);
            carry.extend_from_slice(&data[used..]);
        } else {
            carry.extend_from_slice(&data);
            let used = tally.scan(&carry, now, &shared);
            carry.drain(..used);
        }
    }
    tally.finish(&shared);
}

/// Message `n`, stamped with the time it is published, in microseconds: padded, a price tick,
/// or the demo's (see `--feed`).
fn load_message(n: u64, pad: &str, feed: Feed) -> String {
    let t = now_us();
    match feed {
        Feed::Pad => format!(r#"{{"type":"load","data":{{"t":{t},"n":{n},"pad":"{pad}"}}}}"#),
        Feed::Demo => {
            // The demo source's message, with the time and number beside its text.
            let (channel, text) = ringback::demo_message(n as usize);
            let text = serde_json::Value::String(text);
            format!(r#"{{"type":"{channel}","data":{{"text":{text},"t":{t},"n":{n}}}}}"#)
        }
        Feed::Ticks => {
            const SYMBOLS: [&str; 8] = [
                "ACME", "GLOBX", "INITECH", "UMBRL", "STARK", "WAYNE", "HOOLI", "VANDL",
            ];
            // A cheap, repeatable spread of values (no randomness to seed).
            let h = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16;
            format!(
                r#"{{"type":"load","data":{{"t":{t},"n":{n},"symbol":"{}","price":{}.{:02},"change":-{}.{:02},"volume":{},"bid":{}.{:02},"ask":{}.{:02},"exchange":"XNAS","currency":"USD"}}}}"#,
                SYMBOLS[(h % 8) as usize],
                100 + h % 900,
                h % 100,
                h % 5,
                (h >> 8) % 100,
                1000 + (h >> 12) % 90_000,
                100 + h % 900,
                (h >> 4) % 100,
                100 + h % 900,
                (h >> 6) % 100,
            )
        }
    }
}

/// Publishes `count` messages at `rate` per second over `--publishers` keep-alive connections
/// (or Redis); returns how many, and how many went out late (see `post_at_rate`).
async fn publisher(args: &LoadArgs, count: u64, base: &Uri) -> Result<(u64, u64), String> {
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(0.001));
    let pad = "x".repeat(args.payload);
    if let Some(url) = &args.redis_url {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        for n in 1..=count {
            tick.tick().await;
            let _: i64 = redis::cmd("PUBLISH")
                .arg(&args.redis_channel)
                .arg(load_message(n, &pad, args.feed))
                .query_async(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
        }
        return Ok((count, 0));
    }
    let (base, feed, publishers) = (base.clone(), args.feed, args.publishers.max(1));
    let posting = post_at_rate(base, count, interval, pad, feed, publishers);
    if publishers == 1 {
        return posting.await.map(|late| (count, late));
    }
    // Several: on a thread of their own, so a publish falls due on time however busy this
    // thread's subscribers keep it.
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let posted = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|runtime| runtime.block_on(posting));
        let _ = done.send(posted);
    });
    let late = result.await.map_err(|e| e.to_string())??;
    Ok((count, late))
}

/// How late a publish may go out and still count as on time, at the least: the timer's
/// granularity is a millisecond, and at high rates an interval is less.
const LATE: Duration = Duration::from_millis(10);

/// `POST`s messages 1 to `count`, one every `interval`, over `publishers` keep-alive connections
/// (message `n` on connection `n mod publishers`); returns how many went out later than a whole
/// interval (or `LATE`, if longer) after their time.
async fn post_at_rate(
    base: Uri,
    count: u64,
    interval: Duration,
    pad: String,
    feed: Feed,
    publishers: usize,
) -> Result<u64, String> {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    // One task per connection, each given its messages' numbers as they fall due.
    let mut queues = Vec::new();
    let mut posters = Vec::new();
    for _ in 0..publishers {
        let (queue, mut due) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let mut connection = ringback::client::Connection::open(&base).await?;
        let pad = pad.clone();
        queues.push(queue);
        posters.push(tokio::spawn(async move {
            let mut late = 0u64;
            while let Some(n) = due.recv().await {
                if started.elapsed() > interval * (n as u32 - 1) + interval.max(LATE) {
                    late += 1;
                }
                let body = Bytes::from(load_message(n, &pad, feed));
                post(&mut connection, body)
                    .await
                    .map_err(|e| format!("publish {n}: {e}"))?;
            }
            Ok::<u64, String>(late)
        }));
    }
    for n in 1..=count {
        tick.tick().await;
        let queue = &queues[(n % queues.len() as u64) as usize];
        if queue.send(n).is_err() {
            break; // that poster failed: its error is returned below
        }
    }
    drop(queues);
    let mut late = 0;
    for poster in posters {
        late += poster.await.map_err(|e| e.to_string())??;
    }
    Ok(late)
}

/// `POST`s one message; an error unless the server accepted it (`202`).
async fn post(connection: &mut ringback::client::Connection, body: Bytes) -> Result<(), String> {
    let status = connection
        .post_json("/messages", body, Default::default())
        .await?
        .status;
    match status.as_u16() {
        202 => Ok(()),
        _ => Err(format!("refused: {status}")),
    }
}

/// The server's resident memory (bytes) and CPU time (seconds) from its `/metrics`.
pub(crate) async fn server_process(base: &Uri) -> Option<(f64, f64)> {
    let mut connection = ringback::client::Connection::open(base).await.ok()?;
    let body = connection.get("/metrics").await.ok()?.body;
    let text = String::from_utf8_lossy(&body);
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
    };
    Some((
        value("process_resident_memory_bytes ")?,
        value("process_cpu_seconds_total ")?,
    ))
}

/// One counter of the server's `/metrics` (`name` with its trailing space).
async fn server_counter(base: &Uri, name: &str) -> Option<f64> {
    let mut connection = ringback::client::Connection::open(base).await.ok()?;
    let body = connection.get("/metrics").await.ok()?.body;
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

/// This process's CPU time in seconds (Linux `/proc/self/stat`, 100 ticks per second).
fn own_cpu_seconds() -> f64 {
    ringback::process_stats().map_or(0.0, |p| p.cpu_seconds)
}

/// Runs the benchmark and returns its report.
/// Opens `n` subscribers that never read, with small receive buffers, from 127.0.0.250: the
/// slow clients a healthy subscriber's latency must not suffer from (`--stalled`).
async fn open_stalled(server: SocketAddr, authority: &str, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let source = Ipv4Addr::new(127, 0, 0, 250);
        let Ok(mut stream) = test_support::small_socket(server, source).await else {
            continue;
        };
        let request = format!("GET /messages HTTP/1.1\r\nhost: {authority}\r\n\r\n");
        if stream.write_all(request.as_bytes()).await.is_ok() {
            held.push(stream);
        }
    }
    held
}

/// What the `--resumers` got: how many connected, how many the server cut (it closed their
/// stream before the run ended: they fell behind the history), the bytes they read.
#[derive(Default)]
struct Resumed {
    connected: AtomicUsize,
    cut: AtomicUsize,
    bytes: AtomicU64,
}

/// One `--resumers` subscriber: resumes from before the whole history (`Last-Event-ID: 1`)
/// and reads at most `rate` bytes a second until the server ends its stream or `stop`.
async fn resumer(
    server: SocketAddr,
    source: Ipv4Addr,
    host: String,
    rate: u64,
    resumed: Arc<Resumed>,
    stop: CancellationToken,
) {
    let Ok(mut stream) = connect(server, source, None).await else {
        return;
    };
    let request = format!("GET /messages HTTP/1.1\r\nHost: {host}\r\nLast-Event-ID: 1\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return;
    }
    resumed.connected.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let mut total = 0u64;
    let mut buf = vec![0u8; 4096];
    loop {
        // Read no faster than `rate`: wait until the bytes read so far are due.
        let due = Duration::from_secs_f64(total as f64 / rate.max(1) as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        let n = tokio::select! {
            _ = stop.cancelled() => return,
            n = stream.read(&mut buf) => n,
        };
        match n {
            Ok(0) | Err(_) => {
                resumed.cut.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(n) => {
                total += n as u64;
                resumed.bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }
}

/// Publishes `n` messages of `payload` padding as fast as the server takes them.
async fn prefill(base: &Uri, n: usize, payload: usize) -> Result<(), String> {
    let mut connection = ringback::client::Connection::open(base).await?;
    let pad = "x".repeat(payload);
    for i in 0..n {
        let body = Bytes::from(
            serde_json::json!({ "type": "history", "data": { "n": i, "pad": pad } }).to_string(),
        );
        post(&mut connection, body)
            .await
            .map_err(|e| format!("prefill {i}: {e}"))?;
    }
    Ok(())
}

/// Samples the server's resident memory every 250 ms until `stop`; returns the highest seen.
async fn peak_rss(base: Uri, stop: CancellationToken) -> f64 {
    let mut peak = 0f64;
    loop {
        if let Some((rss, _)) = server_process(&base).await {
            peak = peak.max(rss);
        }
        tokio::select! {
            _ = stop.cancelled() => return peak,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// Where the server is: its base URL, authority and IPv4 socket address.
struct Target {
    base: Uri,
    authority: http::uri::Authority,
    server: SocketAddr,
}

impl Target {
    async fn resolve(url: &str) -> Result<Target, String> {
        let base: Uri = url.parse().map_err(|e| format!("bad --url {url:?}: {e}"))?;
        let authority = base.authority().ok_or("no host in --url")?.clone();
        let server: SocketAddr = tokio::net::lookup_host((
            authority.host().trim_matches(['[', ']']),
            authority.port_u16().unwrap_or(80),
        ))
        .await
        .map_err(|e| e.to_string())?
        .find(SocketAddr::is_ipv4)
        .ok_or("--url must resolve to an IPv4 address")?;
        Ok(Target {
            base,
            authority,
            server,
        })
    }
}

/// What one run measured, for the report.
struct Measured {
    raised: u64,
    sources: usize,
    connect_time: Duration,
    connected: usize,
    published: u64,
    publish_time: Duration,
    expected: u64,
    wall: Duration,
    own_cpu: f64,
    /// The server's (RSS, CPU seconds) before subscribing, with the subscribers idle, and after
    /// publishing.
    before: Option<(f64, f64)>,
    idle: Option<(f64, f64)>,
    after: Option<(f64, f64)>,
    attack: Option<crate::attack::Report>,
    /// With `--resumers`: what they got, the server's highest RSS while they ran, and the
    /// resumes it told of a gap.
    resumed: Option<(Arc<Resumed>, f64, f64)>,
    /// Publishes sent later than a whole interval (at least `LATE`) after their time.
    late: u64,
}

/// Runs the load: subscribe, weigh the idle subscribers, (attack,) publish, drain, report.
pub async fn run(args: &LoadArgs) -> Result<String, String> {
    let raised = ringback::raise_open_files_limit();
    let target = Target::resolve(&args.url).await?;
    let sources = if args.sources > 0 {
        args.sources
    } else {
        args.subscribers.div_ceil(20_000).max(1)
    };
    let shared = Arc::new(Shared {
        latency: Histogram::default(),
        deliveries: AtomicU64::new(0),
        wire_bytes: AtomicU64::new(0),
        plain_bytes: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
        connected: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        received: std::sync::Mutex::new(Vec::with_capacity(args.subscribers)),
    });
    if args.prefill > 0 {
        prefill(&target.base, args.prefill, args.prefill_payload).await?;
    }
    let before = server_process(&target.base).await;
    let stop = CancellationToken::new();
    let connect_started = Instant::now();
    let tasks = subscribe(args, &target, sources, &shared, &stop).await;
    let connect_time = connect_started.elapsed();
    // Let the server settle, then weigh the idle subscribers.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = server_process(&target.base).await;
    let connected = shared.connected.load(Ordering::Relaxed);
    let stalled = open_stalled(target.server, target.authority.as_ref(), args.stalled).await;

    // Hostile clients, launched as publishing starts.
    let attack = match args.attack {
        Some(kind) => {
            let attack = crate::attack::Running::start(
                kind,
                args.attackers,
                args.attack_streams,
                target.server,
                target.authority.as_ref(),
                target.base.clone(),
            );
            Some(attack.await)
        }
        None => None,
    };

    let count = (args.rate * args.duration.as_secs_f64()).round().max(1.0) as u64;
    let own_cpu0 = own_cpu_seconds();
    // A crash's worth of browsers coming back, as publishing starts.
    let resumed = Arc::new(Resumed::default());
    let sampler =
        (args.resumers > 0).then(|| tokio::spawn(peak_rss(target.base.clone(), stop.clone())));
    let mut resumers = Vec::with_capacity(args.resumers);
    for i in 0..args.resumers {
        let source = Ipv4Addr::new(127, 0, 1, 2 + (i % 200) as u8);
        resumers.push(tokio::spawn(resumer(
            target.server,
            source,
            target.authority.to_string(),
            args.resume_read_rate,
            resumed.clone(),
            stop.clone(),
        )));
    }
    let started = Instant::now();
    let (published, late) = publisher(args, count, &target.base).await?;
    let publish_time = started.elapsed();
    // Drain: wait until every subscriber has everything, or `--drain` passes.
    let expected = published * connected as u64;
    let drain_deadline = Instant::now() + args.drain;
    while shared.deliveries.load(Ordering::Relaxed) < expected && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let wall = started.elapsed();
    let after = server_process(&target.base).await;
    let own_cpu = own_cpu_seconds() - own_cpu0;
    // The attack ends: the attackers still open leave, and the server settles.
    let attack = match attack {
        Some(attack) => Some(attack.finish(&target.base, idle).await),
        None => None,
    };
    stop.cancel();
    for t in tasks.into_iter().chain(resumers) {
        let _ = t.await;
    }
    let resumed = match sampler {
        Some(sampler) => {
            let gaps = server_counter(&target.base, "ringback_resume_gaps_total ").await;
            Some((resumed, sampler.await.unwrap_or(0.0), gaps.unwrap_or(0.0)))
        }
        None => None,
    };
    drop(stalled);
    let measured = Measured {
        raised,
        sources,
        connect_time,
        connected,
        published,
        publish_time,
        expected,
        wall,
        own_cpu,
        before,
        idle,
        after,
        attack,
        resumed,
        late,
    };
    Ok(report(args, &shared, &measured))
}

/// Opens the subscribers (HTTP/2 streams, `--http2-streams` to a connection, or one HTTP/1.1
/// connection each), paced so the server's accept backlog never overflows, and waits until
/// they are all connected or failed (at most two minutes).
async fn subscribe(
    args: &LoadArgs,
    target: &Target,
    sources: usize,
    shared: &Arc<Shared>,
    stop: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let tls = args.tls.then(|| {
        let alpn: &[u8] = if args.http2_streams > 0 {
            b"h2"
        } else {
            b"http/1.1"
        };
        crate::pageload::insecure_client_config(alpn)
    });
    let settled =
        || shared.connected.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed);
    let mut tasks = Vec::with_capacity(args.subscribers);
    if args.http2_streams > 0 {
        let connections = args.subscribers.div_ceil(args.http2_streams);
        for c in 0..connections {
            let source = Ipv4Addr::new(127, 0, 0, 2 + (c % sources) as u8);
            let streams = args
                .http2_streams
                .min(args.subscribers - c * args.http2_streams);
            tasks.push(tokio::spawn(h2_connection(
                target.server,
                source,
                target.authority.to_string(),
                streams,
                tls.clone(),
                args.gzip,
                shared.clone(),
                stop.clone(),
            )));
            // Let each connection open its streams before the next starts (a few hundred
            // connections in flight when they are small, as a browser's are).
            while c * args.http2_streams > settled() + (2 * args.http2_streams).max(256) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    for i in 0..args.subscribers * usize::from(args.http2_streams == 0) {
        let source = Ipv4Addr::new(127, 0, 0, 2 + (i % sources) as u8);
        tasks.push(tokio::spawn(subscriber(
            target.server,
            source,
            target.authority.to_string(),
            tls.clone(),
            args.gzip,
            shared.clone(),
            stop.clone(),
        )));
        // Pace the connects so the server's accept backlog (1,024) never overflows (with 2,048
        // in flight, a few hundred of 10,000 waited out SYN retries for two minutes), and, over
        // TLS, so the handshakes in flight finish within the server's header deadline (2,048
        // at once on two cores lost ~40% of 10,000 to it).
        if i % 256 == 255 {
            tokio::task::yield_now().await;
            let in_flight = if args.tls { 256 } else { 768 };
            while i + 1 - settled() > in_flight {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while settled() < args.subscribers && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tasks
}

/// The report: one line per measure, then the same as one `json` line for scripts.
fn report(args: &LoadArgs, shared: &Shared, m: &Measured) -> String {
    let received = shared
        .received
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let published = m.published;
    let connected = m.connected;
    let wall = m.wall;
    let lost: u64 = received.iter().map(|r| published.saturating_sub(*r)).sum();
    let max_lost = received
        .iter()
        .map(|r| published.saturating_sub(*r))
        .max()
        .unwrap_or(0);
    let deliveries = shared.deliveries.load(Ordering::Relaxed);
    let ms = |us: u64| us as f64 / 1000.0;
    let mut out = String::new();
    use std::fmt::Write;
    let security = if args.tls { "TLS" } else { "cleartext" };
    let transport = if args.http2_streams > 0 {
        format!(
            "{security} HTTP/2 streams, {} to a connection",
            args.http2_streams
        )
    } else {
        format!("{security} HTTP/1.1 connections")
    };
    let _ = writeln!(out, "subscribers   {connected} connected, {} failed, as {transport} ({} source addresses; connected in {:.1}s; open-file limit {})",
        shared.failed.load(Ordering::Relaxed), m.sources, m.connect_time.as_secs_f64(), m.raised);
    let _ = writeln!(
        out,
        "published     {published} messages in {:.2}s ({:.0}/s asked, {:.0}/s achieved) via {}",
        m.publish_time.as_secs_f64(),
        args.rate,
        published as f64 / m.publish_time.as_secs_f64(),
        if args.redis_url.is_some() {
            "Redis PUBLISH"
        } else {
            "POST /messages"
        }
    );
    let _ = writeln!(
        out,
        "deliveries    {deliveries} of {} ({:.0}/s over {:.2}s)",
        m.expected,
        deliveries as f64 / wall.as_secs_f64(),
        wall.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "latency ms    p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
        ms(shared.latency.percentile(0.50)),
        ms(shared.latency.percentile(0.90)),
        ms(shared.latency.percentile(0.99)),
        ms(shared.latency.max_us())
    );
    let _ = writeln!(
        out,
        "lost          {lost} in total, at most {max_lost} per subscriber; {} duplicates",
        shared.duplicates.load(Ordering::Relaxed)
    );
    let wire = shared.wire_bytes.load(Ordering::Relaxed) as f64;
    let plain = shared.plain_bytes.load(Ordering::Relaxed) as f64;
    let per = |bytes: f64| bytes / deliveries.max(1) as f64;
    let _ = writeln!(
        out,
        "bytes         {:.1} on the wire per delivery, {:.1} decoded ({:.2}x){}",
        per(wire),
        per(plain),
        plain / wire.max(1.0),
        if args.gzip { ", gzip asked" } else { "" }
    );
    if let (Some((rss0, _)), Some((rss1, _))) = (m.before, m.idle) {
        let _ = writeln!(out, "server memory {:.1} MiB before, {:.1} MiB with {connected} idle subscribers: {:.2} KiB each",
            rss0 / 1048576.0, rss1 / 1048576.0, (rss1 - rss0) / 1024.0 / connected.max(1) as f64);
    }
    if let (Some((_, cpu0)), Some((rss2, cpu1))) = (m.idle, m.after) {
        let _ = writeln!(
            out,
            "server        {:.0}% CPU while publishing (of one core), {:.1} MiB after",
            100.0 * (cpu1 - cpu0) / wall.as_secs_f64(),
            rss2 / 1048576.0
        );
    }
    if args.stalled > 0 {
        let _ = writeln!(
            out,
            "stalled       {} subscribers that never read (4 KiB receive buffers) held open beside them",
            args.stalled
        );
    }
    if m.late > 0 {
        let _ = writeln!(
            out,
            "publisher     {} of {published} publishes went out more than an interval (at least 10 ms) late",
            m.late
        );
    }
    let resumed_json = m.resumed.as_ref().map_or(serde_json::Value::Null, |(r, peak, gaps)| {
        let connected = r.connected.load(Ordering::Relaxed);
        let cut = r.cut.load(Ordering::Relaxed);
        let mib = r.bytes.load(Ordering::Relaxed) as f64 / 1048576.0;
        let _ = writeln!(out, "resumers      {connected} resumed from the start of the history, reading {} KiB/s each: {mib:.0} MiB read, {gaps} told of a gap, {cut} cut for falling behind; server RSS peak {:.1} MiB",
            args.resume_read_rate / 1024, peak / 1048576.0);
        serde_json::json!({ "connected": connected, "cut": cut, "gaps": gaps, "mib_read": mib, "rss_peak_mib": peak / 1048576.0 })
    });
    let attack_json = m.attack.as_ref().map_or(serde_json::Value::Null, |report| {
        out.push_str(&report.lines());
        report.json()
    });
    let _ = writeln!(
        out,
        "load tool     {:.0}% CPU (of one core)",
        100.0 * m.own_cpu / wall.as_secs_f64()
    );
    let _ = write!(
        out,
        "json {}",
        serde_json::json!({
            "subscribers": connected, "failed": shared.failed.load(Ordering::Relaxed),
            "published": published, "deliveries": deliveries,
            "deliveries_per_s": deliveries as f64 / wall.as_secs_f64(),
            "p50_ms": ms(shared.latency.percentile(0.5)), "p90_ms": ms(shared.latency.percentile(0.9)),
            "p99_ms": ms(shared.latency.percentile(0.99)), "max_ms": ms(shared.latency.max_us()),
            "lost": lost, "duplicates": shared.duplicates.load(Ordering::Relaxed),
            "wire_bytes_per_delivery": per(wire), "plain_bytes_per_delivery": per(plain),
            "idle_kib_per_subscriber": match (m.before, m.idle) { (Some((a, _)), Some((b, _))) => (b - a) / 1024.0 / connected.max(1) as f64, _ => f64::NAN },
            "server_cpu_s": match (m.idle, m.after) { (Some((_, a)), Some((_, b))) => b - a, _ => f64::NAN },
            "server_rss_after_mib": m.after.map_or(f64::NAN, |(rss, _)| rss / 1048576.0),
            "late_publishes": m.late,
            "published_per_s": published as f64 / m.publish_time.as_secs_f64(),
            "resumers": resumed_json,
            "attack": attack_json,
        })
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_events_are_scanned_across_reads() {
        let frame = |n: u64| {
            format!("id: {n}\nevent: load\ndata: {{\"id\":{n},\"type\":\"load\",\"data\":{{\"n\":{n},\"pad\":\"x\",\"t\":{}}}}}\n\n", 1000 + n)
        };
        let body = format!("{}{}", frame(1), frame(2));
        // Chunked, then cut into awkward pieces.
        let chunked = format!(
            "{:x}\r\n{}\r\n{:x}\r\n{}\r\n",
            10,
            &body[..10],
            body.len() - 10,
            &body[10..]
        );
        let mut d = Dechunker::default();
        let mut events = Vec::new();
        let mut seen = Vec::new();
        for piece in chunked.as_bytes().chunks(7) {
            d.feed(piece, &mut events);
            let used = scan_events(&events, |t, n| seen.push((t, n)));
            events.drain(..used);
        }
        assert_eq!(seen, vec![(1001, 1), (1002, 2)]);
        assert!(events.is_empty());
    }

    #[test]
    fn a_message_is_placed_by_its_id_whichever_publisher_sent_it() {
        // Publishers at once: message 7 may be the stream's third event.
        let events = b"id: 3\nevent: load\ndata: {\"n\":7,\"t\":1007}\n\n\
            event: load\ndata: {\"n\":8,\"t\":1008}\n\n";
        let mut seen = Vec::new();
        scan_events(events, |t, seq| seen.push((t, seq)));
        assert_eq!(seen, vec![(1007, 3), (1008, 8)]);
    }
}
