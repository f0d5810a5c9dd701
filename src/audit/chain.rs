//! The hash chain: each line carries `prev` (the previous line's `hash`) and
//! its own `hash`, the SHA-256 of the line's JSON up to and including `prev`.
//! Editing a line breaks its `hash`; deleting or reordering breaks `prev`.
//! A head file beside the log (`<log>.head`) records the count and last hash,
//! so cutting records off the end is found too.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::digest::sha256_hex;

/// `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const HASH_PREFIX: &str = ",\"hash\":\"";
const HASH_SUFFIX_LEN: usize = HASH_PREFIX.len() + 64 + "\"}".len();

/// Serializes `record` with `prev`, then appends its `hash`. Returns the line
/// (with newline) and the hash.
///
/// `record` must serialize as a JSON object without `prev` or `hash`; its
/// text is extended in place rather than rebuilt through a `Value` tree.
pub(crate) fn seal<T: Serialize>(
    record: &T,
    prev: &str,
) -> Result<(String, String), serde_json::Error> {
    let mut line = serde_json::to_string(record)?;
    if line.len() < 2 || !line.ends_with('}') {
        return Err(serde::ser::Error::custom(
            "an audit record must be a JSON object",
        ));
    }
    line.pop(); // the closing brace
    if line.len() > 1 {
        line.push(',');
    }
    line.push_str("\"prev\":\"");
    line.push_str(prev);
    line.push_str("\"}");
    let hash = sha256_hex(line.as_bytes());
    line.pop(); // the closing brace, again: the hash goes inside
    line.push_str(HASH_PREFIX);
    line.push_str(&hash);
    line.push_str("\"}\n");
    Ok((line, hash))
}

/// Splits a sealed line into its body (without the closing brace) and hash.
fn split_sealed(line: &str) -> Option<(&str, &str)> {
    let at = line.len().checked_sub(HASH_SUFFIX_LEN)?;
    let (body_open, suffix) = (line.get(..at)?, line.get(at..)?);
    let hash = suffix.strip_prefix(HASH_PREFIX)?.strip_suffix("\"}")?;
    Some((body_open, hash))
}

/// The first broken line of a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct ChainError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub problem: &'static str,
}

/// Checks one line; returns its hash.
fn check_line(line: &str, expected_prev: &str) -> Result<String, &'static str> {
    let (body_open, hash) = split_sealed(line).ok_or("not a sealed audit record")?;
    let body = format!("{body_open}}}");
    if sha256_hex(body.as_bytes()) != hash {
        return Err("record was modified (hash mismatch)");
    }
    let value: Value = serde_json::from_str(&body).map_err(|_| "record is not JSON")?;
    match value.get("prev").and_then(Value::as_str) {
        Some(prev) if prev == expected_prev => Ok(hash.to_owned()),
        Some(_) => Err("chain broken: a record before it was removed, added or reordered"),
        None => Err("record has no prev"),
    }
}

/// The hash a sealed line ends with, to continue its chain.
pub(crate) fn hash_of(line: &str) -> Option<&str> {
    split_sealed(line.trim_end_matches('\n')).map(|(_, hash)| hash)
}

/// One replica's chain as the store keeps it: records by position.
#[derive(Debug, Clone, thiserror::Error)]
#[error("replica {replica}, position {position}: {problem}")]
pub struct ReplicaChainError {
    /// `server.replica_id` of the chain.
    pub replica: String,
    /// 1-based position of the first broken record.
    pub position: u64,
    /// What is wrong with it.
    pub problem: &'static str,
}

/// Verifies one replica's chain: positions `1..=n` with none missing, each
/// record chained to the one before, and the head kept beside them.
pub fn verify_replica_chain(
    replica: &str,
    records: &[(u64, String)],
    head: Option<&Head>,
) -> Result<usize, ReplicaChainError> {
    let broken = |position, problem| ReplicaChainError {
        replica: replica.to_owned(),
        position,
        problem,
    };
    for (expected, (position, _)) in (1u64..).zip(records) {
        if *position != expected {
            return Err(broken(
                expected,
                "record is missing (deleted, or the chain was rewritten)",
            ));
        }
    }
    verify_chain(records.iter().map(|(_, line)| line.as_bytes()), head)
        .map_err(|e| broken(u64::try_from(e.line).unwrap_or(u64::MAX), e.problem))
}

/// Where the chain ended when the writer last looked: kept apart from the
/// records (a head file, a row), so records cut off the end are found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// Records written.
    pub records: usize,
    /// The last one's hash ([`GENESIS`] before the first).
    pub hash: String,
}

impl Head {
    /// The head of a chain with no records yet.
    pub fn genesis() -> Self {
        Self {
            records: 0,
            hash: GENESIS.to_owned(),
        }
    }
}

/// Verifies one chain: its records in order (1-based position, raw bytes)
/// and the head recorded beside them, if any; returns the number of
/// records. Used for the log file and for each replica's chain in the
/// store alike.
pub fn verify_chain<'a>(
    records: impl IntoIterator<Item = &'a [u8]>,
    head: Option<&Head>,
) -> Result<usize, ChainError> {
    let mut prev = GENESIS.to_owned();
    let mut hashes = Vec::new();
    for (i, raw) in records.into_iter().enumerate() {
        let broken = |problem| ChainError {
            line: i + 1,
            problem,
        };
        let line = std::str::from_utf8(raw).map_err(|_| broken("record is not UTF-8"))?;
        prev = check_line(line.trim_end_matches('\n'), &prev).map_err(broken)?;
        hashes.push(prev.clone());
    }
    if let Some(head) = head {
        if head.records > hashes.len() {
            return Err(ChainError {
                line: hashes.len() + 1,
                problem: "records were removed from the end (the head counts more)",
            });
        }
        if head.records > 0 && hashes.get(head.records - 1) != Some(&head.hash) {
            return Err(ChainError {
                line: head.records,
                problem: "the log was rewritten (it disagrees with the head)",
            });
        }
    }
    Ok(hashes.len())
}

/// The head file of a log.
pub(crate) fn head_path(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".head");
    PathBuf::from(name)
}

/// Replaces the head file atomically (write, then rename).
pub(crate) async fn write_head(log: &Path, head: &Head) -> std::io::Result<()> {
    let path = head_path(log);
    let tmp = path.with_extension("head.tmp");
    tokio::fs::write(&tmp, serde_json::to_vec(head).unwrap_or_default()).await?;
    tokio::fs::rename(&tmp, &path).await
}

/// Verifies a whole log and its head file; returns the number of records.
/// A non-empty log without its head file fails unless `require_head` is
/// false: deleting the head is how a cut tail would otherwise go unseen.
pub fn verify_file(path: &Path, require_head: bool) -> Result<usize, VerifyError> {
    let bytes = std::fs::read(path).map_err(VerifyError::Read)?;
    let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    let lines: Vec<&[u8]> = match body.is_empty() {
        true => Vec::new(),
        false => body.split(|b| *b == b'\n').collect(),
    };
    let head = match std::fs::read(head_path(path)) {
        Ok(text) => Some(serde_json::from_slice::<Head>(&text).map_err(|_| {
            VerifyError::Chain(ChainError {
                line: lines.len(),
                problem: "the head file is unreadable",
            })
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(VerifyError::Read(e)),
    };
    let count = verify_chain(lines, head.as_ref()).map_err(VerifyError::Chain)?;
    if head.is_none() && require_head && count > 0 {
        return Err(VerifyError::Chain(ChainError {
            line: count,
            problem: "the head file is missing, so a cut tail would go unseen (--no-head checks the chain alone)",
        }));
    }
    Ok(count)
}

/// Why verification failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The file could not be read.
    #[error("cannot read audit log: {0}")]
    Read(std::io::Error),
    /// A line is broken.
    #[error(transparent)]
    Chain(ChainError),
}

/// The head of an existing log, to continue its chain and count.
pub(crate) async fn last_head(path: &Path) -> std::io::Result<Head> {
    let bytes = match tokio::fs::read(path).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let text = String::from_utf8_lossy(&bytes);
    let records = text.lines().count();
    let hash = match text.lines().last() {
        None => GENESIS.to_owned(),
        // An unsealed last line: chain from its digest; verify will flag it.
        Some(line) => split_sealed(line)
            .map(|(_, h)| h.to_owned())
            .unwrap_or_else(|| sha256_hex(line.as_bytes())),
    };
    Ok(Head { records, hash })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn log(n: usize) -> Vec<String> {
        let mut prev = GENESIS.to_owned();
        (0..n)
            .map(|i| {
                let (line, hash) = seal(&json!({"n": i, "who": "é"}), &prev).unwrap();
                prev = hash;
                line.trim_end().to_owned()
            })
            .collect()
    }

    fn verify(lines: &[String], head: Option<Head>) -> Result<usize, ChainError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(
            &path,
            lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
        )
        .unwrap();
        if let Some(head) = head {
            std::fs::write(head_path(&path), serde_json::to_vec(&head).unwrap()).unwrap();
        }
        // The unit tests look at the chain; the head file's absence has its own test.
        verify_file(&path, false).map_err(|e| match e {
            VerifyError::Chain(c) => c,
            VerifyError::Read(e) => panic!("{e}"),
        })
    }

    #[test]
    fn intact_chain_verifies() {
        assert_eq!(verify(&log(5), None), Ok(5));
    }

    #[test]
    fn edit_deletion_and_reordering_name_the_line() {
        let mut edited = log(5);
        edited[2] = edited[2].replace("\"n\":2", "\"n\":9");
        assert_eq!(verify(&edited, None).unwrap_err().line, 3);

        let mut deleted = log(5);
        deleted.remove(1);
        assert_eq!(verify(&deleted, None).unwrap_err().line, 2);

        let mut swapped = log(5);
        swapped.swap(3, 4);
        assert_eq!(verify(&swapped, None).unwrap_err().line, 4);
    }

    #[test]
    fn cutting_the_tail_is_found_through_the_head() {
        let full = log(5);
        let head = Head {
            records: 5,
            hash: split_sealed(&full[4]).unwrap().1.to_owned(),
        };
        assert_eq!(verify(&full, Some(head.clone())), Ok(5));
        assert_eq!(verify(&full[..3], Some(head)).unwrap_err().line, 4);
    }

    #[test]
    fn a_deleted_head_file_fails_unless_waived() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, format!("{}\n", log(2).join("\n"))).unwrap();
        assert!(matches!(
            verify_file(&path, true),
            Err(VerifyError::Chain(ChainError { line: 2, .. }))
        ));
        assert_eq!(verify_file(&path, false).unwrap(), 2);
        std::fs::write(&path, "").unwrap();
        assert_eq!(
            verify_file(&path, true).unwrap(),
            0,
            "an empty log needs no head"
        );
    }

    #[test]
    fn hostile_bytes_name_the_line_instead_of_panicking() {
        let mut lines = log(3);
        // A multi-byte character where the hash suffix would start.
        let cut = lines[1].len() - HASH_SUFFIX_LEN;
        lines[1] = format!("{}é{}", &lines[1][..cut - 1], &lines[1][cut + 1..]);
        assert_eq!(verify(&lines, None).unwrap_err().line, 2);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        std::fs::write(&path, b"\xff\xfe\n").unwrap();
        assert!(matches!(
            verify_file(&path, false),
            Err(VerifyError::Chain(ChainError { line: 1, .. }))
        ));
    }
}
