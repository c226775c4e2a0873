//! The `Date` header, as both drivers write it.

use http::HeaderValue;

/// The `Date` header value, formatted once per second per thread (as hyper does).
pub(crate) fn now() -> HeaderValue {
    thread_local! {
        static CACHE: std::cell::RefCell<(u64, HeaderValue)> =
            const { std::cell::RefCell::new((u64::MAX, HeaderValue::from_static(""))) };
    }
    let now = std::time::SystemTime::now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != secs {
            let text = httpdate::fmt_http_date(now);
            cache.1 = HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(""));
            cache.0 = secs;
        }
        cache.1.clone()
    })
}
