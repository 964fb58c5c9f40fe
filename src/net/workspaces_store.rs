//! webRTWorkspaces' dialect as the shell builds it: its options and secrets from the
//! configuration, and its JSON store (`json_storage_file`): loaded at start (a corrupt file
//! stops the start with a clear message) and rewritten atomically (write, fsync, rename) by a
//! writer thread whenever the table changed, so the reactor never waits on the disk.

use crate::config::Config;
use crate::proto::dialect::sio::{Action, Dialect, Env};
use crate::proto::dialect::workspaces::{Workspaces, WorkspacesConfig};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

/// The dialect with its store: every call is passed through, and a changed table is handed to
/// the writer.
struct Persisted {
    inner: Workspaces,
    saved: u64,
    writer: Option<Sender<String>>,
}

impl Persisted {
    fn after(&mut self) {
        let gen = self.inner.generation();
        if gen == self.saved {
            return;
        }
        self.saved = gen;
        if let Some(tx) = &self.writer {
            let _ = tx.send(self.inner.snapshot().to_string());
        }
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
        self.after();
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
        self.after();
    }
    fn on_disconnect(&mut self, now_ms: u64, sid: &str, env: &mut dyn Env, out: &mut Vec<Action>) {
        self.inner.on_disconnect(now_ms, sid, env, out);
        self.after();
    }
    fn on_tick(&mut self, now_ms: u64, env: &mut dyn Env, out: &mut Vec<Action>) {
        self.inner.on_tick(now_ms, env, out);
        self.after();
    }
    fn next_deadline(&self) -> Option<u64> {
        self.inner.next_deadline()
    }
}

/// The dialect ready to install, and the store's writer thread (if a store is configured).
pub(crate) struct Built {
    pub dialect: Box<dyn Dialect + Send>,
    pub writer: Option<JoinHandle<()>>,
}

/// Build the dialect from the configuration and load its store.
pub(crate) fn build(cfg: &Config) -> Result<Built, String> {
    let s = &cfg.sio;
    let secret = match &s.workspaces_secret {
        Some(sec) => sec.expose().as_bytes().to_vec(),
        None => {
            crate::warn!(
                "no --workspaces-secret (or MAGICK_TOKEN): webRTWorkspaces tokens are signed with \
                 a random per-process secret and will not verify after a restart"
            );
            let mut b = vec![0u8; 32];
            crate::csprng::fill(&mut b);
            b
        }
    };
    let salt = s
        .workspaces_salt
        .as_ref()
        .map(|x| x.expose().to_owned())
        .unwrap_or_default();
    let mut wc = WorkspacesConfig::with_secrets(&secret, &salt);
    wc.capacity = s.workspaces_capacity;
    wc.disconnect_on_full = s.workspaces_disconnect_on_full;
    wc.max_workspaces = s.workspaces_max;
    let mut inner = Workspaces::new(wc);
    let Some(path) = s.workspaces_storage_file.clone() else {
        return Ok(Built {
            dialect: Box::new(Persisted {
                saved: inner.generation(),
                inner,
                writer: None,
            }),
            writer: None,
        });
    };
    load(&path, &mut inner)?;
    let (tx, rx) = mpsc::channel();
    let writer_path = path.clone();
    let writer = std::thread::Builder::new()
        .name("sigyard-workspaces-store".into())
        .spawn(move || write_loop(&writer_path, rx))
        .map_err(|e| format!("{}: cannot start its writer: {e}", path.display()))?;
    Ok(Built {
        dialect: Box::new(Persisted {
            saved: inner.generation(),
            inner,
            writer: Some(tx),
        }),
        writer: Some(writer),
    })
}

/// Read the store into `table`. A missing file is an empty store (its directory must exist);
/// anything else that does not load is an error naming the file and the problem.
fn load(path: &Path, table: &mut Workspaces) -> Result<(), String> {
    let at = |what: String| format!("{}: {what}", path.display());
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
            if dir.is_some_and(|d| !d.is_dir()) {
                return Err(at("its directory does not exist".into()));
            }
            return Ok(());
        }
        Err(e) => return Err(at(format!("cannot read: {e}"))),
    };
    // The original writes `{}` for an empty store; an empty file counts as one too.
    if text.trim().is_empty() {
        return Ok(());
    }
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| at(format!("not valid JSON (corrupt workspace store): {e}")))?;
    let n = table
        .restore(v)
        .map_err(|e| at(format!("corrupt workspace store: {e}")))?;
    crate::info!("loaded {n} workspaces from {}", path.display());
    Ok(())
}

/// Write snapshots as they come (only the newest of a burst), each atomically.
fn write_loop(path: &Path, rx: Receiver<String>) {
    while let Ok(mut text) = rx.recv() {
        while let Ok(newer) = rx.try_recv() {
            text = newer;
        }
        if let Err(e) = write_atomic(path, text.as_bytes()) {
            crate::error!("workspace store {}: write failed: {e}", path.display());
        }
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = PathBuf::from(path);
    let name = format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("store")
    );
    tmp.set_file_name(name);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
