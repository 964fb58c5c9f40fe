//! # sigyard
//!
//! A WebRTC signaling server: one small binary (and this embeddable library) that speaks the
//! wire protocols of several existing signaling servers, built as a sans-I/O protocol core
//! under a thin mio shell.
//!
//! ## Architecture
//!
//! ```text
//!   main.rs ── config ──► Server::start ──► N reactor threads (one per core)
//!                                             │  mio Poll, SO_REUSEPORT listener, slab of slots
//!                                             │  buffers from a per-core pool, timer queue
//!                                             ▼
//!   net/ (the shell)   socket ⇄ rustls ⇄ plaintext buffers ⇄ proto::conn::Conn (the core)
//!                                                              │ App trait: routing, dialects
//!   proto/ (pure)      http (request heads, upgrade) · ws (RFC 6455 codec) · conn · route · time
//! ```
//!
//! * [`proto`] is pure: no sockets, clocks or threads. Every input is a `handle_*(now, …)`
//!   call and the outputs are bytes appended to a buffer the caller owns.
//! * [`net`] makes every syscall and owns every buffer. Reactors share only immutable data and
//!   mailbox senders. A connection that belongs to a key owned by another core is handed to
//!   that core once, right after its upgrade.
//! * An idle connection holds no read or write buffer: buffers come from a bounded per-core
//!   pool and go back as soon as they are empty.
//!
//! See `ARCHITECTURE.md` for the longer tour.
//!
//! ## Lint policy
//!
//! Warnings are errors in CI (`cargo clippy --all-targets -- -D warnings`). Every `allow`
//! in the code carries a one-line reason.

#![forbid(unsafe_code)]
#![warn(missing_debug_implementations)]
// Debug for reactor internals would print sockets and buffers; they are not public.
#![allow(missing_debug_implementations)]

pub mod cluster;
pub mod config;
pub mod csprng;
pub mod ice;
pub mod log;
pub mod metrics;
pub mod net;
pub mod proto;
pub mod registry;
pub mod secret;
mod server;

pub use config::Config;
pub use server::{Builder, Handle, Server, StartError};
