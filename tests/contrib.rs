//! The files in contrib/: the systemd units pass `systemd-analyze verify` (where systemd's
//! tools are installed; skipped with a message otherwise), the example configuration parses,
//! and the Grafana dashboard is JSON.

use std::path::Path;
use std::process::Command;

fn contrib(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib")
        .join(name)
}

#[test]
fn the_systemd_units_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("skipped: systemd-analyze is not installed (Debian package systemd)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("sigyard-units-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The units name the installed binary; verify them against the one just built.
    for (file, as_name) in [
        ("sigyard.service", "sigyard.service"),
        ("sigyard@.service", "sigyard@blue.service"),
    ] {
        let text = std::fs::read_to_string(contrib(file)).unwrap();
        assert!(text.contains("/usr/local/bin/sigyard"), "{file}");
        let unit = dir.join(as_name);
        std::fs::write(
            &unit,
            text.replace("/usr/local/bin/sigyard", env!("CARGO_BIN_EXE_sigyard")),
        )
        .unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&unit)
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && said.trim().is_empty(),
            "{file}: {said}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_example_configuration_checks() {
    let out = Command::new(env!("CARGO_BIN_EXE_sigyard"))
        .arg("--config")
        .arg(contrib("sigyard.conf.example"))
        .arg("--print-config")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_dashboard_is_json() {
    let text = std::fs::read_to_string(contrib("grafana-dashboard.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(v["panels"].as_array().is_some_and(|p| !p.is_empty()));
}
