//! `writ policy explain --request FILE.json`: the verdict on each scope of
//! a described request, the policies that decided it, the ones that failed
//! to evaluate, and the lifetime cap (a table, or JSON lines). `writ policy
//! test`: policy test files run against a directory, a diff per failure.

use std::io::Read;
use std::path::Path;

use super::CliError;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::policy::{ExplainRequest, PolicySnapshot, ScopeExplanation};

/// A request file larger than this is refused unread.
const MAX_REQUEST_BYTES: u64 = 1 << 20;

/// Runs `writ policy explain`.
pub fn explain(dir: &Path, request: &Path, json: bool, config: &Config) -> Result<(), CliError> {
    let mut text = String::new();
    std::fs::File::open(request)
        .and_then(|f| f.take(MAX_REQUEST_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| CliError::new(format!("{}: {e}", request.display())))?;
    if text.len() as u64 > MAX_REQUEST_BYTES {
        return Err(CliError::new(format!(
            "{}: larger than {MAX_REQUEST_BYTES} bytes",
            request.display()
        )));
    }
    let req: ExplainRequest = serde_json::from_str(&text)
        .map_err(|e| CliError::new(format!("{}: {e}", request.display())))?;
    let snapshot = PolicySnapshot::load(dir).map_err(CliError::new)?;
    let answers = snapshot
        .explain(
            &req,
            SystemClock.unix_now(),
            config.tokens.default_ttl.as_secs(),
        )
        .map_err(|e| CliError::new(format!("{}: {e}", request.display())))?;
    if json {
        for answer in &answers {
            println!("{}", serde_json::to_string(answer).map_err(CliError::new)?);
        }
    } else {
        print!("{}", table(&answers));
    }
    Ok(())
}

/// One line per scope; the deciding policies with their files.
pub(super) fn table(answers: &[ScopeExplanation]) -> String {
    let mut out = format!(
        "{:<24} {:<8} {:>8}  {}\n",
        "SCOPE", "DECISION", "MAX_TTL", "DETERMINING POLICIES (FILE)"
    );
    for a in answers {
        let policies = match a.policies.is_empty() {
            true => "none (nothing permits it)".to_owned(),
            false => a
                .policies
                .iter()
                .map(|id| match a.sources.get(id) {
                    Some(file) => format!("{id} ({file})"),
                    None => id.clone(),
                })
                .collect::<Vec<_>>()
                .join(", "),
        };
        let ttl = a
            .max_ttl
            .map_or_else(|| "-".to_owned(), |t| format!("{t}s"));
        out += &format!("{:<24} {:<8} {:>8}  {policies}\n", a.scope, a.decision, ttl);
        for error in &a.errors {
            out += &format!("{:<24} error: {error}\n", "");
        }
    }
    out
}

/// Runs `writ policy test`: `files`, or every `DIR/tests/*.toml`. Exit 1
/// (an error) when a case fails or no case was found.
pub fn test(dir: &Path, files: Vec<std::path::PathBuf>, config: &Config) -> Result<(), CliError> {
    let files = match files.is_empty() {
        false => files,
        true => {
            let tests = dir.join("tests");
            let mut found: Vec<_> = std::fs::read_dir(&tests)
                .map_err(|e| CliError::new(format!("{}: {e}", tests.display())))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            found.sort();
            found
        }
    };
    let snapshot = PolicySnapshot::load(dir).map_err(CliError::new)?;
    let now = SystemClock.unix_now();
    let default_ttl = config.tokens.default_ttl.as_secs();
    let (mut cases, mut failures) = (0, Vec::new());
    for file in &files {
        let parsed = crate::policy::read_case_file(file).map_err(CliError::new)?;
        cases += parsed.cases.len();
        failures.extend(snapshot.run_cases(file, &parsed.cases, now, default_ttl));
    }
    if cases == 0 {
        return Err(CliError::new(format!(
            "no [[case]] in {} file(s): nothing was tested",
            files.len()
        )));
    }
    for failure in &failures {
        print!("{failure}");
    }
    if failures.is_empty() {
        println!("ok: {cases} cases in {} file(s) hold", files.len());
        Ok(())
    } else {
        Err(CliError::new(format!(
            "{} of {cases} cases failed",
            failures.len()
        )))
    }
}
