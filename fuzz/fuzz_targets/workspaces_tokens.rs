//! Fuzz target `workspaces_tokens`: webRTWorkspaces' HS256 JWTs, access-token bindings and
//! PIN hashes on arbitrary strings.
//! The check lives in `sigyard::proto::fuzzing` so `cargo test --test fuzz_corpus` replays
//! this target's corpus without libFuzzer (see ../README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sigyard::proto::fuzzing::check_workspaces_tokens(data));
