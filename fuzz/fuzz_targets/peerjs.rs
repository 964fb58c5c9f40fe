//! Fuzz target `peerjs`: one PeerJS table driven by ops on 4 sockets (opens, raw and
//! client-shaped frames, closes, time); its outputs checked against the rules and a model.
//! The check lives in `sigyard::proto::fuzzing` so `cargo test --test fuzz_corpus` replays
//! this target's corpus without libFuzzer (see ../README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sigyard::proto::fuzzing::check_peerjs(data));
