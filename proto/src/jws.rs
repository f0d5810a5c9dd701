//! Compact JWS (RFC 7515 section 7.1) taken apart before it is verified:
//! the one place writ splits `header.payload.signature` and decodes a
//! base64url JSON segment.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;

/// The three segments of a compact JWS, still encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compact<'a> {
    /// The protected header, base64url.
    pub header: &'a str,
    /// The payload, base64url.
    pub payload: &'a str,
    /// The signature, base64url.
    pub signature: &'a str,
}

impl<'a> Compact<'a> {
    /// Splits a token into exactly three segments; anything else is `None`.
    pub fn split(token: &'a str) -> Option<Self> {
        let mut parts = token.split('.');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(header), Some(payload), Some(signature), None) => Some(Self {
                header,
                payload,
                signature,
            }),
            _ => None,
        }
    }
}

/// Decodes a base64url (unpadded) segment holding JSON into `T`.
pub fn decode_segment<T: DeserializeOwned>(segment: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn only_three_segments_split_and_only_base64url_json_decodes() {
        let c = Compact::split("eyJhIjoxfQ.e30.c2ln").unwrap();
        assert_eq!(
            decode_segment::<Value>(c.header),
            Some(serde_json::json!({"a": 1}))
        );
        assert_eq!(c.signature, "c2ln");
        assert!(Compact::split("a.b").is_none());
        assert!(Compact::split("a.b.c.d").is_none());
        assert_eq!(
            decode_segment::<Value>("eyJhIjoxfQ=="),
            None,
            "padding is not base64url"
        );
        assert_eq!(decode_segment::<Value>("bm90IGpzb24"), None);
    }
}
