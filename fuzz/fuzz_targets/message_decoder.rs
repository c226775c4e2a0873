//! The message decoders (Redis Pub/Sub payloads, `POST /messages` bodies), fed any bytes: see
//! `ringback_fuzz::message_decoder`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|payload: &[u8]| ringback_fuzz::message_decoder(payload));
