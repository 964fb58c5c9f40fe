//! The npm client suites (tests/npm): installed from their lock file on first use, run with
//! `node --test` against one server URL, or several (the nodes of a cluster, comma-separated:
//! each new connection takes the next).

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/npm")
}

/// `npm install` in tests/npm unless its packages are there.
pub fn install() {
    install_in(
        &dir(),
        &[
            "@localfirst/relay",
            "@myetherwallet/mewconnect-web-client",
            "socket.io-client",
            "peerjs",
            "y-webrtc",
            "bittorrent-tracker",
        ],
    );
}

/// `npm install` in `dir` unless every one of `packages` is in its node_modules (checked per
/// package, so a checkout that installed before a package was added updates). The tests of one
/// binary run in parallel and a fresh checkout has nothing installed: the first to get here
/// installs while the others wait, then find the packages there (two `npm install`s in one
/// directory at once can leave a broken node_modules).
pub fn install_in(dir: &Path, packages: &[&str]) {
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    let installed = packages
        .iter()
        .all(|p| dir.join("node_modules").join(p).is_dir());
    if !installed {
        // `npm install`, not `npm ci`: the lock file omits optional prebuilt packages that the
        // registry does not serve for this platform, which `npm ci` rejects (tests/npm/README.md).
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(dir)
            .status()
            .expect("npm is installed (Node.js 20)");
        assert!(status.success(), "npm install failed in {}", dir.display());
    }
}

/// Run every suite against `url`; panics with the report unless all pass (at least 30).
pub fn run_all(url: &str) {
    let dir = dir();
    // Every `*.test.mjs`, and the Socket.IO dialect files in socketio/ (`*.sio.mjs`, which
    // also run against the socket.io bridge, see tests/npm/README.md).
    let mut files: Vec<String> = Vec::new();
    for (sub, suffix) in [("", ".test.mjs"), ("socketio/", ".sio.mjs")] {
        for e in std::fs::read_dir(dir.join(sub)).expect("tests/npm") {
            let name = e.unwrap().file_name().into_string().unwrap();
            if name.ends_with(suffix) {
                files.push(format!("{sub}{name}"));
            }
        }
    }
    files.sort();
    let out = Command::new("node")
        .arg("--test")
        .args(&files)
        .env("SIGYARD_URL", url)
        .env("SIGYARD_WORKSPACES_CAPACITY", "5")
        .current_dir(&dir)
        .output()
        .expect("node runs");
    let report = String::from_utf8_lossy(&out.stdout);
    let count = |label: &str| -> Option<u32> {
        report
            .lines()
            .find_map(|l| l.strip_prefix(&format!("# {label} ")))
            .and_then(|n| n.trim().parse().ok())
    };
    let (pass, fail) = (count("pass"), count("fail"));
    println!("npm clients against {url}: pass={pass:?} fail={fail:?}");
    assert!(
        out.status.success() && fail == Some(0) && pass.is_some_and(|p| p >= 30),
        "node --test failed (pass={pass:?}, fail={fail:?}):\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
