//! Guarding routes with a [`Verifier`] (feature `axum`).
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

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Request, StatusCode, header};

use crate::{Presented, Verified, Verifier, VerifyError};

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
}

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
        if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
            return Err(crate::Error::Config(format!(
                "RequireToken origin {origin:?} must be scheme://host[:port], without a path"
            )));
        }
        Ok(Self {
            verifier,
            origin: origin.into(),
        })
    }
}

impl<S> tower::Layer<S> for RequireToken {
    type Service = RequireTokenService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireTokenService {
            inner,
            verifier: self.verifier.clone(),
            origin: self.origin.clone(),
        }
    }
}

/// The service [`RequireToken`] wraps around a route.
#[derive(Clone, Debug)]
pub struct RequireTokenService<S> {
    inner: S,
    verifier: Verifier,
    origin: Arc<str>,
}

/// 401 with an RFC 6750 `WWW-Authenticate` header saying why.
fn unauthorized(reason: &str) -> Response {
    let challenge = format!("Bearer error=\"invalid_token\", error_description=\"{reason}\"");
    let mut resp = (StatusCode::UNAUTHORIZED, reason.to_owned()).into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
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
        // The clone that was driven to readiness serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
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
                Ok(verified) => {
                    req.extensions_mut().insert(verified);
                    inner.call(req).await
                }
                Err(e) => {
                    tracing::info!(reason = %e, "request refused by the writ verifier");
                    Ok(refusal(&e))
                }
            }
        })
    }
}

/// RFC 6750: a missing scope is 403 `insufficient_scope`; a stale
/// revocation feed is the server's problem (503), not the token's; a bad
/// DPoP proof is 401 `invalid_dpop_proof` (RFC 9449 section 7.1);
/// everything else is 401 `invalid_token`. Reasons never include the token.
fn refusal(e: &VerifyError) -> Response {
    match e {
        VerifyError::Missing => unauthorized("a bearer token is required"),
        VerifyError::DpopProof(crate::dpop::DpopError::Busy { retry_after }) => {
            let mut resp = (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            resp
        }
        VerifyError::DpopProof(_) => {
            let challenge = format!(
                "DPoP error=\"invalid_dpop_proof\", error_description=\"{e}\", algs=\"ES256 ES384 EdDSA RS256 PS256\""
            );
            let mut resp = (StatusCode::UNAUTHORIZED, e.to_string()).into_response();
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
            resp
        }
        VerifyError::MissingScope(scope) => {
            let mut resp = (StatusCode::FORBIDDEN, e.to_string()).into_response();
            let challenge = format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\"");
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
            resp
        }
        VerifyError::FeedStale => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
        _ => unauthorized(&e.to_string()),
    }
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
