//! `writ policy test`: policy test files (TOML, `[[case]]` of a described
//! request and the expected verdict on its one scope), run against a policy
//! directory by the same code as `writ policy explain` (CONTRACT section 10).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::explain::{ExplainContext, ExplainPrincipal, ExplainRequest};
use super::load::PolicySnapshot;

/// A test file is refused past this size, unread.
pub const MAX_CASE_FILE_BYTES: u64 = 4 << 20;

/// One policy test file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// Its cases, in order.
    #[serde(rename = "case", default)]
    pub cases: Vec<Case>,
}

/// One request and the verdict it must get.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// What it checks, for the report.
    pub name: String,
    /// Who asks (as in `writ policy explain`).
    pub principal: ExplainPrincipal,
    /// The target.
    pub target: String,
    /// The one scope decided.
    pub scope: String,
    /// Context values; missing ones take their defaults.
    #[serde(default)]
    pub context: ExplainContext,
    /// The verdict the policies must give.
    pub expect: Expect,
}

/// An expected verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// Cedar allows the scope.
    Allow,
    /// Cedar denies it.
    Deny,
}

impl Expect {
    fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// A case whose verdict differs from its expectation (or that could not
/// be decided), with what decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The file.
    pub file: PathBuf,
    /// The case's name.
    pub name: String,
    /// Expected verdict.
    pub expected: &'static str,
    /// The verdict, or why there was none.
    pub got: String,
    /// The determining policies, with their files.
    pub policies: Vec<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "FAIL {} ({})", self.name, self.file.display())?;
        writeln!(f, "  - expected: {}", self.expected)?;
        writeln!(f, "  + got:      {}", self.got)?;
        if !self.policies.is_empty() {
            writeln!(f, "    decided by: {}", self.policies.join(", "))?;
        }
        Ok(())
    }
}

/// Why test files could not be run at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CasesError {
    /// A file could not be read.
    #[error("{path}: {why}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// A file is not a valid test file.
    #[error("{path}: {why}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, naming the key and line.
        why: String,
    },
}

/// Reads one test file, bounded.
pub fn read_case_file(path: &Path) -> Result<CaseFile, CasesError> {
    use std::io::Read;
    let read = |why: String| CasesError::Read {
        path: path.to_owned(),
        why,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CASE_FILE_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| read(e.to_string()))?;
    if text.len() as u64 > MAX_CASE_FILE_BYTES {
        return Err(read(format!("larger than {MAX_CASE_FILE_BYTES} bytes")));
    }
    toml::from_str(&text).map_err(|e| CasesError::Parse {
        path: path.to_owned(),
        why: e.to_string(),
    })
}

impl PolicySnapshot {
    /// Runs `cases` (from `file`) at `now`, asking for `default_ttl`
    /// seconds unless a case says otherwise; the failures, in order.
    pub fn run_cases(
        &self,
        file: &Path,
        cases: &[Case],
        now: u64,
        default_ttl: u64,
    ) -> Vec<Failure> {
        cases
            .iter()
            .filter_map(|case| {
                let request = ExplainRequest {
                    principal: case.principal.clone(),
                    target: case.target.clone(),
                    scopes: vec![case.scope.clone()],
                    context: case.context.clone(),
                };
                let fail = |got: String, policies: Vec<String>| Failure {
                    file: file.to_owned(),
                    name: case.name.clone(),
                    expected: case.expect.as_str(),
                    got,
                    policies,
                };
                match self.explain(&request, now, default_ttl) {
                    Err(e) => Some(fail(format!("no decision ({e})"), Vec::new())),
                    Ok(answers) => {
                        let answer = answers.into_iter().next()?;
                        (answer.decision != case.expect.as_str()).then(|| {
                            let sources: BTreeMap<_, _> = answer.sources;
                            let policies = answer
                                .policies
                                .iter()
                                .map(|id| match sources.get(id) {
                                    Some(file) => format!("{id} ({file})"),
                                    None => id.clone(),
                                })
                                .collect();
                            fail(answer.decision.to_owned(), policies)
                        })
                    }
                }
            })
            .collect()
    }
}
