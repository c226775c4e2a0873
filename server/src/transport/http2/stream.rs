//! One stream: its request through the Router, and its response back; around a page, the
//! assets pushed or hinted first.

use super::body::{pump, start, RecvBody, Target};
use super::Conn;
use crate::runtime::connection::StreamCut;
use crate::site::push::PagePlan;
use axum::body::Body;
use bytes::Bytes;
use h2::server::{SendPushedResponse, SendResponse};
use h2::RecvStream;
use http::{header, HeaderValue, Request, Response, StatusCode};
use std::future::poll_fn;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tower::ServiceExt;

/// Decrements the active-stream count when a handler ends, however it ends.
struct Active(Arc<Conn>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(super) async fn handle(
    conn: Arc<Conn>,
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    let _active = Active(conn.clone());
    // HTTP/2 carries the authority in the URI, where axum's `Host` extractor finds it; no Host
    // header is synthesised (that would cost an allocation per request).
    let (parts, recv) = request.into_parts();
    if let Some(plan) = conn
        .transport
        .push
        .plan(&parts.method, parts.uri.path(), &parts.headers)
    {
        let authority = parts
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                parts
                    .headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            });
        if let Some(authority) = authority {
            let accept = parts.headers.get(header::ACCEPT_ENCODING).cloned();
            announce_assets(&conn, &mut respond, plan, &authority, accept);
        }
    }

    let mut req = Request::from_parts(parts, Body::new(RecvBody(recv)));
    if let Some(peer) = conn.peer {
        req.extensions_mut().insert(peer);
    }
    let response = tokio::select! {
        r = conn.transport.router.clone().oneshot(req) => match r {
            Ok(r) => r,
            Err(never) => match never {},
        },
        _ = poll_fn(|cx| respond.poll_reset(cx)) => return,
    };
    // A streaming handler (SSE) hands over its cut-off switch with the response.
    let cut = response
        .extensions()
        .get::<StreamCut>()
        .map(|c| c.0.clone());
    let Some((mut stream, body)) = start(Target::Stream(&mut respond), response) else {
        return;
    };
    match cut {
        // An event stream: from here on the connection's task writes it (see `super::serve_connection`).
        Some(cut) => {
            let pump = async move {
                let active = _active;
                pump(body, &mut stream, Some(&cut), &active.0.budget).await;
            };
            // Dropped only when the connection is gone, and the stream with it.
            conn.event_streams.give(Box::pin(pump));
        }
        None => pump(body, &mut stream, None, &conn.budget).await,
    }
}

/// Sends the promises (or the hints) for a page, before anything of the page itself.
fn announce_assets(
    conn: &Arc<Conn>,
    respond: &mut SendResponse<Bytes>,
    plan: PagePlan,
    authority: &str,
    accept_encoding: Option<HeaderValue>,
) {
    let policy = &conn.transport.push;
    let metrics = &conn.transport.metrics;
    if plan.may_push && !plan.cached && !conn.pushed.swap(true, Ordering::AcqRel) {
        let mut promised = 0;
        for asset in policy.manifest.assets() {
            let uri = format!("{}://{authority}{}", conn.scheme.as_str(), asset.path);
            // The promised request carries the page's Accept-Encoding, so the pushed response
            // is the variant the browser would have fetched.
            let mut promise = Request::get(uri);
            if let Some(accept) = &accept_encoding {
                promise = promise.header(header::ACCEPT_ENCODING, accept.clone());
            }
            let Ok(promise) = promise.body(()) else {
                continue;
            };
            match respond.push_request(promise) {
                Ok(pushed) => {
                    promised += 1;
                    metrics.pushes.fetch_add(1, Ordering::Relaxed);
                    let path = asset.path.clone();
                    let host = authority.to_owned();
                    let accept = accept_encoding.clone();
                    tokio::spawn(push_one(conn.clone(), pushed, path, host, accept));
                }
                // The client refuses push (SETTINGS_ENABLE_PUSH=0) or cannot take more.
                Err(_) => break,
            }
        }
        if promised > 0 {
            return;
        }
        conn.pushed.store(false, Ordering::Release);
    } else if plan.may_push && (plan.cached || conn.pushed.load(Ordering::Acquire)) {
        return; // the browser holds the assets, or this connection already received them
    }
    if !conn.transport.settings.early_hints {
        return;
    }
    let mut hints = Response::builder().status(StatusCode::EARLY_HINTS);
    for link in policy.links() {
        hints = hints.header(header::LINK, link.clone());
    }
    if let Ok(hints) = hints.body(()) {
        if respond.send_informational(hints).is_ok() {
            metrics.hints.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Produces one pushed response with the Router, exactly as a GET of `path` would be.
async fn push_one(
    conn: Arc<Conn>,
    mut pushed: SendPushedResponse<Bytes>,
    path: String,
    host: String,
    accept_encoding: Option<HeaderValue>,
) {
    let mut req = Request::get(path).header(header::HOST, host);
    if let Some(accept) = accept_encoding {
        req = req.header(header::ACCEPT_ENCODING, accept);
    }
    let Ok(req) = req.body(Body::empty()) else {
        return;
    };
    let response = tokio::select! {
        r = conn.transport.router.clone().oneshot(req) => match r {
            Ok(r) => r,
            Err(never) => match never {},
        },
        _ = poll_fn(|cx| pushed.poll_reset(cx)) => return,
    };
    if let Some((mut stream, body)) = start(Target::Pushed(&mut pushed), response) {
        pump(body, &mut stream, None, &conn.budget).await;
    }
}
