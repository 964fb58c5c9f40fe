//! Fuzz target `ws_frame_header`: `FrameHeader::parse` on arbitrary bytes: re-emit round
//! trips, prefixes ask for more, errors show within three bytes.
//! The check lives in `sigyard::proto::fuzzing` so `cargo test --test fuzz_corpus` replays
//! this target's corpus without libFuzzer (see ../README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sigyard::proto::fuzzing::check_ws_frame_header(data));
