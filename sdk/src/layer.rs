//! Guarding routes with a [`Verifier`] (feature `axum`), and telling clients
//! how to get a token (RFC 9728 protected resource metadata).
//!
//! ```no_run
//! # async fn run(verifier: writ_sdk::Verifier) {
//! use axum::{Router, routing::get};
//! use writ_sdk::{Verified, layer::RequireToken};
//! async fn orders(token: Verified) -> String {
//!     format!("hello {}", token.subject)
//! }
//! let app: Router = Router::new()
//!     .route("/orders", get(orders))
//!     .layer(RequireToken::new(verifier, "https://orders.internal:8443").unwrap());
//! # }
//! ```
//!
//! A resource server that clients discover on their own (an MCP server, for
//! one) names itself by an `https` URI, which is the verifier's audience,
//! and publishes its metadata: the layer then answers
//! `GET /.well-known/oauth-protected-resource` itself (no token needed), and
//! its 401 and 403 challenges point there.
//!
//! ```no_run
//! # async fn run(broker: writ_sdk::Broker) -> Result<(), writ_sdk::Error> {
//! use axum::{Router, routing::post};
//! use writ_sdk::{Verified, Verifier, layer::RequireToken};
//! # async fn call_tool(token: Verified) -> String { token.subject }
//! let verifier = Verifier::builder(broker, "https://mcp.example.com/tools")
//!     .require_scopes(["tools.read"])
//!     .build()
//!     .await?;
//! let guard = RequireToken::new(verifier, "https://mcp.example.com")?
//!     .publish_metadata(["tools.read", "tools.write"])?;
//! let app: Router = Router::new().route("/tools", post(call_tool)).layer(guard);
//! # Ok(()) }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, Request, StatusCode, header};

use crate::{Presented, TXN_TOKEN_HEADER, TxnClaims, Verified, Verifier, VerifyError};

/// Where RFC 9728 section 3 puts a protected resource's metadata.
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";
/// The DPoP algorithms a challenge offers (those writ verifies).
const DPOP_ALGS: &str = "ES256 ES384 EdDSA RS256 PS256";

/// The DER of the TLS client certificate a request arrived with. A server
/// that terminates TLS itself puts it in the request's extensions, so that
/// [`RequireToken`] can accept certificate-bound tokens (RFC 8705).
#[derive(Clone, Debug)]
pub struct ClientCertificate(pub Vec<u8>);

/// A tower layer that lets a request through only with a valid writ token,
/// and puts the [`Verified`] token in its extensions. Key-bound tokens need
/// their proof: a `DPoP` header for this request, or the
/// [`ClientCertificate`] they are bound to.
#[derive(Clone, Debug)]
pub struct RequireToken {
    verifier: Verifier,
    origin: Arc<str>,
    dpop_required: bool,
    scopes_supported: Option<Vec<String>>,
    txn_trust_domain: Option<Arc<str>>,
}

/// A transaction token the layer verified from the `Txn-Token` header
/// (see [`RequireToken::accept_txn_tokens`]): the call chain, its subject,
/// purpose and contexts. Extracting it where none came is 401.
#[derive(Debug, Clone)]
pub struct TxnToken(pub TxnClaims);

impl RequireToken {
    /// Guards with `verifier` a server that clients address at `origin`,
    /// its scheme and authority (e.g. `https://orders.internal:8443`): DPoP
    /// proofs must name it in `htu`. It is required because the request's
    /// own `Host` header is the client's to choose: a proof made for another
    /// server would pass if the server believed it.
    pub fn new(verifier: Verifier, origin: &str) -> Result<Self, crate::Error> {
        let origin = origin.trim_end_matches('/');
        let authority = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"))
            .unwrap_or_default();
        if authority.is_empty()
            || authority.contains(['/', '?', '#', '@', ' '])
            || !header_safe(authority)
        {
            return Err(crate::Error::Config(format!(
                "RequireToken origin {origin:?} must be scheme://host[:port], without a path"
            )));
        }
        Ok(Self {
            verifier,
            origin: origin.into(),
            dpop_required: false,
            scopes_supported: None,
            txn_trust_domain: None,
        })
    }

    /// Reads a transaction token for `trust_domain` from the `Txn-Token`
    /// header, when a request carries one, beside its access token: a
    /// valid one is put in the extensions as [`TxnToken`], an invalid one
    /// (forged, expired, for another trust domain, revoked, or an access
    /// token) refuses the request with 401 `invalid_token`.
    pub fn accept_txn_tokens(mut self, trust_domain: &str) -> Self {
        self.txn_trust_domain = Some(trust_domain.into());
        self
    }

    /// Accepts only DPoP-bound tokens (RFC 9449): a bearer token, or one
    /// bound to a client certificate, is refused with a `DPoP` challenge,
    /// and the metadata says `dpop_bound_access_tokens_required: true`.
    pub fn require_dpop(mut self) -> Self {
        self.dpop_required = true;
        self
    }

    /// Publishes RFC 9728 protected resource metadata: the layer answers
    /// `GET` [`METADATA_PATH`] with `resource` (the verifier's audience),
    /// `authorization_servers` (the broker's issuer), `scopes_supported`,
    /// `bearer_methods_supported` (`header`) and
    /// `dpop_bound_access_tokens_required`, without asking for a token, and
    /// every 401 and 403 names that document in `resource_metadata`. Apply
    /// it with `Router::layer` (which also wraps the fallback), not
    /// `route_layer`, so the well-known path, which no route names, reaches it.
    ///
    /// The audience must be an absolute `https` URI without fragment (the
    /// resource's identifier, RFC 9728 section 1.2), and every value must be
    /// safe in a header: a `"`, a `\` or a control character in the
    /// audience, the issuer or a scope is refused here, never sent.
    pub fn publish_metadata<S: Into<String>>(
        mut self,
        scopes_supported: impl IntoIterator<Item = S>,
    ) -> Result<Self, crate::Error> {
        let scopes: Vec<String> = scopes_supported.into_iter().map(Into::into).collect();
        let audience = self.verifier.audience();
        let is_uri = audience
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
            && audience.len() > 8
            && !audience.contains(['#', ' ']);
        if !is_uri || !header_safe(audience) {
            return Err(crate::Error::Config(format!(
                "the verifier's audience {audience:?} must be an https URI without fragment, \
                 quotes or control characters to be published as the resource"
            )));
        }
        if !header_safe(self.verifier.issuer()) {
            return Err(crate::Error::Config(
                "the broker's issuer holds characters a header may not carry".into(),
            ));
        }
        let required = self.verifier.required_scopes();
        if let Some(bad) = scopes.iter().chain(required).find(|s| !scope_token(s)) {
            return Err(crate::Error::Config(format!(
                "scope {bad:?} is not an RFC 6749 scope token"
            )));
        }
        self.scopes_supported = Some(scopes);
        Ok(self)
    }

    /// The URL of the metadata document: this server's origin and
    /// [`METADATA_PATH`].
    pub fn metadata_url(&self) -> String {
        format!("{}{METADATA_PATH}", self.origin)
    }

    /// The RFC 9728 document, when [`RequireToken::publish_metadata`] was called.
    fn metadata(&self) -> Option<Metadata> {
        let scopes = self.scopes_supported.as_ref()?;
        let document = serde_json::json!({
            "resource": self.verifier.audience(),
            "authorization_servers": [self.verifier.issuer()],
            "scopes_supported": scopes,
            "bearer_methods_supported": ["header"],
            "dpop_bound_access_tokens_required": self.dpop_required,
        });
        Some(Metadata {
            document: document.to_string().into(),
            url: self.metadata_url().into(),
            path_inserted: path_inserted(self.verifier.audience()).map(Into::into),
        })
    }
}

/// RFC 9728 section 3.1: for a resource with a path
/// (`https://mcp.example.com/tools`), the well-known path with the
/// resource's path after it (`/.well-known/oauth-protected-resource/tools`),
/// where a client that derives the URL from the resource looks.
fn path_inserted(resource: &str) -> Option<String> {
    let after_scheme = resource.split_once("://")?.1;
    let path = after_scheme
        .find(['/', '?'])
        .map(|at| &after_scheme[at..])?
        .split('?')
        .next()?
        .trim_end_matches('/');
    (!path.is_empty()).then(|| format!("{METADATA_PATH}{path}"))
}

/// A published metadata document and its URL.
#[derive(Clone, Debug)]
struct Metadata {
    document: Arc<str>,
    url: Arc<str>,
    /// The second path it is served at, for a resource with a path.
    path_inserted: Option<Arc<str>>,
}

impl Metadata {
    /// Whether a request for `path` asks for this document.
    fn served_at(&self, path: &str) -> bool {
        path == METADATA_PATH || self.path_inserted.as_deref() == Some(path)
    }
}

/// What the challenges of one layer say besides the error.
#[derive(Clone, Debug)]
struct Challenges {
    /// `resource_metadata`, when published.
    metadata: Option<Metadata>,
    /// The scopes a token must carry, for `insufficient_scope`.
    required_scopes: Arc<str>,
    /// Challenge with `DPoP` rather than `Bearer`.
    dpop_required: bool,
}

/// True when `value` may sit in a quoted header parameter as it is: no
/// `"`, no `\`, no control character, ASCII only.
fn header_safe(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b.is_ascii() && !b.is_ascii_control() && b != b'"' && b != b'\\')
}

/// An RFC 6749 section 3.3 scope token.
fn scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// `value` as an RFC 9110 quoted-string: `"` and `\` escaped, control
/// characters dropped, so no value ends the parameter or the header.
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

impl<S> tower::Layer<S> for RequireToken {
    type Service = RequireTokenService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireTokenService {
            inner,
            verifier: self.verifier.clone(),
            origin: self.origin.clone(),
            txn_trust_domain: self.txn_trust_domain.clone(),
            challenges: Challenges {
                metadata: self.metadata(),
                required_scopes: self.verifier.required_scopes().join(" ").into(),
                dpop_required: self.dpop_required,
            },
        }
    }
}

/// The service [`RequireToken`] wraps around a route.
#[derive(Clone, Debug)]
pub struct RequireTokenService<S> {
    inner: S,
    verifier: Verifier,
    origin: Arc<str>,
    txn_trust_domain: Option<Arc<str>>,
    challenges: Challenges,
}

impl Challenges {
    /// A `WWW-Authenticate` value: `DPoP` (with `algs`) or `Bearer`, the
    /// `params` given, and `resource_metadata` when published; every value
    /// quoted.
    fn header(&self, dpop: bool, params: &[(&str, &str)]) -> Option<HeaderValue> {
        let mut parts: Vec<String> = params
            .iter()
            .map(|(name, value)| format!("{name}={}", quoted(value)))
            .collect();
        if dpop {
            parts.push(format!("algs={}", quoted(DPOP_ALGS)));
        }
        if let Some(metadata) = &self.metadata {
            parts.push(format!("resource_metadata={}", quoted(&metadata.url)));
        }
        let scheme = if dpop { "DPoP" } else { "Bearer" };
        if parts.is_empty() {
            return Some(HeaderValue::from_static(scheme));
        }
        HeaderValue::from_str(&format!("{scheme} {}", parts.join(", "))).ok()
    }

    /// `status` with a challenge and `reason` as the body.
    fn respond(
        &self,
        status: StatusCode,
        dpop: bool,
        params: &[(&str, &str)],
        reason: &str,
    ) -> Response {
        let mut resp = (status, reason.to_owned()).into_response();
        if let Some(v) = self.header(dpop, params) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        resp
    }

    /// 401 `invalid_token` saying why, in the scheme this layer asks for.
    fn unauthorized(&self, reason: &str) -> Response {
        let params = [("error", "invalid_token"), ("error_description", reason)];
        self.respond(
            StatusCode::UNAUTHORIZED,
            self.dpop_required,
            &params,
            reason,
        )
    }

    /// RFC 6750: a request with no token gets the challenge alone, without
    /// an error code (section 3.1); a missing scope is 403
    /// `insufficient_scope` naming the scopes a token needs here (MCP
    /// step-up); a stale revocation feed is
    /// the server's problem (503), not the token's; a bad DPoP proof is 401
    /// `invalid_dpop_proof` (RFC 9449 section 7.1); everything else is 401
    /// `invalid_token`. Reasons never include the token.
    fn refusal(&self, e: &VerifyError) -> Response {
        match e {
            VerifyError::Missing => {
                let reason = if self.dpop_required {
                    "a DPoP-bound token is required"
                } else {
                    "a bearer token is required"
                };
                self.respond(StatusCode::UNAUTHORIZED, self.dpop_required, &[], reason)
            }
            VerifyError::DpopProof(crate::dpop::DpopError::Busy { retry_after }) => {
                let mut resp = (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response();
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
                resp
            }
            VerifyError::DpopProof(_) => {
                let why = e.to_string();
                let params = [("error", "invalid_dpop_proof"), ("error_description", &why)];
                self.respond(StatusCode::UNAUTHORIZED, true, &params, &why)
            }
            VerifyError::MissingScope(_) => {
                let params = [
                    ("error", "insufficient_scope"),
                    ("scope", &*self.required_scopes),
                ];
                let reason = e.to_string();
                self.respond(StatusCode::FORBIDDEN, self.dpop_required, &params, &reason)
            }
            VerifyError::FeedStale => {
                (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response()
            }
            _ => self.unauthorized(&e.to_string()),
        }
    }
}

/// 401 with an RFC 6750 `WWW-Authenticate` header saying why, for an
/// extractor outside the layer (it knows no metadata).
fn unauthorized(reason: &str) -> Response {
    let challenges = Challenges {
        metadata: None,
        required_scopes: "".into(),
        dpop_required: false,
    };
    challenges.unauthorized(reason)
}

/// The RFC 9728 document, `200 application/json`.
fn metadata_response(metadata: &Metadata) -> Response {
    let mut resp = (StatusCode::OK, metadata.document.to_string()).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}

impl<S, B> tower::Service<Request<B>> for RequireTokenService<S>
where
    S: tower::Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The metadata is public: answered before any token is asked for.
        if let Some(metadata) = &self.challenges.metadata
            && req.method() == Method::GET
            && metadata.served_at(req.uri().path())
        {
            let resp = metadata_response(metadata);
            return Box::pin(async move { Ok(resp) });
        }
        // The clone that was driven to readiness serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        let challenges = self.challenges.clone();
        let txn_trust_domain = self.txn_trust_domain.clone();
        // The DPoP `htu`: this server's configured origin, never the Host header.
        let url = format!("{}{}", self.origin, req.uri().path());
        Box::pin(async move {
            let method = req.method().as_str().to_owned();
            let certificate = req.extensions().get::<ClientCertificate>().cloned();
            let outcome = match Presented::from_headers(req.headers(), &method, &url) {
                Ok(presented) => {
                    let presented = match &certificate {
                        Some(der) => presented.with_client_certificate(&der.0),
                        None => presented,
                    };
                    verifier.verify_presented(&presented).await
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(verified) if challenges.dpop_required && !dpop_bound(&verified) => {
                    tracing::info!("request refused: the token is not DPoP-bound");
                    Ok(challenges.unauthorized("a DPoP-bound token is required"))
                }
                Ok(verified) => {
                    if let Some(trust_domain) = &txn_trust_domain {
                        match txn_token(&verifier, req.headers(), trust_domain).await {
                            Ok(Some(txn)) => {
                                req.extensions_mut().insert(txn);
                            }
                            Ok(None) => {}
                            Err(reason) => {
                                tracing::info!(%reason, "request refused: its Txn-Token");
                                return Ok(challenges.unauthorized(&reason));
                            }
                        }
                    }
                    req.extensions_mut().insert(verified);
                    inner.call(req).await
                }
                Err(e) => {
                    tracing::info!(reason = %e, "request refused by the writ verifier");
                    Ok(challenges.refusal(&e))
                }
            }
        })
    }
}

/// The request's `Txn-Token`, verified for `trust_domain`, if it has one;
/// `Err` with the reason when it is not valid (or sent twice).
async fn txn_token(
    verifier: &Verifier,
    headers: &http::HeaderMap,
    trust_domain: &str,
) -> Result<Option<TxnToken>, String> {
    let mut values = headers.get_all(TXN_TOKEN_HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err("more than one Txn-Token header".into());
    }
    let token = value
        .to_str()
        .map_err(|_| "the Txn-Token header is not text".to_owned())?;
    verifier
        .verify_txn(token, trust_domain)
        .await
        .map(|claims| Some(TxnToken(claims)))
        .map_err(|e| format!("Txn-Token: {e}"))
}

/// Extracts the transaction token [`RequireToken`] verified; 401 when the
/// request carried none.
impl<S: Send + Sync> FromRequestParts<S> for TxnToken {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<TxnToken>()
            .cloned()
            .ok_or_else(|| unauthorized("a Txn-Token is required"))
    }
}

/// `Option<TxnToken>`: the transaction token, when the request carried one.
impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for TxnToken {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<TxnToken>().cloned())
    }
}

/// Whether the token is bound to a DPoP key (`cnf.jkt`), which
/// `verify_presented` has already seen proved.
fn dpop_bound(verified: &Verified) -> bool {
    verified
        .access_claims
        .cnf
        .as_ref()
        .is_some_and(|cnf| cnf.jkt.is_some())
}

/// Extracts the token [`RequireToken`] verified; 401 when the route is not
/// behind the layer.
impl<S: Send + Sync> FromRequestParts<S> for Verified {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Verified>()
            .cloned()
            .ok_or_else(|| unauthorized("a bearer token is required"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenges(metadata: bool, dpop_required: bool) -> Challenges {
        Challenges {
            metadata: metadata.then(|| Metadata {
                document: "{}".into(),
                url: "https://mcp.example.com/.well-known/oauth-protected-resource".into(),
                path_inserted: None,
            }),
            required_scopes: "tools.read tools.write".into(),
            dpop_required,
        }
    }

    fn challenge(resp: &Response) -> &str {
        resp.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap_or_default()
    }

    #[test]
    fn a_resource_with_a_path_is_also_served_at_the_path_inserted_url() {
        let at = |r: &str| path_inserted(r);
        assert_eq!(
            at("https://mcp.example.com/tools").as_deref(),
            Some("/.well-known/oauth-protected-resource/tools")
        );
        assert_eq!(
            at("https://mcp.example.com/a/b/?x=1").as_deref(),
            Some("/.well-known/oauth-protected-resource/a/b")
        );
        for bare in [
            "https://mcp.example.com",
            "https://mcp.example.com/",
            "https://h?x=1",
        ] {
            assert_eq!(at(bare), None, "{bare}");
        }
    }

    #[test]
    fn quoted_values_escape_quotes_and_backslashes_and_drop_controls() {
        assert_eq!(quoted("plain"), "\"plain\"");
        assert_eq!(quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(quoted("a\r\nSet-Cookie: x"), "\"aSet-Cookie: x\"");
    }

    #[test]
    fn header_safe_refuses_quotes_backslashes_controls_and_non_ascii() {
        assert!(header_safe("https://mcp.example.com/tools"));
        for bad in ["a\"b", "a\\b", "a\nb", "a\u{7f}", "t\u{e9}"] {
            assert!(!header_safe(bad), "{bad:?}");
        }
    }

    #[test]
    fn scope_tokens_follow_rfc_6749() {
        assert!(scope_token("tools.read"));
        for bad in ["", "a b", "a\"b", "a\\b", "\u{e9}"] {
            assert!(!scope_token(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_401_names_the_metadata_document() {
        let resp = challenges(true, false).refusal(&VerifyError::Missing);
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            challenge(&resp),
            "Bearer resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource\""
        );
        // No token at all: the challenge alone, no error code (RFC 6750 section 3.1).
        let unpublished = challenges(false, false).refusal(&VerifyError::Missing);
        assert_eq!(challenge(&unpublished), "Bearer");
        // A token that fails says why.
        let expired = challenges(true, false).refusal(&VerifyError::Expired);
        assert!(
            challenge(&expired).starts_with("Bearer error=\"invalid_token\", error_description="),
            "{}",
            challenge(&expired)
        );
    }

    #[test]
    fn a_layer_requiring_dpop_challenges_with_dpop_and_its_algs() {
        let resp = challenges(true, true).refusal(&VerifyError::Expired);
        let value = challenge(&resp);
        assert!(value.starts_with("DPoP error=\"invalid_token\""), "{value}");
        assert!(
            value.contains(", algs=\"ES256 ES384 EdDSA RS256 PS256\""),
            "{value}"
        );
        assert!(value.contains("resource_metadata=\"https://"), "{value}");
    }

    #[test]
    fn a_missing_scope_is_403_naming_every_needed_scope() {
        let resp =
            challenges(true, false).refusal(&VerifyError::MissingScope("tools.write".into()));
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            challenge(&resp),
            "Bearer error=\"insufficient_scope\", scope=\"tools.read tools.write\", \
             resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource\""
        );
    }
}
