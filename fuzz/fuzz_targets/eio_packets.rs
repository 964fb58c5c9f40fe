//! Fuzz target `eio_packets`: Engine.IO 3 packets, the v3 polling payload and Socket.IO 2
//! packets on arbitrary text.
//! The check lives in `sigyard::proto::fuzzing` so `cargo test --test fuzz_corpus` replays
//! this target's corpus without libFuzzer (see ../README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sigyard::proto::fuzzing::check_eio_packets(data));
