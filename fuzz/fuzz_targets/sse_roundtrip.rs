//! The SSE encoder: any id, any channel the validator accepts, any data and extra fields →
//! exactly the one event it stands for, as an independent parser reads it. A channel the
//! validator refuses never reaches the encoder.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u64, &str, &str, bool, Vec<(String, String)>)| {
    let (id, channel, data, announce, extra) = input;
    if app::message::validate_channel(channel).is_err() {
        assert!(
            channel.is_empty()
                || channel.len() > 64
                || channel.contains(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        );
        return;
    }
    let data = serde_json::Value::String(data.to_owned());
    let data_json = serde_json::to_vec(&data).unwrap();
    let extra: serde_json::Map<String, serde_json::Value> = extra
        .into_iter()
        .filter(|(k, _)| !matches!(k.as_str(), "id" | "type" | "data" | "time"))
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    let extra_json = ringback::object_members(&extra);
    let (frame, json) = ringback::Message {
        id,
        time: 0,
        channel,
        data_json: &data_json,
        extra_json: &extra_json,
        announce,
    }
    .encode();
    ringback_fuzz::check_frame(&frame, id, channel, &data);
    let message: app::message::Message = serde_json::from_slice(&json).unwrap();
    assert_eq!(message.extra, extra);
});
