//! Recorded decisions decided again: `writ policy explain --decision ID`
//! (one decision from the audit log, re-evaluated against a policy
//! directory, with what the log did not record) and `writ policy diff`
//! (every recorded token request whose verdict would change between two
//! policy directories). Both stream the log; unreadable lines are reported
//! by number and skipped.

use std::collections::VecDeque;
use std::path::Path;

use serde::Serialize;

use super::CliError;
use super::policy::table;
use crate::audit::{ReadError, Recorded, records};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::policy::{Change, Differ, PolicySnapshot, Replay, ScopeExplanation, Skipped};

/// One scope of a re-evaluated decision, as `--json` prints it.
#[derive(Serialize)]
struct Reevaluated<'a> {
    decision_id: &'a str,
    /// What the log says Cedar decided then.
    recorded: &'static str,
    #[serde(flatten)]
    now: &'a ScopeExplanation,
}

/// Runs `writ policy explain --decision ID --audit PATH`.
pub fn explain_decision(
    dir: &Path,
    audit: &Path,
    id: &str,
    json: bool,
    config: &Config,
) -> Result<(), CliError> {
    let mut unreadable = Vec::new();
    let mut found = None;
    for item in records(audit).map_err(CliError::new)? {
        match item {
            Ok(record) if record.decision_id == id => {
                found = Some(record);
                break;
            }
            Ok(_) => {}
            Err(e @ ReadError::Line { .. }) => {
                eprintln!("writ: warning: {e}; skipped");
                unreadable.push(e);
            }
            Err(e) => return Err(CliError::new(e)),
        }
    }
    let Some(record) = found else {
        let also = match unreadable.len() {
            0 => String::new(),
            n => format!(" ({n} unreadable line(s) skipped)"),
        };
        return Err(CliError::new(format!(
            "no decision {id} in {}{also}",
            audit.display()
        )));
    };
    let replay = Replay::of(&record).map_err(CliError::new)?;
    let snapshot = PolicySnapshot::load(dir).map_err(CliError::new)?;
    let answers = snapshot
        .explain(
            &replay.request,
            SystemClock.unix_now(),
            config.tokens.default_ttl.as_secs(),
        )
        .map_err(|e| CliError::new(format!("decision {id}: {e}")))?;
    let recorded = |scope: &str| match record.scopes_granted.iter().any(|s| s == scope) {
        true => "allow",
        false => "deny",
    };
    if json {
        for answer in &answers {
            let line = Reevaluated {
                decision_id: id,
                recorded: recorded(&answer.scope),
                now: answer,
            };
            println!("{}", serde_json::to_string(&line).map_err(CliError::new)?);
        }
        for note in &replay.unrecorded {
            eprintln!("writ: not recorded: {note}");
        }
        return Ok(());
    }
    let request = &replay.request;
    println!(
        "decision {id} at {}: {}::{:?} asked {} for {}",
        record.time,
        request.principal.entity_type,
        request.principal.id,
        request.target,
        request.scopes.join(" ")
    );
    let outcome = match &record.error {
        Some(error) => format!("{} ({error})", record.decision),
        None => record.decision.clone(),
    };
    println!(
        "recorded: {outcome}; granted [{}]; policies [{}]",
        record.scopes_granted.join(" "),
        record.policies.join(", ")
    );
    println!("decided again against {}:", dir.display());
    print!("{}", table(&answers));
    for answer in &answers {
        let then = recorded(&answer.scope);
        if then != answer.decision {
            println!(
                "changed: {} was {then}, is now {}",
                answer.scope, answer.decision
            );
        }
    }
    for note in &replay.unrecorded {
        println!("not recorded: {note}");
    }
    Ok(())
}

/// Counts of what `writ policy diff` read.
#[derive(Default)]
struct Tally {
    compared: u64,
    changes: u64,
    unreadable: u64,
    undecidable: u64,
}

/// Runs `writ policy diff OLD_DIR NEW_DIR --audit PATH [--last N]`.
pub fn diff(
    old_dir: &Path,
    new_dir: &Path,
    audit: &Path,
    last: Option<usize>,
    json: bool,
    config: &Config,
) -> Result<(), CliError> {
    for dir in [old_dir, new_dir] {
        if !dir.is_dir() {
            return Err(CliError::new(format!(
                "{}: not a policy directory",
                dir.display()
            )));
        }
    }
    let old = PolicySnapshot::load(old_dir).map_err(|e| CliError::new(format!("old: {e}")))?;
    let new = PolicySnapshot::load(new_dir).map_err(|e| CliError::new(format!("new: {e}")))?;
    let differ = Differ::new(
        &old,
        &new,
        SystemClock.unix_now(),
        config.tokens.default_ttl.as_secs(),
    );
    let mut tally = Tally::default();
    let mut out = Output::new(json);
    // With --last only the newest N decided requests are kept while reading.
    let mut window: VecDeque<Recorded> = VecDeque::new();
    for item in records(audit).map_err(CliError::new)? {
        let record = match item {
            Ok(record) if record.is_replayable_mint() => record,
            Ok(_) => continue,
            Err(e @ ReadError::Line { .. }) => {
                eprintln!("writ: warning: {e}; skipped");
                tally.unreadable += 1;
                continue;
            }
            Err(e) => return Err(CliError::new(e)),
        };
        match last {
            Some(n) => {
                if window.len() == n {
                    window.pop_front();
                }
                if n > 0 {
                    window.push_back(record);
                }
            }
            None => compare(&differ, &record, &mut tally, &mut out)?,
        }
    }
    for record in &window {
        compare(&differ, record, &mut tally, &mut out)?;
    }
    eprintln!(
        "writ: {} token requests replayed, {} scope verdicts change, {} unreadable lines, {} not decidable",
        tally.compared, tally.changes, tally.unreadable, tally.undecidable
    );
    Ok(())
}

fn compare(
    differ: &Differ<'_>,
    record: &Recorded,
    tally: &mut Tally,
    out: &mut Output,
) -> Result<(), CliError> {
    match differ.changes(record) {
        Ok(changes) => {
            tally.compared += 1;
            for change in &changes {
                tally.changes += 1;
                out.line(change)?;
            }
        }
        Err(Skipped::NotDecided) => {}
        Err(e) => {
            eprintln!("writ: warning: {e}; skipped");
            tally.undecidable += 1;
        }
    }
    Ok(())
}

/// The listing: JSON lines, or a table under its header. Rows are printed as they come (the log is streamed), so columns are
/// fixed-width and a long value widens only its own row.
struct Output {
    json: bool,
    header_done: bool,
}

impl Output {
    fn new(json: bool) -> Self {
        let mut out = Self {
            json,
            header_done: json,
        };
        out.header();
        out
    }

    fn header(&mut self) {
        if !self.header_done {
            self.header_done = true;
            println!(
                "{:<36} {:<16} {:<5} {:<5} {:<16} PRINCIPAL",
                "DECISION_ID", "SCOPE", "OLD", "NEW", "TARGET"
            );
        }
    }

    fn line(&mut self, change: &Change) -> Result<(), CliError> {
        if self.json {
            println!("{}", serde_json::to_string(change).map_err(CliError::new)?);
            return Ok(());
        }
        println!(
            "{:<36} {:<16} {:<5} {:<5} {:<16} {}",
            change.decision_id,
            change.scope,
            change.old,
            change.new,
            change.target,
            change.principal
        );
        Ok(())
    }
}
