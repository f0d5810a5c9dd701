//! The client side: requests to writ, its replies, and the assertions every test makes on them.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{DecodingKey, Validation, jwk::Jwk};
use reqwest::header::HeaderMap;
use serde_json::Value;

pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
pub const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
pub const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

/// An HTTPS client that trusts only the test CA and ignores proxy settings.
pub fn client(ca_pem: &str) -> reqwest::Client {
    client_bound_to(ca_pem, None)
}

/// Like [`client`], connecting from `local` (any 127.x address works on Linux).
pub fn client_bound_to(ca_pem: &str, local: Option<std::net::IpAddr>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("test CA is valid PEM");
    reqwest::Client::builder()
        .local_address(local)
        .add_root_certificate(ca)
        .tls_built_in_root_certs(false)
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("build HTTPS client")
}

/// The form of a `POST /oauth2/token`, in order, duplicates allowed.
#[derive(Clone, Debug, Default)]
pub struct TokenRequest {
    params: Vec<(String, String)>,
}

impl TokenRequest {
    /// RFC 8693 exchange of an attestation JWT for a token for `audience` with `scope`.
    pub fn exchange(subject_token: &str, audience: &str, scope: &str) -> Self {
        Self::default()
            .with("grant_type", TOKEN_EXCHANGE)
            .with("subject_token", subject_token)
            .with("subject_token_type", JWT)
            .with("audience", audience)
            .with("scope", scope)
    }

    /// Exchange of a writ access token for a narrower one.
    pub fn narrow(writ_token: &str, audience: &str, scope: &str) -> Self {
        Self::exchange(writ_token, audience, scope).set("subject_token_type", ACCESS_TOKEN)
    }

    pub fn requested_ttl(self, seconds: u64) -> Self {
        self.set("requested_ttl", &seconds.to_string())
    }

    /// Adds a parameter, even one already present.
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.params.push((name.to_string(), value.to_string()));
        self
    }

    /// Replaces every occurrence of a parameter by one.
    pub fn set(self, name: &str, value: &str) -> Self {
        self.without(name).with(name, value)
    }

    pub fn without(mut self, name: &str) -> Self {
        self.params.retain(|(key, _)| key != name);
        self
    }

    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }
}

/// What writ answered: status, headers, the body as text and (when it is JSON) as JSON.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    /// `Value::Null` when the body is not JSON.
    pub json: Value,
}

impl Reply {
    pub async fn read(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("read response body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            text,
            json,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// `error` of an RFC 6749 error body.
    pub fn error(&self) -> Option<&str> {
        self.json["error"].as_str()
    }

    pub fn decision_id(&self) -> Option<&str> {
        self.json["decision_id"].as_str()
    }

    /// One line for failure messages.
    pub fn describe(&self) -> String {
        format!("{} {}", self.status, self.text)
    }
}

/// A token writ minted, taken apart.
#[derive(Debug, Clone)]
pub struct Minted {
    pub access_token: String,
    /// `scope` of the response: what was granted.
    pub scope: String,
    pub expires_in: i64,
    /// The JOSE header of the access token.
    pub header: Value,
    /// The claims of the access token.
    pub claims: Value,
    /// The whole response body.
    pub body: Value,
}

impl Minted {
    pub fn claim_i64(&self, name: &str) -> i64 {
        self.claims[name]
            .as_i64()
            .unwrap_or_else(|| panic!("claim `{name}` is not an integer in {}", self.claims))
    }

    /// `exp - iat` of the token.
    pub fn lifetime(&self) -> i64 {
        self.claim_i64("exp") - self.claim_i64("iat")
    }
}

/// Asserts a successful token response (RFC 8693 section 2.2.1) and takes the token apart.
#[track_caller]
pub fn assert_granted(reply: &Reply) -> Minted {
    assert_eq!(
        reply.status,
        200,
        "expected a token, got {}",
        reply.describe()
    );
    let body = &reply.json;
    assert_eq!(
        body["issued_token_type"], ACCESS_TOKEN,
        "issued_token_type in {body}"
    );
    let access_token = body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token in {body}"))
        .to_string();
    // RFC 9449: a DPoP-bound token is of type DPoP; every other one (mTLS-bound
    // included, RFC 8705) is a Bearer token.
    let dpop_bound = jwt_claims(&access_token)["cnf"]["jkt"].is_string();
    let expected_type = if dpop_bound { "DPoP" } else { "Bearer" };
    assert_eq!(body["token_type"], expected_type, "token_type in {body}");
    Minted {
        header: jwt_header(&access_token),
        claims: jwt_claims(&access_token),
        access_token,
        scope: body["scope"]
            .as_str()
            .unwrap_or_else(|| panic!("no scope in {body}"))
            .to_string(),
        expires_in: body["expires_in"]
            .as_i64()
            .unwrap_or_else(|| panic!("no expires_in in {body}")),
        body: body.clone(),
    }
}

/// Asserts an RFC 6749 error: the status, the `error` code, and a `decision_id`
/// that finds the audit record.
#[track_caller]
pub fn assert_refused(reply: &Reply, status: u16, error: &str) {
    assert_eq!(
        (reply.status, reply.error()),
        (status, Some(error)),
        "expected {status} {error}, got {}",
        reply.describe()
    );
    assert!(
        reply.decision_id().is_some_and(|id| !id.is_empty()),
        "no decision_id in {}",
        reply.describe()
    );
}

/// Like [`assert_refused`], and `error_description` names why, so a test of
/// one refusal cannot pass because of another.
#[track_caller]
pub fn assert_refused_because(reply: &Reply, status: u16, error: &str, reason: &str) {
    assert_refused(reply, status, error);
    let description = reply.json["error_description"].as_str().unwrap_or_default();
    assert!(
        description.contains(reason),
        "expected {reason:?} in error_description, got {}",
        reply.describe()
    );
}

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The decoded JOSE header of a compact JWS (not verified).
pub fn jwt_header(token: &str) -> Value {
    decode_segment(token, 0)
}

/// The decoded claims of a compact JWS (not verified).
pub fn jwt_claims(token: &str) -> Value {
    decode_segment(token, 1)
}

/// `token` with its claims replaced and its header and signature kept: a tampered token.
pub fn with_claims(token: &str, claims: &Value) -> String {
    let jws = compact(token);
    format!(
        "{}.{}.{}",
        jws.header,
        b64url(claims.to_string().as_bytes()),
        jws.signature
    )
}

/// Verifies `token` the way a resource server would: key by `kid` from `jwks`,
/// signature, `iss`, `aud`, `exp`. Returns the claims.
pub fn verify_with_jwks(
    token: &str,
    jwks: &Value,
    issuer: &str,
    audience: &str,
) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|error| format!("header: {error}"))?;
    let kid = header.kid.ok_or("token has no kid")?;
    let jwk = jwks["keys"]
        .as_array()
        .ok_or_else(|| format!("no keys in {jwks}"))?
        .iter()
        .find(|key| key["kid"] == kid.as_str())
        .ok_or_else(|| format!("kid {kid} not in {jwks}"))?;
    let jwk: Jwk =
        serde_json::from_value(jwk.clone()).map_err(|error| format!("JWK {jwk}: {error}"))?;
    let key = DecodingKey::from_jwk(&jwk).map_err(|error| format!("JWK key: {error}"))?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|error| format!("verify: {error}"))
}

fn compact(token: &str) -> writ_proto::jws::Compact<'_> {
    writ_proto::jws::Compact::split(token).unwrap_or_else(|| panic!("not a compact JWS: {token}"))
}

fn decode_segment(token: &str, index: usize) -> Value {
    let jws = compact(token);
    let segment = [jws.header, jws.payload][index];
    writ_proto::jws::decode_segment(segment)
        .unwrap_or_else(|| panic!("segment {index} of {token} is not base64url JSON"))
}
