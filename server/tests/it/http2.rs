//! HTTP/2 over TLS and h2c: push promises for the manifest's assets, 103 Early Hints when push
//! is refused, the cache cookie, and the same Router on every protocol. Real clients only: the
//! `h2` crate over rustls (verifying the server's development certificate against its authority), and `nghttp`.
#![allow(clippy::unwrap_used)]

use crate::support::{config, scratch, state, until, SseClient, TestServer, PATIENCE};
use bytes::Bytes;
use futures::FutureExt;
use h2::client::SendRequest;
use http::{header, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use ringback::AssetManifest;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[path = "../fixtures/fake_build.rs"]
mod fake_build;
use fake_build::write_test_build;

/// The assets a page brings: the fake build's three and the feed script.
const ASSETS: usize = 4;

/// A server with a fake build (three assets), the feed script, and TLS from its development
/// certificate.
struct Fixture {
    server: TestServer,
    pkg: PathBuf,
    cert: PathBuf,
}

async fn fixture(name: &str) -> Fixture {
    fixture_with(name, config()).await
}

async fn fixture_with(name: &str, cfg: ringback::config::ServeArgs) -> Fixture {
    let dir = scratch(name);
    let (hash, pkg) = write_test_build(&dir).unwrap();
    let manifest = AssetManifest::from_files(&hash, &pkg, "ringback", "pkg")
        .unwrap()
        .with_feed_script("pkg");
    let tls = ringback::server_config(None, None, &dir).unwrap();
    // The client trusts the development authority, as a browser told to would.
    let cert = ringback::dev_ca_path(&dir);
    let state = state(cfg).with_assets(manifest).with_tls(tls);
    Fixture {
        server: TestServer::start_state(state).await,
        pkg,
        cert,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Via {
    Tls,
    H2c,
}

async fn connect(addr: SocketAddr, via: Via, cert: &Path, push: bool) -> SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut builder = h2::client::Builder::new();
    builder.enable_push(push);
    match via {
        Via::H2c => {
            let (client, conn) = builder.handshake::<_, Bytes>(tcp).await.unwrap();
            tokio::spawn(conn);
            client
        }
        Via::Tls => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls::pki_types::CertificateDer::pem_file_iter(cert).unwrap() {
                roots.add(cert.unwrap()).unwrap();
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            cfg.alpn_protocols = vec![b"h2".to_vec()];
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
                .connect(name, tcp)
                .await
                .unwrap();
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
            let (client, conn) = builder.handshake::<_, Bytes>(tls).await.unwrap();
            tokio::spawn(conn);
            client
        }
    }
}

use rustls::pki_types::pem::PemObject;

/// Reads an h2 body to its end, releasing flow-control capacity as a real client does.
async fn read_all(mut body: h2::RecvStream) -> Bytes {
    within(async {
        let mut out = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            out.extend_from_slice(&chunk);
        }
        Bytes::from(out)
    })
    .await
}

/// `f`, within `PATIENCE`: what should come and does not fails the test, never hangs it.
async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(PATIENCE, f)
        .await
        .expect("an HTTP/2 exchange finished in time")
}

/// What one page request brought.
struct Page {
    response: Response<()>,
    body: Bytes,
    /// 103 responses received before the final response.
    hints: Vec<Response<()>>,
    /// Promises already received when the page's headers arrived.
    promised_before_headers: usize,
    /// (path, status, headers, body) of each pushed response.
    pushed: Vec<(String, StatusCode, http::HeaderMap, Bytes)>,
}

async fn get_page(
    client: &mut SendRequest<Bytes>,
    addr: SocketAddr,
    via: Via,
    cookie: Option<&str>,
) -> Page {
    get_page_with(client, addr, via, cookie, &[]).await
}

async fn get_page_with(
    client: &mut SendRequest<Bytes>,
    addr: SocketAddr,
    via: Via,
    cookie: Option<&str>,
    extra: &[(&str, &str)],
) -> Page {
    let scheme = if via == Via::Tls { "https" } else { "http" };
    let mut req = Request::get(format!("{scheme}://localhost:{}/", addr.port()));
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let mut client = within(client.clone().ready()).await.unwrap();
    let (mut future, _) = client.send_request(req.body(()).unwrap(), true).unwrap();
    let mut promises = future.push_promises();
    let mut hints = Vec::new();
    while let Some(info) = within(poll_fn(|cx| future.poll_informational(cx))).await {
        hints.push(info.unwrap());
    }
    let response = tokio::time::timeout(PATIENCE, &mut future)
        .await
        .unwrap()
        .unwrap();
    let mut early = Vec::new();
    while let Some(Some(p)) = promises.push_promise().now_or_never() {
        early.push(p.unwrap());
    }
    let promised_before_headers = early.len();
    let (parts, body) = response.into_parts();
    let bytes = read_all(body).await;
    while let Some(p) = tokio::time::timeout(PATIENCE, promises.push_promise())
        .await
        .unwrap()
    {
        early.push(p.unwrap());
    }
    let mut pushed = Vec::new();
    for p in early {
        let (request, response) = p.into_parts();
        let response = tokio::time::timeout(PATIENCE, response)
            .await
            .unwrap()
            .unwrap();
        let (parts, body) = response.into_parts();
        pushed.push((
            request.uri().path().to_owned(),
            parts.status,
            parts.headers,
            read_all(body).await,
        ));
    }
    Page {
        response: Response::from_parts(parts, ()),
        body: bytes,
        hints,
        promised_before_headers,
        pushed,
    }
}

fn links(headers: &http::HeaderMap) -> Vec<String> {
    headers
        .get_all(header::LINK)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

async fn push_cycle(via: Via) {
    let f = fixture(if via == Via::Tls {
        "push-tls"
    } else {
        "push-h2c"
    })
    .await;
    let addr = f.server.addr;
    let mut client = connect(addr, via, &f.cert, true).await;

    let first = get_page(&mut client, addr, via, None).await;
    assert_eq!(first.response.status(), StatusCode::OK);
    assert!(String::from_utf8_lossy(&first.body).contains("<html"));
    assert!(
        first.hints.is_empty(),
        "a client that takes push gets promises, not hints"
    );
    assert_eq!(first.pushed.len(), ASSETS, "one promise per manifest asset");
    assert_eq!(
        first.promised_before_headers, ASSETS,
        "every promise arrives before the page's headers"
    );
    for (path, status, headers, body) in &first.pushed {
        let file = f.pkg.join(path.trim_start_matches("/pkg/"));
        let expected = if path.starts_with("/pkg/feed.") {
            app::FEED_SCRIPT.as_bytes().to_vec()
        } else {
            std::fs::read(&file).unwrap()
        };
        assert_eq!(*status, StatusCode::OK);
        assert_eq!(body, &expected, "{path} pushed byte-identical to the file");
        assert_eq!(
            headers[header::CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
        assert!(headers.contains_key(header::ETAG));
    }
    let mut paths: Vec<_> = first.pushed.iter().map(|p| p.0.clone()).collect();
    paths.sort();
    let feed = f
        .server
        .state
        .push
        .manifest
        .feed_script()
        .unwrap()
        .to_owned();
    assert_eq!(
        paths,
        [
            feed.as_str(),
            "/pkg/ringback.CCC.css",
            "/pkg/ringback.JJJ.js",
            "/pkg/ringback.WWW.wasm"
        ]
    );
    assert_eq!(links(first.response.headers()).len(), ASSETS);
    let cookie = first.response.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    assert!(cookie.starts_with("ringback-assets="));

    let again = get_page(&mut client, addr, via, None).await;
    assert_eq!(again.response.status(), StatusCode::OK);
    assert!(
        again.pushed.is_empty(),
        "never push the same asset twice on one connection"
    );

    let mut fresh = connect(addr, via, &f.cert, true).await;
    let cached = get_page(&mut fresh, addr, via, Some(&cookie)).await;
    assert!(
        cached.pushed.is_empty(),
        "a browser holding this build's assets is pushed nothing"
    );
    assert!(cached.hints.is_empty());
    assert!(cached.response.headers().get(header::SET_COOKIE).is_none());
    assert!(f.server.state.api.metrics.pushes.load(Ordering::Relaxed) == ASSETS as u64);
    f.server.shutdown().await;
}

#[tokio::test]
async fn tls_page_pushes_every_asset_once() {
    push_cycle(Via::Tls).await;
}

#[tokio::test]
async fn h2c_page_pushes_every_asset_once() {
    push_cycle(Via::H2c).await;
}

#[tokio::test]
async fn push_disabled_gets_103_early_hints_first() {
    let f = fixture("hints").await;
    for via in [Via::Tls, Via::H2c] {
        let mut client = connect(f.server.addr, via, &f.cert, false).await;
        let page = get_page(&mut client, f.server.addr, via, None).await;
        assert!(page.pushed.is_empty());
        assert_eq!(page.hints.len(), 1, "one 103 before the page");
        assert_eq!(page.hints[0].status(), StatusCode::EARLY_HINTS);
        let hinted = links(page.hints[0].headers());
        assert_eq!(hinted.len(), ASSETS);
        assert!(hinted
            .iter()
            .any(|l| l.starts_with("</pkg/ringback.WWW.wasm>; rel=preload")));
        assert_eq!(
            links(page.response.headers()),
            hinted,
            "the final response repeats the Link headers"
        );
        assert_eq!(page.response.status(), StatusCode::OK);
    }
    f.server.shutdown().await;
}

#[tokio::test]
async fn early_hints_can_be_turned_off() {
    let mut cfg = config();
    cfg.transport.early_hints = false;
    let f = fixture_with("no-hints", cfg).await;
    let mut client = connect(f.server.addr, Via::H2c, &f.cert, false).await;
    let page = get_page(&mut client, f.server.addr, Via::H2c, None).await;
    assert!(page.hints.is_empty(), "no 103 with --early-hints=false");
    assert_eq!(page.response.status(), StatusCode::OK);
    assert_eq!(
        links(page.response.headers()).len(),
        ASSETS,
        "the page still names its assets"
    );
    let m = &f.server.state.api.metrics;
    assert_eq!(m.hints.load(Ordering::Relaxed), 0);
    f.server.shutdown().await;
}

#[tokio::test]
async fn only_page_gets_push() {
    let f = fixture("only-pages").await;
    let client = connect(f.server.addr, Via::H2c, &f.cert, true).await;
    for path in ["/healthz", "/pkg/ringback.JJJ.js"] {
        let req = Request::get(format!("http://localhost/{}", path.trim_start_matches('/')))
            .body(())
            .unwrap();
        let mut c = within(client.clone().ready()).await.unwrap();
        let (mut fut, _) = c.send_request(req, true).unwrap();
        let mut promises = fut.push_promises();
        let response = within(fut).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        read_all(response.into_body()).await;
        assert!(
            within(promises.push_promise()).await.is_none(),
            "{path} pushes nothing"
        );
    }
    // HEAD of the page: hints and headers, no push.
    let req = Request::head("http://localhost/").body(()).unwrap();
    let mut c = within(client.clone().ready()).await.unwrap();
    let (mut fut, _) = c.send_request(req, true).unwrap();
    let mut promises = fut.push_promises();
    let response = within(fut).await.unwrap();
    assert_eq!(links(response.headers()).len(), ASSETS);
    assert!(within(promises.push_promise()).await.is_none());
    f.server.shutdown().await;
}

#[tokio::test]
async fn sse_and_publish_work_over_http2_and_a_reset_ends_the_handler() {
    let f = fixture("sse-h2").await;
    let addr = f.server.addr;
    let mut client = connect(addr, Via::Tls, &f.cert, true).await;
    let req = Request::get(format!("https://localhost:{}/messages", addr.port()))
        .body(())
        .unwrap();
    let (fut, _) = client.send_request(req, true).unwrap();
    let response = within(fut).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    assert!(response.headers().get(header::CONNECTION).is_none());
    let mut body = response.into_body();
    let mut subs = f.server.state.api.feed.watch_subscribers();
    until(&mut subs, |n| *n == 1).await;

    // Publish over HTTP/2 too.
    let post = Request::post(format!("https://localhost:{}/messages", addr.port()))
        .header(header::CONTENT_TYPE, "application/json")
        .body(())
        .unwrap();
    let mut c = within(client.clone().ready()).await.unwrap();
    let (fut, mut stream) = c.send_request(post, false).unwrap();
    stream
        .send_data(
            Bytes::from_static(br#"{"type":"blue","data":"over h2"}"#),
            true,
        )
        .unwrap();
    let response = within(fut).await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    let mut text = String::new();
    while !text.contains("over h2") {
        let chunk = tokio::time::timeout(PATIENCE, body.data())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(text.contains("event: blue\n"));

    // The client resets the idle stream: the server lets go of the subscriber at once, not at
    // its next heartbeat's write (15 s away).
    drop(body);
    tokio::time::timeout(
        std::time::Duration::from_secs(3),
        subs.wait_for(|n| *n == 0),
    )
    .await
    .expect("the subscriber let go of at once")
    .unwrap();
    f.server.shutdown().await;
}

#[tokio::test]
async fn http1_gets_link_headers_and_cacheable_assets() {
    let f = fixture("http1").await;
    let addr = f.server.addr;
    let (status, headers, _) = crate::support::request(addr, "GET", "/", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(links(&headers).len(), ASSETS);
    assert!(headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .starts_with("ringback-assets="));

    let (status, headers, body) =
        crate::support::request(addr, "GET", "/pkg/ringback.JJJ.js", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(headers[header::CONTENT_TYPE], "text/javascript");
    let etag = headers[header::ETAG].to_str().unwrap().to_owned();
    let bytes = body.collect().await.unwrap().to_bytes();
    assert_eq!(bytes, std::fs::read(f.pkg.join("ringback.JJJ.js")).unwrap());
    let (status, _, _) = crate::support::request(
        addr,
        "GET",
        "/pkg/ringback.JJJ.js",
        &[("if-none-match", &etag)],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    f.server.shutdown().await;
}

#[tokio::test]
async fn shutdown_sends_goaway_and_ends_http2_streams() {
    let f = fixture("goaway").await;
    let addr = f.server.addr;
    // A client in raw frames, so the GOAWAY itself is seen: one event stream.
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(&test_support::stalling_h2_client(1, "localhost"))
        .await
        .unwrap();
    let mut frames = Frames::default();
    frames
        .until(&mut raw, |f| f.kind == HEADERS && f.stream == 1)
        .await;
    let mut http1 = SseClient::connect(addr, "/messages", &[]).await;
    let stopping = tokio::spawn(f.server.shutdown());
    // GOAWAY (no error) at once: no new streams; then the event stream ends by itself, within
    // the drain window (GOAWAY alone does not end an infinite body).
    let goaway = frames.until(&mut raw, |f| f.kind == GOAWAY).await;
    assert_eq!(&goaway.payload[4..8], &[0, 0, 0, 0], "GOAWAY with NO_ERROR");
    frames
        .until(&mut raw, |f| f.stream == 1 && f.end_stream())
        .await;
    let last = http1.next_event().await.unwrap();
    assert_eq!(last.event.as_deref(), Some("ringback.end"), "why it ends");
    assert_eq!(http1.next_event().await, None);
    tokio::time::timeout(PATIENCE, stopping)
        .await
        .unwrap()
        .unwrap();
}

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const GOAWAY: u8 = 7;

/// One HTTP/2 frame as read off the wire.
#[derive(Debug, Clone)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

impl Frame {
    fn end_stream(&self) -> bool {
        matches!(self.kind, DATA | HEADERS) && self.flags & 0x1 != 0
    }
}

/// The frames a raw HTTP/2 client reads, parsed as they arrive.
#[derive(Default)]
struct Frames {
    buf: Vec<u8>,
    seen: Vec<Frame>,
}

impl Frames {
    /// Reads until a frame satisfies `want` (within `PATIENCE`, else the test fails); returns it.
    async fn until(&mut self, io: &mut TcpStream, want: impl Fn(&Frame) -> bool) -> Frame {
        use tokio::io::AsyncReadExt;
        let found = tokio::time::timeout(PATIENCE, async {
            let mut chunk = [0u8; 16 * 1024];
            loop {
                while self.buf.len() >= 9 {
                    let len = usize::from(self.buf[0]) << 16
                        | usize::from(self.buf[1]) << 8
                        | usize::from(self.buf[2]);
                    if self.buf.len() < 9 + len {
                        break;
                    }
                    let frame = Frame {
                        kind: self.buf[3],
                        flags: self.buf[4],
                        stream: u32::from_be_bytes([
                            self.buf[5] & 0x7f,
                            self.buf[6],
                            self.buf[7],
                            self.buf[8],
                        ]),
                        payload: self.buf[9..9 + len].to_vec(),
                    };
                    self.buf.drain(..9 + len);
                    self.seen.push(frame.clone());
                    if want(&frame) {
                        return frame;
                    }
                }
                let n = io.read(&mut chunk).await.unwrap_or(0);
                assert!(
                    n > 0,
                    "the connection closed first; frames: {:?}",
                    self.kinds()
                );
                self.buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("no such frame in time; frames: {:?}", self.kinds()))
    }

    fn kinds(&self) -> Vec<(u8, u32)> {
        self.seen.iter().map(|f| (f.kind, f.stream)).collect()
    }
}

/// With a precompressed build, a push is the variant the page request's `Accept-Encoding` asks
/// for, exactly as a fetch of the same asset with that header would be.
#[tokio::test]
async fn pushes_follow_the_page_accept_encoding() {
    let dir = scratch("push-encoding");
    let (hash, pkg) = write_test_build(&dir).unwrap();
    std::fs::write(pkg.join("ringback.WWW.wasm.br"), b"brotli bytes").unwrap();
    std::fs::write(pkg.join("ringback.WWW.wasm.gz"), b"gzip bytes").unwrap();
    let manifest = AssetManifest::from_files(&hash, &pkg, "ringback", "pkg").unwrap();
    let server = TestServer::start_state(state(config()).with_assets(manifest)).await;
    let mut client = connect(server.addr, Via::H2c, Path::new(""), true).await;
    let page = get_page_with(
        &mut client,
        server.addr,
        Via::H2c,
        None,
        &[("accept-encoding", "gzip, deflate, br")],
    )
    .await;
    let (_, status, headers, body) = page
        .pushed
        .iter()
        .find(|(path, ..)| path.ends_with(".wasm"))
        .expect("the wasm is pushed");
    assert_eq!(*status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_ENCODING], "br");
    assert_eq!(headers[header::VARY], "accept-encoding");
    assert_eq!(&body[..], b"brotli bytes");
    // A fetch with the same header gets the same bytes; one without gets the identity file.
    let (status, headers, body) = crate::support::request(
        server.addr,
        "GET",
        "/pkg/ringback.WWW.wasm",
        &[("accept-encoding", "gzip, deflate, br")],
        Bytes::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_ENCODING], "br");
    assert_eq!(
        &body.collect().await.unwrap().to_bytes()[..],
        b"brotli bytes"
    );
    let (_, headers, body) = crate::support::request(
        server.addr,
        "GET",
        "/pkg/ringback.WWW.wasm",
        &[],
        Bytes::new(),
    )
    .await;
    assert!(headers.get(header::CONTENT_ENCODING).is_none());
    assert_eq!(body.collect().await.unwrap().to_bytes().len(), 8);
    server.shutdown().await;
}

/// The frames as a real peer sees them: `nghttp -v` lists PUSH_PROMISE frames for the hashed
/// names before the page's HEADERS, and with `--no-push` a 103 before the 200.
#[tokio::test]
async fn nghttp_sees_promises_and_early_hints() {
    let f = fixture("nghttp").await;
    let url = format!("https://127.0.0.1:{}/", f.server.addr.port());
    let run = |args: Vec<String>| async move {
        let out = tokio::process::Command::new("nghttp")
            .args(&args)
            .output()
            .await
            .expect("nghttp is installed");
        assert!(
            out.status.success(),
            "nghttp {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = run(vec!["-v".into(), "-n".into(), url.clone()]).await;
    let lines: Vec<&str> = text.lines().collect();
    let promises: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains("recv PUSH_PROMISE frame"))
        .collect();
    assert_eq!(promises.len(), ASSETS, "{text}");
    let page_status = lines
        .iter()
        .position(|l| l.contains("(stream_id=13) :status: 200"))
        .expect("the page's status");
    assert!(
        promises.iter().all(|&i| i < page_status),
        "promises precede the page's headers:\n{text}"
    );
    let feed = f
        .server
        .state
        .push
        .manifest
        .feed_script()
        .unwrap()
        .to_owned();
    for path in [
        "/pkg/ringback.JJJ.js",
        "/pkg/ringback.WWW.wasm",
        "/pkg/ringback.CCC.css",
        &feed,
    ] {
        assert!(
            text.contains(&format!(":path: {path}")),
            "promise for {path}"
        );
    }

    let text = run(vec!["-v".into(), "-n".into(), "--no-push".into(), url]).await;
    assert!(!text.contains("PUSH_PROMISE"), "{text}");
    let hint = text.find(":status: 103").expect("a 103");
    let ok = text.find(":status: 200").expect("a 200");
    assert!(hint < ok, "the 103 comes first:\n{text}");
    assert!(
        text[hint..ok].contains("link: </pkg/ringback.JJJ.js>; rel=preload"),
        "{text}"
    );
    f.server.shutdown().await;
}

/// `curl --http1.1`, `--http2 -k` (TLS, ALPN) and `--http2-prior-knowledge` (h2c) all get the
/// page and a streaming `/messages`.
#[tokio::test]
async fn curl_gets_the_page_and_a_live_stream_on_every_protocol() {
    use tokio::io::AsyncBufReadExt;
    let f = fixture("curl").await;
    let port = f.server.addr.port();
    let modes: [(&[&str], String, &str); 3] = [
        (
            &["--http1.1"],
            format!("http://127.0.0.1:{port}"),
            "HTTP/1.1",
        ),
        (
            &["--http2", "-k"],
            format!("https://127.0.0.1:{port}"),
            "HTTP/2",
        ),
        (
            &["--http2-prior-knowledge"],
            format!("http://127.0.0.1:{port}"),
            "HTTP/2",
        ),
    ];
    for (flags, base, version) in modes {
        let page = tokio::process::Command::new("curl")
            .args(flags)
            .args(["-sS", "-i", "--max-time", "10", &format!("{base}/")])
            .output()
            .await
            .expect("curl is installed");
        let text = String::from_utf8_lossy(&page.stdout);
        let statuses: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("HTTP/"))
            .map(str::trim)
            .collect();
        // curl refuses push, so over HTTP/2 it gets the hints first.
        let expected: &[&str] = if version == "HTTP/2" {
            &["HTTP/2 103", "HTTP/2 200"]
        } else {
            &["HTTP/1.1 200 OK"]
        };
        assert_eq!(statuses, expected, "{flags:?}: {text}");
        assert!(text.contains("<html"), "{flags:?}");

        let mut child = tokio::process::Command::new("curl")
            .args(flags)
            .args(["-sS", "-N", "--max-time", "20", &format!("{base}/messages")])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        // The stream is open once its retry line arrives; then a message flows through it.
        loop {
            let line = tokio::time::timeout(PATIENCE, lines.next_line())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            if line.starts_with("retry:") {
                break;
            }
        }
        let data = format!("via curl {}", flags.join(" "));
        crate::support::publish_ok(f.server.addr, "red", &data).await;
        loop {
            let line = tokio::time::timeout(PATIENCE, lines.next_line())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            if line.starts_with("data:") && line.contains(&data) {
                break;
            }
        }
        child.kill().await.unwrap();
    }
    f.server.shutdown().await;
}

/// Over HTTP/2 a subscriber that stops reading stalls on its stream's flow-control window; once
/// it falls behind the history its stream alone is reset, while another subscriber on the same
/// connection receives everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_http2_stream_is_reset_while_its_neighbour_keeps_up() {
    const MESSAGES: usize = 200;
    const SIZE: usize = 16 * 1024;
    let mut cfg = config();
    cfg.feed.history = 16;
    cfg.feed.max_message_bytes = 2 * SIZE;
    let server = TestServer::start_state(state(cfg)).await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    // Small stream windows, a large connection window: one stalled stream cannot block another.
    let (client, conn) = h2::client::Builder::new()
        .initial_window_size(64 * 1024)
        .initial_connection_window_size(64 << 20)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    tokio::spawn(conn);
    let open = |client: SendRequest<Bytes>| async move {
        let mut c = within(client.ready()).await.unwrap();
        let (fut, _) = c
            .send_request(
                Request::get("http://localhost/messages").body(()).unwrap(),
                true,
            )
            .unwrap();
        within(fut).await.unwrap().into_body()
    };
    let mut stalled = open(client.clone()).await;
    let mut reader = open(client.clone()).await;
    let mut subs = server.state.api.feed.watch_subscribers();
    until(&mut subs, |n| *n == 2).await;

    let (progress_tx, mut progress) = tokio::sync::watch::channel(0usize);
    let reading = tokio::spawn(async move {
        let mut text = String::new();
        let mut seen = 0;
        while seen < MESSAGES {
            let chunk = within(reader.data())
                .await
                .expect("the reader's stream stays open")
                .unwrap();
            let _ = reader.flow_control().release_capacity(chunk.len());
            text.push_str(std::str::from_utf8(&chunk).unwrap());
            seen = text.matches("\nevent: blue\n").count();
            progress_tx.send_replace(seen);
        }
        seen
    });
    let payload = serde_json::Value::String("x".repeat(SIZE));
    crate::support::publish_keeping_pace(
        &server.state.api.feed,
        "blue",
        &payload,
        MESSAGES,
        &mut progress,
    )
    .await;
    assert_eq!(
        tokio::time::timeout(PATIENCE, reading)
            .await
            .unwrap()
            .unwrap(),
        MESSAGES
    );
    assert_eq!(
        server
            .state
            .api
            .metrics
            .lagged_disconnects
            .load(Ordering::Relaxed),
        1
    );
    // The stalled stream was reset: reading it now yields what was buffered, then an error.
    let ended = tokio::time::timeout(PATIENCE, async {
        loop {
            match stalled.data().await {
                Some(Ok(chunk)) => {
                    let _ = stalled.flow_control().release_capacity(chunk.len());
                }
                Some(Err(e)) => break e.reason(),
                None => break None,
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(ended, Some(h2::Reason::CANCEL));
    until(&mut subs, |n| *n == 0).await;
    drop(client);
    server.shutdown().await;
}

/// `--h2-max-concurrent-streams` is announced in the server's SETTINGS, and a client that
/// respects it (as the h2 crate does) opens a further stream only once one ends.
#[tokio::test]
async fn http2_streams_per_connection_are_limited() {
    let f = fixture_with("h2-streams", {
        let mut cfg = config();
        cfg.transport.http2.h2_max_concurrent_streams = 2;
        cfg
    })
    .await;
    let addr = f.server.addr;
    // A well-behaved client holds a third request back until a slot frees.
    let mut client = connect(addr, Via::H2c, &f.cert, false).await;
    let sse = || {
        Request::get(format!("http://localhost:{}/messages", addr.port()))
            .body(())
            .unwrap()
    };
    let mut open = Vec::new();
    for _ in 0..2 {
        client = within(client.ready()).await.unwrap();
        let (fut, _) = client.send_request(sse(), true).unwrap();
        let response = within(fut).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        open.push(response.into_body());
    }
    assert_eq!(client.current_max_send_streams(), 2);
    let (third, _) = client
        .ready()
        .await
        .unwrap()
        .send_request(sse(), true)
        .unwrap();
    drop(open.pop());
    let response = tokio::time::timeout(PATIENCE, third)
        .await
        .expect("a slot frees when a stream ends")
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // A client that ignores the limit: three event streams at once, in raw frames. The server
    // serves two and refuses the third (RST_STREAM, REFUSED_STREAM), whatever the client does.
    let mut subs = f.server.state.api.feed.watch_subscribers();
    let before = *subs.borrow_and_update();
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(&test_support::stalling_h2_client(3, "localhost"))
        .await
        .unwrap();
    let mut frames = Frames::default();
    let refused = frames
        .until(&mut raw, |f| f.kind == RST_STREAM && f.stream == 5)
        .await;
    assert_eq!(refused.payload, 7u32.to_be_bytes(), "REFUSED_STREAM");
    tokio::time::timeout(PATIENCE, subs.wait_for(|n| *n == before + 2))
        .await
        .expect("the two streams within the limit are served")
        .unwrap();
    assert!(
        !frames
            .seen
            .iter()
            .any(|f| f.kind == HEADERS && f.stream == 5),
        "no response on the stream beyond the limit"
    );
    f.server.shutdown().await;
}

/// `--idle-timeout`: an HTTP/2 connection with no stream in flight is sent GOAWAY after one to
/// two periods, and closed.
#[tokio::test]
async fn an_idle_http2_connection_is_closed() {
    let f = fixture_with("h2-idle", {
        let mut cfg = config();
        cfg.transport.idle_timeout = std::time::Duration::from_secs(1);
        cfg
    })
    .await;
    let mut raw = TcpStream::connect(f.server.addr).await.unwrap();
    // The preface and settings, and no request.
    raw.write_all(&test_support::stalling_h2_client(0, "localhost"))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut frames = Frames::default();
    frames.until(&mut raw, |f| f.kind == GOAWAY).await;
    let idle = started.elapsed();
    assert!(
        idle >= std::time::Duration::from_millis(900) && idle < std::time::Duration::from_secs(3),
        "{idle:?}"
    );
    f.server.shutdown().await;
}

/// A publish over HTTP/2 whose DATA goes past `--max-message-bytes` without a `content-length`
/// is refused (`413`) once it does, not read to its end.
#[tokio::test]
async fn an_http2_body_over_the_limit_is_refused() {
    let f = fixture_with("h2-body-limit", {
        let mut cfg = config();
        cfg.feed.max_message_bytes = 1024;
        cfg
    })
    .await;
    let addr = f.server.addr;
    let mut client = connect(addr, Via::H2c, &f.cert, false)
        .await
        .ready()
        .await
        .unwrap();
    let post = Request::post(format!("http://localhost:{}/messages", addr.port()))
        .header(header::CONTENT_TYPE, "application/json")
        .body(())
        .unwrap();
    let (response, mut body) = client.send_request(post, false).unwrap();
    for _ in 0..4 {
        body.send_data(Bytes::from(vec![b' '; 1024]), false)
            .unwrap();
    }
    let response = tokio::time::timeout(PATIENCE, response)
        .await
        .expect("an answer before the body ends")
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let m = &f.server.state.api.metrics;
    assert_eq!(m.rejected.get(ringback::Reason::TooLarge.index()), 1);
    f.server.shutdown().await;
}
