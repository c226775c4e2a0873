//! The composition root: builds every part from the settings and wires them together: the
//! feed and its source, the API's state, the one Router (API, pages, assets), and the transport
//! that carries it. Only `main.rs` (and the tests) use it.

use crate::api::auth::Auth;
use crate::api::limits::{PublishRate, ReplayBudget, SubscriberLimits};
use crate::api::{guard, trace, ApiState};
use crate::config::{ServeArgs, StreamCompression};
use crate::feed::broadcast::BroadcastList;
use crate::feed::idempotency::IdempotencyKeys;
use crate::feed::redis::{RedisIngest, RedisSettings};
use crate::feed::source::Source;
use crate::metrics::Metrics;
use crate::runtime::cancel::CancelToken;
use crate::site::assets::{self, AssetManifest};
use crate::site::push::{self, PushPolicy};
use crate::transport::{accept, Transport};
use app::message::DEFAULT_CHANNELS;
use app::{shell, App, FeedScript};
use axum::extract::FromRef;
use axum::middleware;
use axum::Router;
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::LeptosRoutes;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tower_http::cors::CorsLayer;
use tower_http::services::ServeDir;

/// Why the server could not start: each a setting it cannot use, or a resource it cannot have.
/// Redis itself need not be up: the server starts, serves, and connects when it can.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("bad address: {0}")]
    Address(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("Leptos configuration: {0}")]
    Leptos(String),
    #[error("asset manifest: {0}")]
    Manifest(#[from] assets::ManifestError),
    #[error(
        "release builds serve the hashed site: set LEPTOS_HASH_FILES=true (scripts/run.sh does)"
    )]
    UnhashedSite,
    #[error("TLS: {0}")]
    Tls(String),
    #[error("credentials: {0}")]
    Auth(String),
    #[error("--cors-origins: {0}")]
    Cors(String),
    #[error("Redis: {0}")]
    Redis(String),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Runtime(std::io::Error),
}

/// Everything the server is made of, cloned into each request as the Router's state.
#[derive(Clone)]
pub struct AppState {
    /// What the API's handlers share.
    pub api: ApiState,
    /// What leptos_axum needs to render pages and serve `/pkg`.
    pub leptos: LeptosOptions,
    /// Which requests are pages and which assets they bring (push, hints, `Link`).
    pub push: Arc<PushPolicy>,
    /// TLS for connections that start with a ClientHello; `None` serves cleartext only.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Cross-origin access to the API, when origins are configured.
    cors: Option<CorsLayer>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos.clone()
    }
}

impl FromRef<AppState> for ApiState {
    fn from_ref(state: &AppState) -> Self {
        state.api.clone()
    }
}

impl AppState {
    /// Fails only on a configuration it cannot use (a malformed Redis URL, an unreadable JWT
    /// key, a bad channel pattern or origin).
    pub fn new(config: ServeArgs, leptos: LeptosOptions) -> Result<Self, StartError> {
        let events = &config.events;
        if events.drain_window >= config.transport.shutdown_grace {
            return Err(StartError::Config(format!(
                "--drain-window ({:?}) must be shorter than --shutdown-grace ({:?}): streams end \
                 within the window, and the grace waits for them",
                events.drain_window, config.transport.shutdown_grace
            )));
        }
        let metrics = Arc::new(Metrics::default());
        let auth = Auth::from_args(&config.auth).map_err(StartError::Auth)?;
        let cors = cors(&config.limits.cors_origins)?;
        let redis_url = config.redis.url();
        let feed = feed(&config, redis_url.is_some(), &auth, metrics.clone());
        let source = match redis_url {
            None => Source::Embedded(
                feed.clone(),
                Arc::new(IdempotencyKeys::new(
                    config.idempotency.clone(),
                    metrics.clone(),
                )),
            ),
            Some(url) => {
                let settings =
                    RedisSettings::new(url, &config.redis, &config.feed, &config.idempotency);
                let redis = RedisIngest::new(settings, feed.clone(), metrics.clone())
                    .map_err(StartError::Redis)?;
                Source::Redis(redis)
            }
        };
        let limits = &config.limits;
        let api = ApiState {
            feed,
            source,
            auth: Arc::new(auth),
            subscribers: SubscriberLimits::new(
                limits.max_subscribers,
                limits.max_subscribers_per_ip,
            ),
            publish_rate: Arc::new(PublishRate::new(limits.publish_rate, limits.publish_burst)),
            // The flag is per minute; the bucket counts per second.
            new_channel_rate: Arc::new(PublishRate::new(
                limits.new_channel_rate / 60.0,
                limits.new_channel_burst,
            )),
            replay: Arc::new(ReplayBudget::new(config.events.replay_rate)),
            refusals: Arc::default(),
            logs: Arc::default(),
            config: Arc::new(config),
            metrics,
            shutdown: CancelToken::new(),
        };
        Ok(AppState {
            api,
            leptos,
            push: Arc::new(PushPolicy::new(Arc::default(), page_paths())),
            tls: None,
            cors,
        })
    }

    /// Serves, pushes and hints these assets.
    pub fn with_assets(mut self, manifest: AssetManifest) -> Self {
        self.push = Arc::new(self.push.with_manifest(Arc::new(manifest)));
        self
    }

    /// Accepts TLS with this configuration (beside cleartext HTTP/1.1 and h2c).
    pub fn with_tls(mut self, tls: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(tls);
        self
    }
}

/// The broadcast list. Embedded, ids start at the clock's microseconds so they keep increasing
/// across restarts; behind Redis, they are the log's, and until Redis is first reached a resume
/// waits for the log instead of being told of a gap.
fn feed(
    config: &ServeArgs,
    behind_redis: bool,
    auth: &Auth,
    metrics: Arc<Metrics>,
) -> BroadcastList {
    let first_id = if behind_redis {
        1
    } else {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2))
    };
    let feed = BroadcastList::new(config.feed.clone(), first_id, &DEFAULT_CHANNELS, metrics);
    feed.set_private(auth.private().clone());
    if config.events.stream_compression == StreamCompression::Gzip {
        feed.compress_frames();
    }
    if behind_redis {
        feed.follow_log(0);
    }
    feed
}

/// The app's page routes: the requests that bring the assets with them.
fn page_paths() -> Vec<String> {
    leptos_axum::generate_route_list(App)
        .iter()
        .map(|r| r.path().to_owned())
        .collect()
}

/// The answer to a path that is neither a route nor a file.
async fn page_not_found() -> (http::StatusCode, &'static str) {
    (http::StatusCode::NOT_FOUND, "Page not found.\n")
}

/// The one Router, for every protocol: the request guard (`Host`, body deadlines), then a request
/// id and its span (outermost, one layer), hashed assets from memory, `Link` headers and the
/// cache cookie on pages, the API routes, the Leptos pages, then static files.
pub fn router(state: AppState) -> Router {
    let routes = leptos_axum::generate_route_list(App);
    let source = crate::site::snapshot::source(
        state.api.feed.clone(),
        state.api.config.site.ui_messages,
        !state.api.auth.is_open(),
    );
    let leptos = state.leptos.clone();
    let feed_script = state
        .push
        .manifest
        .feed_script()
        .map(|p| FeedScript(p.to_owned()));
    let app = crate::api::routes::<AppState>()
        .leptos_routes_with_context(
            &state,
            routes,
            move || {
                provide_context(source.clone());
                if let Some(script) = feed_script.clone() {
                    provide_context(script);
                }
            },
            move || shell(leptos.clone()),
        )
        // Files of the site root (`public/`); anything else is a plain 404, not a rendering of
        // the app (the page has one route, and a render per unknown path would be work for
        // free to anyone who asks).
        .fallback_service(ServeDir::new(&*state.leptos.site_root).not_found_service(
            axum::handler::HandlerWithoutStateExt::into_service(page_not_found),
        ))
        .layer(middleware::from_fn_with_state(
            state.push.clone(),
            push::link_headers,
        ))
        .layer(middleware::from_fn_with_state(
            state.push.manifest.clone(),
            assets::serve_asset,
        ));
    // CORS only when configured: an always-present optional layer (`option_layer`) wraps every
    // route's future in an `Either` even when off: ~2,800 instructions per request (callgrind).
    let app = match state.cors.clone() {
        Some(cors) => app.layer(cors),
        None => app,
    };
    let guard = guard::BodyLimits {
        timeout: state.api.config.body.body_timeout,
        min_rate: state.api.config.body.min_body_rate,
        metrics: state.api.metrics.clone(),
    };
    app.layer(middleware::from_fn_with_state(guard, guard::front))
        .with_state(state)
}

/// CORS for `--cors-origins`: the listed origins may call the API with credentials (the cookie
/// that carries a subscriber's JWT, `Authorization`). `*` lets any origin read the public API,
/// and then never with credentials: a credentialed wildcard would let every site act with a
/// visitor's cookie (browsers refuse it too).
fn cors(origins: &[String]) -> Result<Option<CorsLayer>, StartError> {
    use axum::http::{header, HeaderName, HeaderValue, Method};
    use tower_http::cors::AllowOrigin;
    let origins: Vec<&str> = origins
        .iter()
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
        .collect();
    if origins.is_empty() {
        return Ok(None);
    }
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([HeaderName::from_static(trace::REQUEST_ID)])
        .max_age(Duration::from_secs(600));
    if origins.contains(&"*") {
        if origins.len() > 1 {
            return Err(StartError::Cors(
                "`*` stands alone (it allows every origin)".into(),
            ));
        }
        return Ok(Some(layer.allow_origin(AllowOrigin::any())));
    }
    let mut list = Vec::new();
    for origin in origins {
        let uri: axum::http::Uri = origin
            .parse()
            .map_err(|_| StartError::Cors(format!("{origin:?} is not an origin")))?;
        let bare = uri.path_and_query().is_none_or(|p| p.as_str() == "/");
        if uri.scheme().is_none() || uri.host().is_none() || !bare {
            return Err(StartError::Cors(format!(
                "{origin:?} is not an origin (scheme://host[:port], no path)"
            )));
        }
        let origin = origin.trim_end_matches('/');
        list.push(HeaderValue::from_str(origin).map_err(|e| StartError::Cors(e.to_string()))?);
    }
    Ok(Some(
        layer
            .allow_origin(AllowOrigin::list(list))
            .allow_credentials(true),
    ))
}

/// Serves `listener` until `shutdown` completes, then drains: the accept loop (which carries the
/// Router) and the feed's own tasks (the demo, presence, which withdraws this server's counts at
/// once); the Redis session last, once the connections are drained.
pub async fn run(listener: TcpListener, state: AppState, shutdown: impl Future<Output = ()>) {
    let api = &state.api;
    // The Redis session outlives the drain: the streams still open keep receiving until they
    // end, and the presence task withdraws this server's counts through it as the drain starts.
    let drained = CancelToken::new();
    if let Source::Redis(redis) = &api.source {
        tokio::spawn(redis.clone().run(drained.clone()));
    }
    tokio::spawn(crate::feed::presence::run(
        api.source.clone(),
        api.feed.clone(),
        api.config.presence.clone(),
        api.metrics.clone(),
        api.shutdown.clone(),
    ));
    let site = &api.config.site;
    if site.demo {
        tokio::spawn(crate::feed::demo::run(
            api.source.clone(),
            api.metrics.clone(),
            site.demo_interval,
            api.shutdown.clone(),
        ));
    }
    let transport = Transport {
        router: router(state.clone()),
        tls: state.tls.clone(),
        push: state.push.clone(),
        events_path: crate::api::EVENTS_PATH,
        settings: Arc::new(api.config.transport.clone()),
        shutdown: api.shutdown.clone(),
        idle: Default::default(),
        budget_cuts: Arc::new(crate::runtime::log_summary::LogSummary::new(
            "an HTTP/2 connection went over its send budget (its client is not reading); closed it",
            tracing::Level::INFO,
        )),
        metrics: api.metrics.clone(),
    };
    accept::serve_listener(listener, transport, shutdown).await;
    drained.cancel();
}
