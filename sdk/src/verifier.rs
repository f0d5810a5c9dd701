//! Verifying writ tokens at a resource server.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use writ_proto::AccessClaims;
use writ_proto::revocation::TokenFacts;
use writ_proto::token::{self, Expected, TokenError};
use writ_proto::txn::{self, TxnClaims};

use crate::binding::{self, Presented};
use crate::dpop::ReplayCache;
pub use crate::feed::FeedAuth;
use crate::feed::{self, FeedState};
use crate::{Broker, Error, VerifyError};

/// An unknown `kid` refetches the JWKS at most this often.
const JWKS_REFETCH_EVERY: Duration = Duration::from_secs(10);
/// The JWKS is refetched this often when the broker's answer names no
/// `max-age` and the builder sets no cadence.
const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(60);
/// Cadences outside these bounds are clamped: never a busy loop, never a
/// withdrawn key trusted for hours.
const JWKS_REFRESH_BOUNDS: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(3600));
/// DPoP proof `jti`s remembered by default (each for about a minute).
const DEFAULT_REPLAY_CAPACITY: u64 = 1_000_000;

/// A token that passed every check.
#[derive(Debug, Clone)]
pub struct Verified {
    /// `sub`: the principal the token speaks for.
    pub subject: String,
    /// `client_id`: the acting party.
    pub client_id: String,
    /// The granted scopes.
    pub scopes: Vec<String>,
    /// `jti`.
    pub jti: String,
    /// `exp`, seconds since the epoch.
    pub expires_at: u64,
    /// Every claim as JSON, for anything else a handler needs.
    pub claims: Value,
    /// Every claim, typed (`act`, `cnf`, `ancestry`...).
    pub access_claims: AccessClaims,
}

impl Verified {
    /// Whether the token grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.access_claims.has_scope(scope)
    }
}

/// Configures a [`Verifier`].
pub struct VerifierBuilder {
    broker: Broker,
    audience: String,
    required_scopes: Vec<String>,
    leeway: Duration,
    feed: Option<FeedAuth>,
    max_feed_silence: Duration,
    replay_capacity: u64,
    jwks_refresh: Option<Duration>,
}

impl VerifierBuilder {
    /// How often the broker's JWKS is refetched, replacing the key set, so
    /// that a key the broker withdraws stops verifying. Default: the
    /// `max-age` the broker sends with its JWKS, else 60 s.
    pub fn jwks_refresh(mut self, every: Duration) -> Self {
        self.jwks_refresh = Some(every);
        self
    }

    /// How many DPoP proofs to remember against replay (default 1,000,000,
    /// about 16 bytes each plus the set's overhead; each is kept for the
    /// proof window, about a minute). Size it above the DPoP requests this
    /// server takes per minute: when it is full, new proofs are refused
    /// (503) until old ones age out; a live proof is never forgotten.
    pub fn dpop_replay_capacity(mut self, proofs: u64) -> Self {
        self.replay_capacity = proofs;
        self
    }

    /// Scopes every accepted token must carry.
    pub fn require_scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.required_scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Clock skew tolerated on `exp` and `nbf` (default 30 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Follow the revocation feed with these credentials, and refuse every
    /// token when it has been silent longer than `max_silence` (fail closed).
    /// The broker sends a heartbeat every 15 s.
    pub fn follow_revocations(mut self, auth: FeedAuth, max_silence: Duration) -> Self {
        self.feed = Some(auth);
        self.max_feed_silence = max_silence;
        self
    }

    /// Fetches metadata and keys and, when following revocations, reads the
    /// whole feed before returning, so the verifier starts up to date.
    pub async fn build(self) -> Result<Verifier, Error> {
        let metadata = self.broker.metadata().await?.clone();
        let feed = match &self.feed {
            None => None,
            Some(auth) => {
                let state = Arc::new(FeedState::new(self.leeway.as_secs()));
                feed::catch_up(&self.broker, auth, &state).await?;
                Some((state, auth.clone()))
            }
        };
        let verifier = Verifier {
            inner: Arc::new(Inner {
                keys: ArcSwap::from_pointee(HashMap::new()),
                jwks_uri: metadata.jwks_uri,
                issuer: metadata.issuer,
                broker: self.broker,
                audience: self.audience,
                required_scopes: self.required_scopes,
                leeway: self.leeway,
                feed: feed.as_ref().map(|(state, _)| state.clone()),
                max_feed_silence: self.max_feed_silence,
                replay: ReplayCache::new(self.replay_capacity),
                last_refetch: tokio::sync::Mutex::new(None),
            }),
        };
        let max_age = verifier.refetch_keys().await?;
        tokio::spawn(refresh_keys(
            Arc::downgrade(&verifier.inner),
            self.jwks_refresh,
            max_age,
        ));
        // Follow only once the verifier exists; the task ends when it is dropped.
        if let Some((state, auth)) = feed {
            tokio::spawn(feed::follow(
                verifier.inner.broker.clone(),
                auth,
                Arc::downgrade(&state),
            ));
        }
        Ok(verifier)
    }
}

type Keys = HashMap<String, (DecodingKey, Algorithm)>;

struct Inner {
    broker: Broker,
    issuer: String,
    jwks_uri: String,
    audience: String,
    required_scopes: Vec<String>,
    leeway: Duration,
    keys: ArcSwap<Keys>,
    last_refetch: tokio::sync::Mutex<Option<Instant>>,
    feed: Option<Arc<FeedState>>,
    max_feed_silence: Duration,
    replay: ReplayCache,
}

/// Verifies writ access tokens for one audience. Cheap to clone.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Starts configuring a verifier of tokens for `audience` issued by `broker`.
    pub fn builder(broker: Broker, audience: impl Into<String>) -> VerifierBuilder {
        VerifierBuilder {
            broker,
            audience: audience.into(),
            required_scopes: Vec::new(),
            leeway: Duration::from_secs(30),
            feed: None,
            max_feed_silence: Duration::from_secs(60),
            replay_capacity: DEFAULT_REPLAY_CAPACITY,
            jwks_refresh: None,
        }
    }

    /// The broker's issuer (`iss` of the tokens it accepts), from its metadata.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The audience its tokens must carry: this resource server's name.
    pub fn audience(&self) -> &str {
        &self.inner.audience
    }

    /// The scopes every token must carry, as configured.
    pub fn required_scopes(&self) -> &[String] {
        &self.inner.required_scopes
    }

    /// Replaces the key set with the broker's current JWKS (keys it no
    /// longer lists are dropped); returns the `max-age` it was sent with.
    async fn refetch_keys(&self) -> Result<Option<Duration>, Error> {
        let resp = self
            .inner
            .broker
            .client()
            .get(&self.inner.jwks_uri)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| Error::Unavailable(format!("JWKS: {e}")))?;
        if !resp.status().is_success() {
            return Err(Error::Unavailable(format!("JWKS: {}", resp.status())));
        }
        let max_age = resp
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        let set: JwkSet = resp
            .json()
            .await
            .map_err(|e| Error::Protocol(format!("JWKS: {e}")))?;
        let mut keys = Keys::new();
        for jwk in &set.keys {
            let (Some(kid), Some(alg)) = (jwk.common.key_id.clone(), algorithm_of(jwk)) else {
                continue;
            };
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.insert(kid, (key, alg));
            }
        }
        self.inner.keys.store(Arc::new(keys));
        Ok(max_age)
    }

    /// The key for `kid`, refetching the JWKS (rate-limited) if it is unknown.
    async fn key(&self, kid: &str) -> Result<(DecodingKey, Algorithm), VerifyError> {
        if let Some(k) = self.inner.keys.load().get(kid) {
            return Ok(k.clone());
        }
        {
            let mut last = self.inner.last_refetch.lock().await;
            if last.is_none_or(|t| t.elapsed() >= JWKS_REFETCH_EVERY) {
                *last = Some(Instant::now());
                if let Err(e) = self.refetch_keys().await {
                    tracing::warn!(error = %e, "JWKS refetch failed");
                }
            }
        }
        self.inner
            .keys
            .load()
            .get(kid)
            .cloned()
            .ok_or(VerifyError::UnknownKey)
    }

    /// Verifies a token on its own: signature, `typ`, `iss`, `aud`, time,
    /// required scopes, and the kill switch. A token bound to a key (DPoP or
    /// a client certificate) is refused here, since nothing proves the key:
    /// use [`Verifier::verify_presented`] with the request.
    pub async fn verify(&self, token: &str) -> Result<Verified, VerifyError> {
        self.verify_presented(&Presented::bearer(token)).await
    }

    /// Verifies a token as a request presented it: everything
    /// [`Verifier::verify`] checks, and for a key-bound token that the
    /// request proved the key, by a DPoP proof for this method, URL and
    /// token, seen once (RFC 9449), or by its client certificate (RFC 8705).
    pub async fn verify_presented(
        &self,
        presented: &Presented<'_>,
    ) -> Result<Verified, VerifyError> {
        let token = presented.token;
        let header = token::header(token).map_err(refusal)?;
        let (key, alg) = self.key(&header.kid).await?;
        let expected = Expected {
            issuer: &self.inner.issuer,
            audience: Some(&self.inner.audience),
            now: crate::dpop::unix_now(),
            leeway: self.inner.leeway.as_secs(),
            max_lifetime: None,
        };
        let claims = token::verify(token, &header, &key, alg, &expected).map_err(refusal)?;
        if let Some(missing) = self
            .inner
            .required_scopes
            .iter()
            .find(|r| !claims.has_scope(r))
        {
            return Err(VerifyError::MissingScope(missing.clone()));
        }
        binding::check(
            claims.cnf.as_ref(),
            presented,
            &self.inner.replay,
            crate::dpop::unix_now(),
        )?;
        self.check_revocations(&TokenFacts::of(&claims, &header.kid))?;
        Ok(Verified {
            subject: claims.sub.clone(),
            client_id: claims.client_id.clone(),
            scopes: claims.scopes().map(str::to_owned).collect(),
            jti: claims.jti.clone(),
            expires_at: claims.exp,
            claims: serde_json::to_value(&claims).unwrap_or_default(),
            access_claims: claims,
        })
    }
}

impl Verifier {
    /// Verifies a transaction token, as a workload receives it in the
    /// `Txn-Token` header, for `trust_domain`: signature, `typ`
    /// `txntoken+jwt` (an access token is refused, as a txn token is by
    /// [`Verifier::verify`]), `iss`, `aud` = the trust domain, time, and the
    /// kill switch. Returns its claims: the call chain, the subject, the
    /// purpose and the contexts.
    pub async fn verify_txn(
        &self,
        token: &str,
        trust_domain: &str,
    ) -> Result<TxnClaims, VerifyError> {
        let header = txn::header(token).map_err(refusal)?;
        let (key, alg) = self.key(&header.kid).await?;
        let expected = txn::Expected {
            issuer: &self.inner.issuer,
            trust_domain,
            now: crate::dpop::unix_now(),
            leeway: self.inner.leeway.as_secs(),
            max_lifetime: None,
        };
        let claims = txn::verify(token, &header, &key, alg, &expected).map_err(refusal)?;
        self.check_revocations(&claims.facts(&header.kid))?;
        Ok(claims)
    }

    /// The kill switch, when the verifier follows it: a stale feed fails
    /// closed, a matching entry refuses.
    fn check_revocations(&self, facts: &TokenFacts<'_>) -> Result<(), VerifyError> {
        let Some(feed) = &self.inner.feed else {
            return Ok(());
        };
        if feed
            .silence()
            .is_none_or(|s| s > self.inner.max_feed_silence)
        {
            return Err(VerifyError::FeedStale);
        }
        let revoked = match feed.set.read() {
            Ok(set) => set.revoked_facts(facts),
            // A poisoned lock: the set cannot be trusted; fail closed.
            Err(_) => return Err(VerifyError::FeedStale),
        };
        match revoked {
            Some(entry) => Err(VerifyError::Revoked(entry)),
            None => Ok(()),
        }
    }
}

/// What a refused token tells the resource server's caller.
fn refusal(e: TokenError) -> VerifyError {
    match e {
        TokenError::Malformed | TokenError::WrongType | TokenError::Lifetime => {
            VerifyError::Malformed
        }
        TokenError::Algorithm => VerifyError::Algorithm,
        TokenError::UnknownKey => VerifyError::UnknownKey,
        TokenError::BadSignature => VerifyError::Signature,
        TokenError::WrongIssuer => VerifyError::Issuer,
        TokenError::WrongAudience => VerifyError::Audience,
        TokenError::Expired => VerifyError::Expired,
        TokenError::NotYetValid => VerifyError::NotYetValid,
    }
}

/// `max-age` of a `Cache-Control` value.
fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control.split(',').find_map(|directive| {
        let (name, value) = directive.trim().split_once('=')?;
        name.eq_ignore_ascii_case("max-age")
            .then(|| value.trim().parse().ok().map(Duration::from_secs))
            .flatten()
    })
}

/// Refetches the JWKS on its cadence until the verifier is dropped. A failed
/// fetch keeps the last key set (the broker may be restarting) and is tried
/// again sooner.
async fn refresh_keys(
    inner: std::sync::Weak<Inner>,
    every: Option<Duration>,
    first: Option<Duration>,
) {
    let (low, high) = JWKS_REFRESH_BOUNDS;
    let mut next = every
        .or(first)
        .unwrap_or(DEFAULT_JWKS_REFRESH)
        .clamp(low, high);
    loop {
        tokio::time::sleep(next).await;
        let Some(inner) = inner.upgrade() else { return };
        let verifier = Verifier { inner };
        next = match verifier.refetch_keys().await {
            Ok(max_age) => every.or(max_age).unwrap_or(DEFAULT_JWKS_REFRESH),
            Err(e) => {
                tracing::warn!(error = %e, "JWKS refresh failed; keeping the last key set");
                every.unwrap_or(DEFAULT_JWKS_REFRESH) / 4
            }
        }
        .clamp(low, high);
    }
}

/// The algorithm a JWK is for, if writ signs with it.
fn algorithm_of(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Algorithm> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve};
    match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
            Some(Algorithm::ES256)
        }
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Some(Algorithm::EdDSA)
        }
        _ => None,
    }
}
