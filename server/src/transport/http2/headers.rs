//! The headers that mean something only to one HTTP/1.1 connection, which HTTP/2 forbids
//! (RFC 9113 §8.2.2): a response that carries one is malformed, and a client resets its stream.
//! The rules are hyper's (`proto/h2/mod.rs`): the fixed hop-by-hop names, `TE` (a response may
//! not carry it), and every header that `Connection` itself names.

use http::{header, HeaderMap};

/// Removes the connection-specific headers from a response's `headers`.
pub(super) fn strip_connection_headers(headers: &mut HeaderMap) {
    // The names `Connection` lists are connection-specific too (RFC 9110 §7.6.1).
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    for name in &named {
        // A name that is not a header name names nothing here.
        headers.remove(name.as_str());
    }
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::TE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, X-Session-Hint"),
            ("connection", "x-other , ,"),
            ("x-session-hint", "1"),
            ("x-other", "2"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("te", "trailers"),
            ("content-type", "text/html"),
            ("x-kept", "3"),
        ] {
            headers.append(name, HeaderValue::from_static(value));
        }
        strip_connection_headers(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, vec!["content-type", "x-kept"]);
    }

    #[test]
    fn a_connection_header_naming_no_header_takes_nothing_else() {
        let mut headers = HeaderMap::new();
        headers.append("connection", HeaderValue::from_static("not a name, x:y"));
        headers.append(
            "connection",
            HeaderValue::from_bytes(b"close, \xfc").unwrap(),
        );
        headers.insert("cache-control", HeaderValue::from_static("no-store"));
        strip_connection_headers(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("cache-control"));
    }
}
