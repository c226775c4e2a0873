//! The message decoders, fed any bytes: a Redis Pub/Sub payload (`normalise`, then the log
//! entry split the broadcast list appends) and a `POST /messages` body. Whatever is accepted
//! becomes one well-formed frame with the same channel and data; the rest is refused without a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use server::broadcast::{BroadcastList, Limits};
use std::sync::Arc;

const MAX: usize = 64 * 1024;

fn list() -> BroadcastList {
    let limits = Limits {
        history: 4,
        history_bytes: 1 << 20,
        max_message_bytes: MAX,
        max_channels: 16,
    };
    BroadcastList::new(limits, 1, &[], Arc::default())
}

fn last_frame(list: &BroadcastList) -> bytes::Bytes {
    let (mut sub, _) = list.subscribe(
        server::broadcast::Start::After(0),
        None,
        None,
        tokio_util::sync::CancellationToken::new(),
    );
    sub.try_next(usize::MAX).unwrap().unwrap()
}

fuzz_target!(|payload: &[u8]| {
    // Redis: the seed's JSON, normalised into the log's message, split, appended under an id.
    if let Ok((channel, message)) = server::redis_ingest::normalise(payload, MAX) {
        let (split_channel, data_json, extra_json) =
            server::redis_ingest::split_message(message.as_bytes()).expect("normalised splits");
        assert_eq!(split_channel, channel);
        let data: serde_json::Value = serde_json::from_slice(&data_json).unwrap();
        let list = list();
        if list.append(7000, &channel, &data_json, &extra_json).is_ok() {
            ringback_fuzz::check_frame(&last_frame(&list), 7000, &channel, &data);
        }
    }
    // HTTP: the publish body.
    if let Ok(request) = serde_json::from_slice::<server::publish::PublishRequest>(payload) {
        let list = list();
        if let Ok(id) = list.publish(&request.channel, &request.data) {
            ringback_fuzz::check_frame(&last_frame(&list), id, &request.channel, &request.data);
        }
    }
});
