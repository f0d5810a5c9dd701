//! The Python package (`clients/python`) tested by its own pytest suite
//! against this crate's `writ` binary: the suite starts the real broker on
//! loopback HTTPS, mints with real JWTs and revokes through `writ revoke`,
//! and runs the shared test vectors (`proto/tests/vectors`). The virtual
//! environment (`pip install ./clients/python[test]`) lives under the
//! target directory and is reused while `pyproject.toml` is unchanged; the
//! tests import the working tree's package (`PYTHONPATH`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use std::process::Command;

use common::{python_venv, repo};

#[test]
fn the_python_client_passes_its_pytest_suite_against_this_broker() {
    let python = python_venv(
        "python-client-venv",
        &["./clients/python[test]"],
        &["clients/python/pyproject.toml"],
    );
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
        .env("PYTHONDONTWRITEBYTECODE", "1")
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
