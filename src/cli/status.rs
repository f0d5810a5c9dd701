//! `writ status`: the replicas a broker's store knows, as a table (or JSON
//! lines), from `GET /admin/v1/replicas`.

use serde_json::Value;

use super::revoke::admin_token;
use super::{BrokerArgs, CliError, admin_json};
use crate::config::{Config, DEV_CERTS_DIR};

/// `writ status ...`
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// One JSON object per replica instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    broker: BrokerArgs,
}

/// Runs `writ status`.
pub async fn run(config: &Config, args: StatusArgs) -> Result<(), CliError> {
    let token = admin_token()?;
    let (server, client) = args
        .broker
        .connect(config, std::path::Path::new(DEV_CERTS_DIR))?;
    let url = format!("{server}/admin/v1/replicas");
    let body = admin_json(client.get(&url), &token, &url).await?;
    let replicas = body["replicas"].as_array().cloned().unwrap_or_default();
    if args.json {
        for replica in &replicas {
            println!("{replica}");
        }
        return Ok(());
    }
    print!("{}", table(&body, &replicas));
    Ok(())
}

/// The table `writ status` prints: who answered, then one line per replica.
fn table(body: &Value, replicas: &[Value]) -> String {
    let mut out = format!(
        "answered by {} (kill-switch view {} ms old)\n",
        body["answered_by"].as_str().unwrap_or("-"),
        body["staleness_ms"]
    );
    out += &format!(
        "{:<40} {:>12} {:>8} {:>12} {:>6}\n",
        "REPLICA", "APPLIED SEQ", "LAG", "SILENT (ms)", "LIVE"
    );
    for r in replicas {
        out += &format!(
            "{:<40} {:>12} {:>8} {:>12} {:>6}\n",
            r["replica_id"].as_str().unwrap_or("-"),
            r["applied_seq"],
            r["lag"],
            r["silent_for_ms"],
            if r["live"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            }
        );
    }
    out
}
