//! `writ keys`: the signing keys of a running broker (rotate, list,
//! revoke). The admin token comes from `WRIT_ADMIN_TOKEN`, as for
//! `writ revoke`.

use clap::Subcommand;
use serde_json::Value;

use super::revoke::admin_token;
use super::{BrokerArgs, CliError, admin_json};
use crate::config::{Config, DEV_CERTS_DIR};

/// `writ keys ...`
#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
    #[command(flatten)]
    broker: BrokerArgs,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Make a new key: published at once, signing after keys.publish_ahead.
    Rotate,
    /// One line per key: kid, algorithm, state and times.
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Withdraw a key from every JWKS and revoke every token it signed (the
    /// response to a stolen key); if it signed, another key signs at once.
    Revoke {
        /// The key id, as `writ keys list` shows it.
        kid: String,
    },
}

/// The columns of `writ keys list`.
const COLUMNS: [&str; 6] = ["kid", "alg", "state", "created", "activates", "retires"];

/// The table `writ keys list` prints: a header, then one row per key.
pub fn table(keys: &[Value]) -> String {
    super::table::table(keys, &COLUMNS)
}

/// Runs `writ keys`.
pub async fn run(config: &Config, args: KeysArgs) -> Result<(), CliError> {
    let token = admin_token()?;
    let certs = std::path::Path::new(DEV_CERTS_DIR);
    let (server, client) = args.broker.connect(config, certs)?;
    match &args.command {
        KeysCommand::Rotate => {
            let url = format!("{server}/admin/v1/keys/rotate");
            let body = admin_json(client.post(&url), &token, &url).await?;
            let key = &body["key"];
            println!(
                "{} {} {}: published now, signs from {}",
                key["state"].as_str().unwrap_or("-"),
                key["alg"].as_str().unwrap_or("-"),
                key["kid"].as_str().unwrap_or("-"),
                key["activates"].as_str().unwrap_or("-"),
            );
        }
        KeysCommand::List { json } => {
            let url = format!("{server}/admin/v1/keys");
            let body = admin_json(client.get(&url), &token, &url).await?;
            let keys = body["keys"].as_array().cloned().unwrap_or_default();
            if *json {
                for key in &keys {
                    println!("{key}");
                }
            } else {
                print!("{}", table(&keys));
            }
        }
        KeysCommand::Revoke { kid } => {
            let url = format!("{server}/admin/v1/keys/{kid}/revoke");
            let body = admin_json(client.post(&url), &token, &url).await?;
            println!(
                "revoked key {kid} (was {}); its tokens are revoked by entry {} seq {}",
                body["was"].as_str().unwrap_or("-"),
                body["revocation"]["id"].as_str().unwrap_or("-"),
                body["revocation"]["seq"],
            );
            if let Some(kid) = body["replacement"]["kid"].as_str() {
                println!("key {kid} signs now");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_table_has_a_header_and_one_aligned_row_per_key() {
        let keys = [
            json!({"kid": "abc", "alg": "ES256", "state": "active", "created": "t1", "activates": "t1", "retires": null}),
            json!({"kid": "a-longer-kid", "alg": "EdDSA", "state": "retiring", "created": "t0", "activates": "t0", "retires": "t9"}),
        ];
        let out = table(&keys);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "KID           ALG    STATE     CREATED  ACTIVATES  RETIRES"
        );
        assert_eq!(
            lines[1],
            "abc           ES256  active    t1       t1         -"
        );
        assert_eq!(lines.len(), 3);
    }
}
