//! `ringback publish`: publishes one message to a running server through `POST /messages`.

use crate::config::PublishArgs;
use bytes::Bytes;
use http::{header, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::net::TcpStream;

/// A keep-alive HTTP/1.1 connection to a server (`TCP_NODELAY`), with the authority it sends as
/// `Host`. Shared by `ringback publish` and `ringback-bench`.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    authority: http::uri::Authority,
}

/// A whole answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// How to send one publish: its bearer `token` and its `Idempotency-Key`, if any.
#[derive(Debug, Clone, Copy, Default)]
pub struct PostOptions<'a> {
    pub token: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
}

impl Connection {
    /// Connects to `base`'s host.
    pub async fn open(base: &Uri) -> Result<Connection, String> {
        let authority = base
            .authority()
            .ok_or_else(|| format!("{base} has no host"))?
            .clone();
        let port = authority.port_u16().unwrap_or(80);
        let stream = TcpStream::connect((authority.host().trim_matches(['[', ']']), port))
            .await
            .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(Connection { sender, authority })
    }

    /// `POST`s a JSON `body` to `path`.
    pub async fn post_json(
        &mut self,
        path: &str,
        body: Bytes,
        options: PostOptions<'_>,
    ) -> Result<Answer, String> {
        let mut request = Request::post(path).header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = options.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(key) = options.idempotency_key {
            request = request.header("idempotency-key", key);
        }
        self.send(request, body).await
    }

    /// `GET`s `path`.
    pub async fn get(&mut self, path: &str) -> Result<Answer, String> {
        self.send(Request::get(path), Bytes::new()).await
    }

    async fn send(
        &mut self,
        request: http::request::Builder,
        body: Bytes,
    ) -> Result<Answer, String> {
        let request = request
            .header(header::HOST, self.authority.as_str())
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// Sends the message; returns the id the server assigned, or the server's error.
///
/// Every publish carries an `Idempotency-Key` (`--idempotency-key`, or a random one), so a
/// publish that got no answer (a connection that failed, a server that died before it answered,
/// a `503`) is sent again up to `--retries` times, with backoff, and still delivered once.
pub async fn publish(args: &PublishArgs) -> Result<u64, String> {
    let data = if args.json {
        serde_json::from_str(&args.data).map_err(|e| format!("--json: not JSON: {e}"))?
    } else {
        serde_json::Value::String(args.data.clone())
    };
    let body = serde_json::to_vec(&serde_json::json!({ "type": args.channel, "data": data }))
        .map_err(|e| e.to_string())?;
    let base: Uri = args
        .url
        .parse()
        .map_err(|e| format!("bad --url {:?}: {e}", args.url))?;
    if base.scheme_str().is_some_and(|s| s != "http") {
        return Err(format!("--url {:?}: only http:// is supported", args.url));
    }
    let key = args.idempotency_key.clone().unwrap_or_else(|| {
        format!(
            "{:016x}{:016x}",
            crate::runtime::jitter::random(),
            crate::runtime::jitter::random()
        )
    });
    let path = format!("{}/messages", base.path().trim_end_matches('/'));
    let options = PostOptions {
        token: args.token.as_deref(),
        idempotency_key: Some(&key),
    };
    let mut attempt = 0;
    loop {
        let sent = async {
            let mut connection = Connection::open(&base).await?;
            connection
                .post_json(&path, Bytes::from(body.clone()), options)
                .await
        }
        .await;
        let retryable = match &sent {
            Err(_) => true,
            Ok(answer) => matches!(
                answer.status,
                StatusCode::SERVICE_UNAVAILABLE
                    | StatusCode::BAD_GATEWAY
                    | StatusCode::GATEWAY_TIMEOUT
            ),
        };
        if retryable && attempt < args.retries {
            attempt += 1;
            let full = Duration::from_millis(200) * 2u32.pow(attempt.min(6));
            tokio::time::sleep(crate::runtime::jitter::between(full / 2, full)).await;
            continue;
        }
        let Answer { status, body, .. } = sent?;
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        return if status == StatusCode::ACCEPTED {
            json.get("id")
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| "no id in the answer".into())
        } else {
            let error = json
                .get("error")
                .and_then(|e| e.as_str())
                .unwrap_or("no details");
            Err(format!(
                "the server refused the message ({status}): {error}"
            ))
        };
    }
}
