//! webRTWorkspaces' dialect as the shell builds it: its configuration from the `workspaces-*`
//! options and its store (`--workspaces-storage-file`, [`crate::net::workspace_store`]):
//! loaded at start (a file that does not load stops the start), then written by the store's
//! background writer at most every [`SAVE_EVERY_MS`] while the table changes, and once more
//! when the dialect is dropped at shutdown.

use crate::config::Config;
use crate::net::workspace_store::{self, Writer};
use crate::proto::dialect::sio::{Action, Dialect, Env};
use crate::proto::dialect::workspaces::{Workspaces, WorkspacesConfig};
use serde_json::Value;

/// A burst of changes costs one snapshot per this many milliseconds.
pub const SAVE_EVERY_MS: u64 = 100;

/// The dialect with its store: every call is passed through; a changed table is snapshotted
/// for the writer once [`SAVE_EVERY_MS`] passed since the first unsaved change.
struct Persisted {
    inner: Workspaces,
    saved: u64,
    /// When the oldest unsaved change happened.
    dirty_since: Option<u64>,
    writer: Writer,
}

impl Persisted {
    fn changed(&mut self, now_ms: u64) {
        if self.inner.generation() != self.saved && self.dirty_since.is_none() {
            self.dirty_since = Some(now_ms);
        }
    }

    fn save(&mut self) {
        let gen = self.inner.generation();
        if gen != self.saved {
            self.writer.submit(gen, self.inner.snapshot());
            self.saved = gen;
        }
        self.dirty_since = None;
    }
}

impl Drop for Persisted {
    /// Shutdown: what changed since the last snapshot is written (the writer finishes it).
    fn drop(&mut self) {
        self.save();
    }
}

impl Dialect for Persisted {
    fn on_connect(
        &mut self,
        now_ms: u64,
        sid: &str,
        query: &[(String, String)],
        env: &mut dyn Env,
        out: &mut Vec<Action>,
    ) {
        self.inner.on_connect(now_ms, sid, query, env, out);
        self.changed(now_ms);
    }
    fn on_event(
        &mut self,
        now_ms: u64,
        sid: &str,
        event: &str,
        args: &[Value],
        env: &mut dyn Env,
        out: &mut Vec<Action>,
    ) {
        self.inner.on_event(now_ms, sid, event, args, env, out);
        self.changed(now_ms);
    }
    fn on_disconnect(&mut self, now_ms: u64, sid: &str, env: &mut dyn Env, out: &mut Vec<Action>) {
        self.inner.on_disconnect(now_ms, sid, env, out);
        self.changed(now_ms);
    }
    fn on_tick(&mut self, now_ms: u64, env: &mut dyn Env, out: &mut Vec<Action>) {
        if self.inner.next_deadline().is_some_and(|d| d <= now_ms) {
            self.inner.on_tick(now_ms, env, out);
            self.changed(now_ms);
        }
        if self
            .dirty_since
            .is_some_and(|d| d + SAVE_EVERY_MS <= now_ms)
        {
            self.save();
        }
    }
    fn next_deadline(&self) -> Option<u64> {
        let save = self.dirty_since.map(|d| d + SAVE_EVERY_MS);
        match (self.inner.next_deadline(), save) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Build the dialect from the configuration, with its store loaded if one is configured.
pub(crate) fn build(cfg: &Config) -> Result<Box<dyn Dialect + Send>, String> {
    let (wc, warnings) = WorkspacesConfig::from_options(&cfg.workspaces);
    for w in warnings {
        crate::warn!("{w}");
    }
    let mut inner = Workspaces::new(wc);
    let Some(path) = cfg.workspaces.storage_file.clone() else {
        return Ok(Box::new(inner));
    };
    if let Some(snapshot) = workspace_store::load(&path)? {
        let n = inner
            .restore(snapshot)
            .map_err(|e| format!("the workspace store {} is corrupt: {e}", path.display()))?;
        crate::info!("loaded {n} workspaces from {}", path.display());
    }
    let writer = Writer::spawn(path.clone())
        .map_err(|e| format!("{}: cannot start its writer: {e}", path.display()))?;
    Ok(Box::new(Persisted {
        saved: inner.generation(),
        dirty_since: None,
        inner,
        writer,
    }))
}
