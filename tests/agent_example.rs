//! `examples/agent/run.sh`, the agent example exactly as its README runs it:
//! an agent (Python, standard library only) acts for alice through writ, the
//! tool (the resource-server example) accepts its token, the kill switch on
//! the agent makes the tool refuse it and writ refuse a new one, and alice's
//! own token still works.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

use std::path::PathBuf;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn the_agent_example_runs_and_the_kill_switch_stops_the_agent() {
    let writ = PathBuf::from(env!("CARGO_BIN_EXE_writ"));
    // `cargo test --all-targets` builds examples as test harnesses, so the
    // tool's own binary is built here (incrementally: its dependencies are
    // already compiled for the tests).
    let built = tokio::process::Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--quiet", "--example", "resource_server"])
        .status()
        .await
        .unwrap();
    assert!(built.success(), "cargo build --example resource_server");
    let tool = writ
        .parent()
        .unwrap()
        .join("examples")
        .join("resource_server");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/agent/run.sh");

    let output = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        tokio::process::Command::new("bash")
            .arg(&script)
            .env("WRIT_BIN", &writ)
            .env("TOOL_BIN", &tool)
            .env("WRIT_PORT", free_port().to_string())
            .env("TOOL_PORT", free_port().to_string())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("run.sh finishes within two minutes")
    .unwrap();

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for expected in [
        "acting as assistant",
        "tool answered 200",
        "tool refused 401",
        "writ refused: 403 access_denied: blocked by the kill switch",
        "alice herself: granted read",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}\n{stderr}"
        );
    }
}
