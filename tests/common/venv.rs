//! Python virtual environments for the tests that run Python (the client
//! package's pytest suite, the MCP example): made under the target
//! directory once, and again when the files that define them change.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `python` of a virtual environment `name` under the target directory
/// in which `pip install <install...>` (arguments relative to the
/// repository root) has run. It is reused while the contents of `defining`
/// (files relative to the root) and the arguments are what they were when
/// it was completed; otherwise it is made again.
pub fn python_venv(name: &str, install: &[&str], defining: &[&str]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let python = dir.join("bin").join("python");
    let mut stamp = install.join("\n").into_bytes();
    for file in defining {
        stamp.extend(std::fs::read(repo().join(file)).unwrap());
    }
    let complete = dir.join("complete");
    if std::fs::read(&complete).is_ok_and(|s| s == stamp) && python.exists() {
        return python;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(made.success(), "python3 -m venv {}", dir.display());
    pip_install(&python, install);
    std::fs::write(&complete, stamp).unwrap();
    python
}

fn pip_install(python: &Path, install: &[&str]) {
    let output = Command::new(python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(install)
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "pip install {} failed:\n{}\n{}",
        install.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
