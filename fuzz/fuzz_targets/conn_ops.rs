//! Fuzz target `conn_ops`: sequences of operations (peer bytes and frames, upgrades, EOF, time,
//! server close, back-pressure) applied to one `Conn` through a model of the shell.
//! The check lives in `sigyard::proto::fuzzing` so `cargo test --test fuzz_corpus` replays
//! this target's corpus without libFuzzer (see ../README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sigyard::proto::fuzzing::check_conn_ops(data));
