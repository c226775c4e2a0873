//! Replays the kept `cargo fuzz` corpus of the message decoders (`fuzz/corpus/message_decoder`,
//! crash regressions included) through the same checks, on stable Rust, in every test run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../fuzz/src/lib.rs"]
mod ringback_fuzz;

#[test]
fn the_message_decoder_corpus_still_passes() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fuzz/corpus/message_decoder"
    );
    let mut replayed = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let input = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| ringback_fuzz::message_decoder(&input));
        assert!(outcome.is_ok(), "{} fails", path.display());
        replayed += 1;
    }
    assert!(replayed > 0, "the corpus is in the repository");
}
