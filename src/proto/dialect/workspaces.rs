//! webRTWorkspaces (PROTOCOLS.md §5, with the §5.7 and §5.9 recommendations) as a pure
//! [`Dialect`] on the Socket.IO layer.
//!
//! Work in progress: the public surface is fixed, the event handlers follow.

use super::sio::{Action, Dialect, Env};
use serde_json::Value;

/// Options of the dialect (the `workspaces-*` configuration options).
#[derive(Clone)]
pub struct WorkspacesConfig {
    /// JWT HMAC secret (`MAGICK_TOKEN`).
    pub secret: Vec<u8>,
    /// The pepper inside every signing input (`SALT_STRING`).
    pub salt: String,
    /// `max_capacity_of_workspace`: attendees per workspace, owner included.
    pub capacity: usize,
    /// Disconnect a socket right after telling it `full`.
    pub disconnect_on_full: bool,
    /// Name of a workspace created without one.
    pub untitled_workspace: String,
    /// Name of an attendee without one.
    pub anonymous_attendee: String,
    /// PBKDF2-HMAC-SHA256 iterations of a new workspace PIN hash.
    pub pin_iterations: u32,
    /// Workspaces kept at most; `create` beyond it is refused with an alert.
    pub max_workspaces: usize,
}

/// Wall-clock milliseconds since the Unix epoch (injectable for tests).
pub type Clock = Box<dyn Fn() -> u64 + Send>;

/// The workspace table of one server.
pub struct Workspaces {
    #[allow(dead_code)]
    cfg: WorkspacesConfig,
    #[allow(dead_code)]
    clock: Clock,
    generation: u64,
}

impl Workspaces {
    pub fn new(cfg: WorkspacesConfig) -> Workspaces {
        Workspaces::with_clock(cfg, Box::new(system_ms))
    }

    pub fn with_clock(cfg: WorkspacesConfig, clock: Clock) -> Workspaces {
        Workspaces {
            cfg,
            clock,
            generation: 0,
        }
    }

    /// Bumped on every change of persisted state: write a snapshot when it moved.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The whole persisted state, in the original's `json_storage_file` format.
    pub fn snapshot(&self) -> Value {
        Value::Object(Default::default())
    }

    /// Replaces the table with a snapshot; returns the number of workspaces loaded.
    pub fn restore(&mut self, _snapshot: Value) -> Result<usize, String> {
        Ok(0)
    }
}

/// Milliseconds since the Unix epoch from the system clock.
pub fn system_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Dialect for Workspaces {
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
