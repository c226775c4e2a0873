//! The compose box's behaviour: `POST /messages` with the browser session's token, and what a
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
        _ => format!("Not sent: {error} ({status})."),
    }
}

/// Publishes `text` on `channel`; the new message's id, or the refusal in words.
#[cfg(feature = "hydrate")]
pub async fn send(channel: &str, text: &str, token: Option<&str>) -> Result<u64, String> {
    use wasm_bindgen::JsValue;
    let (status, retry, reply) =
        post(channel, text, token)
            .await
            .unwrap_or((0, None, JsValue::NULL));
    let field = |key: &str| js_sys::Reflect::get(&reply, &key.into()).unwrap_or(JsValue::NULL);
    match (status, field("id").as_f64()) {
        (202, Some(id)) => Ok(id as u64),
        _ => Err(refusal(
            status,
            retry.as_deref(),
            &field("error").as_string().unwrap_or_default(),
            token.is_some(),
        )),
    }
}

/// The exchange itself: the status, `Retry-After` and the JSON answer (`null` if none).
///
/// Through the browser's own `fetch` and `JSON`, not a Rust HTTP client and serde: the page's
/// WASM stays within its size budget (BENCHMARKS.md).
#[cfg(feature = "hydrate")]
async fn post(
    channel: &str,
    text: &str,
    token: Option<&str>,
) -> Result<(u16, Option<String>, wasm_bindgen::JsValue), wasm_bindgen::JsValue> {
    use js_sys::{Object, Reflect, JSON};
    use wasm_bindgen::{JsCast, JsValue};
    use wasm_bindgen_futures::JsFuture;

    let body = Object::new();
    Reflect::set(&body, &"type".into(), &channel.into())?;
    Reflect::set(&body, &"data".into(), &text.into())?;
    let headers = Object::new();
    Reflect::set(&headers, &"content-type".into(), &"application/json".into())?;
    if let Some(token) = token {
        Reflect::set(
            &headers,
            &"authorization".into(),
            &format!("Bearer {token}").into(),
        )?;
    }
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_body(&JSON::stringify(&body)?.into());
    init.set_headers(&headers);
    let window = web_sys::window().ok_or(JsValue::NULL)?;
    let response: web_sys::Response =
        JsFuture::from(window.fetch_with_str_and_init("/messages", &init))
            .await?
            .unchecked_into();
    let retry = response.headers().get("retry-after")?;
    let reply = JsFuture::from(response.json()?)
        .await
        .unwrap_or(JsValue::NULL);
    Ok((response.status(), retry, reply))
}

/// Makes the compose box on the page work: a `submit` listener on its form, and the token kept
/// in this session put back in its field. Called after each rendering of the box (first paint,
/// and again after a gap renders the feed anew); each listener lives as long as the page.
#[cfg(feature = "hydrate")]
pub fn attach() {
    use wasm_bindgen::closure::Closure;
    use wasm_bindgen::JsCast;

    let Some(form) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.query_selector("form.compose").ok().flatten())
    else {
        return;
    };
    if let (Some(field), Some(kept)) = (input(&form, "input[name=token]"), stored_token()) {
        field.set_value(&kept);
    }
    let on_submit = Closure::<dyn Fn(web_sys::Event)>::new({
        let form = form.clone();
        move |event: web_sys::Event| {
            event.prevent_default();
            let value = |selector| input(&form, selector).map(|i| i.value());
            let (Some(channel), Some(text)) =
                (value("input[name=channel]"), value("input[name=text]"))
            else {
                return;
            };
            // The field's token (kept for the session), or the one kept already.
            let token = match value("input[name=token]") {
                Some(t) if !t.is_empty() => {
                    store_token(&t);
                    Some(t)
                }
                Some(_) => stored_token(),
                None => None,
            };
            let form = form.clone();
            leptos::task::spawn_local(async move {
                let sent = send(&channel, &text, token.as_deref()).await;
                let words = match &sent {
                    Ok(id) => {
                        if let Some(field) = input(&form, "input[name=text]") {
                            field.set_value("");
                        }
                        format!("Sent (#{id}).")
                    }
                    Err(words) => words.clone(),
                };
                if let Ok(Some(status)) = form.query_selector(".status") {
                    status.set_text_content(Some(&words));
                    let sent = if sent.is_ok() { "true" } else { "false" };
                    let _ = status.set_attribute("data-sent", sent);
                }
            });
        }
    });
    let _ = form.add_event_listener_with_callback("submit", on_submit.as_ref().unchecked_ref());
    on_submit.forget();
}

/// The compose form's input that `selector` names.
#[cfg(feature = "hydrate")]
fn input(form: &web_sys::Element, selector: &str) -> Option<web_sys::HtmlInputElement> {
    use wasm_bindgen::JsCast;
    Some(form.query_selector(selector).ok()??.unchecked_into())
}

/// The token kept in this browser session, if any.
#[cfg(feature = "hydrate")]
pub fn stored_token() -> Option<String> {
    session_storage()?.get_item(TOKEN_KEY).ok().flatten()
}

/// Keeps `token` for this browser session.
#[cfg(feature = "hydrate")]
pub fn store_token(token: &str) {
    if let Some(storage) = session_storage() {
        let _ = storage.set_item(TOKEN_KEY, token);
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
