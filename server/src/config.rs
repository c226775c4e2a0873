//! Command line and environment: every setting, its flag, its variable and its default.
//!
//! Flags win over environment variables (`RINGBACK_*`, and the `LEPTOS_*` ones cargo-leptos
//! sets), which win over the defaults in [`defaults`]. `ringback --help` lists them all.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Every default, named once. The configuration table in docs/operations.md mirrors
/// `--help`, and `scripts/check-config-doc.py` fails when they differ.
pub mod defaults {
    use std::time::Duration;

    /// Where the server listens when neither `--addr` nor `LEPTOS_SITE_ADDR` says otherwise.
    pub const ADDR: &str = "127.0.0.1:3000";
    /// Messages the broadcast list keeps for `Last-Event-ID` resume and first paint.
    pub const HISTORY: usize = 1024;
    /// Bytes of encoded frames the broadcast list keeps, whichever bound is hit first.
    pub const HISTORY_BYTES: usize = 16 * 1024 * 1024;
    /// Largest accepted message: the `POST /messages` body, and a message's JSON from any source.
    pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
    /// Distinct channels the feed will carry; a publish that would create one more is refused.
    pub const MAX_CHANNELS: usize = 256;
    /// Channels one subscriber may name in `?type=` filters.
    pub const MAX_FILTER_CHANNELS: usize = 32;
    /// Open connections (HTTP/1.1 or HTTP/2) the server accepts at once; the rest wait in the
    /// kernel's backlog. A process here may hold at most 20,000 open files.
    pub const MAX_CONNECTIONS: usize = 16_384;
    /// Idle time after which an SSE stream sends a comment, so proxies keep it open and dead
    /// peers are found.
    pub const HEARTBEAT: Duration = Duration::from_secs(15);
    /// The `retry:` an SSE stream announces: how long EventSource waits before reconnecting.
    /// Each stream's is drawn between this and twice this.
    pub const RETRY: Duration = Duration::from_millis(2000);
    /// Longest life of one SSE stream; each ends after 80–100% of it, so connections rebalance
    /// across servers after a deploy (BENCHMARKS.md, the rolling deploy).
    pub const MAX_STREAM_AGE: Duration = Duration::from_secs(10 * 60);
    /// On graceful shutdown, each SSE stream ends at a random moment within this, so the
    /// server's clients reconnect (elsewhere) spread out rather than in one instant. Less than
    /// `SHUTDOWN_GRACE`.
    pub const DRAIN_WINDOW: Duration = Duration::from_secs(5);
    /// Bytes per second that resuming streams may replay from history together; a resume beyond
    /// it waits its turn, so thousands catching up at once leave the live streams their CPU.
    pub const REPLAY_RATE: u64 = 64 * 1024 * 1024;
    /// How long a publish's `Idempotency-Key` is remembered: a repeat within it is answered as
    /// the first was and not delivered again.
    pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(5 * 60);
    /// Idempotency keys remembered at once; beyond it the oldest are forgotten early.
    pub const IDEMPOTENCY_KEYS: usize = 100_000;
    /// Longest `Idempotency-Key` accepted, in bytes (`400` beyond it).
    pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 128;
    /// How many messages each channel's box keeps on the page.
    pub const UI_MESSAGES: usize = 50;
    /// How often the demo source publishes.
    pub const DEMO_INTERVAL: Duration = Duration::from_secs(1);
    /// How long a graceful shutdown waits for connections to finish before it drops them.
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
    /// Where `ringback publish` sends messages.
    pub const PUBLISH_URL: &str = "http://127.0.0.1:3000";
    /// Log filter (tracing-subscriber's `EnvFilter` syntax).
    pub const LOG: &str = "info";
    /// Where the development certificate and its authority are kept (relative to the working
    /// directory).
    pub const DATA_DIR: &str = ".ringback";
    /// Time a new connection has, from accept, to send a whole request head: the HTTP/1.1 head,
    /// or the TLS handshake plus the HTTP/2 connection preface. On a kept-alive HTTP/1.1
    /// connection, the time a later request head has from its first byte.
    pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
    /// How long a kept-alive HTTP/1.1 connection may wait for its next request (nginx's
    /// `keepalive_timeout` is 75 s too): long enough for a publisher's connection pool, which
    /// sends on a connection it believes open. Idle connections still count against
    /// `MAX_CONNECTIONS`, and are closed first when the server holds that many.
    pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(75);
    /// Time a request body has to arrive whole, from the end of its head.
    pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
    /// Bytes per second a request body must keep up after its first second; a body that drips
    /// slower is cut (`408`) long before the body timeout.
    pub const MIN_BODY_RATE: u64 = 4096;
    /// Bytes an HTTP/2 connection (all its streams together) may hold handed to the protocol
    /// but not yet written to the socket; a connection over it is closed. HTTP/1.1 connections
    /// hold at most one event-stream batch or `MAX_WRITE_BUFFER` (their writes wait instead).
    pub const MAX_CONNECTION_BUFFER: usize = 4 * 1024 * 1024;
    /// A channel with no message for this long and no subscriber naming it in a filter is
    /// forgotten, so `MAX_CHANNELS` counts live channels. The page's default channels stay.
    pub const CHANNEL_IDLE: Duration = Duration::from_secs(10 * 60);
    /// New channels per minute one credential (or, with open publishing, one address) may
    /// create; beyond it, `429` with `Retry-After`.
    pub const NEW_CHANNEL_RATE: f64 = 6.0;
    /// New channels one credential may create in a burst above the rate.
    pub const NEW_CHANNEL_BURST: u32 = 10;
    /// An HTTP/2 connection with no stream in flight for this long is closed (GOAWAY). An
    /// HTTP/1.1 connection waits for its next request at most `KEEP_ALIVE_TIMEOUT`.
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
    /// HTTP/2 streams one client may have open at once (SSE subscriptions count).
    pub const H2_MAX_CONCURRENT_STREAMS: u32 = 1024;
    /// Largest request header block accepted (HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE).
    pub const H2_MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;
    /// Receive window per stream: how much of an upload the client may send ahead.
    pub const H2_STREAM_WINDOW: u32 = 256 * 1024;
    /// Receive window for the whole connection.
    pub const H2_CONNECTION_WINDOW: u32 = 1024 * 1024;
    /// Bytes buffered per stream while the client's window is closed.
    pub const H2_MAX_SEND_BUFFER: usize = 400 * 1024;
    /// Streams a client may reset before the server accepts them (rapid-reset protection).
    pub const H2_MAX_PENDING_ACCEPT_RESETS: usize = 20;
    /// Streams the server may reset because of the client's errors before it closes the
    /// connection (rapid-reset protection, CVE-2023-44487 and kin).
    pub const H2_MAX_LOCAL_ERROR_RESETS: usize = 1024;
    /// Redis Pub/Sub channel(s) carrying seed-style messages (`PUBLISH events '{...}'`).
    pub const REDIS_CHANNELS: &str = "events";
    /// Prefix of Ringback's Redis keys; the `{feed}` hash tag keeps them in one Cluster slot.
    pub const REDIS_PREFIX: &str = "ringback:{feed}";
    /// Age beyond which the Redis log trims messages (its count bound is `HISTORY`).
    pub const HISTORY_AGE: Duration = Duration::from_secs(24 * 3600);
    /// First delay before reconnecting to Redis; it doubles per failure, with jitter.
    pub const REDIS_BACKOFF_MIN: Duration = Duration::from_millis(100);
    /// Longest delay between reconnection attempts.
    pub const REDIS_BACKOFF_MAX: Duration = Duration::from_secs(5);
    /// How long a publish (or connecting) waits for Redis before answering `503`.
    pub const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
    /// Replicas a publish must reach before it is acknowledged (`WAIT`); off by default, on in
    /// the production advice in docs/operations.md.
    pub const REDIS_MIN_REPLICAS: u32 = 0;
    /// How often the subscriber counts per channel are gathered (and, behind Redis, reported);
    /// subscribers receive changed counts at most this often.
    pub const PRESENCE_INTERVAL: Duration = Duration::from_secs(1);
    /// Behind Redis: how long a server's reported counts stand without a newer report, so a
    /// server that dies drops out of every count within this.
    pub const PRESENCE_EXPIRY: Duration = Duration::from_secs(5);
    /// SSE subscribers held at once; beyond it a subscription is answered `503`.
    pub const MAX_SUBSCRIBERS: usize = 100_000;
    /// SSE subscribers one client address may hold; beyond it, `429`. Generous, because many
    /// users can share one address (a NAT, an office).
    pub const MAX_SUBSCRIBERS_PER_IP: usize = 1024;
    /// Messages per second one credential (or, with open publishing, one address) may publish
    /// through `POST /messages`; beyond it, `429` with `Retry-After`.
    pub const PUBLISH_RATE: f64 = 1000.0;
    /// Messages one credential may publish in a burst above the rate.
    pub const PUBLISH_BURST: u32 = 1000;
    /// A write to a client that makes no progress for this long closes the connection: a
    /// stalled socket is not held open forever.
    pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
    /// Bytes of response an HTTP/1.1 connection buffers beyond the socket's own buffer: hyper's
    /// write buffer (at least 8 KiB), and the largest batch an event stream writes at once.
    /// What a client that stops reading can pin in the server until it is cut off or its write
    /// deadline passes.
    pub const MAX_WRITE_BUFFER: usize = 64 * 1024;
}

#[derive(Debug, Parser)]
#[command(
    name = "ringback",
    version,
    about = "A live message feed for the browser."
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

// Parsed once at start-up: the size of the largest variant costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the feed and the page (the default when no subcommand is given).
    Serve(ServeArgs),
    /// Publish one message to a running server through `POST /messages`.
    Publish(PublishArgs),
}

/// `ringback [serve]`: every setting of the server, by the component that takes it.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "RINGBACK_ADDR")]
    pub addr: Option<SocketAddr>,
    /// Log filter, e.g. `info`, `ringback=debug,info`.
    #[arg(long, env = "RINGBACK_LOG", default_value = defaults::LOG)]
    pub log: String,
    #[command(flatten, next_help_heading = "Feed")]
    pub feed: FeedLimits,
    #[command(flatten, next_help_heading = "Event streams")]
    pub events: EventArgs,
    #[command(flatten, next_help_heading = "Presence")]
    pub presence: PresenceArgs,
    #[command(flatten, next_help_heading = "Credentials")]
    pub auth: AuthArgs,
    #[command(flatten, next_help_heading = "Client limits")]
    pub limits: LimitArgs,
    #[command(flatten, next_help_heading = "Idempotent publishing")]
    pub idempotency: IdempotencyArgs,
    #[command(flatten, next_help_heading = "Request bodies")]
    pub body: BodyArgs,
    #[command(flatten, next_help_heading = "Page and demo")]
    pub site: SiteArgs,
    #[command(flatten, next_help_heading = "Connections")]
    pub transport: TransportArgs,
    #[command(flatten, next_help_heading = "TLS")]
    pub tls: TlsArgs,
    #[command(flatten, next_help_heading = "Redis")]
    pub redis: RedisArgs,
}

impl Default for ServeArgs {
    /// The defaults, as `ringback` with no flags and no environment would use them.
    fn default() -> Self {
        ServeArgs {
            addr: None,
            log: defaults::LOG.to_owned(),
            feed: FeedLimits::default(),
            events: EventArgs::default(),
            presence: PresenceArgs::default(),
            auth: AuthArgs::default(),
            limits: LimitArgs::default(),
            idempotency: IdempotencyArgs::default(),
            body: BodyArgs::default(),
            site: SiteArgs::default(),
            transport: TransportArgs::default(),
            tls: TlsArgs::default(),
            redis: RedisArgs::default(),
        }
    }
}

/// The broadcast list: what it keeps, and what it accepts.
#[derive(Debug, Clone, Args)]
pub struct FeedLimits {
    /// Messages kept in history for resume and first paint.
    #[arg(long, env = "RINGBACK_HISTORY", default_value_t = defaults::HISTORY)]
    pub history: usize,
    /// Bytes of encoded frames kept in history.
    #[arg(long, env = "RINGBACK_HISTORY_BYTES", default_value_t = defaults::HISTORY_BYTES)]
    pub history_bytes: usize,
    /// Largest accepted message, in bytes.
    #[arg(long, env = "RINGBACK_MAX_MESSAGE_BYTES", default_value_t = defaults::MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,
    /// Distinct channels the feed carries at most.
    #[arg(long, env = "RINGBACK_MAX_CHANNELS", default_value_t = defaults::MAX_CHANNELS)]
    pub max_channels: usize,
    /// A channel with no message for this long and no subscriber naming it is forgotten (it no
    /// longer counts against `--max-channels`), e.g. `10m`; `0s`: never.
    #[arg(long, env = "RINGBACK_CHANNEL_IDLE", value_parser = parse_duration, default_value = "10m")]
    pub channel_idle: Duration,
}

impl Default for FeedLimits {
    fn default() -> Self {
        FeedLimits {
            history: defaults::HISTORY,
            history_bytes: defaults::HISTORY_BYTES,
            max_message_bytes: defaults::MAX_MESSAGE_BYTES,
            max_channels: defaults::MAX_CHANNELS,
            channel_idle: defaults::CHANNEL_IDLE,
        }
    }
}

/// Event streams (`GET /messages`).
#[derive(Debug, Clone, Args)]
pub struct EventArgs {
    /// SSE heartbeat interval when idle, e.g. `15s`, `500ms`.
    #[arg(long, env = "RINGBACK_HEARTBEAT", value_parser = parse_duration, default_value = "15s")]
    pub heartbeat: Duration,
    /// Reconnect delay announced to EventSource (`retry:`), e.g. `2s`; each stream's is drawn
    /// between this and twice this, so clients do not all come back in the same instant.
    #[arg(long, env = "RINGBACK_RETRY", value_parser = parse_duration, default_value = "2s")]
    pub retry: Duration,
    /// Longest life of one SSE stream, e.g. `10m`; each stream ends after 80–100% of it (at
    /// random), so clients reconnect, and rebalance across servers, a few at a time. `0`: no
    /// limit.
    #[arg(long, env = "RINGBACK_MAX_STREAM_AGE", value_parser = parse_duration, default_value = "10m")]
    pub max_stream_age: Duration,
    /// On graceful shutdown, each SSE stream ends at a random moment within this, e.g. `5s`
    /// (less than `--shutdown-grace`).
    #[arg(long, env = "RINGBACK_DRAIN_WINDOW", value_parser = parse_duration, default_value = "5s")]
    pub drain_window: Duration,
    /// Bytes per second resuming streams may replay from history, all together (a resume beyond
    /// it waits its turn; live streams never wait). 0: no limit.
    #[arg(long, env = "RINGBACK_REPLAY_RATE", default_value_t = defaults::REPLAY_RATE)]
    pub replay_rate: u64,
    /// Channels one subscriber may name in `?type=` filters.
    #[arg(long, env = "RINGBACK_MAX_FILTER_CHANNELS", default_value_t = defaults::MAX_FILTER_CHANNELS)]
    pub max_filter_channels: usize,
    /// Event streams compressed for the clients that accept it: `gzip` (each frame compressed
    /// once for every subscriber, and only while a stream is compressed), or `off`.
    #[arg(
        long,
        env = "RINGBACK_STREAM_COMPRESSION",
        value_enum,
        default_value = "gzip"
    )]
    pub stream_compression: StreamCompression,
}

impl Default for EventArgs {
    fn default() -> Self {
        EventArgs {
            heartbeat: defaults::HEARTBEAT,
            retry: defaults::RETRY,
            max_stream_age: defaults::MAX_STREAM_AGE,
            drain_window: defaults::DRAIN_WINDOW,
            replay_rate: defaults::REPLAY_RATE,
            max_filter_channels: defaults::MAX_FILTER_CHANNELS,
            stream_compression: StreamCompression::Gzip,
        }
    }
}

/// See `--stream-compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StreamCompression {
    Gzip,
    Off,
}

/// Presence: subscribers per channel (`GET /api/channels`, the `ringback.presence` event).
#[derive(Debug, Clone, Args)]
pub struct PresenceArgs {
    /// How often subscriber counts are gathered (and, behind Redis, reported); streams receive
    /// changed counts at most this often, e.g. `1s` (at least `10ms`).
    #[arg(long, env = "RINGBACK_PRESENCE_INTERVAL", value_parser = parse_duration, default_value = "1s")]
    pub presence_interval: Duration,
    /// Behind Redis: how long a server's reported counts stand unless renewed, so a server that
    /// dies drops out of the counts within this, e.g. `5s` (at least twice the interval).
    #[arg(long, env = "RINGBACK_PRESENCE_EXPIRY", value_parser = parse_duration, default_value = "5s")]
    pub presence_expiry: Duration,
}

impl Default for PresenceArgs {
    fn default() -> Self {
        PresenceArgs {
            presence_interval: defaults::PRESENCE_INTERVAL,
            presence_expiry: defaults::PRESENCE_EXPIRY,
        }
    }
}

impl PresenceArgs {
    /// The interval as used: at least 10 ms.
    pub fn interval(&self) -> Duration {
        self.presence_interval.max(Duration::from_millis(10))
    }

    /// The expiry as used: at least twice the interval, so a live server's report never lapses
    /// between two of its reports.
    pub fn expiry(&self) -> Duration {
        self.presence_expiry.max(self.interval() * 2)
    }
}

/// Credentials: who may publish, who may read private channels.
#[derive(Debug, Clone, Args, Default)]
pub struct AuthArgs {
    /// Bearer token(s) required to publish through `POST /messages`, comma-separated; none:
    /// publishing is open (set this in production).
    #[arg(
        long,
        env = "RINGBACK_PUBLISH_TOKEN",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub publish_token: Vec<String>,
    /// HS256 key for JWTs (publishers' and subscribers'); enables JWT credentials.
    #[arg(long, env = "RINGBACK_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// RS256 public key (PEM file) for JWTs; enables JWT credentials.
    #[arg(long, env = "RINGBACK_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,
    /// Audience (`aud`) JWTs must name, if any.
    #[arg(long, env = "RINGBACK_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Private channels (names, `prefix*`, or `*`), comma-separated: read only with a JWT whose
    /// `ringback.subscribe` claim lists them. Needs a JWT key.
    #[arg(long, env = "RINGBACK_PRIVATE_CHANNELS", value_delimiter = ',')]
    pub private_channels: Vec<String>,
}

/// What one client may take: subscribers, publishes, new channels; and where it comes from.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// SSE subscribers held at once (0: no limit).
    #[arg(long, env = "RINGBACK_MAX_SUBSCRIBERS", default_value_t = defaults::MAX_SUBSCRIBERS)]
    pub max_subscribers: usize,
    /// SSE subscribers per client address (0: no limit).
    #[arg(long, env = "RINGBACK_MAX_SUBSCRIBERS_PER_IP", default_value_t = defaults::MAX_SUBSCRIBERS_PER_IP)]
    pub max_subscribers_per_ip: usize,
    /// Messages per second per publish credential (per address when publishing is open; 0: no
    /// limit). Failed credentials spend their address's allowance at the same rate.
    #[arg(long, env = "RINGBACK_PUBLISH_RATE", default_value_t = defaults::PUBLISH_RATE)]
    pub publish_rate: f64,
    /// Burst of messages per credential above `--publish-rate`.
    #[arg(long, env = "RINGBACK_PUBLISH_BURST", default_value_t = defaults::PUBLISH_BURST)]
    pub publish_burst: u32,
    /// New channels per minute per publish credential (per address when publishing is open;
    /// 0: no limit).
    #[arg(long, env = "RINGBACK_NEW_CHANNEL_RATE", default_value_t = defaults::NEW_CHANNEL_RATE)]
    pub new_channel_rate: f64,
    /// Burst of new channels per credential above `--new-channel-rate`.
    #[arg(long, env = "RINGBACK_NEW_CHANNEL_BURST", default_value_t = defaults::NEW_CHANNEL_BURST)]
    pub new_channel_burst: u32,
    /// Take the client address from the last `X-Forwarded-For` entry (only behind a proxy that
    /// sets it: otherwise clients could pick their own address).
    #[arg(long, env = "RINGBACK_TRUST_FORWARDED_FOR", default_value_t = false, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub trust_forwarded_for: bool,
    /// Origins allowed to use the API from other sites (CORS), comma-separated, e.g.
    /// `https://app.example`; `*` allows any origin, but then without cookies or credentials.
    #[arg(long, env = "RINGBACK_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
}

impl Default for LimitArgs {
    fn default() -> Self {
        LimitArgs {
            max_subscribers: defaults::MAX_SUBSCRIBERS,
            max_subscribers_per_ip: defaults::MAX_SUBSCRIBERS_PER_IP,
            publish_rate: defaults::PUBLISH_RATE,
            publish_burst: defaults::PUBLISH_BURST,
            new_channel_rate: defaults::NEW_CHANNEL_RATE,
            new_channel_burst: defaults::NEW_CHANNEL_BURST,
            trust_forwarded_for: false,
            cors_origins: Vec::new(),
        }
    }
}

/// Idempotent publishing: how long, and how many, `Idempotency-Key`s are remembered.
#[derive(Debug, Clone, Args)]
pub struct IdempotencyArgs {
    /// How long a publish's `Idempotency-Key` is remembered (a repeat within it is answered as
    /// the first was, and not delivered again), e.g. `5m`.
    #[arg(long, env = "RINGBACK_IDEMPOTENCY_WINDOW", value_parser = parse_duration, default_value = "5m")]
    pub idempotency_window: Duration,
    /// Idempotency keys remembered at once (the oldest are forgotten early beyond it; 0: none
    /// are remembered).
    #[arg(long, env = "RINGBACK_IDEMPOTENCY_KEYS", default_value_t = defaults::IDEMPOTENCY_KEYS)]
    pub idempotency_keys: usize,
    /// Longest `Idempotency-Key` accepted, in bytes (`400` beyond it).
    #[arg(long, env = "RINGBACK_MAX_IDEMPOTENCY_KEY_BYTES", default_value_t = defaults::MAX_IDEMPOTENCY_KEY_BYTES)]
    pub max_idempotency_key_bytes: usize,
}

impl Default for IdempotencyArgs {
    fn default() -> Self {
        IdempotencyArgs {
            idempotency_window: defaults::IDEMPOTENCY_WINDOW,
            idempotency_keys: defaults::IDEMPOTENCY_KEYS,
            max_idempotency_key_bytes: defaults::MAX_IDEMPOTENCY_KEY_BYTES,
        }
    }
}

/// Request bodies: how long they may take.
#[derive(Debug, Clone, Args)]
pub struct BodyArgs {
    /// Time a request body has to arrive whole (`408` after it), e.g. `10s`.
    #[arg(long, env = "RINGBACK_BODY_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    pub body_timeout: Duration,
    /// Bytes per second a request body must keep up after its first second (`408` below it;
    /// 0: no minimum).
    #[arg(long, env = "RINGBACK_MIN_BODY_RATE", default_value_t = defaults::MIN_BODY_RATE)]
    pub min_body_rate: u64,
}

impl Default for BodyArgs {
    fn default() -> Self {
        BodyArgs {
            body_timeout: defaults::BODY_TIMEOUT,
            min_body_rate: defaults::MIN_BODY_RATE,
        }
    }
}

/// The page, and the demo source that keeps it alive.
#[derive(Debug, Clone, Args)]
pub struct SiteArgs {
    /// Messages each channel's box keeps on the page.
    #[arg(long, env = "RINGBACK_UI_MESSAGES", default_value_t = defaults::UI_MESSAGES)]
    pub ui_messages: usize,
    /// Publish a demo message every `--demo-interval` across a few channels.
    #[arg(long, env = "RINGBACK_DEMO", default_value_t = false, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub demo: bool,
    /// Interval of the demo source, e.g. `1s`.
    #[arg(long, env = "RINGBACK_DEMO_INTERVAL", value_parser = parse_duration, default_value = "1s")]
    pub demo_interval: Duration,
}

impl Default for SiteArgs {
    fn default() -> Self {
        SiteArgs {
            ui_messages: defaults::UI_MESSAGES,
            demo: false,
            demo_interval: defaults::DEMO_INTERVAL,
        }
    }
}

/// Connections: how many, and how long and how much each may take.
#[derive(Debug, Clone, Args)]
pub struct TransportArgs {
    /// Open connections accepted at once.
    #[arg(long, env = "RINGBACK_MAX_CONNECTIONS", default_value_t = defaults::MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Time from accept to a whole request head: the HTTP/1.1 head, or the TLS handshake plus
    /// the HTTP/2 preface; on a kept-alive HTTP/1.1 connection, a later head's time from its
    /// first byte, e.g. `5s`.
    #[arg(long, alias = "tls-handshake-timeout", env = "RINGBACK_HEADER_READ_TIMEOUT",
          value_parser = parse_duration, default_value = "5s")]
    pub header_read_timeout: Duration,
    /// HTTP/1.1: how long a kept-alive connection may wait for its next request, e.g. `75s`.
    /// Idle connections are closed first when the server holds `--max-connections`.
    #[arg(long, env = "RINGBACK_KEEP_ALIVE_TIMEOUT", value_parser = parse_duration, default_value = "75s")]
    pub keep_alive_timeout: Duration,
    /// A socket write that makes no progress for this long closes the connection, e.g. `30s`.
    #[arg(long, env = "RINGBACK_WRITE_TIMEOUT", value_parser = parse_duration, default_value = "30s")]
    pub write_timeout: Duration,
    /// HTTP/1.1: bytes a connection holds beyond the socket: hyper's write buffer for pages and
    /// API (min 8 KiB), and the largest batch of frames an event stream writes at once.
    #[arg(long, env = "RINGBACK_MAX_WRITE_BUFFER", default_value_t = defaults::MAX_WRITE_BUFFER)]
    pub max_write_buffer: usize,
    /// HTTP/2: bytes all streams of one connection may hold unsent (handed to the protocol,
    /// not yet written to the socket); a connection over it is closed, its subscribers resume
    /// with `Last-Event-ID`.
    #[arg(long, env = "RINGBACK_MAX_CONNECTION_BUFFER", default_value_t = defaults::MAX_CONNECTION_BUFFER)]
    pub max_connection_buffer: usize,
    /// HTTP/2: a connection with no stream in flight this long gets GOAWAY, e.g. `120s`.
    #[arg(long, env = "RINGBACK_IDLE_TIMEOUT", value_parser = parse_duration, default_value = "120s")]
    pub idle_timeout: Duration,
    /// How long shutdown waits for open connections, e.g. `10s`.
    #[arg(long, env = "RINGBACK_SHUTDOWN_GRACE", value_parser = parse_duration, default_value = "10s")]
    pub shutdown_grace: Duration,
    /// Which HTTP/2 implementation serves: `ringback` (the h2 driver, with push and 103) or
    /// `hyper` (hyper's own, without them; kept to benchmark the driver against).
    #[arg(long, env = "RINGBACK_HTTP2_DRIVER", value_enum, default_value_t = Http2Driver::Ringback)]
    pub http2_driver: Http2Driver,
    /// HTTP/2: answer a page with `103 Early Hints` (its assets' `Link` headers) when the client
    /// refuses push (`false`: only the page's own `Link` headers).
    #[arg(long, env = "RINGBACK_EARLY_HINTS", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub early_hints: bool,
    #[command(flatten, next_help_heading = "HTTP/2")]
    pub http2: Http2Limits,
}

impl Default for TransportArgs {
    fn default() -> Self {
        TransportArgs {
            max_connections: defaults::MAX_CONNECTIONS,
            header_read_timeout: defaults::HEADER_READ_TIMEOUT,
            keep_alive_timeout: defaults::KEEP_ALIVE_TIMEOUT,
            write_timeout: defaults::WRITE_TIMEOUT,
            max_write_buffer: defaults::MAX_WRITE_BUFFER,
            max_connection_buffer: defaults::MAX_CONNECTION_BUFFER,
            idle_timeout: defaults::IDLE_TIMEOUT,
            shutdown_grace: defaults::SHUTDOWN_GRACE,
            http2_driver: Http2Driver::Ringback,
            early_hints: true,
            http2: Http2Limits::default(),
        }
    }
}

/// HTTP/2: the limits applied to every connection, by either driver.
#[derive(Debug, Clone, Args)]
pub struct Http2Limits {
    /// HTTP/2: concurrent streams per connection.
    #[arg(long, env = "RINGBACK_H2_MAX_CONCURRENT_STREAMS", default_value_t = defaults::H2_MAX_CONCURRENT_STREAMS)]
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2: largest request header list, in bytes.
    #[arg(long, env = "RINGBACK_H2_MAX_HEADER_LIST_SIZE", default_value_t = defaults::H2_MAX_HEADER_LIST_SIZE)]
    pub h2_max_header_list_size: u32,
    /// HTTP/2: receive window per stream, in bytes.
    #[arg(long, env = "RINGBACK_H2_STREAM_WINDOW", default_value_t = defaults::H2_STREAM_WINDOW)]
    pub h2_stream_window: u32,
    /// HTTP/2: receive window per connection, in bytes.
    #[arg(long, env = "RINGBACK_H2_CONNECTION_WINDOW", default_value_t = defaults::H2_CONNECTION_WINDOW)]
    pub h2_connection_window: u32,
    /// HTTP/2: send buffer per stream, in bytes.
    #[arg(long, env = "RINGBACK_H2_MAX_SEND_BUFFER", default_value_t = defaults::H2_MAX_SEND_BUFFER)]
    pub h2_max_send_buffer: usize,
    /// HTTP/2: client resets of not-yet-accepted streams tolerated (rapid reset).
    #[arg(long, env = "RINGBACK_H2_MAX_PENDING_ACCEPT_RESETS", default_value_t = defaults::H2_MAX_PENDING_ACCEPT_RESETS)]
    pub h2_max_pending_accept_resets: usize,
    /// HTTP/2: resets caused by client errors tolerated before the connection is closed.
    #[arg(long, env = "RINGBACK_H2_MAX_LOCAL_ERROR_RESETS", default_value_t = defaults::H2_MAX_LOCAL_ERROR_RESETS)]
    pub h2_max_local_error_resets: usize,
}

impl Default for Http2Limits {
    fn default() -> Self {
        Http2Limits {
            h2_max_concurrent_streams: defaults::H2_MAX_CONCURRENT_STREAMS,
            h2_max_header_list_size: defaults::H2_MAX_HEADER_LIST_SIZE,
            h2_stream_window: defaults::H2_STREAM_WINDOW,
            h2_connection_window: defaults::H2_CONNECTION_WINDOW,
            h2_max_send_buffer: defaults::H2_MAX_SEND_BUFFER,
            h2_max_pending_accept_resets: defaults::H2_MAX_PENDING_ACCEPT_RESETS,
            h2_max_local_error_resets: defaults::H2_MAX_LOCAL_ERROR_RESETS,
        }
    }
}

/// TLS: the certificate, given or made.
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// TLS certificate chain (PEM). Without it, a development certificate for localhost, signed
    /// by a development authority of its own (`<data-dir>/tls/ca.crt.pem`), is made once.
    #[arg(long, env = "RINGBACK_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM), with `--tls-cert`.
    #[arg(long, env = "RINGBACK_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Directory for local state (the development certificate and authority). Never commit it.
    #[arg(long, env = "RINGBACK_DATA_DIR", default_value = defaults::DATA_DIR)]
    pub data_dir: PathBuf,
}

impl Default for TlsArgs {
    fn default() -> Self {
        TlsArgs {
            tls_cert: None,
            tls_key: None,
            data_dir: PathBuf::from(defaults::DATA_DIR),
        }
    }
}

/// Redis: the shared feed of several servers.
#[derive(Debug, Clone, Args)]
pub struct RedisArgs {
    /// Follow this Redis (`redis://host:port/db`, or the primary Sentinel names:
    /// `redis+sentinel://[user:password@]host:port[,host:port…]/master-name[/db]`) instead of the
    /// in-process bus; several servers on one Redis serve one feed. Also read from `REDIS_URL`.
    #[arg(long, env = "RINGBACK_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Redis Pub/Sub channels to ingest, comma-separated.
    #[arg(long, env = "RINGBACK_REDIS_CHANNELS", value_delimiter = ',', default_value = defaults::REDIS_CHANNELS)]
    pub redis_channels: Vec<String>,
    /// Prefix of Ringback's Redis keys (`<prefix>:log`, `<prefix>:last`, `<prefix>:presence…`,
    /// `<prefix>:keys…`).
    #[arg(long, env = "RINGBACK_REDIS_PREFIX", default_value = defaults::REDIS_PREFIX)]
    pub redis_prefix: String,
    /// Age after which the Redis log trims messages, e.g. `24h`, `30m`.
    #[arg(long, env = "RINGBACK_HISTORY_AGE", value_parser = parse_duration, default_value = "24h")]
    pub history_age: Duration,
    /// Longest delay between Redis reconnection attempts, e.g. `5s`.
    #[arg(long, env = "RINGBACK_REDIS_BACKOFF_MAX", value_parser = parse_duration, default_value = "5s")]
    pub redis_backoff_max: Duration,
    /// How long a publish waits for Redis before answering 503, e.g. `2s`.
    #[arg(long, env = "RINGBACK_REDIS_TIMEOUT", value_parser = parse_duration, default_value = "2s")]
    pub redis_timeout: Duration,
    /// Acknowledge a publish only once its log entry reached this many replicas (Redis `WAIT`,
    /// up to half of `--redis-timeout`; fewer: 503), so a failover loses nothing acknowledged.
    /// 0: once the primary has it.
    #[arg(long, env = "RINGBACK_REDIS_MIN_REPLICAS", default_value_t = defaults::REDIS_MIN_REPLICAS)]
    pub redis_min_replicas: u32,
}

impl Default for RedisArgs {
    fn default() -> Self {
        RedisArgs {
            redis_url: None,
            redis_channels: vec![defaults::REDIS_CHANNELS.to_owned()],
            redis_prefix: defaults::REDIS_PREFIX.to_owned(),
            history_age: defaults::HISTORY_AGE,
            redis_backoff_max: defaults::REDIS_BACKOFF_MAX,
            redis_timeout: defaults::REDIS_TIMEOUT,
            redis_min_replicas: defaults::REDIS_MIN_REPLICAS,
        }
    }
}

/// See `--http2-driver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Http2Driver {
    Ringback,
    Hyper,
}

#[derive(Debug, Clone, Args)]
pub struct PublishArgs {
    /// The channel (letters, digits, `-`, `_`).
    #[arg(long = "type", short = 't')]
    pub channel: String,
    /// The message text. Use `--json` to send it as a JSON value instead of a string.
    pub data: String,
    /// Treat the message as JSON (object, number, ...) rather than text.
    #[arg(long)]
    pub json: bool,
    /// Base URL of the server.
    #[arg(long, env = "RINGBACK_URL", default_value = defaults::PUBLISH_URL)]
    pub url: String,
    /// Bearer token, when the server requires one (`--publish-token` there).
    #[arg(long, env = "RINGBACK_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The publish's `Idempotency-Key` (default: a random one): sent again with the same key,
    /// within the server's `--idempotency-window`, it is delivered once.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Times to send the publish again when it got no answer (no connection, `503`, `502`,
    /// `504`), with backoff; the key makes that safe.
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
}

impl ServeArgs {
    /// The address to bind: `--addr`, else cargo-leptos's `LEPTOS_SITE_ADDR`, else the default.
    pub fn bind_addr(&self) -> Result<SocketAddr, String> {
        if let Some(addr) = self.addr {
            return Ok(addr);
        }
        let raw = std::env::var("LEPTOS_SITE_ADDR").unwrap_or_else(|_| defaults::ADDR.to_owned());
        raw.parse()
            .map_err(|e| format!("bad LEPTOS_SITE_ADDR {raw:?}: {e}"))
    }
}

impl RedisArgs {
    /// The Redis to follow: `--redis-url`/`RINGBACK_REDIS_URL`, else `REDIS_URL`, else none
    /// (the in-process bus). An empty value means none.
    pub fn url(&self) -> Option<String> {
        self.redis_url
            .clone()
            .or_else(|| std::env::var("REDIS_URL").ok())
            .filter(|u| !u.trim().is_empty())
    }
}

/// Parses `250ms`, `15s`, `2m`, `24h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("not a duration: {s:?} (try 15s or 500ms)"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("unknown unit in {s:?}: use ms, s, m or h")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_duration("5h"), Ok(Duration::from_secs(5 * 3600)));
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn defaults_match_the_parser() {
        // The parser's defaults (strings, for durations) must agree with the named constants,
        // every group, every field.
        let parsed = Cli::try_parse_from(["ringback"]).unwrap().serve;
        assert_eq!(format!("{parsed:?}"), format!("{:?}", ServeArgs::default()));
    }

    #[test]
    fn publish_subcommand() {
        let cli = Cli::try_parse_from(["ringback", "publish", "--type", "blue", "hello"]).unwrap();
        match cli.command {
            Some(Command::Publish(p)) => {
                assert_eq!(p.channel, "blue");
                assert_eq!(p.data, "hello");
            }
            other => panic!("expected publish, got {other:?}"),
        }
    }
}
