//! Fuzz target `proxy_header`: arbitrary bytes as a PROXY protocol header and as forwarding
//! headers; a header's length and its prefixes must agree.
//! The check lives in `sigyard::proto::fuzzing` so `cargo test --test fuzz_corpus` replays
//! this target's corpus without libFuzzer (see ../README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sigyard::proto::fuzzing::check_proxy_header(data));
