//! Fuzz target `rawjson`: `proto::rawjson::Reader` against serde_json on the same text (the
//! check lives in `sigyard::proto::fuzzing`, so `cargo test --test fuzz_corpus` replays this
//! target's corpus without libFuzzer; see ../README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sigyard::proto::fuzzing::check_rawjson(data));
