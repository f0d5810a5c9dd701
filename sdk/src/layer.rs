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
//!     .layer(RequireToken::new(verifier));
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Request, StatusCode, header};

use crate::{Verified, Verifier, VerifyError};

/// A tower layer that lets a request through only with a valid writ token,
/// and puts the [`Verified`] token in its extensions.
#[derive(Clone, Debug)]
pub struct RequireToken {
    verifier: Verifier,
}

impl RequireToken {
    /// Guards with `verifier`.
    pub fn new(verifier: Verifier) -> Self {
        Self { verifier }
    }
}

impl<S> tower::Layer<S> for RequireToken {
    type Service = RequireTokenService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireTokenService {
            inner,
            verifier: self.verifier.clone(),
        }
    }
}

/// The service [`RequireToken`] wraps around a route.
#[derive(Clone, Debug)]
pub struct RequireTokenService<S> {
    inner: S,
    verifier: Verifier,
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

fn bearer<B>(req: &Request<B>) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
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
        Box::pin(async move {
            let Some(token) = bearer(&req).map(str::to_owned) else {
                return Ok(unauthorized("a bearer token is required"));
            };
            match verifier.verify(&token).await {
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
/// revocation feed is the server's problem (503), not the token's;
/// everything else is 401 `invalid_token`. Reasons never include the token.
fn refusal(e: &VerifyError) -> Response {
    match e {
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
