//! A token request as writ reads it (RFC 8693 token exchange, RFC 6749
//! client credentials, RFC 9449 DPoP, RFC 8707 resource indicators):
//! [`TokenRequest::parse`] turns a form,
//! the connection's peer and the request headers into a typed request, or
//! the refusal its syntax earns. It reads nothing but its arguments and the
//! settings it is handed, so every parse refusal is a unit test.

use std::sync::Arc;

use axum::http::HeaderMap;

use super::{Form, Learned, Refusal, Refused, Settings};
use crate::attest::Peer;
use crate::attest::dpop::{self, CheckedProof};
use crate::attest::mtls::CertIdentity;
use crate::attest::unix::UnixConnection;
use crate::model::{Scopes, TargetId, Ttl};

/// RFC 8693 token exchange.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 6749 client credentials: the caller is its own evidence.
pub const CLIENT_CREDENTIALS: &str = "client_credentials";
/// RFC 7523 JWT bearer grant: an enterprise IdP's ID-JAG as `assertion`.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// RFC 8693 token type of a JWT attestation.
pub const TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// RFC 8693 token type of an OIDC ID token.
pub const TYPE_ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
/// RFC 8693 token type of an access token (a writ token).
pub const TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
/// The token type of a transaction token (draft-ietf-oauth-transaction-tokens).
pub const TYPE_TXN_TOKEN: &str = writ_proto::txn::TOKEN_TYPE;
/// The most bytes of `request_context` or `request_details` read.
pub const MAX_TXN_CONTEXT_BYTES: usize = 4096;

/// A token the client presented: a bearer secret, so `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential(String);

impl Credential {
    /// The token's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({} bytes)", self.0.len())
    }
}

/// What a presented token is, by its RFC 8693 token type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented {
    /// A JWT or an ID token from a configured attestation issuer.
    Attestation(Credential),
    /// A writ access token.
    Writ(Credential),
}

/// The caller's own evidence, for client credentials.
#[derive(Debug, Clone)]
pub enum PeerEvidence {
    /// A client certificate the TLS handshake verified (RFC 8705).
    Certificate(CertIdentity),
    /// A caller on the Unix socket, re-checked when attested.
    Unix(Arc<UnixConnection>),
}

/// What a token request asks writ to do.
#[derive(Debug, Clone)]
pub enum GrantKind {
    /// Exchange an attestation (a JWT from a configured issuer) for a token.
    Exchange(Credential),
    /// Narrow a writ token: same audience, fewer scopes, no longer life.
    Narrowing(Credential),
    /// An agent, proven by `actor_token`, acting for the subject (RFC 8693
    /// section 2.1): the subject is an attestation, or a writ token whose
    /// own delegation chain the new token extends.
    Delegation {
        /// The subject token.
        subject: Presented,
        /// The agent's token.
        actor: Presented,
    },
    /// Client credentials: the caller's certificate or Unix peer is its
    /// attestation.
    ClientCredentials(PeerEvidence),
    /// A transaction token (`requested_token_type` of that type) for the
    /// trust domain.
    Transaction(TxnRequest),
    /// An enterprise IdP's ID-JAG (`assertion` of the jwt-bearer grant): the
    /// user it names, with the client it was issued to acting for them.
    IdJag(Credential),
}

/// A transaction token request (CONTRACT section 9).
#[derive(Debug, Clone)]
pub struct TxnRequest {
    /// Whom the transaction acts for.
    pub subject: TxnSubject,
    /// `request_context`: what the requester says of the originating
    /// request (becomes `rctx`, beside the `req_wl` writ writes).
    pub context: serde_json::Map<String, serde_json::Value>,
    /// `request_details`: the transaction's details (becomes `tctx`).
    pub details: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The subject of a transaction token request.
#[derive(Debug, Clone)]
pub enum TxnSubject {
    /// A writ access token: the transaction acts for its subject.
    Access(Credential),
    /// A workload's own attestation: the transaction acts for it.
    Attestation(Credential),
    /// A transaction token replaced by the next workload down the call
    /// chain, which proves itself with its attestation (`actor_token`).
    Replacement {
        /// The transaction token being replaced.
        txn: Credential,
        /// The requesting workload's attestation.
        requester: Credential,
    },
}

/// The longest `resource` accepted, in bytes (as any target id).
pub const MAX_RESOURCE_LEN: usize = 1024;

/// Which parameter named the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetParameter {
    /// `audience` (RFC 8693): any target id.
    Audience,
    /// `resource` (RFC 8707): an absolute `https` URI without fragment.
    Resource,
}

impl TargetParameter {
    /// The parameter's name, for refusals.
    pub fn name(self) -> &'static str {
        match self {
            Self::Audience => "audience",
            Self::Resource => "resource",
        }
    }
}

/// A token request whose syntax checked out.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The target (`audience`, or the `resource` URI exactly).
    pub audience: TargetId,
    /// Which parameter named it.
    pub target_parameter: TargetParameter,
    /// The scopes asked for.
    pub scopes: Scopes,
    /// The lifetime asked for, or the configured default.
    pub requested_ttl: Ttl,
    /// A DPoP proof whose signature, method, URL and time checked out; it
    /// is remembered against replay only once the credential has checked
    /// out too, so requests without one cannot fill the replay cache.
    pub dpop: Option<CheckedProof>,
    /// What is asked, with the tokens presented for it.
    pub kind: GrantKind,
    /// The approval a retry redeems (CONTRACT section 10).
    pub approval_id: Option<String>,
}

impl TokenRequest {
    /// Reads a token request from its form, the connection's `peer` and the
    /// request `headers` (only `DPoP`), at `now`.
    ///
    /// Checks come in a fixed order (the proof, `grant_type`, the target
    /// (`resource` then `audience`), `scope`, `requested_ttl`, then the
    /// tokens), so a request with several faults is refused for the first.
    /// A refusal after the target carries it (and after `scope` the scopes)
    /// for the audit record.
    pub fn parse(
        form: &Form,
        peer: &Peer,
        headers: &HeaderMap,
        settings: &Settings<'_>,
        now: u64,
    ) -> Result<Self, Refused> {
        let dpop = dpop_proof(headers)?
            .map(|proof| check_proof(proof, settings.issuer, now))
            .transpose()?;
        let grant_type = form.required("grant_type")?;
        if ![TOKEN_EXCHANGE, CLIENT_CREDENTIALS, JWT_BEARER].contains(&grant_type) {
            return Err(Refusal::UnsupportedGrantType.into());
        }
        let wants_txn = wants_txn_token(form, grant_type)?;
        let (audience, target_parameter) = target(form)?;
        if wants_txn
            && (target_parameter != TargetParameter::Audience
                || audience.as_str() != settings.trust_domain)
        {
            return Err(Refusal::InvalidTarget(
                "a transaction token's audience is the trust domain (server.trust_domain)".into(),
            )
            .into());
        }
        let learned = Learned {
            target: Some(audience.clone()),
            ..Learned::default()
        };
        let scopes = form
            .required("scope")
            .and_then(|s| Scopes::parse(s).map_err(|e| Refusal::InvalidScope(e.to_string())))
            .map_err(|refusal| learned.refused(refusal))?;
        let learned = Learned {
            scopes_requested: Some(scopes.clone()),
            ..learned
        };
        let default_ttl = match wants_txn {
            true => settings.txn_ttl,
            false => settings.default_ttl,
        };
        let (requested_ttl, kind) = requested_ttl(form, default_ttl)
            .and_then(|ttl| {
                let kind = match wants_txn {
                    true => GrantKind::Transaction(txn_request(form)?),
                    false => grant_kind(form, peer, grant_type)?,
                };
                Ok((ttl, kind))
            })
            .map_err(|refusal| learned.refused(refusal))?;
        let approval_id = form
            .optional("approval_id")
            .map(|id| match crate::approval::plausible_id(id) {
                true => Ok(id.to_owned()),
                false => Err(Refusal::InvalidRequest(
                    "approval_id is not one writ gave".into(),
                )),
            })
            .transpose()
            .map_err(|refusal| learned.refused(refusal))?;
        Ok(Self {
            audience,
            target_parameter,
            scopes,
            requested_ttl,
            dpop,
            kind,
            approval_id,
        })
    }

    /// The DPoP key this request proved, if any (RFC 7638 thumbprint).
    pub fn dpop_jkt(&self) -> Option<&str> {
        self.dpop.as_ref().map(|proof| proof.jkt.as_str())
    }
}

/// The target, from `resource` (RFC 8707) or `audience` (RFC 8693).
///
/// One `resource` names the target as `audience` does; with both, they must
/// be equal. Several `resource` values are `invalid_target`: writ mints one
/// token for one target, and a token with several audiences is what RFC 8707
/// section 2 lets a server refuse.
fn target(form: &Form) -> Result<(TargetId, TargetParameter), Refusal> {
    let mut resources = form.resources();
    let (resource, more) = (resources.next(), resources.next());
    let audience = form.optional("audience");
    let Some(resource) = resource else {
        let audience = audience.ok_or_else(|| {
            Refusal::InvalidRequest("parameter audience or resource is required".into())
        })?;
        let target = TargetId::new(audience)
            .map_err(|_| Refusal::InvalidRequest("audience is malformed".into()))?;
        return Ok((target, TargetParameter::Audience));
    };
    if more.is_some() {
        return Err(Refusal::InvalidTarget(
            "writ mints a token for one target: send one resource".into(),
        ));
    }
    check_resource(resource).map_err(|why| Refusal::InvalidTarget(format!("resource {why}")))?;
    if audience.is_some_and(|audience| audience != resource) {
        return Err(Refusal::InvalidTarget(
            "audience and resource name different targets: send one, or both equal".into(),
        ));
    }
    let target = TargetId::new(resource)
        .map_err(|_| Refusal::InvalidTarget("resource is malformed".into()))?;
    Ok((target, TargetParameter::Resource))
}

/// Why `resource` is not an absolute `https` URI without fragment (RFC 8707
/// section 2, RFC 3986): the text of the refusal after "resource ". Only
/// RFC 3986 characters are accepted, and no user information, so the URI a
/// token carries as `aud` is exactly what a resource server compares.
pub fn check_resource(resource: &str) -> Result<(), &'static str> {
    if resource.len() > MAX_RESOURCE_LEN {
        return Err("is longer than 1024 bytes");
    }
    let bytes = resource.as_bytes();
    let uri_char = |b: u8| b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&b);
    if !bytes.iter().all(|&b| uri_char(b)) {
        return Err("holds characters a URI may not");
    }
    let escapes_ok = bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if !escapes_ok {
        return Err("holds a malformed percent escape");
    }
    if resource.contains('#') {
        return Err("must not have a fragment");
    }
    let Some(scheme_end) = resource.find(':') else {
        return Err("is not an absolute URI");
    };
    let scheme = &resource[..scheme_end];
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    if !scheme_ok {
        return Err("is not an absolute URI");
    }
    if !scheme.eq_ignore_ascii_case("https") {
        return Err("must be an https URI");
    }
    let Some(rest) = resource[scheme_end + 1..].strip_prefix("//") else {
        return Err("must name a host (https://host/...)");
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err("must not carry user information");
    }
    let host = match authority.strip_prefix('[') {
        Some(literal) => literal.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        return Err("must name a host (https://host/...)");
    }
    Ok(())
}

/// The request's single DPoP proof, if any (two are an error: `Err`).
pub fn dpop_proof(headers: &HeaderMap) -> Result<Option<&str>, Refusal> {
    let values = headers.get_all("dpop").iter().map(|v| v.as_bytes());
    writ_proto::dpop::single_proof(values).map_err(|e| Refusal::InvalidDpopProof(e.to_string()))
}

/// RFC 9449: a proof of possession binds the new token to the proof's key.
/// Everything but replay is checked here.
fn check_proof(proof: &str, issuer: &str, now: u64) -> Result<CheckedProof, Refusal> {
    let uri = format!("{issuer}/oauth2/token");
    let expected = dpop::Expected {
        method: "POST",
        uri: &uri,
        now,
        access_token: None,
    };
    dpop::check(proof, &expected).map_err(|e| Refusal::InvalidDpopProof(e.to_string()))
}

/// Whether `requested_token_type` asks for a transaction token; an access
/// token (or a JWT, which writ's access tokens are) is the default, and any
/// other type is refused rather than ignored.
fn wants_txn_token(form: &Form, grant_type: &str) -> Result<bool, Refusal> {
    match form.optional("requested_token_type") {
        None | Some(TYPE_ACCESS_TOKEN | TYPE_JWT) => Ok(false),
        Some(TYPE_TXN_TOKEN) if grant_type == TOKEN_EXCHANGE => Ok(true),
        Some(TYPE_TXN_TOKEN) => Err(Refusal::InvalidRequest(
            "a transaction token needs the token-exchange grant".into(),
        )),
        Some(_) => Err(Refusal::InvalidRequest(
            "requested_token_type is not supported".into(),
        )),
    }
}

/// The subject and context of a transaction token request.
fn txn_request(form: &Form) -> Result<TxnRequest, Refusal> {
    let token = Credential(form.required("subject_token")?.to_owned());
    let token_type = form.required("subject_token_type")?;
    let actor = form.optional("actor_token");
    let actor_type = form.optional("actor_token_type");
    let subject = match (token_type, actor) {
        (TYPE_TXN_TOKEN, Some(requester)) => {
            if !matches!(actor_type, Some(TYPE_JWT | TYPE_ID_TOKEN)) {
                return Err(Refusal::InvalidRequest(
                    "replacing a transaction token needs the requesting workload's attestation \
                     as actor_token (a JWT)"
                        .into(),
                ));
            }
            TxnSubject::Replacement {
                txn: token,
                requester: Credential(requester.to_owned()),
            }
        }
        (TYPE_TXN_TOKEN, None) => {
            return Err(Refusal::InvalidRequest(
                "replacing a transaction token needs the requesting workload's attestation as \
                 actor_token"
                    .into(),
            ));
        }
        (_, Some(_)) => {
            return Err(Refusal::InvalidRequest(
                "actor_token is only for replacing a transaction token".into(),
            ));
        }
        (TYPE_ACCESS_TOKEN, None) => TxnSubject::Access(token),
        (TYPE_JWT | TYPE_ID_TOKEN, None) => TxnSubject::Attestation(token),
        (_, None) => {
            return Err(Refusal::InvalidRequest(
                "subject_token_type is not supported".into(),
            ));
        }
    };
    Ok(TxnRequest {
        subject,
        context: json_object(form, "request_context")?.unwrap_or_default(),
        details: json_object(form, "request_details")?,
    })
}

/// A JSON object parameter, as JSON text or base64url-encoded JSON.
fn json_object(
    form: &Form,
    name: &str,
) -> Result<Option<serde_json::Map<String, serde_json::Value>>, Refusal> {
    use base64::Engine;
    let Some(text) = form.optional(name) else {
        return Ok(None);
    };
    let malformed = || Refusal::InvalidRequest(format!("{name} must be a JSON object"));
    if text.len() > MAX_TXN_CONTEXT_BYTES {
        return Err(Refusal::InvalidRequest(format!(
            "{name} is longer than {MAX_TXN_CONTEXT_BYTES} bytes"
        )));
    }
    let bytes = match text.starts_with('{') {
        true => text.as_bytes().to_vec(),
        false => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .map_err(|_| malformed())?,
    };
    match serde_json::from_slice(&bytes) {
        Ok(serde_json::Value::Object(object)) => Ok(Some(object)),
        _ => Err(malformed()),
    }
}

fn requested_ttl(form: &Form, default_ttl: std::time::Duration) -> Result<Ttl, Refusal> {
    match form.optional("requested_ttl") {
        None => Ttl::from_duration(default_ttl)
            .map_err(|_| Refusal::Unavailable("tokens.default_ttl is zero".into())),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .and_then(|s| Ttl::from_secs(s).ok())
            .ok_or_else(|| {
                Refusal::InvalidRequest(
                    "requested_ttl must be a positive whole number of seconds".into(),
                )
            }),
    }
}

/// The grant asked for, with its tokens, from the parameters after `scope`.
fn grant_kind(form: &Form, peer: &Peer, grant_type: &str) -> Result<GrantKind, Refusal> {
    let actor_token = form.optional("actor_token");
    if actor_token.is_some() && grant_type == CLIENT_CREDENTIALS {
        return Err(Refusal::InvalidRequest(
            "actor_token needs the token-exchange grant".into(),
        ));
    }
    if actor_token.is_none() && form.optional("actor_token_type").is_some() {
        return Err(Refusal::InvalidRequest(
            "actor_token_type without actor_token".into(),
        ));
    }
    if grant_type == CLIENT_CREDENTIALS {
        return client_evidence(peer).map(GrantKind::ClientCredentials);
    }
    if grant_type == JWT_BEARER {
        if actor_token.is_some() || form.optional("subject_token").is_some() {
            return Err(Refusal::InvalidRequest(
                "the jwt-bearer grant carries its parties in the assertion alone".into(),
            ));
        }
        let assertion = form.required("assertion")?;
        return Ok(GrantKind::IdJag(Credential(assertion.to_owned())));
    }
    let subject = presented(
        form.required("subject_token")?,
        form.required("subject_token_type")?,
        "subject_token_type",
    )?;
    let actor = actor_token
        .map(|token| {
            presented(
                token,
                form.required("actor_token_type")?,
                "actor_token_type",
            )
        })
        .transpose()?;
    Ok(match (subject, actor) {
        (Presented::Attestation(token), None) => GrantKind::Exchange(token),
        (Presented::Writ(token), None) => GrantKind::Narrowing(token),
        (subject, Some(actor)) => GrantKind::Delegation { subject, actor },
    })
}

/// The caller as its own evidence: the client certificate the handshake
/// verified, or else the Unix socket's peer credentials.
fn client_evidence(peer: &Peer) -> Result<PeerEvidence, Refusal> {
    match (&peer.client, &peer.unix) {
        (Some(identity), _) => Ok(PeerEvidence::Certificate(identity.clone())),
        (None, Some(unix)) => Ok(PeerEvidence::Unix(unix.clone())),
        (None, None) => Err(Refusal::InvalidClient(
            "client_credentials needs a client certificate that chains to the client CA and names one \
             SPIFFE ID, or a caller on the Unix socket"
                .into(),
        )),
    }
}

/// A presented token by its RFC 8693 type (`parameter` names the type's
/// parameter in the refusal).
fn presented(token: &str, token_type: &str, parameter: &str) -> Result<Presented, Refusal> {
    let token = Credential(token.to_owned());
    match token_type {
        TYPE_JWT | TYPE_ID_TOKEN => Ok(Presented::Attestation(token)),
        TYPE_ACCESS_TOKEN => Ok(Presented::Writ(token)),
        TYPE_TXN_TOKEN => Err(Refusal::InvalidRequest(format!(
            "a transaction token is not exchanged for an access token ({parameter})"
        ))),
        _ => Err(Refusal::InvalidRequest(format!(
            "{parameter} is not supported"
        ))),
    }
}

#[cfg(test)]
mod tests {
    //! Every refusal `parse` makes, without a server: one test per fault,
    //! named by its behaviour, beside the successes.

    use std::net::SocketAddr;
    use std::time::Duration;

    use http::HeaderValue;

    use super::*;
    use crate::clock::{Clock, SystemClock};

    const ISSUER: &str = "https://writ.test";
    const ATTESTATION: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";
    const WRIT_TOKEN: &str = "eyJ0eXAiOiJhdCtqd3QifQ.eyJzdWIiOiJ5In0.c2ln";

    fn settings() -> Settings<'static> {
        Settings {
            issuer: ISSUER,
            default_ttl: Duration::from_secs(300),
            max_ttl: Duration::from_secs(900),
            max_delegation_depth: 3,
            trust_domain: "writ.test",
            txn_ttl: Duration::from_secs(60),
            approval_ttl: Duration::from_secs(600),
        }
    }

    fn anonymous() -> Peer {
        Peer {
            addr: SocketAddr::from(([127, 0, 0, 1], 40_000)),
            client: None,
            unix: None,
        }
    }

    fn with_certificate() -> Peer {
        Peer {
            client: Some(CertIdentity {
                spiffe_id: "spiffe://writ.test/ns/a/sa/b".into(),
                cert_sha256: "00".repeat(32),
                issuer: "writ dev CA".into(),
                expires_at: u64::MAX,
            }),
            ..anonymous()
        }
    }

    /// An exchange of an attestation for `orders.read` on `orders`.
    fn exchange() -> Vec<(&'static str, String)> {
        vec![
            ("grant_type", TOKEN_EXCHANGE.into()),
            ("subject_token", ATTESTATION.into()),
            ("subject_token_type", TYPE_JWT.into()),
            ("audience", "orders".into()),
            ("scope", "orders.read".into()),
        ]
    }

    fn client_credentials() -> Vec<(&'static str, String)> {
        vec![
            ("grant_type", CLIENT_CREDENTIALS.into()),
            ("audience", "orders".into()),
            ("scope", "orders.read".into()),
        ]
    }

    /// `params` with `name` set to `value` (added if absent).
    fn set(
        mut params: Vec<(&'static str, String)>,
        name: &'static str,
        value: &str,
    ) -> Vec<(&'static str, String)> {
        match params.iter_mut().find(|(n, _)| *n == name) {
            Some(param) => param.1 = value.to_owned(),
            None => params.push((name, value.to_owned())),
        }
        params
    }

    fn without(mut params: Vec<(&'static str, String)>, name: &str) -> Vec<(&'static str, String)> {
        params.retain(|(n, _)| *n != name);
        params
    }

    fn form(params: &[(&'static str, String)]) -> Form {
        let body = serde_urlencoded::to_string(params).unwrap();
        Form::parse(body.as_bytes()).unwrap()
    }

    fn parse_full(
        params: &[(&'static str, String)],
        peer: &Peer,
        headers: &HeaderMap,
    ) -> Result<TokenRequest, Refused> {
        let now = SystemClock.unix_now();
        TokenRequest::parse(&form(params), peer, headers, &settings(), now)
    }

    fn parse(params: &[(&'static str, String)]) -> TokenRequest {
        parse_full(params, &anonymous(), &HeaderMap::new()).unwrap()
    }

    fn refusal(params: &[(&'static str, String)]) -> Refusal {
        refused_with(params, &anonymous(), &HeaderMap::new()).refusal
    }

    fn refused_with(
        params: &[(&'static str, String)],
        peer: &Peer,
        headers: &HeaderMap,
    ) -> Refused {
        match parse_full(params, peer, headers) {
            Ok(request) => panic!("{request:?} parsed; a refusal was expected"),
            Err(refused) => refused,
        }
    }

    #[track_caller]
    fn assert_invalid_request(refusal: Refusal, mentions: &str) {
        match refusal {
            Refusal::InvalidRequest(why) => assert!(why.contains(mentions), "{why}"),
            other => panic!("{other:?} is not invalid_request mentioning {mentions}"),
        }
    }

    fn dpop_headers(proofs: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for proof in proofs {
            headers.append("dpop", HeaderValue::from_str(proof).unwrap());
        }
        headers
    }

    // --- what parses ------------------------------------------------------------

    #[test]
    fn an_attestation_subject_token_is_an_exchange() {
        let request = parse(&exchange());
        assert_eq!(request.audience.as_str(), "orders");
        assert_eq!(request.scopes.to_string(), "orders.read");
        assert!(request.dpop.is_none());
        match request.kind {
            GrantKind::Exchange(token) => assert_eq!(token.as_str(), ATTESTATION),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_id_token_subject_token_is_an_exchange_too() {
        let request = parse(&set(exchange(), "subject_token_type", TYPE_ID_TOKEN));
        assert!(matches!(request.kind, GrantKind::Exchange(_)));
    }

    #[test]
    fn a_writ_access_token_subject_token_is_narrowing() {
        let params = set(
            set(exchange(), "subject_token", WRIT_TOKEN),
            "subject_token_type",
            TYPE_ACCESS_TOKEN,
        );
        match parse(&params).kind {
            GrantKind::Narrowing(token) => assert_eq!(token.as_str(), WRIT_TOKEN),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_actor_token_makes_a_delegation_of_either_subject() {
        let params = set(
            set(exchange(), "actor_token", WRIT_TOKEN),
            "actor_token_type",
            TYPE_ACCESS_TOKEN,
        );
        match parse(&params).kind {
            GrantKind::Delegation { subject, actor } => {
                assert_eq!(
                    subject,
                    Presented::Attestation(Credential(ATTESTATION.into()))
                );
                assert_eq!(actor, Presented::Writ(Credential(WRIT_TOKEN.into())));
            }
            other => panic!("{other:?}"),
        }
        let params = set(
            set(params, "subject_token", WRIT_TOKEN),
            "subject_token_type",
            TYPE_ACCESS_TOKEN,
        );
        let params = set(
            set(params, "actor_token", ATTESTATION),
            "actor_token_type",
            TYPE_JWT,
        );
        match parse(&params).kind {
            GrantKind::Delegation { subject, actor } => {
                assert_eq!(subject, Presented::Writ(Credential(WRIT_TOKEN.into())));
                assert_eq!(
                    actor,
                    Presented::Attestation(Credential(ATTESTATION.into()))
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn client_credentials_over_mtls_carry_the_certificate() {
        let peer = with_certificate();
        let request = parse_full(&client_credentials(), &peer, &HeaderMap::new()).unwrap();
        match request.kind {
            GrantKind::ClientCredentials(PeerEvidence::Certificate(identity)) => {
                assert_eq!(Some(identity), peer.client);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn client_credentials_on_the_unix_socket_carry_the_connection() {
        let pid = i32::try_from(std::process::id()).unwrap();
        let unix = Arc::new(UnixConnection::accept(0, 0, pid).unwrap());
        let peer = Peer {
            unix: Some(unix.clone()),
            ..anonymous()
        };
        let request = parse_full(&client_credentials(), &peer, &HeaderMap::new()).unwrap();
        match request.kind {
            GrantKind::ClientCredentials(PeerEvidence::Unix(connection)) => {
                assert!(Arc::ptr_eq(&connection, &unix));
            }
            other => panic!("{other:?}"),
        }
        // A certificate, when the caller has one too, is the evidence.
        let both = Peer {
            unix: Some(unix),
            ..with_certificate()
        };
        let request = parse_full(&client_credentials(), &both, &HeaderMap::new()).unwrap();
        assert!(matches!(
            request.kind,
            GrantKind::ClientCredentials(PeerEvidence::Certificate(_))
        ));
    }

    #[test]
    fn client_credentials_ignore_subject_parameters() {
        let params = set(
            client_credentials(),
            "subject_token_type",
            "urn:example:saml",
        );
        let request = parse_full(&params, &with_certificate(), &HeaderMap::new()).unwrap();
        assert!(matches!(request.kind, GrantKind::ClientCredentials(_)));
    }

    #[test]
    fn requested_ttl_defaults_to_tokens_default_ttl() {
        assert_eq!(parse(&exchange()).requested_ttl.as_secs(), 300);
        let asked = parse(&set(exchange(), "requested_ttl", "60"));
        assert_eq!(asked.requested_ttl.as_secs(), 60);
    }

    #[test]
    fn scopes_keep_their_order_without_duplicates() {
        let request = parse(&set(exchange(), "scope", "b a  b"));
        assert_eq!(request.scopes.to_string(), "b a");
    }

    #[test]
    fn a_token_request_never_shows_its_tokens() {
        let params = set(
            set(exchange(), "actor_token", WRIT_TOKEN),
            "actor_token_type",
            TYPE_ACCESS_TOKEN,
        );
        let shown = format!("{:?}", parse(&params));
        assert!(
            !shown.contains(ATTESTATION) && !shown.contains(WRIT_TOKEN),
            "{shown}"
        );
    }

    // --- grant_type, audience, scope, requested_ttl -------------------------------

    #[test]
    fn missing_grant_type_is_invalid_request() {
        assert_invalid_request(refusal(&without(exchange(), "grant_type")), "grant_type");
    }

    #[test]
    fn unsupported_grant_types_are_refused() {
        for grant in [
            "authorization_code",
            "password",
            "refresh_token",
            "urn:example:x",
        ] {
            let refusal = refusal(&set(exchange(), "grant_type", grant));
            assert_eq!(refusal, Refusal::UnsupportedGrantType, "{grant}");
        }
    }

    #[test]
    fn missing_audience_is_invalid_request() {
        assert_invalid_request(refusal(&without(exchange(), "audience")), "audience");
    }

    #[test]
    fn an_empty_parameter_counts_as_missing() {
        assert_invalid_request(
            refusal(&set(exchange(), "audience", "")),
            "audience or resource is required",
        );
        assert_invalid_request(refusal(&set(exchange(), "scope", "")), "scope is required");
    }

    #[test]
    fn an_audience_with_control_characters_is_invalid_request() {
        let refusal = refusal(&set(exchange(), "audience", "orders\nx"));
        assert_invalid_request(refusal, "audience is malformed");
    }

    #[test]
    fn an_oversized_audience_is_invalid_request() {
        let refusal = refusal(&set(exchange(), "audience", &"a".repeat(1025)));
        assert_invalid_request(refusal, "audience is malformed");
    }

    #[test]
    fn missing_scope_is_invalid_request() {
        assert_invalid_request(refusal(&without(exchange(), "scope")), "scope");
    }

    #[test]
    fn a_scope_with_characters_rfc_6749_forbids_is_invalid_scope() {
        for scope in ["orders\"read", "orders\\read", "ordérs"] {
            let refusal = refusal(&set(exchange(), "scope", scope));
            assert!(
                matches!(refusal, Refusal::InvalidScope(_)),
                "{scope}: {refusal:?}"
            );
        }
    }

    #[test]
    fn an_oversized_scope_is_invalid_scope() {
        let refusal = refusal(&set(exchange(), "scope", &"s".repeat(129)));
        assert!(matches!(refusal, Refusal::InvalidScope(_)), "{refusal:?}");
    }

    #[test]
    fn more_than_32_scopes_is_invalid_scope() {
        let many: Vec<String> = (0..33).map(|i| format!("s{i}")).collect();
        let refusal = refusal(&set(exchange(), "scope", &many.join(" ")));
        assert!(matches!(refusal, Refusal::InvalidScope(_)), "{refusal:?}");
        let enough = parse(&set(exchange(), "scope", &many[..32].join(" ")));
        assert_eq!(enough.scopes.len(), 32);
    }

    #[test]
    fn a_requested_ttl_that_is_not_a_positive_whole_number_is_invalid_request() {
        for ttl in ["soon", "0", "-5", "1.5", "99999999999999999999999", " 60"] {
            let refusal = refusal(&set(exchange(), "requested_ttl", ttl));
            assert_invalid_request(refusal, "requested_ttl");
        }
    }

    #[test]
    fn a_zero_default_ttl_is_temporarily_unavailable() {
        let settings = Settings {
            default_ttl: Duration::from_millis(500),
            ..settings()
        };
        let refused = TokenRequest::parse(
            &form(&exchange()),
            &anonymous(),
            &HeaderMap::new(),
            &settings,
            0,
        )
        .unwrap_err();
        assert!(
            matches!(refused.refusal, Refusal::Unavailable(_)),
            "{refused:?}"
        );
    }

    // --- resource (RFC 8707) ------------------------------------------------------

    const TOOLS: &str = "https://mcp.example.com/tools";

    /// `params` with `resource` added once for each of `values`.
    fn with_resources(
        mut params: Vec<(&'static str, String)>,
        values: &[&str],
    ) -> Vec<(&'static str, String)> {
        params.extend(values.iter().map(|v| ("resource", (*v).to_owned())));
        params
    }

    #[track_caller]
    fn assert_invalid_target(refusal: Refusal, mentions: &str) {
        match refusal {
            Refusal::InvalidTarget(why) => assert!(why.contains(mentions), "{why}"),
            other => panic!("{other:?} is not invalid_target mentioning {mentions}"),
        }
    }

    #[test]
    fn a_resource_names_the_target_exactly() {
        for uri in [
            TOOLS,
            "https://mcp.example.com",
            "HTTPS://Mcp.Example.com:8443/a/b?x=1&y=%2F",
            "https://[2001:db8::1]:443/",
            "https://127.0.0.1/tools",
        ] {
            let request = parse(&with_resources(without(exchange(), "audience"), &[uri]));
            assert_eq!(request.audience.as_str(), uri);
            assert_eq!(request.target_parameter, TargetParameter::Resource);
        }
        let by_audience = parse(&exchange());
        assert_eq!(by_audience.target_parameter, TargetParameter::Audience);
    }

    #[test]
    fn a_resource_works_for_every_grant() {
        let cc = with_resources(without(client_credentials(), "audience"), &[TOOLS]);
        let request = parse_full(&cc, &with_certificate(), &HeaderMap::new()).unwrap();
        assert_eq!(request.audience.as_str(), TOOLS);
        assert!(matches!(request.kind, GrantKind::ClientCredentials(_)));
        let narrowing = set(
            set(exchange(), "subject_token", WRIT_TOKEN),
            "subject_token_type",
            TYPE_ACCESS_TOKEN,
        );
        let request = parse(&with_resources(without(narrowing, "audience"), &[TOOLS]));
        assert!(matches!(request.kind, GrantKind::Narrowing(_)));
        let delegation = set(
            set(exchange(), "actor_token", ATTESTATION),
            "actor_token_type",
            TYPE_JWT,
        );
        let request = parse(&with_resources(without(delegation, "audience"), &[TOOLS]));
        assert_eq!(request.audience.as_str(), TOOLS);
        assert!(matches!(request.kind, GrantKind::Delegation { .. }));
    }

    #[test]
    fn a_resource_equal_to_the_audience_is_accepted() {
        let request = parse(&with_resources(
            set(exchange(), "audience", TOOLS),
            &[TOOLS],
        ));
        assert_eq!(request.audience.as_str(), TOOLS);
        assert_eq!(request.target_parameter, TargetParameter::Resource);
    }

    #[test]
    fn a_resource_other_than_the_audience_is_invalid_target() {
        let refusal = refusal(&with_resources(exchange(), &[TOOLS]));
        assert_invalid_target(refusal, "audience and resource name different targets");
    }

    #[test]
    fn an_empty_resource_counts_as_absent() {
        let request = parse(&with_resources(exchange(), &[""]));
        assert_eq!(request.audience.as_str(), "orders");
        assert_eq!(request.target_parameter, TargetParameter::Audience);
    }

    #[test]
    fn two_resources_are_invalid_target() {
        let params = with_resources(
            without(exchange(), "audience"),
            &[TOOLS, "https://mcp.example.com/other"],
        );
        assert_invalid_target(refusal(&params), "send one resource");
        // The same URI twice is still two targets asked for.
        let params = with_resources(without(exchange(), "audience"), &[TOOLS, TOOLS]);
        assert_invalid_target(refusal(&params), "send one resource");
    }

    #[test]
    fn more_resources_than_the_form_keeps_are_invalid_target() {
        let many = vec![TOOLS; crate::grant::MAX_RESOURCES + 1];
        let params = with_resources(without(exchange(), "audience"), &many);
        let body = serde_urlencoded::to_string(&params).unwrap();
        let refused = Form::parse(body.as_bytes()).unwrap_err();
        assert_invalid_target(refused, "at most 8 resource parameters");
    }

    #[test]
    fn a_malformed_resource_is_invalid_target() {
        let oversized = format!("https://mcp.example.com/{}", "a".repeat(MAX_RESOURCE_LEN));
        for (uri, why) in [
            ("mcp.example.com/tools", "not an absolute URI"),
            ("/tools", "not an absolute URI"),
            ("//mcp.example.com/tools", "not an absolute URI"),
            ("1https://mcp.example.com", "not an absolute URI"),
            ("http://mcp.example.com/tools", "must be an https URI"),
            ("urn:example:tools", "must be an https URI"),
            ("https:mcp.example.com", "must name a host"),
            ("https:///tools", "must name a host"),
            ("https://:443/tools", "must name a host"),
            (
                "https://mcp.example.com/tools#frag",
                "must not have a fragment",
            ),
            ("https://mcp.example.com/#", "must not have a fragment"),
            (
                "https://user:pw@mcp.example.com/",
                "must not carry user information",
            ),
            ("https://mcp.example.com/a b", "characters a URI may not"),
            ("https://mcp.example.com/\n", "characters a URI may not"),
            (
                "https://mcp.example.com/t\u{e9}",
                "characters a URI may not",
            ),
            ("https://mcp.example.com/\"", "characters a URI may not"),
            ("https://mcp.example.com/%zz", "malformed percent escape"),
            ("https://mcp.example.com/%4", "malformed percent escape"),
            (oversized.as_str(), "longer than 1024 bytes"),
        ] {
            let params = with_resources(without(exchange(), "audience"), &[uri]);
            let refusal = refusal(&params);
            // Never echoed: the description is writ's own text.
            assert!(!refusal.description().contains(uri), "{uri}");
            assert_invalid_target(refusal, why);
        }
    }

    #[test]
    fn a_refusal_of_the_resource_learned_nothing() {
        let params = with_resources(without(exchange(), "audience"), &["http://x"]);
        let refused = refused_with(&params, &anonymous(), &HeaderMap::new());
        assert_eq!(*refused.learned, Learned::default());
    }

    // --- subject and actor tokens ------------------------------------------------

    #[test]
    fn missing_subject_token_is_invalid_request() {
        assert_invalid_request(
            refusal(&without(exchange(), "subject_token")),
            "subject_token",
        );
    }

    #[test]
    fn missing_subject_token_type_is_invalid_request() {
        let refusal = refusal(&without(exchange(), "subject_token_type"));
        assert_invalid_request(refusal, "subject_token_type is required");
    }

    #[test]
    fn an_unknown_subject_token_type_is_invalid_request() {
        let refusal = refusal(&set(exchange(), "subject_token_type", "urn:example:saml"));
        assert_invalid_request(refusal, "subject_token_type is not supported");
    }

    #[test]
    fn actor_token_without_its_type_is_invalid_request() {
        let refusal = refusal(&set(exchange(), "actor_token", ATTESTATION));
        assert_invalid_request(refusal, "actor_token_type is required");
    }

    #[test]
    fn actor_token_type_without_actor_token_is_invalid_request() {
        let refusal = refusal(&set(exchange(), "actor_token_type", TYPE_JWT));
        assert_invalid_request(refusal, "actor_token_type without actor_token");
    }

    #[test]
    fn an_unknown_actor_token_type_is_invalid_request() {
        let params = set(
            set(exchange(), "actor_token", ATTESTATION),
            "actor_token_type",
            "urn:example:saml",
        );
        assert_invalid_request(refusal(&params), "actor_token_type is not supported");
    }

    #[test]
    fn actor_token_with_client_credentials_is_invalid_request() {
        let params = set(
            set(client_credentials(), "actor_token", ATTESTATION),
            "actor_token_type",
            TYPE_JWT,
        );
        let refused = refused_with(&params, &with_certificate(), &HeaderMap::new());
        assert_invalid_request(
            refused.refusal,
            "actor_token needs the token-exchange grant",
        );
    }

    #[test]
    fn client_credentials_without_a_certificate_or_unix_peer_is_invalid_client() {
        let refusal = refusal(&client_credentials());
        assert!(matches!(refusal, Refusal::InvalidClient(_)), "{refusal:?}");
    }

    // --- DPoP --------------------------------------------------------------------

    #[test]
    fn a_valid_dpop_proof_is_kept_with_its_key_thumbprint() {
        let key = writ_sdk::dpop::DpopKey::generate().unwrap();
        let proof = key
            .proof("POST", &format!("{ISSUER}/oauth2/token"), None)
            .unwrap();
        let request = parse_full(&exchange(), &anonymous(), &dpop_headers(&[&proof])).unwrap();
        assert_eq!(request.dpop_jkt(), Some(key.thumbprint()));
    }

    #[test]
    fn two_dpop_headers_are_invalid_dpop_proof() {
        let key = writ_sdk::dpop::DpopKey::generate().unwrap();
        let proof = key
            .proof("POST", &format!("{ISSUER}/oauth2/token"), None)
            .unwrap();
        let refused = refused_with(&exchange(), &anonymous(), &dpop_headers(&[&proof, &proof]));
        assert_eq!(
            refused.refusal,
            Refusal::InvalidDpopProof("send exactly one DPoP header".into())
        );
    }

    #[test]
    fn a_dpop_header_that_is_not_text_is_invalid_dpop_proof() {
        let mut headers = HeaderMap::new();
        headers.insert("dpop", HeaderValue::from_bytes(b"\xff\xfe").unwrap());
        let refused = refused_with(&exchange(), &anonymous(), &headers);
        assert!(
            matches!(refused.refusal, Refusal::InvalidDpopProof(_)),
            "{refused:?}"
        );
    }

    #[test]
    fn a_malformed_dpop_proof_is_invalid_dpop_proof() {
        for proof in ["", "x", "a.b.c", "a.b.c.d"] {
            let refused = refused_with(&exchange(), &anonymous(), &dpop_headers(&[proof]));
            assert!(
                matches!(refused.refusal, Refusal::InvalidDpopProof(_)),
                "{proof}: {refused:?}"
            );
        }
    }

    #[test]
    fn a_dpop_proof_for_another_endpoint_is_invalid_dpop_proof() {
        let key = writ_sdk::dpop::DpopKey::generate().unwrap();
        let proof = key
            .proof("POST", &format!("{ISSUER}/oauth2/introspect"), None)
            .unwrap();
        let refused = refused_with(&exchange(), &anonymous(), &dpop_headers(&[&proof]));
        assert!(
            matches!(refused.refusal, Refusal::InvalidDpopProof(_)),
            "{refused:?}"
        );
    }

    // --- order and what a refusal carries -------------------------------------------

    #[test]
    fn the_dpop_proof_is_checked_before_grant_type() {
        let params = set(exchange(), "grant_type", "password");
        let refused = refused_with(&params, &anonymous(), &dpop_headers(&["x"]));
        assert!(
            matches!(refused.refusal, Refusal::InvalidDpopProof(_)),
            "{refused:?}"
        );
    }

    #[test]
    fn grant_type_is_checked_before_audience_and_scope() {
        let params = set(
            set(without(exchange(), "audience"), "grant_type", "password"),
            "scope",
            "\"",
        );
        assert_eq!(refusal(&params), Refusal::UnsupportedGrantType);
    }

    #[test]
    fn a_refusal_before_audience_learned_nothing() {
        let refused = refused_with(
            &without(exchange(), "audience"),
            &anonymous(),
            &HeaderMap::new(),
        );
        assert_eq!(*refused.learned, Learned::default());
    }

    #[test]
    fn a_refusal_after_audience_names_the_target() {
        let refused = refused_with(
            &set(exchange(), "scope", "\""),
            &anonymous(),
            &HeaderMap::new(),
        );
        assert_eq!(
            refused.learned.target.as_ref().map(TargetId::as_str),
            Some("orders")
        );
        assert_eq!(refused.learned.scopes_requested, None);
    }

    #[test]
    fn a_refusal_after_scope_names_the_target_and_scopes() {
        let params = set(exchange(), "subject_token_type", "urn:example:saml");
        let refused = refused_with(&params, &anonymous(), &HeaderMap::new());
        assert_eq!(
            refused.learned.target.as_ref().map(TargetId::as_str),
            Some("orders")
        );
        let scopes = refused
            .learned
            .scopes_requested
            .as_ref()
            .map(Scopes::to_string);
        assert_eq!(scopes.as_deref(), Some("orders.read"));
    }

    mod properties {
        //! Any form, with parameters writ reads holding valid or arbitrary
        //! values, parses or is refused: never a panic, and never a
        //! description that echoes the client's control characters.

        use proptest::prelude::*;

        use super::*;

        fn name() -> impl Strategy<Value = String> {
            prop_oneof![
                3 => prop::sample::select(vec![
                    "grant_type", "audience", "scope", "requested_ttl", "subject_token",
                    "subject_token_type", "actor_token", "actor_token_type", "resource",
                ])
                .prop_map(str::to_owned),
                1 => ".{0,12}",
            ]
        }

        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                2 => prop::sample::select(vec![
                    TOKEN_EXCHANGE, CLIENT_CREDENTIALS, TYPE_JWT, TYPE_ID_TOKEN,
                    TYPE_ACCESS_TOKEN, "orders", "orders.read orders.write", "60", ATTESTATION,
                    "https://mcp.example.com/tools",
                ])
                .prop_map(str::to_owned),
                1 => ".{0,64}",
                1 => "[\\x00-\\x1f\\x7f ]{0,8}",
            ]
        }

        proptest! {
            #![proptest_config(crate::proptest_config(256))]

            #[test]
            fn any_form_parses_or_is_refused_without_echoing_controls(
                params in prop::collection::btree_map(name(), value(), 0..10),
                certificate in any::<bool>(),
            ) {
                let body = serde_urlencoded::to_string(&params).unwrap_or_default();
                let form = Form::parse(body.as_bytes()).unwrap_or_default();
                let peer = if certificate { with_certificate() } else { anonymous() };
                if let Err(refused) = TokenRequest::parse(&form, &peer, &HeaderMap::new(), &settings(), 0) {
                    let why = refused.refusal.description();
                    prop_assert!(!why.chars().any(char::is_control), "{why:?}");
                }
            }
        }
    }
}
