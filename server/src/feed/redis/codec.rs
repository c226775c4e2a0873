//! Feed ids as Redis stream ids, and messages into and out of the log: a seed-style Pub/Sub
//! payload normalised for the log, a log entry split into what the broadcast list encodes.

use crate::feed::broadcast::Rejected;
use app::message::{SOURCE_ID_FIELD, SOURCE_TIME_FIELD};

/// A Redis `ms-seq` stream id for a feed id.
pub fn stream_id(id: u64) -> String {
    format!("{}-{}", id / 1000, id % 1000)
}

/// The feed id of a Redis `ms-seq` stream id.
pub fn feed_id(stream_id: &str) -> Option<u64> {
    let (ms, seq) = stream_id.split_once('-')?;
    let (ms, seq): (u64, u64) = (ms.parse().ok()?, seq.parse().ok()?);
    (seq < 1000).then(|| ms.checked_mul(1000)?.checked_add(seq))?
}

/// A seed-style payload, normalised: its channel and the message JSON the log keeps
/// (`{"type":…,"data":…,<the publisher's other fields>}`, its `id` kept as `source_id`).
pub fn normalise(payload: &[u8], max_bytes: usize) -> Result<(String, String), Rejected> {
    if payload.len() > max_bytes {
        return Err(Rejected::TooLarge {
            size: payload.len(),
            limit: max_bytes,
        });
    }
    let Ok(serde_json::Value::Object(mut fields)) = serde_json::from_slice(payload) else {
        return Err(Rejected::BadJson);
    };
    let channel = match fields.get("type") {
        Some(serde_json::Value::String(c)) => c.clone(),
        _ => return Err(Rejected::BadJson),
    };
    app::message::validate_channel(&channel).map_err(Rejected::Channel)?;
    if !fields.contains_key("data") {
        return Err(Rejected::BadJson);
    }
    if let Some(id) = fields.remove("id") {
        fields.insert(SOURCE_ID_FIELD.to_owned(), id);
    }
    if let Some(time) = fields.remove("time") {
        fields.insert(SOURCE_TIME_FIELD.to_owned(), time);
    }
    Ok((channel, serde_json::Value::Object(fields).to_string()))
}

/// Splits a log entry's message JSON into what the broadcast list encodes: channel, data JSON
/// and the further members (without braces).
pub fn split_message(msg: &[u8]) -> Option<(String, Vec<u8>, Vec<u8>)> {
    let serde_json::Value::Object(mut fields) = serde_json::from_slice(msg).ok()? else {
        return None;
    };
    let serde_json::Value::String(channel) = fields.remove("type")? else {
        return None;
    };
    let data = serde_json::to_vec(&fields.remove("data")?).ok()?;
    // The feed's own members; a log entry written by other means may carry them.
    fields.remove("id");
    fields.remove("time");
    Some((channel, data, crate::feed::frame::object_members(&fields)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_both_ways() {
        assert_eq!(feed_id("1732457000123-7"), Some(1_732_457_000_123_007));
        assert_eq!(stream_id(1_732_457_000_123_007), "1732457000123-7");
        assert_eq!(feed_id("1-1000"), None, "seq must stay below 1000");
        assert_eq!(feed_id("x-1"), None);
        assert_eq!(feed_id("5"), None);
    }

    #[test]
    fn seed_payloads_are_normalised() {
        let (channel, msg) = normalise(
            br#"{"id":1,"data":"an important message","type":"blue"}"#,
            1024,
        )
        .unwrap();
        assert_eq!(channel, "blue");
        let (c, data, extra) = split_message(msg.as_bytes()).unwrap();
        assert_eq!(c, "blue");
        assert_eq!(data, br#""an important message""#);
        assert_eq!(extra, br#""source_id":1"#);
        // The publisher's own `time` is kept too, out of the way of the feed's.
        let (_, msg) = normalise(br#"{"type":"blue","data":1,"time":"noon"}"#, 1024).unwrap();
        let (_, _, extra) = split_message(msg.as_bytes()).unwrap();
        assert_eq!(extra, br#""source_time":"noon""#);
        for (bad, reason) in [
            (&b"not json"[..], "bad_json"),
            (br#"[1,2]"#, "bad_json"),
            (br#"{"data":"x"}"#, "bad_json"),
            (br#"{"type":"blue"}"#, "bad_json"),
            (br#"{"type":"a b","data":1}"#, "bad_type"),
            (br#"{"type":7,"data":1}"#, "bad_json"),
        ] {
            let e = normalise(bad, 1024).unwrap_err();
            assert_eq!(Rejected::LABELS[e.index()], reason, "{bad:?}");
        }
        let e = normalise(br#"{"type":"blue","data":"0123456789"}"#, 16).unwrap_err();
        assert_eq!(Rejected::LABELS[e.index()], "too_large");
    }
}
