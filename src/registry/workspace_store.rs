//! The webRTWorkspaces store file (`--workspaces-storage-file`, the original's
//! `json_storage_file`): read once at start, rewritten after changes by a background thread
//! so that no reactor waits for a disk.
//!
//! Writes are atomic: the snapshot goes to a temporary file in the same directory, is
//! fsynced, renamed over the store and the directory is fsynced, so the file is always either
//! the previous or the new whole snapshot. A file that cannot be read or parsed is an error at
//! start with the path and the reason (never silently replaced by an empty table).
//!
//! Use: at start, [`load`] and hand the value to `Workspaces::restore`; afterwards, when
//! `Workspaces::generation` moved (checked on a timer, e.g. every 100 ms, so a burst of events
//! costs one snapshot), [`Writer::submit`] the snapshot; at shutdown, [`Writer::flush`].
//! Only the newest submitted snapshot is written: older pending ones are dropped.

use serde_json::Value;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Store files larger than this are refused at start.
pub const MAX_STORE_BYTES: u64 = 256 * 1024 * 1024;

/// Reads the store: `Ok(None)` if the file does not exist, the parsed JSON if it does, and a
/// message naming the file and the problem otherwise.
pub fn load(path: &Path) -> Result<Option<Value>, String> {
    let shown = path.display();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open the workspace store {shown}: {e}")),
    };
    let len = file
        .metadata()
        .map_err(|e| format!("cannot read the workspace store {shown}: {e}"))?
        .len();
    if len > MAX_STORE_BYTES {
        return Err(format!(
            "the workspace store {shown} is {len} bytes, more than the limit of {MAX_STORE_BYTES}"
        ));
    }
    let mut text = Vec::with_capacity(len as usize);
    file.take(MAX_STORE_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| format!("cannot read the workspace store {shown}: {e}"))?;
    if text.iter().all(u8::is_ascii_whitespace) {
        return Err(format!(
            "the workspace store {shown} is empty (expected a JSON object); remove it to start without workspaces"
        ));
    }
    serde_json::from_slice(&text).map(Some).map_err(|e| {
        format!("the workspace store {shown} is corrupt: {e}; fix or remove it to start without workspaces")
    })
}

/// Writes `snapshot` to `path` atomically (temporary file, fsync, rename, directory fsync).
pub fn save(path: &Path, snapshot: &Value) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the store path has no file name",
        )
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(snapshot)?)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[derive(Default)]
struct State {
    /// The newest snapshot not yet taken by the thread.
    pending: Option<(u64, Value)>,
    /// Newest generation submitted.
    submitted: u64,
    /// Newest generation on disk.
    written: u64,
    /// Generation of the last failed write, with the error.
    failed: Option<(u64, String)>,
    stop: bool,
}

struct Inner {
    state: Mutex<State>,
    changed: Condvar,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The background writer of one store file.
pub struct Writer {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub fn spawn(path: PathBuf) -> io::Result<Writer> {
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let shared = inner.clone();
        let thread = std::thread::Builder::new()
            .name("workspace-store".into())
            .spawn(move || run(&shared, &path))?;
        Ok(Writer {
            inner,
            thread: Some(thread),
        })
    }

    /// Queues `snapshot` (of table generation `generation`) for writing; replaces any
    /// snapshot still waiting.
    pub fn submit(&self, generation: u64, snapshot: Value) {
        let mut s = self.inner.lock();
        s.pending = Some((generation, snapshot));
        s.submitted = s.submitted.max(generation);
        self.inner.changed.notify_all();
    }

    /// The newest generation known to be on disk.
    pub fn written(&self) -> u64 {
        self.inner.lock().written
    }

    /// Waits until everything submitted is on disk, or `timeout`. `Err` carries the last
    /// write error if the newest snapshot could not be written.
    pub fn flush(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut s = self.inner.lock();
        loop {
            if s.written >= s.submitted && s.pending.is_none() {
                return Ok(());
            }
            if let Some((g, e)) = &s.failed {
                if *g >= s.submitted && s.pending.is_none() {
                    return Err(e.clone());
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err("timed out waiting for the workspace store to be written".into());
            }
            s = self
                .inner
                .changed
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl Drop for Writer {
    /// Writes what is pending, then stops the thread.
    fn drop(&mut self) {
        self.inner.lock().stop = true;
        self.inner.changed.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(inner: &Inner, path: &Path) {
    loop {
        let (generation, snapshot) = {
            let mut s = inner.lock();
            loop {
                if let Some(p) = s.pending.take() {
                    break p;
                }
                if s.stop {
                    return;
                }
                s = inner.changed.wait(s).unwrap_or_else(|p| p.into_inner());
            }
        };
        let result = save(path, &snapshot);
        let mut s = inner.lock();
        match result {
            Ok(()) => {
                s.written = s.written.max(generation);
                s.failed = None;
            }
            Err(e) => {
                let msg = format!("cannot write the workspace store {}: {e}", path.display());
                crate::error!("{msg}");
                s.failed = Some((generation, msg));
            }
        }
        inner.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("sigyard-ws-store-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn missing_file_is_no_store_and_save_then_load_round_trips() {
        let d = dir("roundtrip");
        let path = d.join("ws.json");
        assert_eq!(load(&path), Ok(None));
        let v = json!({"_w1": {"id": "_w1", "name": "Caf\u{e9}", "attendees": {}}});
        save(&path, &v).unwrap();
        assert_eq!(load(&path), Ok(Some(v.clone())));
        save(&path, &json!({})).unwrap();
        assert_eq!(load(&path), Ok(Some(json!({}))));
        let left: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left,
            vec![std::ffi::OsString::from("ws.json")],
            "no temporary file left"
        );
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn corrupt_or_empty_files_are_reported_with_their_path() {
        let d = dir("corrupt");
        let path = d.join("ws.json");
        fs::write(&path, "{\"_w1\": {\"id\": ").unwrap();
        let e = load(&path).unwrap_err();
        assert!(e.contains("ws.json") && e.contains("is corrupt"), "{e}");
        fs::write(&path, " \n").unwrap();
        let e = load(&path).unwrap_err();
        assert!(e.contains("is empty"), "{e}");
        fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(load(&path).unwrap_err().contains("is corrupt"));
        // A directory where the file should be.
        let e = load(&d).unwrap_err();
        assert!(e.contains("workspace store"), "{e}");
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn save_into_a_missing_directory_fails_cleanly() {
        let d = dir("missing");
        let path = d.join("no/such/dir/ws.json");
        assert!(save(&path, &json!({})).is_err());
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn the_writer_writes_the_newest_snapshot_and_flushes() {
        let d = dir("writer");
        let path = d.join("ws.json");
        let w = Writer::spawn(path.clone()).unwrap();
        for g in 1..=50u64 {
            w.submit(g, json!({ "generation": g }));
        }
        w.flush(Duration::from_secs(10)).unwrap();
        assert_eq!(w.written(), 50);
        assert_eq!(load(&path), Ok(Some(json!({"generation": 50}))));
        // Drop writes what is pending.
        w.submit(51, json!({"generation": 51}));
        drop(w);
        assert_eq!(load(&path), Ok(Some(json!({"generation": 51}))));
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn the_writer_reports_a_failed_write() {
        let d = dir("writer-fail");
        let w = Writer::spawn(d.join("absent/ws.json")).unwrap();
        w.submit(1, json!({}));
        let e = w.flush(Duration::from_secs(10)).unwrap_err();
        assert!(e.contains("cannot write the workspace store"), "{e}");
        assert_eq!(w.written(), 0);
        drop(w);
        fs::remove_dir_all(d).unwrap();
    }
}

/// The store with the dialect: what a restart does.
#[cfg(test)]
mod restart_tests {
    use super::*;
    use crate::proto::dialect::sio::Action;
    use crate::proto::dialect::testing::SioHarness;
    use crate::proto::dialect::workspaces::{Workspaces, WorkspacesConfig};
    use crate::proto::dialect::NoEnv;
    use serde_json::json;

    fn emitted(out: &[Action], event: &str) -> Value {
        out.iter()
            .find_map(|a| match a {
                Action::Emit { event: e, args, .. } if e == event => Some(args[0].value()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no {event} in {out:?}"))
    }

    fn table() -> Workspaces {
        let cfg = WorkspacesConfig {
            pin_iterations: 1000,
            ..WorkspacesConfig::with_secrets(b"magick", "pepper")
        };
        Workspaces::new(cfg)
    }

    #[test]
    fn workspaces_survive_a_restart_through_the_store_file() {
        let d = std::env::temp_dir().join(format!("sigyard-ws-restart-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        let path = d.join("workspaces.json");

        let mut h = SioHarness::new(NoEnv);
        let mut before = table();
        assert_eq!(load(&path), Ok(None));
        h.connect(&mut before, "s1", &[]);
        let create =
            json!({"workspace": {"name": "Kept", "pin": "4321"}, "attendee": {"name": "Ann"}});
        let out = h.event(&mut before, "s1", "create", &[create]);
        let created = emitted(&out, "created");
        let writer = Writer::spawn(path.clone()).unwrap();
        writer.submit(before.generation(), before.snapshot());
        writer.flush(Duration::from_secs(10)).unwrap();
        drop(writer);
        drop(before);

        let mut after = table();
        let loaded = load(&path).unwrap().expect("the file exists");
        assert_eq!(after.restore(loaded), Ok(1));
        h.connect(&mut after, "s2", &[]);
        let attend = json!({"workspace": {"token": created["workspace"]["token"], "pin": "4321"}, "attendee": {"name": "Bob"}});
        let out = h.event(&mut after, "s2", "attend", &[attend]);
        let granted = emitted(&out, "attendance-granted");
        assert_eq!(granted["workspace"]["name"], "Kept");
        assert_eq!(granted["workspace"]["owner"], created["attendee"]["id"]);
        // The owner's access token from before the restart still works.
        h.connect(&mut after, "s3", &[]);
        let reattend = json!({"workspace": created["workspace"], "attendee": created["attendee"], "accessToken": created["accessToken"]});
        let out = h.event(&mut after, "s3", "re-attend", &[reattend]);
        emitted(&out, "re-attendance-granted");
        fs::remove_dir_all(d).unwrap();
    }
}
