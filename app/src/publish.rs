//! The compose box's request: `POST /messages` with the browser session's token, and what a
//! refusal means in words.

/// Where the browser session keeps the publish token (`sessionStorage`: gone with the tab).
pub const TOKEN_KEY: &str = "ringback.publish_token";

/// A refused publish in words, from its status, its `Retry-After` (seconds) and the server's
/// own `error` text.
pub fn refusal(status: u16, retry_after: Option<&str>, error: &str, token: bool) -> String {
    match status {
        401 if !token => "Not sent: publishing needs a token.".to_owned(),
        401 => format!("Not sent: the token was not accepted ({error})."),
        403 => format!("Not sent: this token may not publish there ({error})."),
        429 => match retry_after {
            Some(s) => format!("Not sent: too many messages; try again in {s} s."),
            None => "Not sent: too many messages; try again shortly.".to_owned(),
        },
        413 => format!("Not sent: the message is too long ({error})."),
        503 => "Not sent: the feed cannot take messages right now; try again.".to_owned(),
        0 => "Not sent: the server could not be reached.".to_owned(),
        _ => format!("Not sent: {error}"),
    }
}

/// Publishes `text` on `channel`; the new message's id, or the refusal in words.
#[cfg(feature = "hydrate")]
pub async fn send(channel: &str, text: &str, token: Option<&str>) -> Result<u64, String> {
    let body = serde_json::json!({ "type": channel, "data": text }).to_string();
    let mut request =
        gloo_net::http::Request::post("/messages").header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", &format!("Bearer {token}"));
    }
    let refused = |status, retry: Option<String>, error: &str| {
        refusal(status, retry.as_deref(), error, token.is_some())
    };
    let response = match request.body(body) {
        Ok(request) => request.send().await,
        Err(e) => Err(e),
    }
    .map_err(|_| refused(0, None, ""))?;
    let status = response.status();
    let retry = response.headers().get("retry-after");
    let reply: serde_json::Value = response
        .text()
        .await
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    match (status, reply["id"].as_u64()) {
        (202, Some(id)) => Ok(id),
        _ => Err(refused(
            status,
            retry,
            reply["error"].as_str().unwrap_or("refused"),
        )),
    }
}

/// The token kept in this browser session, if any.
#[cfg(feature = "hydrate")]
pub fn stored_token() -> Option<String> {
    session_storage()?.get_item(TOKEN_KEY).ok().flatten()
}

/// Keeps `token` for this browser session (an empty one is forgotten).
#[cfg(feature = "hydrate")]
pub fn store_token(token: &str) {
    if let Some(storage) = session_storage() {
        let _ = if token.is_empty() {
            storage.remove_item(TOKEN_KEY)
        } else {
            storage.set_item(TOKEN_KEY, token)
        };
    }
}

#[cfg(feature = "hydrate")]
fn session_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.session_storage().ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_read_as_sentences() {
        assert_eq!(
            refusal(401, None, "a token is required", false),
            "Not sent: publishing needs a token."
        );
        assert_eq!(
            refusal(401, None, "unknown token", true),
            "Not sent: the token was not accepted (unknown token)."
        );
        assert!(refusal(403, None, "not allowed on `red`", true).contains("not allowed on `red`"));
        assert_eq!(
            refusal(429, Some("3"), "", true),
            "Not sent: too many messages; try again in 3 s."
        );
        assert!(refusal(0, None, "", false).contains("could not be reached"));
    }
}
