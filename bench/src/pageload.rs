//! `ringback pageload`: times loading the page and its assets over HTTP/2, with and without push.
//!
//! Each iteration opens a fresh TLS connection (as a first visit does) and loads `/` with every
//! hashed asset: with `--push`, the page request alone, awaiting every pushed body; without it,
//! the page first and then its assets, as a browser does once it has parsed the page (the 103's
//! preloads are not used, which is the conservative case). It reports the median and p90 time
//! and the bytes received. Loopback has almost no round-trip time, which is what push saves, so
//! the difference here is a floor, not the gain on a real network.

use crate::args::PageloadArgs;
use bytes::Bytes;
use futures::FutureExt;
use h2::client::SendRequest;
use http::Request;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Runs the measurement; returns the report as text.
pub async fn run(args: &PageloadArgs) -> Result<String, String> {
    let url: http::Uri = args.url.parse().map_err(|e| format!("bad --url: {e}"))?;
    let authority = url.authority().ok_or("--url needs a host")?.clone();
    let port = authority.port_u16().unwrap_or(443);
    let host = authority.host().to_owned();
    let mut times = Vec::with_capacity(args.iterations);
    let mut bytes = 0usize;
    let mut pushed = 0usize;
    for _ in 0..args.iterations {
        let started = Instant::now();
        let mut client = connect(&host, port, args.push).await?;
        let (page, promised) =
            fetch(&mut client, &format!("https://{authority}/"), args.push).await?;
        bytes += page.0;
        pushed += promised.len();
        bytes += promised.iter().sum::<usize>();
        if !args.push {
            let text = String::from_utf8_lossy(&page.1).into_owned();
            let assets = asset_paths(&text);
            let fetches = assets.iter().map(|p| {
                let mut c = client.clone();
                let url = format!("https://{authority}{p}");
                async move { fetch(&mut c, &url, false).await.map(|(r, _)| r.0) }
            });
            for r in futures::future::join_all(fetches).await {
                bytes += r?;
            }
        }
        times.push(started.elapsed());
    }
    times.sort();
    let pick = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    Ok(format!(
        "mode={} iterations={} median={:.3}ms p90={:.3}ms bytes/load={} pushed/load={:.1}",
        if args.push { "push" } else { "no-push" },
        times.len(),
        ms(pick(0.5)),
        ms(pick(0.9)),
        bytes / times.len().max(1),
        pushed as f64 / times.len().max(1) as f64
    ))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `/pkg/` URLs the page names (the modulepreload, the WASM preload, the stylesheet).
fn asset_paths(html: &str) -> Vec<String> {
    let mut out: Vec<String> = html
        .split('"')
        .filter(|s| s.starts_with("/pkg/") && !s.contains(' '))
        .map(str::to_owned)
        .collect();
    out.sort();
    out.dedup();
    out
}

async fn connect(host: &str, port: u16, push: bool) -> Result<SendRequest<Bytes>, String> {
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let cfg = insecure_client_config(b"h2");
    let name =
        rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    // Browser-sized windows (Chrome: 6 MB per stream, 15 MB per connection): with h2's 64 KiB
    // default, pushed bytes fill the connection window and stall the page.
    let mut builder = h2::client::Builder::new();
    builder
        .enable_push(push)
        .initial_window_size(6 << 20)
        .initial_connection_window_size(15 << 20);
    let (client, conn) = builder
        .handshake::<_, Bytes>(tls)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(client)
}

/// GETs `url`; returns (bytes, body) of the response and the sizes of any pushed responses.
async fn fetch(
    client: &mut SendRequest<Bytes>,
    url: &str,
    push: bool,
) -> Result<((usize, Vec<u8>), Vec<usize>), String> {
    let req = Request::get(url).body(()).map_err(|e| e.to_string())?;
    let mut ready = client.clone().ready().await.map_err(|e| e.to_string())?;
    let (mut response, _) = ready.send_request(req, true).map_err(|e| e.to_string())?;
    let mut promises = push.then(|| response.push_promises());
    let response = response.await.map_err(|e| e.to_string())?;
    // Promises precede the page's HEADERS, so by now every one is queued; their bodies are read
    // beside the page's, as a browser does.
    let mut reads = Vec::new();
    if let Some(promises) = promises.as_mut() {
        while let Some(Some(p)) = promises.push_promise().now_or_never() {
            let (_, pushed) = p.map_err(|e| e.to_string())?.into_parts();
            reads.push(tokio::spawn(async move {
                let response = pushed.await.map_err(|e| e.to_string())?;
                read(response.into_body()).await.map(|b| b.len())
            }));
        }
    }
    let body = read(response.into_body()).await?;
    let mut pushed = Vec::new();
    for r in reads {
        pushed.push(r.await.map_err(|e| e.to_string())??);
    }
    Ok(((body.len(), body), pushed))
}

async fn read(mut body: h2::RecvStream) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        let _ = body.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A TLS client for the benchmarks, offering `alpn`: they talk to the server's development
/// certificate on loopback, so it verifies nothing.
pub(crate) fn insecure_client_config(alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| unreachable!("ring supports the default versions"))
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(cfg)
}

/// The benchmarks' verifier: accepts any certificate.
#[derive(Debug)]
struct AcceptAny;

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_assets_a_page_names() {
        let html = r#"<link rel="modulepreload" href="/pkg/a.H.js"><link rel="preload" href="/pkg/a.H.wasm" as="fetch"><link href="/pkg/a.H.css" rel="stylesheet"><script>import("/pkg/a.H.js")</script>"#;
        assert_eq!(
            super::asset_paths(html),
            ["/pkg/a.H.css", "/pkg/a.H.js", "/pkg/a.H.wasm"]
        );
    }
}
