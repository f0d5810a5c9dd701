//! One-shot commands: the `writ` CLI and the Python verifier, each with a time limit.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use super::server::isolate;

/// How long a one-shot command may run.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// Exit code and output of a finished command.
#[derive(Debug)]
pub struct CliOutput {
    /// `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    pub fn describe(&self) -> String {
        format!(
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `writ <args>` in `cwd` to completion.
pub async fn run_writ(cwd: &Path, args: &[&str]) -> CliOutput {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_writ"));
    command.args(args).current_dir(cwd);
    isolate(&mut command);
    run(command, &format!("writ {}", args.join(" "))).await
}

/// Like [`run_writ`], with `variables` set in writ's environment after the
/// isolation (e.g. `WRIT_ADMIN_TOKEN`).
pub async fn run_writ_with_env(cwd: &Path, args: &[&str], variables: &[(&str, &str)]) -> CliOutput {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_writ"));
    command.args(args).current_dir(cwd);
    isolate(&mut command);
    for (name, value) in variables {
        command.env(name, value);
    }
    run(command, &format!("writ {}", args.join(" "))).await
}

/// Runs `python3 <script file> <args>` in `cwd` to completion, with PyJWT importable.
pub async fn run_python(cwd: &Path, script: &Path, args: &[&str]) -> CliOutput {
    let mut command = std::process::Command::new("python3");
    command
        .arg(script)
        .args(args)
        .current_dir(cwd)
        .env("PYTHONPATH", pyjwt_dir());
    isolate(&mut command);
    run(command, "python3").await
}

/// A directory on `PYTHONPATH` where `import jwt, cryptography` works:
/// PyJWT is installed there by the test itself when the machine lacks it.
fn pyjwt_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pydeps");
        let importable = || {
            std::process::Command::new("python3")
                .args(["-c", "import jwt, cryptography"])
                .env("PYTHONPATH", &dir)
                .status()
                .is_ok_and(|s| s.success())
        };
        if !importable() {
            let installed = std::process::Command::new("python3")
                .args(["-m", "pip", "install", "--quiet", "--target"])
                .arg(&dir)
                .arg("pyjwt[crypto]")
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                installed && importable(),
                "could not install PyJWT into {}",
                dir.display()
            );
        }
        dir
    })
}

async fn run(command: std::process::Command, what: &str) -> CliOutput {
    let mut command = tokio::process::Command::from(command);
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(COMMAND_LIMIT, command.output())
        .await
        .unwrap_or_else(|_| panic!("`{what}` still running after {COMMAND_LIMIT:?}"))
        .unwrap_or_else(|error| panic!("run `{what}`: {error}"));
    CliOutput {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
