//! `Last-Event-ID` and the subscribe query, fed any text: a resume id is accepted only as the
//! decimal number it spells, and nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &str)| {
    let (header, query) = input;
    match ringback::parse_last_event_id(header) {
        Ok(id) => {
            let digits = header.trim();
            assert!(digits.bytes().all(|b| b.is_ascii_digit()));
            assert_eq!(
                digits.trim_start_matches('0').parse::<u64>().unwrap_or(0),
                id
            );
        }
        Err(_) => {
            let t = header.trim();
            assert!(
                t.is_empty()
                    || t.len() > 20
                    || !t.bytes().all(|b| b.is_ascii_digit())
                    || t.parse::<u64>().is_err()
            );
        }
    }
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(header) {
        headers.insert("last-event-id", v);
    }
    if let Ok(params) = ringback::SubscribeParams::parse(Some(query), &headers, 8) {
        assert!(params.types.len() <= 8);
        for t in &params.types {
            assert!(app::message::validate_channel(t).is_ok());
        }
    }
});
