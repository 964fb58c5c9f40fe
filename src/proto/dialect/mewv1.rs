//! MewConnect v1 pairing (PROTOCOLS.md §1.10, with the §1.12 recommendations) as a pure
//! [`Dialect`] on the Socket.IO layer.
//!
//! Work in progress: the public surface is fixed, the event handlers follow.

use super::sio::{Action, Dialect, Env};
use serde_json::Value;

/// Options of the dialect.
#[derive(Debug, Clone)]
pub struct MewV1Config {
    /// A pair entry lives this long after its initiator connected (`REDIS_TIMOUT`, 120 s).
    pub pair_ttl_ms: u64,
    /// Pair entries kept at most; an initiator beyond it is disconnected.
    pub max_pairs: usize,
}

impl Default for MewV1Config {
    fn default() -> Self {
        MewV1Config {
            pair_ttl_ms: 120_000,
            max_pairs: 100_000,
        }
    }
}

/// The pair table of one server (or of one core, if the layer places a `connId`'s sockets
/// on one core).
pub struct MewV1 {
    #[allow(dead_code)]
    cfg: MewV1Config,
}

impl MewV1 {
    pub fn new(cfg: MewV1Config) -> MewV1 {
        MewV1 { cfg }
    }
}

impl Dialect for MewV1 {
    fn on_connect(
        &mut self,
        _now_ms: u64,
        _sid: &str,
        _query: &[(String, String)],
        _env: &mut dyn Env,
        _out: &mut Vec<Action>,
    ) {
    }

    fn on_event(
        &mut self,
        _now_ms: u64,
        _sid: &str,
        _event: &str,
        _args: &[Value],
        _env: &mut dyn Env,
        _out: &mut Vec<Action>,
    ) {
    }

    fn on_disconnect(
        &mut self,
        _now_ms: u64,
        _sid: &str,
        _env: &mut dyn Env,
        _out: &mut Vec<Action>,
    ) {
    }
}
