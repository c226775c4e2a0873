//! The tools' arguments.

use clap::{Args, Parser, Subcommand};
use std::time::Duration;

/// `ringback-bench`: Ringback's load tool and page-load benchmark (see BENCHMARKS.md).
#[derive(Debug, Parser)]
#[command(name = "ringback-bench", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load tool: N SSE subscribers, messages at a fixed rate; reports deliveries, latency,
    /// losses and the server's memory and CPU.
    Load(LoadArgs),
    /// Time page loads over HTTP/2 with or without push.
    Pageload(PageloadArgs),
    /// Browsers that reconnect as EventSource does, and a publisher that retries with
    /// `Idempotency-Key`, through a deploy or a crash (phases marked by `SIGUSR1`).
    Fleet(crate::fleet::FleetArgs),
    /// The floor: the least work a server can do per delivery here (one epoll loop, one write
    /// per subscriber per loop turn), to measure Ringback against.
    Floor(crate::floor::FloorArgs),
}

#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// The server's base URL (HTTP/1.1, IPv4).
    #[arg(long, default_value = ringback::config::defaults::PUBLISH_URL)]
    pub url: String,
    /// SSE subscribers to open.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Messages published per second.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// How long to publish, e.g. `10s`.
    #[arg(long, value_parser = ringback::config::parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// How long to wait after the last publish for deliveries to finish.
    #[arg(long, value_parser = ringback::config::parse_duration, default_value = "5s")]
    pub drain: Duration,
    /// Padding bytes in each message (`--feed pad`).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// What each message holds besides its time and number: `pad` (`--payload` bytes of `x`,
    /// which compress to nothing), `ticks` (a price tick of ~170 bytes: repeated keys,
    /// changing values, as a realistic feed of JSON objects), or `demo` (the demo source's
    /// text, a short string, on each of the page's channels in turn).
    #[arg(long, value_enum, default_value = "pad")]
    pub feed: Feed,
    /// Ask for compressed streams (`Accept-Encoding: gzip`); a gzip stream is decoded as it
    /// arrives, and its bytes on the wire are counted against the decoded ones.
    #[arg(long)]
    pub gzip: bool,
    /// Loopback source addresses to connect from (127.0.0.2, …); 0: one per 20,000 subscribers.
    #[arg(long, default_value_t = 0)]
    pub sources: usize,
    /// Connections publishing at once, message `n` on connection `n mod N` (`POST /messages`
    /// only): one connection waits for each answer before the next publish, so it cannot keep
    /// high rates on time. More than one run on a thread of their own, beside the subscribers'.
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Publish with Redis `PUBLISH` to this Redis instead of `POST /messages`.
    #[arg(long)]
    pub redis_url: Option<String>,
    /// The Pub/Sub channel for `--redis-url`.
    #[arg(long, default_value = ringback::config::defaults::REDIS_CHANNELS)]
    pub redis_channel: String,
    /// Also hold this many subscribers that never read (small receive buffers), to measure
    /// what slow clients cost the others.
    #[arg(long, default_value_t = 0)]
    pub stalled: usize,
    /// Subscribe with HTTP/2 streams (h2c), this many to a connection, instead of one
    /// HTTP/1.1 connection each. At most the server's `--h2-max-concurrent-streams`.
    #[arg(long, default_value_t = 0)]
    pub http2_streams: usize,
    /// Subscribe over TLS (the certificate is not verified): ALPN `h2` with `--http2-streams`
    /// (`--http2-streams 1`: a browser's shape, one TLS connection and one stream each),
    /// `http/1.1` otherwise.
    #[arg(long)]
    pub tls: bool,
    /// Hostile clients to open as publishing starts (see BENCHMARKS.md): what they cost the
    /// server and the subscribers.
    #[arg(long, value_enum)]
    pub attack: Option<crate::attack::Attack>,
    /// Attackers (`h2-stalled`: event streams) to open.
    #[arg(long, default_value_t = 1000)]
    pub attackers: usize,
    /// `h2-stalled`: streams to one attacking connection.
    #[arg(long, default_value_t = 1000)]
    pub attack_streams: usize,
    /// Messages published before anything else, as fast as the server takes them (to fill the
    /// history for `--resumers`).
    #[arg(long, default_value_t = 0)]
    pub prefill: usize,
    /// Padding bytes in each `--prefill` message.
    #[arg(long, default_value_t = 16 * 1024 - 128)]
    pub prefill_payload: usize,
    /// Subscribers that resume from the start of the history (`Last-Event-ID` older than all of
    /// it) as publishing starts, and read slowly (`--resume-read-rate`): a fleet of browsers
    /// coming back after a crash. Measured: what they cost the server and the others.
    #[arg(long, default_value_t = 0)]
    pub resumers: usize,
    /// Bytes per second each `--resumers` subscriber reads at most.
    #[arg(long, default_value_t = 64 * 1024)]
    pub resume_read_rate: u64,
}

#[derive(Debug, Clone, Args)]
pub struct PageloadArgs {
    /// The server's HTTPS base URL.
    #[arg(long, default_value = "https://127.0.0.1:3000/")]
    pub url: String,
    /// Accept push (otherwise fetch the page, then its assets).
    #[arg(long)]
    pub push: bool,
    /// Page loads to time.
    #[arg(long, default_value_t = 200)]
    pub iterations: usize,
}

/// See `--feed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Feed {
    Pad,
    Ticks,
    Demo,
}
