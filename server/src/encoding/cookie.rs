//! Reading cookies from request headers: the one parser the auth cookie (`ringback_token`) and
//! the asset cookie (`ringback-assets`) share.

use axum::http::{header, HeaderMap};

/// Every value of the cookie `name`, from every `Cookie` header, in order, without the quotes
/// RFC 6265 allows around a value. A browser sends several of one name when they differ in
/// path or domain.
pub(crate) fn values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(move |(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn finds_every_value_of_a_name_across_headers() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; b=\"2\"; c=3"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("b=4;bb=5"));
        assert_eq!(values(&headers, "b").collect::<Vec<_>>(), ["2", "4"]);
        assert_eq!(values(&headers, "a").next(), Some("1"));
        assert_eq!(values(&headers, "d").next(), None);
    }
}
