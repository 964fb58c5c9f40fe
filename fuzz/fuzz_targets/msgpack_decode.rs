//! Fuzz target `msgpack_decode`: arbitrary bytes into the relay 4.x MessagePack decoder; what
//! decodes must re-encode and decode to the same value.
//! The check lives in `sigyard::proto::fuzzing` so `cargo test --test fuzz_corpus` replays
//! this target's corpus without libFuzzer (see ../README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sigyard::proto::fuzzing::check_msgpack_decode(data));
