//! Fuzz target `eio_session`: the Engine.IO / Socket.IO session table driven by ops against
//! a model of the shell.
//! The check lives in `sigyard::proto::fuzzing` so `cargo test --test fuzz_corpus` replays
//! this target's corpus without libFuzzer (see ../README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sigyard::proto::fuzzing::check_eio_session(data));
