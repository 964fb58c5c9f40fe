//! Fuzz target `mewconnect`: upgrade queries, the §1.4 payload check (one pass against the
//! tree) and the MewConnect v2 pair table under admissions, messages, leaves and time, checked
//! against a model of it.
//! The check lives in `sigyard::proto::fuzzing` so `cargo test --test fuzz_corpus` replays
//! this target's corpus without libFuzzer (see ../README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sigyard::proto::fuzzing::check_mewconnect(data));
