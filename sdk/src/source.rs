//! A token for one target that refreshes itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use serde_json::Value;

use crate::attestation::AttestationSource;
use crate::{Broker, DpopKey, Error};

/// Refresh once this share of a token's life has passed.
const REFRESH_AT: f64 = 0.8;
/// First retry delay after a failure; doubles per failure.
const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// The longest wait between attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// An access token from the broker.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// The JWT to send as `Authorization: Bearer ...`.
    pub access_token: String,
    /// `Bearer` (or `DPoP` for a bound token).
    pub token_type: String,
    /// The scopes granted (a subset of those asked for).
    pub scope: String,
    /// When it expires.
    pub expires_at: SystemTime,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a bearer secret.
        f.debug_struct("Token")
            .field("scope", &self.scope)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// The headers that present a token on one request: `Authorization`, and
/// for a DPoP-bound token a fresh `DPoP` proof made for exactly this method
/// and URL.
#[derive(Clone)]
pub struct Authorization {
    /// The `Authorization` header value: `Bearer <token>` or `DPoP <token>`.
    pub authorization: String,
    /// The `DPoP` header value, for a DPoP-bound token.
    pub dpop: Option<String>,
}

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Both are secrets for as long as they are valid.
        f.debug_struct("Authorization")
            .field("dpop", &self.dpop.is_some())
            .finish_non_exhaustive()
    }
}

impl Authorization {
    /// Adds the headers to a request.
    pub fn apply(self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let request = request.header(http::header::AUTHORIZATION, self.authorization);
        match self.dpop {
            Some(proof) => request.header("DPoP", proof),
            None => request,
        }
    }
}

/// How the source proves what the workload is.
enum Grant {
    /// RFC 8693 exchange of an attestation token.
    Exchange(Arc<dyn AttestationSource>),
    /// `client_credentials`: the broker attests the TLS client certificate.
    ClientCredentials,
}

struct Cached {
    token: Token,
    refresh_at: Instant,
    expires: Instant,
}

#[derive(Default)]
struct Backoff {
    failures: u32,
    next_attempt: Option<Instant>,
    last_error: Option<Error>,
}

struct Inner {
    broker: Broker,
    audience: String,
    scopes: String,
    requested_ttl: Option<Duration>,
    grant: Grant,
    dpop: Option<DpopKey>,
    current: RwLock<Option<Arc<Cached>>>,
    /// Held while exchanging: one exchange in flight however many callers wait.
    refresh: tokio::sync::Mutex<Backoff>,
    exchanges: AtomicU64,
}

/// A token for one target with some scopes, kept fresh. Cheap to clone;
/// clones share the token.
#[derive(Clone)]
pub struct TokenSource {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("broker", &self.inner.broker)
            .field("audience", &self.inner.audience)
            .field("scopes", &self.inner.scopes)
            .finish_non_exhaustive()
    }
}

/// Configures a [`TokenSource`].
pub struct TokenSourceBuilder {
    broker: Broker,
    audience: String,
    scopes: Vec<String>,
    requested_ttl: Option<Duration>,
    attestation: Option<Arc<dyn AttestationSource>>,
    client_credentials: bool,
    dpop: Option<DpopKey>,
}

impl TokenSourceBuilder {
    /// The scopes to ask for.
    pub fn scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The lifetime to ask for (the broker may grant less).
    pub fn requested_ttl(mut self, ttl: Duration) -> Self {
        self.requested_ttl = Some(ttl);
        self
    }

    /// How the workload proves what it is.
    pub fn attestation(mut self, source: impl AttestationSource) -> Self {
        self.attestation = Some(Arc::new(source));
        self
    }

    /// Prove identity with the broker client's TLS certificate instead of an
    /// attestation token (`grant_type=client_credentials`; build the broker
    /// with [`Broker::with_mtls`]). The broker binds the token to the
    /// certificate (RFC 8705), so it is useless to anyone without its key.
    pub fn client_credentials(mut self) -> Self {
        self.client_credentials = true;
        self
    }

    /// Bind tokens to `key` with DPoP (RFC 9449): each exchange carries a
    /// proof, the token gets `cnf.jkt` and type `DPoP`, and every use needs a
    /// fresh proof from [`TokenSource::authorization`].
    pub fn dpop(mut self, key: DpopKey) -> Self {
        self.dpop = Some(key);
        self
    }

    /// Builds the source. Without an attestation, every exchange fails with
    /// [`Error::Config`].
    pub fn build(self) -> TokenSource {
        struct Missing;
        impl AttestationSource for Missing {
            fn attestation(
                &self,
            ) -> std::pin::Pin<
                Box<
                    dyn std::future::Future<Output = Result<crate::Attestation, Error>> + Send + '_,
                >,
            > {
                Box::pin(async { Err(Error::Config("no attestation source configured".into())) })
            }
        }
        TokenSource {
            inner: Arc::new(Inner {
                broker: self.broker,
                audience: self.audience,
                scopes: self.scopes.join(" "),
                requested_ttl: self.requested_ttl,
                grant: if self.client_credentials {
                    Grant::ClientCredentials
                } else {
                    Grant::Exchange(self.attestation.unwrap_or_else(|| Arc::new(Missing)))
                },
                dpop: self.dpop,
                current: RwLock::new(None),
                refresh: tokio::sync::Mutex::new(Backoff::default()),
                exchanges: AtomicU64::new(0),
            }),
        }
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: String,
    expires_in: u64,
    scope: String,
}

impl TokenSource {
    /// Starts configuring a source of tokens for `audience` from `broker`.
    pub fn builder(broker: Broker, audience: impl Into<String>) -> TokenSourceBuilder {
        TokenSourceBuilder {
            broker,
            audience: audience.into(),
            scopes: Vec::new(),
            requested_ttl: None,
            attestation: None,
            client_credentials: false,
            dpop: None,
        }
    }

    /// The target tokens are for.
    pub fn audience(&self) -> &str {
        &self.inner.audience
    }

    /// A valid token: the cached one until 80 % of its life, then a fresh
    /// one. While the broker is unreachable, a still-valid token is returned.
    pub async fn token(&self) -> Result<Token, Error> {
        if let Some(fresh) = self.cached(|c, now| now < c.refresh_at) {
            return Ok(fresh);
        }
        // Due but still valid: whoever is refreshing already, let them; do
        // not make every caller wait out the round trip.
        let mut backoff = match self.inner.refresh.try_lock() {
            Ok(guard) => guard,
            Err(_) => match self.cached(|c, now| now < c.expires) {
                Some(valid) => return Ok(valid),
                None => self.inner.refresh.lock().await,
            },
        };
        // Someone else may have refreshed while this caller waited.
        if let Some(fresh) = self.cached(|c, now| now < c.refresh_at) {
            return Ok(fresh);
        }
        if let Some(at) = backoff.next_attempt
            && Instant::now() < at
        {
            return self.cached(|c, now| now < c.expires).ok_or_else(|| {
                backoff
                    .last_error
                    .clone()
                    .unwrap_or_else(|| Error::Unavailable("backing off".into()))
            });
        }
        match self.exchange().await {
            Ok(cached) => {
                *backoff = Backoff::default();
                let token = cached.token.clone();
                if let Ok(mut current) = self.inner.current.write() {
                    *current = Some(Arc::new(cached));
                }
                Ok(token)
            }
            Err(e) => {
                backoff.failures = backoff.failures.saturating_add(1);
                let wait = jittered(
                    BACKOFF_BASE
                        .saturating_mul(1 << (backoff.failures - 1).min(10))
                        .min(BACKOFF_MAX),
                );
                backoff.next_attempt = Some(Instant::now() + wait);
                backoff.last_error = Some(e.clone());
                tracing::warn!(audience = %self.inner.audience, error = %e, retry_in = ?wait, "token refresh failed");
                self.cached(|c, now| now < c.expires).ok_or(e)
            }
        }
    }

    /// The headers presenting a valid token on a `method` request to `url`:
    /// for a DPoP-bound token, with a proof made for this request alone.
    pub async fn authorization(&self, method: &str, url: &str) -> Result<Authorization, Error> {
        let token = self.token().await?;
        let dpop = match &self.inner.dpop {
            Some(key) => Some(key.proof(method, url, Some(&token.access_token))?),
            None => None,
        };
        // Only a source holding a key gets DPoP tokens (checked at exchange).
        let scheme = if dpop.is_some() { "DPoP" } else { "Bearer" };
        Ok(Authorization {
            authorization: format!("{scheme} {}", token.access_token),
            dpop,
        })
    }

    /// Drops the cached token (e.g. after the kill switch revoked it), so
    /// the next [`TokenSource::token`] asks the broker again.
    pub fn invalidate(&self) {
        if let Ok(mut current) = self.inner.current.write() {
            *current = None;
        }
    }

    /// When the cached token is due for refresh (`None` when there is none).
    pub fn refresh_due(&self) -> Option<Instant> {
        self.inner
            .current
            .read()
            .ok()?
            .as_ref()
            .map(|c| c.refresh_at)
    }

    /// How many exchanges this source has made (each a round trip to the broker).
    pub fn exchanges(&self) -> u64 {
        self.inner.exchanges.load(Ordering::Relaxed)
    }

    fn cached(&self, usable: impl Fn(&Cached, Instant) -> bool) -> Option<Token> {
        let current = self.inner.current.read().ok()?;
        let c = current.as_ref()?;
        usable(c, Instant::now()).then(|| c.token.clone())
    }

    async fn exchange(&self) -> Result<Cached, Error> {
        let metadata = self.inner.broker.metadata().await?;
        let attestation = match &self.inner.grant {
            Grant::Exchange(source) => Some(source.attestation().await?),
            Grant::ClientCredentials => None,
        };
        self.inner.exchanges.fetch_add(1, Ordering::Relaxed);
        let ttl = self
            .inner
            .requested_ttl
            .map(|t| t.as_secs().max(1).to_string());
        let mut form = match &attestation {
            Some(attestation) => vec![
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("subject_token", attestation.token.as_str()),
                ("subject_token_type", attestation.token_type),
            ],
            None => vec![("grant_type", "client_credentials")],
        };
        form.push(("audience", self.inner.audience.as_str()));
        form.push(("scope", self.inner.scopes.as_str()));
        if let Some(t) = ttl.as_deref() {
            form.push(("requested_ttl", t));
        }
        let mut request = self
            .inner
            .broker
            .client()
            .post(&metadata.token_endpoint)
            .form(&form)
            .timeout(Duration::from_secs(10));
        if let Some(key) = &self.inner.dpop {
            request = request.header("DPoP", key.proof("POST", &metadata.token_endpoint, None)?);
        }
        let started = Instant::now();
        let resp = request
            .send()
            .await
            .map_err(|e| Error::Unavailable(format!("token endpoint: {e}")))?;
        let status = resp.status();
        if status.is_success() {
            let body: TokenResponse = resp
                .json()
                .await
                .map_err(|e| Error::Protocol(format!("token response: {e}")))?;
            // Sending a proof and getting an unbound token back would leave
            // a bearer secret where the caller asked for a bound one.
            if self.inner.dpop.is_some() && !body.token_type.eq_ignore_ascii_case("DPoP") {
                return Err(Error::Protocol(format!(
                    "asked for a DPoP-bound token, got token_type {:?}",
                    body.token_type
                )));
            }
            // A broker never grants days; cap what a hostile answer could claim.
            let life = Duration::from_secs(body.expires_in.min(86_400));
            return Ok(Cached {
                refresh_at: started + life.mul_f64(REFRESH_AT),
                expires: started + life,
                token: Token {
                    access_token: body.access_token,
                    token_type: body.token_type,
                    scope: body.scope,
                    expires_at: SystemTime::now() + life,
                },
            });
        }
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let field = |k: &str| {
            body.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(Error::Unavailable(format!(
                "token endpoint: {status} {}",
                field("error_description")
            )));
        }
        Err(Error::Denied {
            error: field("error"),
            description: field("error_description"),
            decision_id: field("decision_id"),
        })
    }
}

/// Between half and all of `d`, so many workloads do not retry in step.
fn jittered(d: Duration) -> Duration {
    let mut b = [0u8; 4];
    let r = if SystemRandom::new().fill(&mut b).is_ok() {
        f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX)
    } else {
        1.0
    };
    d.mul_f64(0.5 + 0.5 * r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_and_full() {
        for _ in 0..100 {
            let j = jittered(Duration::from_secs(2));
            assert!(
                j >= Duration::from_secs(1) && j <= Duration::from_secs(2),
                "{j:?}"
            );
        }
    }

    #[test]
    fn only_unavailability_is_retryable() {
        assert!(Error::Unavailable("x".into()).is_retryable());
        let denied = Error::Denied {
            error: "access_denied".into(),
            description: String::new(),
            decision_id: String::new(),
        };
        assert!(!denied.is_retryable());
    }
}
