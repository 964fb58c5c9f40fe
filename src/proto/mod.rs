//! The sans-I/O protocol core: pure functions and state machines over bytes, events and `now`.
//!
//! Nothing here touches a socket, a clock, a thread or a random number generator; everything
//! can be driven by tests in virtual time and fuzzed on `&[u8]`.
//!
//! Two contracts, each described once:
//!
//! * the connection machine ([`conn`]): bytes in, [`conn::Step`]s out, answers as method calls;
//! * the dialects ([`dialect`]): events in with the time and randomness, outputs queued.
//!
//! In both, `poll_timeout()` says when to call the timeout input, and the caller mutates
//! once, then looks at the outputs: never the other way round. Nothing here imports the
//! shell (`net`) or the configuration.

pub mod cluster;
pub mod conn;
pub mod dialect;
pub mod eio;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod hash;
pub mod http;
pub mod origin;
pub mod proxy;
pub mod rate;
pub mod rawjson;
pub mod time;
pub mod ws;
