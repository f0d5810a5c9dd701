//! The hash chain: each line carries `prev` (the previous line's `hash`) and
//! its own `hash`, the SHA-256 of the line's JSON up to and including `prev`.
//! Editing a line breaks its `hash`; deleting or reordering breaks `prev`.

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

/// `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const HASH_SUFFIX_LEN: usize = r#","hash":""}"#.len() + 64;

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// Serializes `record` with `prev`, then appends its `hash`. Returns the line
/// (with newline) and the hash.
pub(crate) fn seal<T: Serialize>(
    record: &T,
    prev: &str,
) -> Result<(String, String), serde_json::Error> {
    let mut value = serde_json::to_value(record)?;
    if let Some(o) = value.as_object_mut() {
        o.insert("prev".into(), Value::String(prev.to_owned()));
    }
    let body = serde_json::to_string(&value)?;
    let hash = sha256_hex(body.as_bytes());
    let mut line = body;
    line.pop(); // the closing brace
    line.push_str(",\"hash\":\"");
    line.push_str(&hash);
    line.push_str("\"}\n");
    Ok((line, hash))
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
    if line.len() < HASH_SUFFIX_LEN || !line.ends_with("\"}") {
        return Err("not a sealed audit record");
    }
    let (body_open, suffix) = line.split_at(line.len() - HASH_SUFFIX_LEN);
    let hash = suffix
        .strip_prefix(",\"hash\":\"")
        .and_then(|s| s.strip_suffix("\"}"))
        .ok_or("not a sealed audit record")?;
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

/// Verifies a whole log; returns the number of records.
pub fn verify_file(path: &Path) -> Result<usize, VerifyError> {
    let text = std::fs::read_to_string(path).map_err(VerifyError::Read)?;
    let mut prev = GENESIS.to_owned();
    let mut count = 0;
    for (i, line) in text.lines().enumerate() {
        prev = check_line(line, &prev).map_err(|problem| {
            VerifyError::Chain(ChainError {
                line: i + 1,
                problem,
            })
        })?;
        count += 1;
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

/// The hash of the last line of an existing log, to continue its chain.
pub(crate) async fn last_hash(path: &Path) -> std::io::Result<String> {
    let text = match tokio::fs::read_to_string(path).await {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(GENESIS.to_owned()),
        Err(e) => return Err(e),
    };
    Ok(match text.lines().last() {
        None => GENESIS.to_owned(),
        Some(line) => line
            .len()
            .checked_sub(HASH_SUFFIX_LEN)
            .and_then(|at| line.get(at..))
            .and_then(|s| s.strip_prefix(",\"hash\":\""))
            .and_then(|s| s.strip_suffix("\"}"))
            .map(str::to_owned)
            // An unsealed last line: chain from its digest, verify will flag it.
            .unwrap_or_else(|| sha256_hex(line.as_bytes())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn log(n: usize) -> Vec<String> {
        let mut prev = GENESIS.to_owned();
        (0..n)
            .map(|i| {
                let (line, hash) = seal(&json!({"n": i}), &prev).unwrap();
                prev = hash;
                line.trim_end().to_owned()
            })
            .collect()
    }

    fn check(lines: &[String]) -> Result<(), ChainError> {
        let mut prev = GENESIS.to_owned();
        for (i, l) in lines.iter().enumerate() {
            prev = check_line(l, &prev).map_err(|problem| ChainError {
                line: i + 1,
                problem,
            })?;
        }
        Ok(())
    }

    #[test]
    fn intact_chain_verifies() {
        assert_eq!(check(&log(5)), Ok(()));
    }

    #[test]
    fn edit_deletion_and_reordering_name_the_line() {
        let mut edited = log(5);
        edited[2] = edited[2].replace("\"n\":2", "\"n\":9");
        assert_eq!(check(&edited).unwrap_err().line, 3);

        let mut deleted = log(5);
        deleted.remove(1);
        assert_eq!(check(&deleted).unwrap_err().line, 2);

        let mut swapped = log(5);
        swapped.swap(3, 4);
        assert_eq!(check(&swapped).unwrap_err().line, 4);
    }
}
