//! Fuzz target `http_upgrade`: request-head parsing, upgrade validation, response writers and the
//! chunked body decoder on arbitrary bytes.
//! The check lives in `sigyard::proto::fuzzing` so `cargo test --test fuzz_corpus` replays
//! this target's corpus without libFuzzer (see ../README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sigyard::proto::fuzzing::check_http_upgrade(data));
