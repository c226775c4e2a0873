//! The server: the one axum Router, the accept loop that hands each connection to the listener
//! (`listener.rs`), and notify-then-drain shutdown.
//!
//! Shutdown (as in mini-redis): the `shutdown` token is cancelled once, which every connection
//! task and every SSE stream watches; SSE streams end (EventSource reconnects elsewhere), each
//! connection finishes its in-flight requests, and `run` waits, up to a grace period, for the
//! last connection task to drop its clone of the drain sender.

use crate::assets::{self, AssetManifest};
use crate::auth::{Auth, AuthSettings};
use crate::broadcast::{BroadcastList, Limits};
use crate::cancel::CancelToken;
use crate::config::ServeArgs;
use crate::limits::{PublishRate, SubscriberLimits};
use crate::metrics::Metrics;
use crate::push::{self, PushPolicy};
use crate::redis_ingest::{RedisIngest, RedisSettings};
use crate::source::Source;
use crate::{listener, metrics, publish, sse};
use app::message::DEFAULT_CHANNELS;
use app::snapshot::SnapshotSource;
use app::{shell, App};
use axum::extract::FromRef;
use axum::middleware;
use axum::routing::get;
use axum::Router;
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::LeptosRoutes;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tower_http::cors::CorsLayer;
use tower_http::services::ServeDir;

/// Everything a handler needs, cloned into each request (all fields are shared handles).
#[derive(Clone)]
pub struct AppState {
    /// The broadcast list every subscriber reads.
    pub feed: BroadcastList,
    /// Where publishers append: the list itself, or the Redis log it follows.
    pub source: Source,
    /// Who may publish over HTTP, and who may read private channels.
    pub auth: Arc<Auth>,
    /// Subscribers held, in total and per address.
    pub subscribers: Arc<SubscriberLimits>,
    /// Publish rate per credential.
    pub publish_rate: Arc<PublishRate>,
    /// New channels per credential (the same keys as the publish rate).
    pub new_channel_rate: Arc<PublishRate>,
    pub config: Arc<ServeArgs>,
    pub metrics: Arc<Metrics>,
    /// Cancelled once at shutdown; SSE streams watch it so a graceful shutdown can finish.
    pub shutdown: CancelToken,
    /// What leptos_axum needs to render pages and serve `/pkg`.
    pub leptos: LeptosOptions,
    /// Which requests are pages and which assets they bring (push, hints, `Link`).
    pub push: Arc<PushPolicy>,
    /// TLS for connections that start with a ClientHello; `None` serves cleartext only.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Cross-origin access to the API, when origins are configured.
    pub cors: Option<CorsLayer>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos.clone()
    }
}

impl AppState {
    /// Fails only on a configuration it cannot use (a malformed Redis URL, an unreadable JWT
    /// key, a bad channel pattern). Redis itself need not be up: the server starts, serves, and
    /// connects when it can.
    pub fn new(config: ServeArgs, leptos: LeptosOptions) -> Result<Self, String> {
        let metrics = Arc::new(Metrics::default());
        let jwt_public_key = config
            .jwt_public_key
            .as_ref()
            .map(|path| {
                std::fs::read(path)
                    .map_err(|e| format!("cannot read --jwt-public-key {}: {e}", path.display()))
            })
            .transpose()?;
        let auth = Auth::new(&AuthSettings {
            publish_tokens: config.publish_token.clone(),
            jwt_secret: config.jwt_secret.clone(),
            jwt_public_key,
            jwt_audience: config.jwt_audience.clone(),
            private_channels: config.private_channels.clone(),
        })?;
        let cors = cors(&config.cors_origins)?;
        let limits = Limits {
            history: config.history,
            history_bytes: config.history_bytes,
            max_message_bytes: config.max_message_bytes,
            max_channels: config.max_channels,
            channel_idle: config.channel_idle,
        };
        let redis_url = config.redis_url();
        // Embedded, ids start at the clock's microseconds so they keep increasing across
        // restarts; behind Redis, they are the log's.
        let first_id = match redis_url {
            Some(_) => 1,
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2)),
        };
        let feed = BroadcastList::new(limits, first_id, &DEFAULT_CHANNELS, metrics.clone());
        feed.set_private(auth.private().clone());
        if redis_url.is_some() {
            // Before Redis is first reached, a resume waits for the log instead of being told
            // of a gap.
            feed.follow_log(0);
        }
        let source = match redis_url {
            None => Source::Embedded(feed.clone()),
            Some(url) => {
                let settings = RedisSettings {
                    url,
                    channels: config.redis_channels.clone(),
                    prefix: config.redis_prefix.clone(),
                    history: config.history,
                    history_age: config.history_age,
                    backoff_min: crate::config::defaults::REDIS_BACKOFF_MIN,
                    backoff_max: config.redis_backoff_max,
                    command_timeout: config.redis_timeout,
                    max_message_bytes: config.max_message_bytes,
                };
                Source::Redis(RedisIngest::new(settings, feed.clone(), metrics.clone())?)
            }
        };
        Ok(AppState {
            feed,
            source,
            auth: Arc::new(auth),
            subscribers: SubscriberLimits::new(
                config.max_subscribers,
                config.max_subscribers_per_ip,
            ),
            publish_rate: Arc::new(PublishRate::new(config.publish_rate, config.publish_burst)),
            // The flag is per minute; the bucket counts per second.
            new_channel_rate: Arc::new(PublishRate::new(
                config.new_channel_rate / 60.0,
                config.new_channel_burst,
            )),
            cors,
            config: Arc::new(config),
            metrics,
            shutdown: CancelToken::new(),
            leptos,
            push: Arc::new(PushPolicy::new(Arc::default(), page_paths())),
            tls: None,
        })
    }

    /// Serves, pushes and hints these assets.
    pub fn with_assets(mut self, manifest: AssetManifest) -> Self {
        self.push = Arc::new(PushPolicy::new(Arc::new(manifest), page_paths()));
        self
    }

    /// Accepts TLS with this configuration (beside cleartext HTTP/1.1 and h2c).
    pub fn with_tls(mut self, tls: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(tls);
        self
    }
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

/// An HTTP/1.1 connection's cut-off switch, put in each of its requests' extensions:
/// cancelling it closes the connection. This is how a subscriber that fell behind the history
/// is disconnected even while its stalled socket keeps hyper from polling its body.
#[derive(Clone, Debug)]
pub struct ConnectionCut(pub CancelToken);

/// The switch of one streaming response, put in the *response's* extensions by the SSE handler;
/// the HTTP/2 driver resets the stream when it fires (one HTTP/2 stream, not the connection).
#[derive(Clone, Debug)]
pub struct StreamCut(pub CancelToken);

/// The one Router, for every protocol: the request guard (`Host`, body deadlines), then a request
/// id and its span (outermost, one layer), hashed assets from memory, `Link` headers and the cache cookie on
/// pages, the API routes, the Leptos pages, then static files.
pub fn router(state: AppState) -> Router {
    let routes = leptos_axum::generate_route_list(App);
    let source = SnapshotSource(Arc::new({
        let feed = state.feed.clone();
        let per_channel = state.config.ui_messages;
        move || feed.snapshot(per_channel)
    }));
    let leptos = state.leptos.clone();
    let app = Router::new()
        .route(
            "/messages",
            // The publish handler reads its body within `--max-message-bytes` itself.
            get(sse::subscribe).post(publish::publish),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics::render))
        .leptos_routes_with_context(
            &state,
            routes,
            move || provide_context(source.clone()),
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
            assets::serve,
        ));
    // CORS only when configured: an always-present optional layer (`option_layer`) wraps every
    // route's future in an `Either` even when off: ~2,800 instructions per request (callgrind).
    let app = match state.cors.clone() {
        Some(cors) => app.layer(cors),
        None => app,
    };
    let guard = crate::guard::BodyLimits {
        timeout: state.config.body_timeout,
        min_rate: state.config.min_body_rate,
        metrics: state.metrics.clone(),
    };
    app.layer(middleware::from_fn_with_state(guard, crate::guard::front))
        .with_state(state)
}

/// CORS for `--cors-origins`: the listed origins may call the API with credentials (the cookie
/// that carries a subscriber's JWT, `Authorization`). `*` lets any origin read the public API,
/// and then never with credentials: a credentialed wildcard would let every site act with a
/// visitor's cookie (browsers refuse it too).
fn cors(origins: &[String]) -> Result<Option<CorsLayer>, String> {
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
        .expose_headers([HeaderName::from_static(crate::trace::REQUEST_ID)])
        .max_age(Duration::from_secs(600));
    if origins.contains(&"*") {
        if origins.len() > 1 {
            return Err("--cors-origins: `*` stands alone (it allows every origin)".into());
        }
        return Ok(Some(layer.allow_origin(AllowOrigin::any())));
    }
    let mut list = Vec::new();
    for origin in origins {
        let uri: axum::http::Uri = origin
            .parse()
            .map_err(|_| format!("--cors-origins: {origin:?} is not an origin"))?;
        let bare = uri.path_and_query().is_none_or(|p| p.as_str() == "/");
        if uri.scheme().is_none() || uri.host().is_none() || !bare {
            return Err(format!(
                "--cors-origins: {origin:?} is not an origin (scheme://host[:port], no path)"
            ));
        }
        let origin = origin.trim_end_matches('/');
        list.push(HeaderValue::from_str(origin).map_err(|e| format!("--cors-origins: {e}"))?);
    }
    Ok(Some(
        layer
            .allow_origin(AllowOrigin::list(list))
            .allow_credentials(true),
    ))
}

/// `GET /readyz`: `200` while the server can serve the whole feed, `503` while its source
/// (Redis) is unreachable. `/healthz` stays `200` as long as the process serves at all: a load
/// balancer should route by readiness, a supervisor restart by health.
async fn ready(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if state.source.is_ready() {
        "ready".into_response()
    } else {
        crate::error::AppError::Unavailable("the message source (Redis) is unreachable".into())
            .into_response()
    }
}

/// Serves `listener` until `shutdown` completes, then drains (see the module docs).
pub async fn run(listener: TcpListener, state: AppState, shutdown: impl Future<Output = ()>) {
    let router = router(state.clone());
    if let Source::Redis(redis) = &state.source {
        tokio::spawn(redis.clone().run(state.shutdown.clone()));
    }
    if state.config.demo {
        tokio::spawn(crate::demo::run(
            state.source.clone(),
            state.metrics.clone(),
            state.config.demo_interval,
            state.shutdown.clone(),
        ));
    }
    // Bounds open connections: when all permits are out, the loop stops accepting and new
    // clients wait in the kernel's backlog instead of exhausting the process's files.
    let limit = Arc::new(Semaphore::new(state.config.max_connections.max(1)));
    let (drain_tx, mut drain_rx) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, _peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of files, or a connection reset before accept: wait, don't spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            stream,
            router.clone(),
            state.clone(),
            drain_tx.clone(),
            permit,
        ));
    }
    tracing::info!("shutting down: closing streams and draining connections");
    drop(listener);
    state.shutdown.cancel();
    drop(drain_tx);
    let grace = state.config.shutdown_grace;
    if tokio::time::timeout(grace, drain_rx.recv()).await.is_err() {
        tracing::warn!(
            open = state.metrics.connections.load(Ordering::Relaxed),
            "connections still open after the shutdown grace period; dropping them"
        );
    }
}

/// Counts a connection for as long as its task lives.
struct ConnectionGuard(Arc<Metrics>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve_connection(
    stream: TcpStream,
    router: Router,
    state: AppState,
    _drain: mpsc::Sender<()>,
    _permit: OwnedSemaphorePermit,
) {
    state.metrics.connections.fetch_add(1, Ordering::Relaxed);
    let _guard = ConnectionGuard(state.metrics.clone());
    listener::serve(stream, router, state).await;
}
