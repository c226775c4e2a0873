//! `ringback publish`: publishes one message to a running server through `POST /messages`.

use crate::config::PublishArgs;
use bytes::Bytes;
use http::{header, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// An HTTP/1.1 connection to `base`'s host (keep-alive, `TCP_NODELAY`), and the authority to
/// send as `Host`. Shared by `ringback publish` and `ringback-bench load`.
pub async fn connect(
    base: &Uri,
) -> Result<(SendRequest<Full<Bytes>>, http::uri::Authority), String> {
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
    Ok((sender, authority))
}

/// `POST`s a JSON `body` to `path` (with a bearer `token` if given) on a connection from
/// [`connect`]; returns the status and the whole answer.
pub async fn post_json(
    sender: &mut SendRequest<Full<Bytes>>,
    authority: &http::uri::Authority,
    path: &str,
    body: Bytes,
    token: Option<&str>,
) -> Result<(StatusCode, Bytes), String> {
    let mut request = Request::post(path)
        .header(header::HOST, authority.as_str())
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, bytes))
}

/// Sends the message; returns the id the server assigned, or the server's error.
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
    let (mut sender, authority) = connect(&base).await?;
    let path = format!("{}/messages", base.path().trim_end_matches('/'));
    let (status, bytes) = post_json(
        &mut sender,
        &authority,
        &path,
        Bytes::from(body),
        args.token.as_deref(),
    )
    .await?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    if status == StatusCode::ACCEPTED {
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
    }
}
