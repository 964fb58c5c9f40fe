//! Fuzz target `ice_provider`: the Twilio-compatible token provider's reading of an answer
//! (status and body) and its `ice_servers` mapping on arbitrary bytes.
//! The check lives in `sigyard::proto::fuzzing` so `cargo test --test fuzz_corpus` replays
//! this target's corpus without libFuzzer (see ../README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sigyard::proto::fuzzing::check_ice_provider(data));
