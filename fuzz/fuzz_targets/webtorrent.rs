//! Fuzz target `webtorrent`: one WebTorrent tracker table driven by ops from 4 connections,
//! raw frames among them; its outputs checked against the protocol's invariants and a model of
//! the swarms. The check lives in `sigyard::proto::fuzzing` so `cargo test --test fuzz_corpus`
//! replays this target's corpus without libFuzzer (see ../README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sigyard::proto::fuzzing::check_webtorrent(data));
