//! Fuzz target `cluster_records`: arbitrary bytes as a batch of the records cluster nodes send
//! each other; what decodes must re-encode to the same bytes.
//! The check lives in `sigyard::proto::fuzzing` so `cargo test --test fuzz_corpus` replays
//! this target's corpus without libFuzzer (see ../README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sigyard::proto::fuzzing::check_cluster_records(data));
