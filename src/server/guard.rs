//! The middleware every routed request passes: it sheds what is over
//! `limits.max_concurrent_requests`, bounds the time a request may run
//! (`limits.request_timeout`) and the size of its body ([`MAX_BODY_BYTES`]),
//! and answers each of those with an audited refusal.
//!
//! One layer rather than tower's load-shed, concurrency-limit and timeout
//! stacked behind an error handler: those box a future per layer, and the
//! concurrency limit allocates a fresh semaphore future for every clone of
//! the route it wraps: a profile of the token endpoint put 8.5 % of the
//! server's CPU in that stack and axum's routing (4.5 % with this layer).
//! Here a request costs one permit taken without waiting (a request over
//! the limit is shed, never queued), one timer and one boxed future. The
//! permit pool is shared by the routes of one layer (clients' or
//! operators', see `routes`); tower's concurrency limit, applied by
//! `Router::layer`, made one per route.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;
use tower::{Layer, Service, ServiceExt as _};

use super::AppState;
use super::error::ApiError;
use crate::audit::AuditRecord;
use crate::clock::rfc3339;
use crate::grant::Refusal;

/// The largest request body accepted (form posts).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How much of an oversized body is read and dropped before answering 413,
/// so a client still sending reads the answer instead of a reset...
const DRAIN_BYTES: usize = 1024 * 1024;
/// ...and for how long at most.
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Builds a [`Guard`] around each route it is applied to; those routes
/// share one pool of `limits.max_concurrent_requests` permits.
#[derive(Clone)]
pub(super) struct GuardLayer {
    shared: Arc<Shared>,
}

struct Shared {
    app: Arc<AppState>,
    permits: Semaphore,
    timeout: Duration,
}

impl GuardLayer {
    /// The limits of `app.config.limits`.
    pub(super) fn new(app: Arc<AppState>) -> Self {
        let limits = &app.config.limits;
        // Validated to at most MAX_CONCURRENT_REQUESTS, far below the cap.
        let permits = Semaphore::new(limits.max_concurrent_requests.min(Semaphore::MAX_PERMITS));
        let timeout = limits.request_timeout;
        Self {
            shared: Arc::new(Shared {
                app,
                permits,
                timeout,
            }),
        }
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// A route behind the limits of its [`GuardLayer`].
#[derive(Clone)]
pub(super) struct Guard<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Service<Request> for Guard<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Whether a request may run is decided per request, when it is
        // polled: one over the limit is answered 503 at once, never queued.
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let shared = self.shared.clone();
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        // A declared length within the limit is held to by HTTP framing (and
        // DefaultBodyLimit stands behind it): nothing to buffer, and the
        // route's future (not yet polled) runs only once admitted.
        if declared.is_some_and(|n| n <= MAX_BODY_BYTES as u64) {
            let route = self.inner.call(request);
            return Box::pin(
                async move { Ok(shared.admit(async { infallible(route.await) }).await) },
            );
        }
        let inner = self.inner.clone();
        Box::pin(async move {
            let bounded = shared.bounded_body(inner, request, declared);
            Ok(shared.admit(bounded).await)
        })
    }
}

impl Shared {
    /// Runs `request` if a permit is free, within the request timeout.
    async fn admit(&self, request: impl Future<Output = Response>) -> Response {
        let Ok(_permit) = self.permits.try_acquire() else {
            return self.unavailable("server is overloaded").await;
        };
        match tokio::time::timeout(self.timeout, request).await {
            Ok(response) => response,
            Err(_) => self.unavailable("request timed out").await,
        }
    }

    /// Passes a request without a declared length whose body fits in
    /// [`MAX_BODY_BYTES`] to `inner`. A larger one is answered 413 with
    /// `Connection: close` once what is in flight has been drained (at most
    /// [`DRAIN_BYTES`] for [`DRAIN_TIME`]), so the client sees the answer
    /// rather than a connection reset.
    async fn bounded_body<S>(&self, inner: S, request: Request, declared: Option<u64>) -> Response
    where
        S: Service<Request, Response = Response, Error = Infallible>,
    {
        use futures_util::StreamExt as _;
        let (parts, body) = request.into_parts();
        let mut oversized = declared.is_some();
        let mut stream = body.into_data_stream();
        let mut read = Vec::new();
        while !oversized {
            match stream.next().await {
                Some(Ok(chunk)) if read.len() + chunk.len() <= MAX_BODY_BYTES => {
                    read.extend_from_slice(&chunk);
                }
                Some(Ok(_)) => oversized = true,
                // The client went away or broke framing: nothing to answer well.
                Some(Err(_)) => return StatusCode::BAD_REQUEST.into_response(),
                None => break,
            }
        }
        if !oversized {
            let body = axum::body::Body::from(read);
            let request = Request::from_parts(parts, body);
            return infallible(inner.oneshot(request).await);
        }
        let _ = tokio::time::timeout(DRAIN_TIME, async {
            let mut drained = 0;
            while let Some(Ok(chunk)) = stream.next().await {
                drained += chunk.len();
                if drained > DRAIN_BYTES {
                    break;
                }
            }
        })
        .await;
        tracing::info!(
            path = parts.uri.path(),
            ?declared,
            "request body over the limit"
        );
        let mut response = self.refuse(Refusal::PayloadTooLarge).await;
        // HTTP/2 streams end without closing the connection (and forbid the header).
        if parts.version < Version::HTTP_2 {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }

    /// 503 for a request shed by load or time limits.
    async fn unavailable(&self, why: &'static str) -> Response {
        tracing::warn!(reason = why, "request shed");
        self.refuse(Refusal::Unavailable(why.into())).await
    }

    /// Audits and renders a request refused before any handler ran (shed,
    /// timed out, too large). Without a decision id the answer is the 503 of
    /// [`new_decision_id`](super::error::new_decision_id), and so is the record.
    async fn refuse(&self, refusal: Refusal) -> Response {
        let error = ApiError::fresh(refusal);
        let now = self.app.clock.unix_now();
        let mut record = AuditRecord::new(
            "request",
            error.decision_id.clone(),
            rfc3339(now),
            "-".into(),
        );
        record.error = Some(error.refusal.code());
        record.reason = Some(error.refusal.description());
        self.app.audit.record(record).await;
        error.into_response()
    }
}

fn infallible(response: Result<Response, Infallible>) -> Response {
    match response {
        Ok(response) => response,
        Err(never) => match never {},
    }
}
