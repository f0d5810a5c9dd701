//! What an admin asks the kill switch for, checked by a pure function. The
//! entries themselves, and how they match tokens, are writ-proto's.

use serde_json::Value;
use writ_proto::revocation::{MAX_VALUE_BYTES, Selector};

/// A revocation as an admin asks for it, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeRequest {
    /// What to select.
    pub selector: Selector,
    /// Why.
    pub reason: String,
    /// Refuse new tokens too.
    pub block: bool,
    /// When the block lapses.
    pub until: Option<u64>,
}

impl RevokeRequest {
    /// Parses and checks an admin request body against the current time.
    pub fn parse(body: &[u8], now: u64) -> Result<Self, String> {
        let v: Value = serde_json::from_slice(body).map_err(|_| "body is not JSON".to_owned())?;
        let obj = v.as_object().ok_or("body must be a JSON object")?;
        if let Some(k) = obj
            .keys()
            .find(|k| !["selector", "reason", "block", "until"].contains(&k.as_str()))
        {
            return Err(format!("unknown field {k:?}"));
        }
        let selector = Selector::from_json(obj.get("selector").ok_or("selector is required")?)
            .map_err(|e| e.to_string())?;
        let reason = match obj.get("reason") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(r)) if r.len() <= MAX_VALUE_BYTES => r.clone(),
            Some(_) => {
                return Err(format!(
                    "reason must be a string of at most {MAX_VALUE_BYTES} bytes"
                ));
            }
        };
        let block = match obj.get("block") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err("block must be true or false".into()),
        };
        let until = match obj.get("until") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                let t = humantime::parse_rfc3339_weak(s)
                    .map_err(|_| format!("until {s:?} is not an RFC 3339 time"))?
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_err(|_| "until is before 1970".to_owned())?
                    .as_secs();
                if t <= now {
                    return Err("until is in the past".into());
                }
                Some(t)
            }
            Some(_) => return Err("until must be an RFC 3339 string".into()),
        };
        if until.is_some() && !block {
            return Err("until applies only to a block".into());
        }
        Ok(Self {
            selector,
            reason,
            block,
            until,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<RevokeRequest, String> {
        RevokeRequest::parse(body.as_bytes(), 1_000)
    }

    #[test]
    fn bad_requests_say_why() {
        for (body, why) in [
            ("nope", "not JSON"),
            (
                r#"{"selector":{"subject":"a","audience":"b"}}"#,
                "exactly one",
            ),
            (r#"{"selector":{}}"#, "exactly one"),
            (r#"{"selector":{"team":"a"}}"#, "unknown selector"),
            (r#"{"selector":{"subject":""}}"#, "non-empty"),
            (r#"{"selector":{"subject":7}}"#, "takes a string"),
            (r#"{"selector":{"all":false}}"#, "true"),
            (
                r#"{"selector":{"all":true},"until":"1970-01-01T00:00:01Z","block":true}"#,
                "past",
            ),
            (
                r#"{"selector":{"all":true},"until":"2999-01-01T00:00:00Z"}"#,
                "only to a block",
            ),
            (r#"{"selector":{"all":true},"blok":true}"#, "unknown field"),
        ] {
            let err = parse(body).unwrap_err();
            assert!(err.contains(why), "{body}: {err}");
        }
    }
}
