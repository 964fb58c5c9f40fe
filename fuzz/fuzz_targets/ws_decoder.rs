//! Fuzz target `ws_decoder`: the server-side frame `Decoder` on arbitrary client bytes, fed
//! whole and in chunks: same frames, same error.
//! The check lives in `sigyard::proto::fuzzing` so `cargo test --test fuzz_corpus` replays
//! this target's corpus without libFuzzer (see ../README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sigyard::proto::fuzzing::check_ws_decoder(data));
