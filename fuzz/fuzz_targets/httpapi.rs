//! Fuzz target `httpapi`: the HTTP API's request handler on arbitrary and client-shaped
//! bodies against a model of the store, and the durability log's record decoder and replay on
//! arbitrary bytes.
//! The check lives in `sigyard::proto::fuzzing` so `cargo test --test fuzz_corpus` replays
//! this target's corpus without libFuzzer (see ../README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sigyard::proto::fuzzing::check_httpapi(data));
