//! `writ approvals`: grants waiting for a person (CONTRACT section 10) on a
//! running broker: list them, approve or deny one. The admin token comes
//! from `WRIT_ADMIN_TOKEN`, as for `writ revoke`; the broker's Cedar
//! policy decides whether this admin holds the approval's role.

use clap::Subcommand;
use serde_json::Value;

use super::revoke::admin_token;
use super::{BrokerArgs, CliError, admin_json};
use crate::config::{Config, DEV_CERTS_DIR};

/// `writ approvals ...`
#[derive(Debug, clap::Args)]
pub struct ApprovalsArgs {
    #[command(subcommand)]
    command: ApprovalsCommand,
    #[command(flatten)]
    broker: BrokerArgs,
}

#[derive(Debug, Subcommand)]
enum ApprovalsCommand {
    /// One line per approval pending or approved: who asks, for what, and
    /// which role decides.
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Approve one: the client's next retry with its approval_id gets the
    /// token, once, within approvals.ttl.
    Approve {
        /// The approval id, as `writ approvals list` shows it.
        id: String,
    },
    /// Deny one: the client's retry gets access_denied.
    Deny {
        /// The approval id.
        id: String,
    },
}

/// The columns of `writ approvals list`.
const COLUMNS: [&str; 8] = [
    "id",
    "state",
    "role",
    "principal",
    "target",
    "scopes",
    "actors",
    "expires_at",
];

/// Runs `writ approvals`.
pub async fn run(config: &Config, args: ApprovalsArgs) -> Result<(), CliError> {
    let token = admin_token()?;
    let certs = std::path::Path::new(DEV_CERTS_DIR);
    let (server, client) = args.broker.connect(config, certs)?;
    let decide = async |id: &str, verb: &str| -> Result<(), CliError> {
        let url = format!("{server}/admin/v1/approvals/{id}/{verb}");
        let body = admin_json(client.post(&url), &token, &url).await?;
        let a = &body["approval"];
        println!(
            "{} {}: {} for {} on {}",
            a["state"].as_str().unwrap_or("-"),
            a["id"].as_str().unwrap_or("-"),
            join(&a["scopes"]),
            a["principal"].as_str().unwrap_or("-"),
            a["target"].as_str().unwrap_or("-"),
        );
        Ok(())
    };
    match &args.command {
        ApprovalsCommand::List { json } => {
            let url = format!("{server}/admin/v1/approvals");
            let body = admin_json(client.get(&url), &token, &url).await?;
            let approvals = body["approvals"].as_array().cloned().unwrap_or_default();
            if *json {
                for approval in &approvals {
                    println!("{approval}");
                }
            } else {
                print!("{}", super::table::table(&approvals, &COLUMNS));
            }
            Ok(())
        }
        ApprovalsCommand::Approve { id } => decide(id, "approve").await,
        ApprovalsCommand::Deny { id } => decide(id, "deny").await,
    }
}

/// A JSON list of strings, space separated.
fn join(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}
