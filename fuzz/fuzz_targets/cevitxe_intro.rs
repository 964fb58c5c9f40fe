//! Fuzz target `cevitxe_intro`: opens, closes and (raw or client-shaped A/B/C) messages
//! applied to the cevitxe / relay introduction table, checked against a model of it.
//! The check lives in `sigyard::proto::fuzzing` so `cargo test --test fuzz_corpus` replays
//! this target's corpus without libFuzzer (see ../README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sigyard::proto::fuzzing::check_cevitxe_intro(data));
