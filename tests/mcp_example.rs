//! `examples/mcp/run.sh`, the MCP example exactly as its README runs it: an
//! agent discovers writ from the MCP tool server's 401 and RFC 9728
//! metadata, gets a DPoP-bound token acting for alice, calls a tool, is
//! stepped up for write and refused by policy, and is stopped by
//! `writ revoke --actor assistant --block` while alice's own access works.
//! Python comes from a virtual environment under the target directory with
//! the example's requirements and `clients/python[asgi]`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use common::{python_venv, repo};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn the_mcp_example_runs_and_the_kill_switch_stops_the_agent() {
    let python = python_venv(
        "mcp-example-venv",
        &[
            "-r",
            "examples/mcp/requirements.txt",
            "./clients/python[asgi]",
        ],
        &[
            "examples/mcp/requirements.txt",
            "clients/python/pyproject.toml",
        ],
    );
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(180),
        tokio::process::Command::new("bash")
            .arg(repo().join("examples/mcp/run.sh"))
            .current_dir(repo())
            .env("PYTHON", &python)
            .env("PYTHONPATH", repo().join("clients/python"))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("WRIT_BIN", env!("CARGO_BIN_EXE_writ"))
            .env("WRIT_PORT", free_port().to_string())
            .env("TOOL_PORT", free_port().to_string())
            .env_remove("WRIT_ADMIN_TOKEN")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("run.sh finishes within three minutes")
    .unwrap();

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for expected in [
        "agent: the tool answered 401; ",
        "/.well-known/oauth-protected-resource names writ at https://127.0.0.1:",
        "acting as assistant, DPoP-bound to ",
        "agent: tool balance answered: balance of alice-main for alice@example.com, assistant acting",
        "agent: tool transfer refused 403 insufficient_scope: it needs scope 'read write'",
        "agent: writ refused the step-up: 403 access_denied: denied by policy agents-never-write-for-others",
        "agent: tool refused 401: token was revoked (entry ",
        "agent: writ refused: 403 access_denied: blocked by the kill switch",
        "alice herself: tool answered: balance of alice-main for alice@example.com: ",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}\n{stderr}"
        );
    }
}
