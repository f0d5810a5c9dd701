//! `writ revoke`: the kill switch from a shell. The admin token comes only
//! from `WRIT_ADMIN_TOKEN`, never a flag, so it stays out of shell history.

use std::time::{Duration, UNIX_EPOCH};

use clap::Subcommand;
use serde_json::{Value, json};

use super::{BrokerArgs, CliError, admin_json};
use crate::clock::{Clock, SystemClock, rfc3339};
use crate::config::{Config, DEV_CERTS_DIR};

/// `writ revoke ...`
#[derive(Debug, clap::Args)]
#[command(subcommand_negates_reqs = true)]
pub struct RevokeArgs {
    #[command(subcommand)]
    command: Option<RevokeCommand>,
    #[command(flatten)]
    selector: SelectorArgs,
    /// Also refuse new tokens matching the selector until lifted.
    #[arg(long)]
    block: bool,
    /// When the block lapses: an RFC 3339 time or a duration such as `30m`.
    #[arg(long, requires = "block")]
    until: Option<String>,
    /// Why (kept for operators; never shown to token holders).
    #[arg(long)]
    reason: Option<String>,
    #[command(flatten)]
    broker: BrokerArgs,
}

/// Exactly one selector.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct SelectorArgs {
    /// Every token of this principal, e.g. spiffe://cluster.local/ns/payments/sa/api.
    #[arg(long)]
    subject: Option<String>,
    /// Every principal whose id starts with this, e.g. spiffe://cluster.local/ns/payments/.
    #[arg(long)]
    subject_prefix: Option<String>,
    /// One token, by its jti.
    #[arg(long)]
    jti: Option<String>,
    /// Every token for this target.
    #[arg(long)]
    audience: Option<String>,
    /// Every token attested by this issuer.
    #[arg(long)]
    issuer: Option<String>,
    /// Every token this agent acts in.
    #[arg(long)]
    actor: Option<String>,
    /// Every token signed by this key (prefer `writ keys revoke KID`, which
    /// also withdraws the key).
    #[arg(long)]
    kid: Option<String>,
    /// Everything.
    #[arg(long)]
    all: bool,
}

#[derive(Debug, Subcommand)]
enum RevokeCommand {
    /// List live entries: a table, or one JSON object per line.
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Lift the block of entry ID (revoked tokens stay revoked).
    Lift {
        /// The entry id.
        id: String,
    },
}

impl SelectorArgs {
    fn given(&self) -> bool {
        self.all
            || [
                &self.subject,
                &self.subject_prefix,
                &self.jti,
                &self.audience,
                &self.issuer,
                &self.actor,
                &self.kid,
            ]
            .iter()
            .any(|v| v.is_some())
    }

    fn to_json(&self) -> Value {
        let pairs = [
            ("subject", &self.subject),
            ("subject_prefix", &self.subject_prefix),
            ("jti", &self.jti),
            ("audience", &self.audience),
            ("issuer", &self.issuer),
            ("actor", &self.actor),
            ("kid", &self.kid),
        ];
        match pairs
            .into_iter()
            .find_map(|(k, v)| v.as_ref().map(|v| (k, v)))
        {
            Some((kind, value)) => json!({ kind: value }),
            None => json!({"all": true}),
        }
    }
}

/// The admin bearer token, from `WRIT_ADMIN_TOKEN` only.
pub(super) fn admin_token() -> Result<String, CliError> {
    std::env::var("WRIT_ADMIN_TOKEN")
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            CliError::new(
                "WRIT_ADMIN_TOKEN is not set: export the admin bearer token \
                 (dev mode: export WRIT_ADMIN_TOKEN=$(cat certs/dev-admin-token))",
            )
        })
}

/// An absolute RFC 3339 time from `--until` (a time or a duration from now).
fn until(value: &str) -> Result<String, CliError> {
    if let Ok(d) = humantime::parse_duration(value) {
        return Ok(rfc3339(SystemClock.unix_now() + d.as_secs()));
    }
    let t = humantime::parse_rfc3339_weak(value).map_err(|_| {
        CliError::new(format!(
            "--until {value:?} is neither an RFC 3339 time nor a duration"
        ))
    })?;
    Ok(rfc3339(
        t.duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs(),
    ))
}

/// The columns of `writ revoke list`.
const LIST_COLUMNS: [&str; 7] = [
    "id",
    "seq",
    "selector",
    "block",
    "effective_at",
    "until",
    "reason",
];

/// An entry as a row of `writ revoke list`: the selector as `kind=value`
/// (`all` alone).
fn row(entry: &Value) -> Value {
    let selector = entry["selector"]
        .as_object()
        .and_then(|o| o.iter().next())
        .map(|(kind, value)| match value.as_str() {
            Some(v) => format!("{kind}={v}"),
            None => kind.clone(),
        })
        .unwrap_or_else(|| "-".into());
    let mut row = entry.clone();
    row["selector"] = json!(selector);
    row
}

/// Runs `writ revoke`.
pub async fn run(config: &Config, args: RevokeArgs) -> Result<(), CliError> {
    if args.command.is_some()
        && (args.selector.given() || args.block || args.until.is_some() || args.reason.is_some())
    {
        // Bad usage: exit 2, like every other usage error clap reports.
        clap::Error::raw(
            clap::error::ErrorKind::ArgumentConflict,
            "`writ revoke list|lift` take no selector, --block, --until or --reason\n",
        )
        .exit();
    }
    let token = admin_token()?;
    let certs = std::path::Path::new(DEV_CERTS_DIR);
    let (server, client) = args.broker.connect(config, certs)?;
    match &args.command {
        Some(RevokeCommand::List { json }) => {
            let mut cursor: Option<u64> = None;
            let mut rows = Vec::new();
            loop {
                let mut url = format!("{server}/admin/v1/revocations?limit=1000");
                if let Some(c) = cursor {
                    url.push_str(&format!("&cursor={c}"));
                }
                let page = admin_json(client.get(&url), &token, &url).await?;
                for entry in page["entries"].as_array().into_iter().flatten() {
                    match json {
                        true => println!("{entry}"),
                        false => rows.push(row(entry)),
                    }
                }
                match page["next_cursor"].as_u64() {
                    Some(c) => cursor = Some(c),
                    None if *json => return Ok(()),
                    None => {
                        print!("{}", super::table::table(&rows, &LIST_COLUMNS));
                        return Ok(());
                    }
                }
            }
        }
        Some(RevokeCommand::Lift { id }) => {
            let url = format!("{server}/admin/v1/revocations/{id}");
            let body = admin_json(client.delete(&url), &token, &url).await?;
            println!(
                "lifted {id} (entry {} seq {})",
                body["id"].as_str().unwrap_or("-"),
                body["seq"]
            );
            Ok(())
        }
        None => {
            let mut body = json!({"selector": args.selector.to_json(), "block": args.block});
            if let Some(reason) = &args.reason {
                body["reason"] = json!(reason);
            }
            if let Some(u) = &args.until {
                body["until"] = json!(until(u)?);
            }
            let url = format!("{server}/admin/v1/revocations");
            let ack = admin_json(client.post(&url).json(&body), &token, &url).await?;
            println!(
                "revoked {} seq {} effective_at {}",
                ack["id"].as_str().unwrap_or("-"),
                ack["seq"],
                ack["effective_at"].as_str().unwrap_or("-")
            );
            Ok(())
        }
    }
}
