//! `--perf-control FIFO`: tell `perf stat --delay=-1 --control fifo:FIFO` when the measured
//! window starts (`enable`) and ends (`disable`), so that what perf counts on the server is
//! the traffic the summary's figures are for, not the connects before it.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

/// The FIFO, held open from the start of the run so that perf never sees its end hang up
/// between the two commands.
static FIFO: Mutex<Option<File>> = Mutex::new(None);

/// Open the FIFO for writing; fails (instead of waiting) when nobody reads it.
pub fn open(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            format!(
                "--perf-control: cannot open {} for writing ({e}); is perf stat reading it?",
                path.display()
            )
        })?;
    *FIFO.lock().unwrap_or_else(|p| p.into_inner()) = Some(f);
    Ok(())
}

/// The measured window starts.
pub fn enable() {
    say("enable\n");
}

/// The measured window ends.
pub fn disable() {
    say("disable\n");
}

fn say(cmd: &str) {
    if let Some(f) = FIFO.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
        // A few bytes into an open FIFO with a reader: this does not block or fail short.
        let _ = f.write_all(cmd.as_bytes());
    }
}
