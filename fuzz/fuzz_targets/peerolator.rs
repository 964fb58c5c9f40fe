//! Fuzz target `peerolator`: server and client opens, messages and closes applied to the
//! Peerolator table, checked against a model of it and the rules of PROTOCOLS.md §4.4.
//! The check lives in `sigyard::proto::fuzzing` so `cargo test --test fuzz_corpus` replays
//! this target's corpus without libFuzzer (see ../README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sigyard::proto::fuzzing::check_peerolator(data));
