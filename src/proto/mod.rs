//! The sans-I/O protocol core: pure functions and state machines over bytes, events and `now`.
//!
//! Nothing here touches a socket, a clock, a thread or a random number generator; everything
//! can be driven by tests in virtual time and fuzzed on `&[u8]`.
//!
//! # The driver contract
//!
//! Inputs are `handle_*(now, …)` calls; outputs are appended to a caller-owned buffer or asked
//! of the caller through a small trait ([`conn::App`]); `poll_timeout()` says when to call
//! `handle_timeout`; `wants_read()` / `is_closed()` say what the shell should do with the
//! socket. Mutate once, then look at the outputs: never the other way round.

pub mod conn;
pub mod dialect;
pub mod eio;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod route;
pub mod time;
pub mod ws;
