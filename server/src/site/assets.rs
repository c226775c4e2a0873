//! The asset manifest: the hashed JS, WASM and CSS that cargo-leptos built, and the feed
//! script, held in memory.
//!
//! cargo-leptos (`hash-files = true`) writes `hash.txt` beside the server binary (`js: H`,
//! `wasm: H`, `css: H`) and names the files `pkg/<name>.<H>.<ext>`. At start-up the server reads
//! both into this manifest, and adds the feed script it holds itself (`app/js/feed.js`, the
//! browser's one stream shared by its tabs), named `pkg/feed.<H>.js` by its own hash. From then
//! on the same bytes serve `GET /pkg/...`, HTTP/2 pushes, `103 Early Hints` and `Link` headers,
//! so a pushed asset is byte-identical to a fetched one.
//!
//! A hashed name never changes content, so these are served `immutable` for a year, with a
//! strong ETag (the SHA-256 of the bytes). When cargo-leptos precompressed the site
//! (`--precompress`: `<file>.br`, `<file>.gz`), those variants are loaded too; whatever the build
//! did not compress (the feed script, a build without `--precompress`) is compressed at start-up,
//! once. The variants are served to clients that accept them (`Content-Encoding`,
//! `Vary: Accept-Encoding`, an ETag per variant); pushes carry the page request's
//! `Accept-Encoding`, so pushed and fetched bytes are alike. The manifest's digest (over every
//! asset's ETag) names a build: a browser that has it in its cookie already holds every asset
//! and is not pushed them.

use crate::encoding::digest;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use leptos::config::LeptosOptions;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `Cache-Control` of a hashed asset.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssetKind {
    /// The page's module script (the WASM's loader).
    Script,
    Wasm,
    Style,
    /// The feed script (`feed.js`): a classic script in the page, and the script of the
    /// SharedWorker that holds the browser's one stream.
    Feed,
}

impl AssetKind {
    fn of(key: &str) -> Option<(AssetKind, &'static str, &'static str)> {
        match key {
            "js" => Some((AssetKind::Script, "js", "text/javascript")),
            "wasm" => Some((AssetKind::Wasm, "wasm", "application/wasm")),
            "css" => Some((AssetKind::Style, "css", "text/css")),
            _ => None,
        }
    }

    /// The `Link` parameters that make a preload match how the page later uses the asset (a
    /// module script, a `fetch()` of the WASM, a stylesheet); a mismatched preload is wasted.
    fn link_params(self) -> &'static str {
        match self {
            AssetKind::Script => "rel=preload; as=script; crossorigin",
            AssetKind::Wasm => "rel=preload; as=fetch; crossorigin; type=\"application/wasm\"",
            AssetKind::Style => "rel=preload; as=style",
            AssetKind::Feed => "rel=preload; as=script",
        }
    }
}

/// One hashed file.
#[derive(Debug, Clone)]
pub struct Asset {
    /// The URL path, e.g. `/pkg/ringback.<hash>.js`.
    pub path: String,
    pub kind: AssetKind,
    pub content_type: &'static str,
    pub body: Bytes,
    /// Strong ETag: the SHA-256 of `body`, quoted.
    pub etag: HeaderValue,
    /// Brotli and gzip variants of `body`, when the build has them.
    pub br: Option<Bytes>,
    pub gzip: Option<Bytes>,
    /// `<path>; rel=preload; as=...`
    pub link: HeaderValue,
}

impl Asset {
    /// `body` at `path`, without compressed variants.
    fn new(path: String, kind: AssetKind, content_type: &'static str, body: Bytes) -> Asset {
        let etag = format!("\"{}\"", digest::hex(&digest::sha256(&body)[..16]));
        let link = format!("<{path}>; {}", kind.link_params());
        Asset {
            etag: HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\"")),
            link: HeaderValue::from_str(&link).unwrap_or(HeaderValue::from_static("")),
            path,
            kind,
            content_type,
            body,
            br: None,
            gzip: None,
        }
    }
}

/// Names a set of assets: the digest of their ETags.
fn digest_of(assets: &[Asset]) -> String {
    let mut all = Vec::new();
    for a in assets {
        all.extend_from_slice(a.etag.as_bytes());
    }
    digest::hex(&digest::sha256(&all)[..12])
}

/// Every hashed asset of the build (none in a development build without hashing) and the feed
/// script.
#[derive(Debug, Default)]
pub struct AssetManifest {
    assets: Vec<Asset>,
    digest: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read the hash manifest {path}: {source} (build with `cargo leptos build --release`, which writes it beside the binary)")]
    HashFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the hash manifest {path} has no `{key}:` line")]
    MissingKey { path: PathBuf, key: &'static str },
    #[error("the hash manifest names {file}, which cannot be read: {source} (is LEPTOS_SITE_ROOT the site cargo-leptos built?)")]
    Asset {
        file: PathBuf,
        source: std::io::Error,
    },
}

impl AssetManifest {
    /// The manifest of the site `options` describes, with `hash.txt` beside the running binary
    /// (where cargo-leptos writes it and where Leptos itself reads it).
    ///
    /// Without `hash_files` (a development build) only the feed script, which the binary holds.
    pub fn load(options: &LeptosOptions) -> Result<AssetManifest, ManifestError> {
        if !options.hash_files {
            return Ok(AssetManifest::default().with_feed_script(&options.site_pkg_dir));
        }
        let exe_dir = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        let hash_file = exe_dir.join(options.hash_file.as_ref());
        let pkg_dir = Path::new(options.site_root.as_ref()).join(options.site_pkg_dir.as_ref());
        Ok(Self::from_files(
            &hash_file,
            &pkg_dir,
            &options.output_name,
            &options.site_pkg_dir,
        )?
        .with_feed_script(&options.site_pkg_dir))
    }

    /// Adds the feed script ([`app::FEED_SCRIPT`], built into the binary), named by its hash
    /// (`/<url_dir>/feed.<hash>.js`) and compressed here, once.
    pub fn with_feed_script(mut self, url_dir: &str) -> AssetManifest {
        let body = app::FEED_SCRIPT.as_bytes();
        let hash = digest::hex(&digest::sha256(body)[..8]);
        let path = format!("/{}/feed.{hash}.js", url_dir.trim_matches('/'));
        self.assets.push(Asset {
            br: compress::brotli(body),
            gzip: compress::gzip(body),
            ..Asset::new(
                path,
                AssetKind::Feed,
                "text/javascript",
                Bytes::from_static(body),
            )
        });
        self.digest = digest_of(&self.assets);
        self
    }

    /// Reads `hash_file` and the files it names in `pkg_dir`; URLs are `/<url_dir>/<file>`.
    pub fn from_files(
        hash_file: &Path,
        pkg_dir: &Path,
        output_name: &str,
        url_dir: &str,
    ) -> Result<AssetManifest, ManifestError> {
        let text =
            std::fs::read_to_string(hash_file).map_err(|source| ManifestError::HashFile {
                path: hash_file.to_owned(),
                source,
            })?;
        let mut assets = Vec::new();
        for key in ["js", "wasm", "css"] {
            let hash = text
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim() == key)
                .map(|(_, h)| h.trim().to_owned())
                .ok_or(ManifestError::MissingKey {
                    path: hash_file.to_owned(),
                    key,
                })?;
            let Some((kind, ext, content_type)) = AssetKind::of(key) else {
                continue;
            };
            let name = format!("{output_name}.{hash}.{ext}");
            let file = pkg_dir.join(&name);
            let body = std::fs::read(&file).map_err(|source| ManifestError::Asset {
                file: file.clone(),
                source,
            })?;
            let path = format!("/{}/{name}", url_dir.trim_matches('/'));
            let variant = |ext: &str| {
                std::fs::read(pkg_dir.join(format!("{name}.{ext}")))
                    .ok()
                    .map(Bytes::from)
            };
            // What the build did not compress (`cargo leptos build --release` without
            // `--precompress`), compressed here, once.
            assets.push(Asset {
                br: variant("br").or_else(|| compress::brotli(&body)),
                gzip: variant("gz").or_else(|| compress::gzip(&body)),
                ..Asset::new(path, kind, content_type, Bytes::from(body))
            });
        }
        let digest = digest_of(&assets);
        Ok(AssetManifest { assets, digest })
    }

    pub fn assets(&self) -> &[Asset] {
        &self.assets
    }

    pub fn is_empty(&self) -> bool {
        self.assets.is_empty()
    }

    /// Names this build's set of assets (for the cache cookie).
    pub fn digest(&self) -> &str {
        &self.digest
    }

    pub fn get(&self, path: &str) -> Option<&Asset> {
        self.assets.iter().find(|a| a.path == path)
    }

    /// Where the page loads the feed script from, if this manifest has it.
    pub fn feed_script(&self) -> Option<&str> {
        self.assets
            .iter()
            .find(|a| a.kind == AssetKind::Feed)
            .map(|a| a.path.as_str())
    }

    /// Logs what was loaded.
    pub fn log(&self) {
        for a in &self.assets {
            tracing::info!(
                path = %a.path,
                bytes = a.body.len(),
                br = a.br.as_ref().map(Bytes::len),
                gzip = a.gzip.as_ref().map(Bytes::len),
                "asset"
            );
        }
    }
}

/// Serves a manifest asset from memory (GET and HEAD, with `If-None-Match`); any other request
/// goes on to the next handler (Leptos's static files and pages).
pub async fn serve_asset(
    State(manifest): State<Arc<AssetManifest>>,
    req: Request,
    next: Next,
) -> Response {
    let is_get = req.method() == Method::GET;
    if !(is_get || req.method() == Method::HEAD) {
        return next.run(req).await;
    }
    let Some(asset) = manifest.get(req.uri().path()) else {
        return next.run(req).await;
    };
    let (encoding, bytes) = pick_encoding(asset, req.headers().get(header::ACCEPT_ENCODING));
    // A strong ETag names one representation: each encoding gets its own.
    let etag = match encoding {
        None => asset.etag.clone(),
        Some(e) => {
            let tag = asset.etag.to_str().unwrap_or("\"\"").trim_end_matches('"');
            HeaderValue::from_str(&format!("{tag}-{e}\"")).unwrap_or(asset.etag.clone())
        }
    };
    let not_modified = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let body = if is_get {
            Body::from(bytes.clone())
        } else {
            Body::empty()
        };
        let mut r = Response::new(body);
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        if let Some(e) = encoding {
            r.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static(e));
        }
        r
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    if asset.br.is_some() || asset.gzip.is_some() {
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    response
}

/// The best variant `accept` allows: brotli, then gzip, else the identity bytes. A coding
/// listed with `q=0` is refused.
fn pick_encoding<'a>(
    asset: &'a Asset,
    accept: Option<&HeaderValue>,
) -> (Option<&'static str>, &'a Bytes) {
    let accept = accept.and_then(|v| v.to_str().ok()).unwrap_or("");
    let accepts = |coding: &str| {
        accept.split(',').any(|item| {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            name.eq_ignore_ascii_case(coding) && !refused
        })
    };
    match (&asset.br, &asset.gzip) {
        (Some(br), _) if accepts("br") => (Some("br"), br),
        (_, Some(gz)) if accepts("gzip") => (Some("gzip"), gz),
        _ => (None, &asset.body),
    }
}

/// What cargo-leptos's `--precompress` does, for the feed script and for a build made without it.
mod compress {
    use bytes::Bytes;
    use std::io::Write;

    /// Brotli at its best; `None` when that saves nothing.
    pub fn brotli(bytes: &[u8]) -> Option<Bytes> {
        let mut out = Vec::new();
        let params = brotli::enc::BrotliEncoderParams {
            quality: 11,
            ..Default::default()
        };
        brotli::BrotliCompress(&mut &bytes[..], &mut out, &params).ok()?;
        smaller(out, bytes)
    }

    /// Gzip at its best; `None` when that saves nothing.
    pub fn gzip(bytes: &[u8]) -> Option<Bytes> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(bytes).ok()?;
        smaller(encoder.finish().ok()?, bytes)
    }

    fn smaller(compressed: Vec<u8>, plain: &[u8]) -> Option<Bytes> {
        (compressed.len() < plain.len()).then(|| compressed.into())
    }
}

/// The fake build the tests serve: one file, shared with the integration tests.
#[cfg(test)]
#[path = "../../tests/fixtures/fake_build.rs"]
pub(crate) mod fake_build;
#[cfg(test)]
pub(crate) use fake_build::write_test_build;

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ringback-assets-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn loads_a_build() {
        let dir = temp_dir("ok");
        let (hash, pkg) = write_test_build(&dir).unwrap();
        let m = AssetManifest::from_files(&hash, &pkg, "ringback", "pkg").unwrap();
        let paths: Vec<_> = m.assets().iter().map(|a| a.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/pkg/ringback.JJJ.js",
                "/pkg/ringback.WWW.wasm",
                "/pkg/ringback.CCC.css"
            ]
        );
        let wasm = m.get("/pkg/ringback.WWW.wasm").unwrap();
        assert_eq!(wasm.content_type, "application/wasm");
        assert_eq!(wasm.body.len(), 8);
        assert_eq!(wasm.etag.len(), 34);
        assert_eq!(m.digest().len(), 24);
        assert!(m.get("/pkg/other.js").is_none());
    }

    #[test]
    fn precompressed_variants_are_chosen_by_accept_encoding() {
        let dir = temp_dir("encodings");
        let (hash, pkg) = write_test_build(&dir).unwrap();
        std::fs::write(pkg.join("ringback.WWW.wasm.br"), b"BR").unwrap();
        std::fs::write(pkg.join("ringback.WWW.wasm.gz"), b"GZ").unwrap();
        let m = AssetManifest::from_files(&hash, &pkg, "ringback", "pkg").unwrap();
        let wasm = m.get("/pkg/ringback.WWW.wasm").unwrap();
        let pick = |accept: &str| {
            let v = HeaderValue::from_str(accept).unwrap();
            let (e, b) = pick_encoding(wasm, Some(&v));
            (e, b.to_vec())
        };
        assert_eq!(
            pick("gzip, deflate, br, zstd"),
            (Some("br"), b"BR".to_vec())
        );
        assert_eq!(pick("gzip"), (Some("gzip"), b"GZ".to_vec()));
        assert_eq!(pick("br;q=0, gzip;q=0.5"), (Some("gzip"), b"GZ".to_vec()));
        assert_eq!(pick("identity").0, None);
        assert_eq!(pick_encoding(wasm, None).1.len(), 8);
        // Without variants on disk, and too small to gain from compression: identity whatever
        // the client accepts.
        let js = m.get("/pkg/ringback.JJJ.js").unwrap();
        let v = HeaderValue::from_static("br");
        assert_eq!(pick_encoding(js, Some(&v)).0, None);
    }

    #[test]
    fn the_feed_script_is_named_by_its_hash_and_compressed() {
        use std::io::Read;
        let m = AssetManifest::default().with_feed_script("pkg");
        let path = m.feed_script().unwrap();
        let feed = m.get(path).unwrap();
        let hash = path
            .strip_prefix("/pkg/feed.")
            .and_then(|p| p.strip_suffix(".js"))
            .unwrap();
        assert_eq!(hash.len(), 16, "{path}");
        assert_eq!(&feed.body[..], app::FEED_SCRIPT.as_bytes());
        // A classic script: a preload with `crossorigin` would not match it.
        assert_eq!(
            feed.link.to_str().unwrap(),
            format!("<{path}>; rel=preload; as=script")
        );
        let mut unbrotli = Vec::new();
        brotli::BrotliDecompress(&mut &feed.br.as_ref().unwrap()[..], &mut unbrotli).unwrap();
        assert_eq!(unbrotli, feed.body);
        let mut gunzip = Vec::new();
        flate2::read::GzDecoder::new(&feed.gzip.as_ref().unwrap()[..])
            .read_to_end(&mut gunzip)
            .unwrap();
        assert_eq!(gunzip, feed.body);
        assert!(feed.br.as_ref().unwrap().len() < feed.body.len() / 3);
        assert_ne!(m.digest(), AssetManifest::default().digest());
    }

    #[test]
    fn a_build_made_without_precompress_is_compressed_at_start_up() {
        use std::io::Read;
        let dir = temp_dir("compress");
        let (hash, pkg) = write_test_build(&dir).unwrap();
        let script = "export function hydrate() { /* the loader */ }\n".repeat(50);
        std::fs::write(pkg.join("ringback.JJJ.js"), &script).unwrap();
        let m = AssetManifest::from_files(&hash, &pkg, "ringback", "pkg").unwrap();
        let js = m.get("/pkg/ringback.JJJ.js").unwrap();
        let (encoding, bytes) = pick_encoding(js, Some(&HeaderValue::from_static("br, gzip")));
        assert_eq!(encoding, Some("br"));
        let mut plain = Vec::new();
        brotli::BrotliDecompress(&mut &bytes[..], &mut plain).unwrap();
        assert_eq!(plain, script.as_bytes());
        let (encoding, bytes) = pick_encoding(js, Some(&HeaderValue::from_static("gzip")));
        assert_eq!(encoding, Some("gzip"));
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, script.as_bytes());
    }

    #[test]
    fn a_broken_build_is_a_clear_error() {
        let dir = temp_dir("broken");
        let (hash, pkg) = write_test_build(&dir).unwrap();
        std::fs::remove_file(pkg.join("ringback.WWW.wasm")).unwrap();
        let err = AssetManifest::from_files(&hash, &pkg, "ringback", "pkg").unwrap_err();
        assert!(err.to_string().contains("ringback.WWW.wasm"), "{err}");
        std::fs::write(&hash, "js: JJJ\n").unwrap();
        let err = AssetManifest::from_files(&hash, &pkg, "ringback", "pkg").unwrap_err();
        assert!(err.to_string().contains("`wasm:`"), "{err}");
        let err =
            AssetManifest::from_files(&dir.join("nope.txt"), &pkg, "ringback", "pkg").unwrap_err();
        assert!(matches!(err, ManifestError::HashFile { .. }));
    }
}
