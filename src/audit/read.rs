//! Reading the decision log back: one [`Recorded`] per line, streamed (the
//! log is never loaded whole), each unreadable line reported with its
//! number instead of stopping the read. `writ policy explain --decision`,
//! `writ policy diff` and `writ inventory` all read through here.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A line longer than this is reported as unreadable and skipped unread.
const MAX_LINE_BYTES: u64 = 1 << 20;

/// One decision as the log recorded it. Fields a record of an older
/// writ lacks are empty (`None`, no attributes).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Recorded {
    /// `mint`, `introspect`, `revoke`, `explain`, ...
    pub action: String,
    /// The id the client saw.
    pub decision_id: String,
    /// RFC 3339, UTC.
    pub time: String,
    /// The attested principal's id.
    pub principal: Option<String>,
    /// Its Cedar entity type (recorded since writ added least-privilege tools).
    pub principal_type: Option<String>,
    /// Its attributes (likewise).
    pub attrs: BTreeMap<String, serde_json::Value>,
    /// How it attested.
    pub attestation: Option<String>,
    /// The caller's address.
    pub source_ip: String,
    /// The target.
    pub target: Option<String>,
    /// Scopes asked for.
    pub scopes_requested: Vec<String>,
    /// Scopes granted.
    pub scopes_granted: Vec<String>,
    /// The lifetime asked for, in seconds.
    pub requested_ttl: Option<u64>,
    /// Whether the token was to be bound to a key.
    pub sender_constrained: Option<bool>,
    /// Hops of delegation.
    pub delegation_depth: Option<u32>,
    /// A transaction token request's requesting workload.
    pub txn_requester: Option<String>,
    /// And its call chain's length.
    pub txn_chain: Option<u32>,
    /// `allow` or `deny`.
    pub decision: String,
    /// Determining policy ids.
    pub policies: Vec<String>,
    /// The RFC 6749 error of a refusal.
    pub error: Option<String>,
    /// The delegation chain, newest actor first.
    pub act: Vec<String>,
    /// The acting agent as Cedar saw it, when delegated (recorded since
    /// writ added least-privilege tools).
    pub actor: Option<RecordedParty>,
}

/// A party of a recorded decision: `{"type", "id", "attrs"}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RecordedParty {
    /// Its Cedar entity type.
    #[serde(rename = "type")]
    pub entity_type: String,
    /// Its id.
    pub id: String,
    /// Its attested attributes.
    pub attrs: BTreeMap<String, serde_json::Value>,
}

impl Recorded {
    /// Whether this is a token request that reached a principal and a target
    /// with scopes: the requests Cedar decides, which can be decided again.
    pub fn is_replayable_mint(&self) -> bool {
        self.action == "mint"
            && self.principal.is_some()
            && self.target.is_some()
            && !self.scopes_requested.is_empty()
    }

    /// The principal's entity type: as recorded, or for a record of an older
    /// writ guessed (SPIFFE ids and workload attestations are `Workload`,
    /// the rest `User`), with whether it was guessed.
    pub fn principal_type_or_guess(&self) -> (&str, bool) {
        if let Some(t) = &self.principal_type {
            return (t, false);
        }
        let workload = matches!(
            self.attestation.as_deref(),
            Some("kubernetes" | "mtls" | "unix")
        ) || self
            .principal
            .as_deref()
            .is_some_and(|p| p.starts_with("spiffe://"));
        (if workload { "Workload" } else { "User" }, true)
    }

    /// The issuer that vouched for the principal, when recorded.
    pub fn issuer(&self) -> Option<&str> {
        self.attrs.get("issuer").and_then(serde_json::Value::as_str)
    }
}

/// Why a line of the log could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The log could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The log.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// One line is not an audit record; the others are still read.
    #[error("{path}:{line}: {why}")]
    Line {
        /// The log.
        path: PathBuf,
        /// Its number, from 1.
        line: u64,
        /// What is wrong with it.
        why: String,
    },
}

/// The records of a log file, in order, each unreadable line an `Err` of
/// [`ReadError::Line`] (reading goes on after it); an I/O failure ends it.
pub struct Records {
    path: PathBuf,
    reader: BufReader<std::fs::File>,
    line: u64,
    buf: Vec<u8>,
    done: bool,
}

/// Opens the log at `path` for reading record by record.
pub fn records(path: &Path) -> Result<Records, ReadError> {
    let file = std::fs::File::open(path).map_err(|source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Records {
        path: path.to_path_buf(),
        reader: BufReader::new(file),
        line: 0,
        buf: Vec::new(),
        done: false,
    })
}

impl Records {
    fn bad_line(&self, why: impl Into<String>) -> ReadError {
        ReadError::Line {
            path: self.path.clone(),
            line: self.line,
            why: why.into(),
        }
    }

    /// Skips what is left of an over-long line.
    fn skip_rest_of_line(&mut self) -> std::io::Result<()> {
        loop {
            let available = self.reader.fill_buf()?;
            if available.is_empty() {
                return Ok(());
            }
            match available.iter().position(|&b| b == b'\n') {
                Some(at) => {
                    self.reader.consume(at + 1);
                    return Ok(());
                }
                None => {
                    let n = available.len();
                    self.reader.consume(n);
                }
            }
        }
    }
}

impl Iterator for Records {
    type Item = Result<Recorded, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            self.buf.clear();
            let read = (&mut self.reader)
                .take(MAX_LINE_BYTES + 1)
                .read_until(b'\n', &mut self.buf);
            let n = match read {
                Ok(n) => n,
                Err(source) => {
                    self.done = true;
                    return Some(Err(ReadError::Io {
                        path: self.path.clone(),
                        source,
                    }));
                }
            };
            if n == 0 {
                self.done = true;
                return None;
            }
            self.line += 1;
            if self.buf.last() != Some(&b'\n') && n as u64 > MAX_LINE_BYTES {
                if let Err(source) = self.skip_rest_of_line() {
                    self.done = true;
                    return Some(Err(ReadError::Io {
                        path: self.path.clone(),
                        source,
                    }));
                }
                return Some(Err(
                    self.bad_line(format!("longer than {MAX_LINE_BYTES} bytes"))
                ));
            }
            let text = match std::str::from_utf8(&self.buf) {
                Ok(text) => text.trim(),
                Err(_) => return Some(Err(self.bad_line("not UTF-8"))),
            };
            if text.is_empty() {
                continue;
            }
            return Some(
                serde_json::from_str::<Recorded>(text)
                    .map_err(|e| self.bad_line(format!("not an audit record ({e})"))),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_line_is_reported_by_number_and_reading_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(
            &path,
            "{\"action\":\"mint\",\"decision_id\":\"a\"}\n{not json\n\n{\"decision_id\":\"b\"}\n",
        )
        .unwrap();
        let got: Vec<_> = records(&path).unwrap().collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].as_ref().unwrap().decision_id, "a");
        match &got[1] {
            Err(ReadError::Line { line, .. }) => assert_eq!(*line, 2),
            other => panic!("{other:?}"),
        }
        assert_eq!(got[2].as_ref().unwrap().decision_id, "b");
    }
}
