//! The Python package (`clients/python`) tested by its own pytest suite
//! against this crate's `writ` binary: the suite starts the real broker on
//! loopback HTTPS, mints with real JWTs and revokes through `writ revoke`,
//! and runs the shared test vectors (`proto/tests/vectors`). The virtual
//! environment lives under the target directory and is reused once complete.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

use std::path::PathBuf;
use std::process::Command;

/// Written last by [`venv`]: the environment is complete for this package.
const COMPLETE: &str = "writ-complete";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A virtual environment with `pip install ./clients/python[test]` done,
/// made once and again when the package's `pyproject.toml` changes. The
/// tests import the working tree's package (`PYTHONPATH`), so code changes
/// need no reinstall.
fn venv() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("python-client-venv");
    let python = dir.join("bin").join("python");
    let pyproject = std::fs::read(repo().join("clients/python/pyproject.toml")).unwrap();
    let stamp = dir.join(COMPLETE);
    if std::fs::read(&stamp).is_ok_and(|s| s == pyproject) && python.exists() {
        return python;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(made.success(), "python3 -m venv {}", dir.display());
    let package = repo().join("clients/python");
    let output = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .arg(format!("{}[test]", package.display()))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "pip install clients/python[test] failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::write(&stamp, pyproject).unwrap();
    python
}

#[test]
fn the_python_client_passes_its_pytest_suite_against_this_broker() {
    let python = venv();
    let output = Command::new(&python)
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "clients/python/tests",
        ])
        .current_dir(repo())
        .env("PYTHONPATH", repo().join("clients/python"))
        .env("WRIT_BIN", env!("CARGO_BIN_EXE_writ"))
        .env_remove("WRIT_CONFIG")
        .env_remove("WRIT_ADMIN_TOKEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "pytest failed ({:?}):\n{stdout}\n{stderr}",
        output.status.code()
    );
    assert!(stdout.contains(" passed"), "{stdout}");
}
