//! Push policy: which requests are pages, and what a page brings with it.
//!
//! Policy lives here, protocol in the drivers: this module says *that* a page request should be
//! accompanied by the manifest's assets and whether the browser already holds them; the HTTP/2
//! driver (`transport/http2/`) decides, per connection, between `PUSH_PROMISE` and `103 Early Hints`,
//! and the middleware below adds `Link: rel=preload` and the cache cookie to the final response
//! for every protocol.

use crate::site::assets::AssetManifest;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;

/// The cookie that records which build's assets a browser holds: `ringback-assets=<digest>`.
pub const COOKIE: &str = "ringback-assets";

/// Which requests are pages, and the assets they need.
#[derive(Debug)]
pub struct PushPolicy {
    pub manifest: Arc<AssetManifest>,
    /// The app's page routes (from the Leptos route list), e.g. `/`.
    pages: Vec<String>,
}

/// What a page request should bring with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagePlan {
    /// Only a GET may be pushed to (a HEAD gets hints and headers only).
    pub may_push: bool,
    /// The browser's cookie names this build: it holds every asset already.
    pub cached: bool,
}

impl PushPolicy {
    pub fn new(manifest: Arc<AssetManifest>, pages: Vec<String>) -> Self {
        PushPolicy { manifest, pages }
    }

    /// The same pages, bringing `manifest`'s assets.
    pub fn with_manifest(&self, manifest: Arc<AssetManifest>) -> Self {
        PushPolicy::new(manifest, self.pages.clone())
    }

    /// `Some` for a GET or HEAD of a page when there are assets to announce.
    pub fn plan(&self, method: &Method, path: &str, headers: &HeaderMap) -> Option<PagePlan> {
        if self.manifest.is_empty() || !(method == Method::GET || method == Method::HEAD) {
            return None;
        }
        if !self.pages.iter().any(|p| p == path) {
            return None;
        }
        Some(PagePlan {
            may_push: method == Method::GET,
            cached: self.has_cookie(headers),
        })
    }

    fn has_cookie(&self, headers: &HeaderMap) -> bool {
        crate::encoding::cookie::values(headers, COOKIE).any(|v| v == self.manifest.digest())
    }

    /// The `Link` header values for every asset.
    pub fn links(&self) -> impl Iterator<Item = &HeaderValue> {
        self.manifest.assets().iter().map(|a| &a.link)
    }

    fn set_cookie(&self) -> Option<HeaderValue> {
        let v = format!(
            "{COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax",
            self.manifest.digest()
        );
        HeaderValue::from_str(&v).ok()
    }
}

/// Adds `Link: rel=preload` for every asset to page responses (all protocols; the one hint an
/// HTTP/1.1 client gets), and the cookie that marks the assets as held.
pub async fn link_headers(
    State(policy): State<Arc<PushPolicy>>,
    req: Request,
    next: Next,
) -> Response {
    let plan = policy.plan(req.method(), req.uri().path(), req.headers());
    let mut response = next.run(req).await;
    if let Some(plan) = plan {
        if response.status().is_success() {
            let headers = response.headers_mut();
            for link in policy.links() {
                headers.append(header::LINK, link.clone());
            }
            if !plan.cached {
                if let Some(cookie) = policy.set_cookie() {
                    headers.append(header::SET_COOKIE, cookie);
                }
            }
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PushPolicy {
        let dir = std::env::temp_dir().join(format!("ringback-push-{}", std::process::id()));
        let (hash, pkg) = crate::site::assets::write_test_build(&dir).unwrap();
        let m = AssetManifest::from_files(&hash, &pkg, "ringback", "pkg").unwrap();
        PushPolicy::new(Arc::new(m), vec!["/".into()])
    }

    #[test]
    fn only_page_gets_and_heads_are_planned() {
        let p = policy();
        let h = HeaderMap::new();
        assert_eq!(
            p.plan(&Method::GET, "/", &h),
            Some(PagePlan {
                may_push: true,
                cached: false
            })
        );
        assert_eq!(
            p.plan(&Method::HEAD, "/", &h),
            Some(PagePlan {
                may_push: false,
                cached: false
            })
        );
        assert_eq!(p.plan(&Method::POST, "/", &h), None);
        assert_eq!(p.plan(&Method::GET, "/messages", &h), None);
        assert_eq!(p.plan(&Method::GET, "/pkg/ringback.JJJ.js", &h), None);
    }

    #[test]
    fn the_cookie_must_name_this_build() {
        let p = policy();
        let mut h = HeaderMap::new();
        let cookie = format!("a=b; {COOKIE}={}", p.manifest.digest());
        h.insert(header::COOKIE, HeaderValue::from_str(&cookie).unwrap());
        assert!(p.plan(&Method::GET, "/", &h).unwrap().cached);
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("ringback-assets=old"),
        );
        assert!(!p.plan(&Method::GET, "/", &h).unwrap().cached);
    }
}
