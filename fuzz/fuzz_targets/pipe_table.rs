//! Fuzz target `pipe_table`: arrivals, held messages and departures applied to the
//! `/connection` pipe's holding table, checked against a model of it.
//! The check lives in `sigyard::proto::fuzzing` so `cargo test --test fuzz_corpus` replays
//! this target's corpus without libFuzzer (see ../README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sigyard::proto::fuzzing::check_pipe_table(data));
