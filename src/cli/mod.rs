//! The `writ` command line. `main.rs` calls [`main`]; each subcommand is a
//! small function over the library. Exit codes: 0 success, 1 failure with
//! one line on stderr, 2 bad usage.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use serde_json::Value;

use crate::certs::{self, DevIssuer};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, DEV_CERTS_DIR};
use crate::server::Server;

/// writ: attestation in, Cedar decision, short-lived JWT out.
#[derive(Debug, Parser)]
#[command(name = "writ", version, about)]
pub struct Cli {
    /// Configuration file (default: ./writ.toml if present, else dev mode).
    #[arg(long, env = "WRIT_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `writ=debug`.
    #[arg(long, env = "WRIT_LOG", global = true, default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker.
    Serve {
        /// Listen here instead of `server.listen` (e.g. `127.0.0.1:0`).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Walk through attest, mint, a denial and JWKS verification on loopback.
    Demo,
    /// Keep tokens fresh for a workload: files and a loopback endpoint
    /// (configuration from --config, a sidecar.toml).
    Sidecar,
    /// Dev certificates.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Ask a running broker for a token as a dev service account.
    Token(TokenArgs),
    /// The kill switch: revoke tokens and block new ones on a running broker
    /// (admin token from the WRIT_ADMIN_TOKEN environment variable).
    Revoke(revoke::RevokeArgs),
    /// The replicas sharing the broker's store: each one's applied
    /// kill-switch seq and lag (admin token from WRIT_ADMIN_TOKEN).
    Status(status::StatusArgs),
    /// Signing keys of a running broker: rotate, list, revoke (admin token
    /// from the WRIT_ADMIN_TOKEN environment variable).
    Keys(keys::KeysArgs),
    /// Grants waiting for a person: list, approve, deny (admin token from
    /// the WRIT_ADMIN_TOKEN environment variable).
    Approvals(approvals::ApprovalsArgs),
    /// Policy tools.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// What a principal may reach, or who may reach a target, each scope
    /// with the conditions under which policy allows it.
    Access(AccessArgs),
    /// The principals the audit log saw: how they attested, who owns them,
    /// what each was granted and denied, when last seen.
    Inventory(InventoryArgs),
    /// The grants policy permits that the audit log shows unused over a
    /// window, with a suggested policy change (--suggest).
    Rightsize(RightsizeArgs),
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("who").required(true).multiple(true).args(["principal", "target"]))]
struct AccessArgs {
    /// The policy directory (default: policy.dir of the configuration).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The principal, e.g. 'Workload::"spiffe://cluster.local/ns/payments/sa/api"'.
    #[arg(long, value_name = "TYPE::\"ID\"")]
    principal: Option<String>,
    /// Its attested attributes: a JSON object of strings and integers.
    #[arg(long, value_name = "FILE", requires = "principal")]
    attrs: Option<PathBuf>,
    /// The target: with --principal, only it; alone, who may reach it.
    #[arg(long, value_name = "T")]
    target: Option<String>,
    /// An audit log adding the principals it saw (with their recorded
    /// attributes) and the scopes they asked for.
    #[arg(long, value_name = "PATH")]
    audit: Option<PathBuf>,
    /// JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct RightsizeArgs {
    /// The policy directory (default: policy.dir of the configuration).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The audit log (default: audit.path of the configuration).
    #[arg(long, value_name = "PATH")]
    audit: Option<PathBuf>,
    /// The window: a grant used this recently counts as used, e.g. `30d`.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "30d")]
    since: std::time::Duration,
    /// Print a policy diff (a file of forbids) removing the unused grants.
    #[arg(long, conflicts_with_all = ["json", "metrics"])]
    suggest: bool,
    /// Print Prometheus gauges `writ_unused_grants{principal}` (for a
    /// textfile collector).
    #[arg(long, conflicts_with = "json")]
    metrics: bool,
    /// JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct InventoryArgs {
    /// The audit log (default: audit.path of the configuration).
    #[arg(long, value_name = "PATH")]
    audit: Option<PathBuf>,
    /// Only principals whose last token request is at least this old, e.g. `30d`.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    stale: Option<std::time::Duration>,
    /// Policy directory whose entities.json names owners (default:
    /// policy.dir of the configuration).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum CertsCommand {
    /// Generate the dev CA, server certificate and dev issuer (once).
    Init {
        /// Where to write them.
        #[arg(long, default_value = DEV_CERTS_DIR)]
        dir: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct TokenArgs {
    /// The dev service account to act as, NAMESPACE/NAME.
    #[arg(long = "as", value_name = "NAMESPACE/NAME")]
    as_account: String,
    /// The target.
    #[arg(long, required_unless_present = "print_subject_token")]
    audience: Option<String>,
    /// Scopes (repeat the flag or separate with spaces).
    #[arg(long, required_unless_present = "print_subject_token")]
    scope: Vec<String>,
    /// Print the signed dev service-account token instead of exchanging it
    /// (for curl and load tests).
    #[arg(long)]
    print_subject_token: bool,
    /// Requested lifetime in seconds.
    #[arg(long)]
    ttl: Option<u64>,
    #[command(flatten)]
    broker: BrokerArgs,
    /// Directory with the dev issuer key (and the dev CA).
    #[arg(long, default_value = DEV_CERTS_DIR)]
    certs: PathBuf,
    /// Print the token's claims as JSON instead of the token.
    #[arg(long)]
    decode: bool,
    /// Bind the token to a fresh in-memory key with DPoP (RFC 9449). The key
    /// dies with this command, so the printed token is only good for showing
    /// the binding (`--decode`).
    #[arg(long)]
    dpop: bool,
}

/// Where a running broker is, and which CA to trust for it.
#[derive(Debug, clap::Args)]
pub(crate) struct BrokerArgs {
    /// Broker URL (default: the configured issuer, else https://<server.listen>).
    #[arg(long, global = true)]
    server: Option<String>,
    /// CA to trust for the broker (default: certs/ca.pem).
    #[arg(long, global = true)]
    ca: Option<PathBuf>,
}

impl BrokerArgs {
    /// The broker's base URL and a client trusting its CA.
    pub(crate) fn connect(
        &self,
        config: &Config,
        certs_dir: &Path,
    ) -> Result<(String, reqwest::Client), CliError> {
        let server = self.server.clone().unwrap_or_else(|| {
            config
                .server
                .issuer
                .clone()
                .unwrap_or_else(|| format!("https://{}", config.server.listen))
        });
        let ca = self
            .ca
            .clone()
            .unwrap_or_else(|| certs_dir.join(certs::CA_CERT));
        Ok((server.trim_end_matches('/').to_owned(), https_client(&ca)?))
    }
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Load and validate a policy directory.
    Check {
        /// The directory (default: policy.dir of the configuration).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Run policy test files (default DIR/tests/*.toml): exit 1 with a diff
    /// per failing case.
    Test {
        /// The directory (default: policy.dir of the configuration).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Test files (TOML, [[case]]).
        files: Vec<PathBuf>,
    },
    /// Explain the decision on a described request, or re-evaluate a
    /// recorded one, scope by scope.
    Explain {
        /// The directory (default: policy.dir of the configuration).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The request: JSON with principal, target, scopes, context.
        #[arg(
            long,
            required_unless_present = "decision",
            conflicts_with = "decision"
        )]
        request: Option<PathBuf>,
        /// A recorded decision to re-evaluate, by its decision_id.
        #[arg(long, value_name = "ID")]
        decision: Option<String>,
        /// The audit log holding the decision (default: audit.path of the
        /// configuration).
        #[arg(long, value_name = "PATH", requires = "decision")]
        audit: Option<PathBuf>,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The recorded token requests whose verdict would change from the
    /// policies in OLD_DIR to those in NEW_DIR, scope by scope.
    Diff {
        /// The policies the requests are compared from.
        old_dir: PathBuf,
        /// The policies they are compared to.
        new_dir: PathBuf,
        /// The audit log to replay (default: audit.path of the configuration).
        #[arg(long, value_name = "PATH")]
        audit: Option<PathBuf>,
        /// Only the last N decided token requests of the log.
        #[arg(long, value_name = "N")]
        last: Option<usize>,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Verify the hash chain of an audit log.
    Verify {
        /// The log (default: audit.path of the configuration).
        #[arg(conflicts_with = "store")]
        path: Option<PathBuf>,
        /// Check the chain even though the head file beside the log is gone
        /// (records cut from the end then go unseen).
        #[arg(long)]
        no_head: bool,
        /// Check every replica's chain in this PostgreSQL store instead of a
        /// file (`postgres://…`; e.g. the configuration's store.url).
        #[arg(long, value_name = "URL")]
        store: Option<String>,
    },
}

/// A failure to report on stderr as one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CliError(String);

impl CliError {
    fn new(e: impl std::fmt::Display) -> Self {
        Self(e.to_string().replace('\n', " "))
    }
}

/// Parses arguments, runs the subcommand, and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse(); // exits 2 on bad usage
    // The demo speaks on stdout; keep the server's own log to warnings unless asked.
    let quiet_demo = matches!(cli.command, Command::Demo)
        && std::env::var_os("WRIT_LOG").is_none()
        && cli.log == "info";
    init_tracing(if quiet_demo { "warn" } else { &cli.log });
    crate::install_crypto_provider();
    // The sidecar is I/O-bound and should stay small: one thread is plenty.
    let mut builder = match cli.command {
        Command::Sidecar => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("writ: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("writ: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve { listen } => serve(cli.config.as_deref(), listen).await,
        Command::Demo => crate::cli::demo::run().await,
        Command::Sidecar => {
            let path = cli.config.as_deref().ok_or_else(|| {
                CliError::new("writ sidecar needs --config <sidecar.toml> (or WRIT_CONFIG)")
            })?;
            let config = writ_sidecar::SidecarConfig::load(path).map_err(CliError::new)?;
            let running = writ_sidecar::start(config).await.map_err(CliError::new)?;
            println!("writ sidecar listening on http://{}", running.addr);
            running.wait().await;
            Ok(())
        }
        Command::Certs {
            command: CertsCommand::Init { dir },
        } => {
            let written = certs::init(&dir).map_err(CliError::new)?;
            if written.is_empty() {
                println!("{}: dev material already present", dir.display());
            }
            for f in written {
                println!("wrote {}", f.display());
            }
            Ok(())
        }
        Command::Token(args) => token(cli.config.as_deref(), args).await,
        Command::Revoke(args) => {
            let config = Config::discover(cli.config.as_deref()).map_err(CliError::new)?;
            revoke::run(&config, args).await
        }
        Command::Status(args) => {
            let config = Config::discover(cli.config.as_deref()).map_err(CliError::new)?;
            status::run(&config, args).await
        }
        Command::Keys(args) => {
            let config = Config::discover(cli.config.as_deref()).map_err(CliError::new)?;
            keys::run(&config, args).await
        }
        Command::Approvals(args) => {
            let config = Config::discover(cli.config.as_deref()).map_err(CliError::new)?;
            approvals::run(&config, args).await
        }
        Command::Policy {
            command: PolicyCommand::Check { dir },
        } => {
            let dir = match dir {
                Some(d) => d,
                None => {
                    Config::discover(cli.config.as_deref())
                        .map_err(CliError::new)?
                        .policy
                        .dir
                }
            };
            let snapshot = crate::policy::PolicySnapshot::load(&dir).map_err(CliError::new)?;
            println!(
                "ok: {} policies in {}",
                snapshot.policy_count(),
                dir.display()
            );
            Ok(())
        }
        Command::Policy {
            command: PolicyCommand::Test { dir, files },
        } => {
            let config = Config::discover(cli.config.as_deref()).map_err(CliError::new)?;
            let dir = dir.unwrap_or_else(|| config.policy.dir.clone());
            policy::test(&dir, files, &config)
        }
        Command::Policy {
            command:
                PolicyCommand::Explain {
                    dir,
                    request,
                    decision,
                    audit,
                    json,
                },
        } => {
            let config = Config::discover(cli.config.as_deref()).map_err(CliError::new)?;
            let dir = dir.unwrap_or_else(|| config.policy.dir.clone());
            match (request, decision) {
                (Some(request), _) => policy::explain(&dir, &request, json, &config),
                (None, Some(id)) => {
                    let audit = audit.unwrap_or_else(|| config.audit.path.clone());
                    replay::explain_decision(&dir, &audit, &id, json, &config)
                }
                (None, None) => Err(CliError::new("name --request FILE or --decision ID")),
            }
        }
        Command::Policy {
            command:
                PolicyCommand::Diff {
                    old_dir,
                    new_dir,
                    audit,
                    last,
                    json,
                },
        } => {
            let config = Config::discover(cli.config.as_deref()).map_err(CliError::new)?;
            let audit = audit.unwrap_or_else(|| config.audit.path.clone());
            replay::diff(&old_dir, &new_dir, &audit, last, json, &config)
        }
        Command::Access(args) => {
            let config = Config::discover(cli.config.as_deref()).map_err(CliError::new)?;
            access::run(access::AccessQuery {
                dir: args.dir.unwrap_or_else(|| config.policy.dir.clone()),
                principal: args.principal,
                attrs: args.attrs,
                target: args.target,
                audit: args.audit,
                json: args.json,
            })
        }
        Command::Inventory(args) => {
            let config = Config::discover(cli.config.as_deref()).map_err(CliError::new)?;
            inventory(&config, args)
        }
        Command::Rightsize(args) => {
            let config = Config::discover(cli.config.as_deref()).map_err(CliError::new)?;
            rightsize::run(rightsize::RightsizeQuery {
                dir: args.dir.unwrap_or_else(|| config.policy.dir.clone()),
                audit: args.audit.unwrap_or_else(|| config.audit.path.clone()),
                since: args.since,
                suggest: args.suggest,
                metrics: args.metrics,
                json: args.json,
            })
        }
        Command::Audit {
            command: AuditCommand::Verify {
                store: Some(url), ..
            },
        } => verify_store_audit(&url).await,
        Command::Audit {
            command: AuditCommand::Verify { path, no_head, .. },
        } => {
            let path = match path {
                Some(p) => p,
                None => {
                    Config::discover(cli.config.as_deref())
                        .map_err(CliError::new)?
                        .audit
                        .path
                }
            };
            let n = crate::audit::verify_file(&path, !no_head)
                .map_err(|e| CliError::new(format!("{}: {e}", path.display())))?;
            println!("ok: {n} records, chain intact");
            Ok(())
        }
    }
}

/// `writ inventory`: the principals of the audit log, a table or JSON lines.
fn inventory(config: &Config, args: InventoryArgs) -> Result<(), CliError> {
    let owners = match &args.dir {
        Some(dir) => Some(crate::policy::PolicySnapshot::load(dir).map_err(CliError::new)?),
        // The configured directory is a convenience: without it owners
        // come only from attested attributes.
        None => match crate::policy::PolicySnapshot::load(&config.policy.dir) {
            Ok(snapshot) => Some(snapshot),
            Err(e) => {
                eprintln!("writ: warning: no owners from entities.json: {e}");
                None
            }
        },
    };
    let audit = args.audit.unwrap_or_else(|| config.audit.path.clone());
    let read = crate::inventory::read(&audit, |e| eprintln!("writ: warning: {e}; skipped"))
        .map_err(CliError::new)?;
    if read.unreadable > 0 {
        eprintln!(
            "writ: warning: {}: {} unreadable line(s) skipped",
            audit.display(),
            read.unreadable
        );
    }
    let principals = read.finish(owners.as_ref(), args.stale, SystemClock.unix_now());
    if args.json {
        for p in &principals {
            println!("{}", serde_json::to_string(p).map_err(CliError::new)?);
        }
    } else {
        print!("{}", crate::inventory::table(&principals));
        let unowned = principals.iter().filter(|p| p.owner.is_none()).count();
        if unowned > 0 {
            eprintln!("writ: {unowned} principal(s) have no owner");
        }
    }
    Ok(())
}

/// `writ audit verify --store URL`: every replica's chain, one line each.
async fn verify_store_audit(url: &str) -> Result<(), CliError> {
    if !crate::store::is_postgres(url) {
        return Err(CliError::new(
            "--store takes a postgres:// URL (a SQLite store's log is the audit file)",
        ));
    }
    let chains = crate::store::audit_chains(url)
        .await
        .map_err(CliError::new)?;
    for chain in &chains {
        let n = crate::audit::verify_replica_chain(
            &chain.replica_id,
            &chain.records,
            chain.head.as_ref(),
        )
        .map_err(CliError::new)?;
        println!(
            "ok: replica {}: {n} records, chain intact",
            chain.replica_id
        );
    }
    println!("ok: {} replica chains", chains.len());
    Ok(())
}

async fn serve(
    config_path: Option<&Path>,
    listen: Option<std::net::SocketAddr>,
) -> Result<(), CliError> {
    let mut config = Config::discover(config_path).map_err(CliError::new)?;
    if let Some(addr) = listen {
        config.server.listen = addr;
        config.validate().map_err(CliError::new)?;
    }
    if config.dev_mode {
        dev::prepare(&mut config)?;
    }
    let running = Server::new(config, Arc::new(SystemClock))
        .start()
        .await
        .map_err(CliError::new)?;
    // The one line on stdout: scripts and tests wait for it.
    println!("writ listening on https://{}", running.addr());
    running.until_signalled().await;
    Ok(())
}

async fn token(config_path: Option<&Path>, args: TokenArgs) -> Result<(), CliError> {
    let config = Config::discover(config_path).map_err(CliError::new)?;
    let (namespace, account) = args
        .as_account
        .split_once('/')
        .filter(|(n, a)| !n.is_empty() && !a.is_empty())
        .ok_or_else(|| CliError::new("--as must be NAMESPACE/NAME"))?;
    let issuer = DevIssuer::load(&args.certs).map_err(CliError::new)?;
    let subject_token = issuer
        .service_account_token(namespace, account, SystemClock.unix_now(), 3600)
        .map_err(CliError::new)?;
    if args.print_subject_token {
        println!("{subject_token}");
        return Ok(());
    }
    let audience = args.audience.as_deref().unwrap_or_default();
    let (server, client) = args.broker.connect(&config, &args.certs)?;
    let dpop = if args.dpop {
        Some(writ_proto::dpop::DpopKey::generate().map_err(CliError::new)?)
    } else {
        None
    };
    let access_token = exchange(
        &client,
        &server,
        &subject_token,
        audience,
        &args.scope.join(" "),
        args.ttl,
        dpop.as_ref(),
    )
    .await?;
    if args.decode {
        let claims = decode_claims(&access_token)
            .ok_or_else(|| CliError::new("the minted token is not a JWT"))?;
        println!(
            "{}",
            serde_json::to_string_pretty(&claims).unwrap_or_default()
        );
    } else {
        println!("{access_token}");
    }
    Ok(())
}

/// An HTTPS client trusting only `ca`.
pub(crate) fn https_client(ca: &Path) -> Result<reqwest::Client, CliError> {
    let pem = std::fs::read(ca).map_err(|e| CliError::new(format!("{}: {e}", ca.display())))?;
    let cert = reqwest::Certificate::from_pem(&pem)
        .map_err(|e| CliError::new(format!("{}: {e}", ca.display())))?;
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(cert)
        .build()
        .map_err(CliError::new)
}

/// Exchanges a subject token, with a DPoP proof by `dpop` if given; returns
/// the access token or the RFC 6749 error as text.
pub(crate) async fn exchange(
    client: &reqwest::Client,
    server: &str,
    subject_token: &str,
    audience: &str,
    scope: &str,
    ttl: Option<u64>,
    dpop: Option<&writ_proto::dpop::DpopKey>,
) -> Result<String, CliError> {
    let ttl = ttl.map(|t| t.to_string());
    let mut form = vec![
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        ("subject_token", subject_token),
        ("audience", audience),
        ("scope", scope),
    ];
    if let Some(t) = ttl.as_deref() {
        form.push(("requested_ttl", t));
    }
    let url = format!("{}/oauth2/token", server.trim_end_matches('/'));
    let mut request = client.post(&url).form(&form);
    if let Some(key) = dpop {
        request = request.header(
            "DPoP",
            key.proof("POST", &url, None).map_err(CliError::new)?,
        );
    }
    let resp = request
        .send()
        .await
        .map_err(|e| CliError::new(format!("POST {url}: {e}")))?;
    let body = json_or_error(resp, &url).await?;
    body.get("access_token")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| CliError::new("response has no access_token"))
}

/// The JSON body of a successful response, or its RFC 6749 error as one line.
/// Sends `request` with the admin bearer `token` and reads its JSON answer,
/// or the broker's error as one line.
pub(crate) async fn admin_json(
    request: reqwest::RequestBuilder,
    token: &str,
    url: &str,
) -> Result<Value, CliError> {
    let resp = request
        .bearer_auth(token)
        .send()
        .await
        .map_err(CliError::new)?;
    json_or_error(resp, url).await
}

pub(crate) async fn json_or_error(resp: reqwest::Response, url: &str) -> Result<Value, CliError> {
    let status = resp.status();
    let text = resp
        .text()
        .await
        .map_err(|e| CliError::new(format!("{url}: {status}: {e}")))?;
    let body: Value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).map_err(|e| CliError::new(format!("{url}: {status}: {e}")))?
    };
    if status.is_success() {
        return Ok(body);
    }
    let field = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_owned()
    };
    Err(CliError::new(format!(
        "{} {}: {} (decision {})",
        status.as_u16(),
        field("error"),
        field("error_description"),
        field("decision_id")
    )))
}

/// The claims of a JWT, without verifying it (display only).
pub(crate) fn decode_claims(token: &str) -> Option<Value> {
    writ_proto::jws::decode_segment(writ_proto::jws::Compact::split(token)?.payload)
}

mod access;
mod approvals;
mod demo;
mod dev;
mod keys;
mod policy;
mod replay;
mod revoke;
mod rightsize;
mod status;
mod table;
