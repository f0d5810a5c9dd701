//! `POST /oauth2/token`: RFC 8693 token exchange. Attest the subject, check
//! the kill switch, decide each scope, cap the lifetime, mint, audit.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::json;

use super::AppState;
use super::delegation::Delegation;
use super::form;
use crate::attest::Peer;
use crate::attest::mtls::MtlsAttestor;
use crate::attest::unix::UnixAttestor;
use crate::attest::{Attested, Attestor, AttrValue, Evidence};
use crate::audit::AuditRecord;
use crate::grant::Refusal;
use crate::model::{AttestationKind, EntityType, Principal, Scopes, TargetId, Ttl};
use crate::policy::DecisionRequest;
use crate::revoke::{Entry, MintFacts};
use crate::token::{AccessClaims, MAX_ANCESTRY, MintRequest, act_issuers};

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const CLIENT_CREDENTIALS: &str = "client_credentials";
/// RFC 8693 token type of a JWT attestation.
pub(super) const TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// RFC 8693 token type of an OIDC ID token.
pub(super) const TYPE_ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
/// RFC 8693 token type of an access token (a writ token).
pub(super) const TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

/// A fresh id for one decision (128 random bits, hex).
pub fn new_decision_id() -> String {
    let mut id = [0u8; 16];
    // SystemRandom only fails if the OS has no randomness; the id is then
    // still unique enough for correlation within the process.
    if SystemRandom::new().fill(&mut id).is_err() {
        tracing::error!("system randomness unavailable for a decision id");
    }
    hex::encode(id)
}

/// The audit record under construction: each step fills what it learned.
struct Trail {
    record: AuditRecord,
}

pub(super) async fn token(
    State(app): State<Arc<AppState>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let now = app.clock.unix_now();
    let mut trail = Trail {
        record: app.audit_record("mint", now, &peer),
    };
    let outcome = exchange(&app, &peer, &headers, body, now, &mut trail).await;
    match &outcome {
        Ok(_) => {
            app.metrics.decision("allow");
            app.metrics.mint_duration(started.elapsed().as_secs_f64());
        }
        Err(Refusal::Unavailable(_)) => app.metrics.decision("error"),
        Err(_) => app.metrics.decision("deny"),
    }
    let outcome = outcome.map(|body| (StatusCode::OK, Json(body)).into_response());
    super::respond(&app, trail.record, outcome).await
}

async fn exchange(
    app: &AppState,
    peer: &Peer,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    now: u64,
    trail: &mut Trail,
) -> Result<serde_json::Value, Refusal> {
    let form = form::read(headers, body)?;
    // RFC 9449: a proof of possession binds the new token to the proof's
    // key. It is checked now but remembered against replay only once the
    // request's credential has checked out, so that requests without one
    // cannot fill the replay cache.
    let dpop = match super::auth::dpop_proof(headers)? {
        None => None,
        Some(proof) => {
            let uri = format!("{}/oauth2/token", app.issuer);
            let expected = crate::attest::dpop::Expected {
                method: "POST",
                uri: &uri,
                now,
                access_token: None,
            };
            Some(
                crate::attest::dpop::check(proof, &expected)
                    .map_err(|e| Refusal::InvalidDpopProof(e.to_string()))?,
            )
        }
    };
    let dpop_jkt = dpop.as_ref().map(|p| p.jkt.clone());
    let grant = form.required("grant_type")?;
    if grant != TOKEN_EXCHANGE && grant != CLIENT_CREDENTIALS {
        return Err(Refusal::UnsupportedGrantType);
    }
    let audience = TargetId::new(form.required("audience")?)
        .map_err(|_| Refusal::InvalidRequest("audience is malformed".into()))?;
    trail.record.target = Some(audience.to_string());
    let scopes =
        Scopes::parse(form.required("scope")?).map_err(|e| Refusal::InvalidScope(e.to_string()))?;
    trail.record.scopes_requested = scopes.to_strings();
    let requested_ttl = match form.optional("requested_ttl") {
        None => Ttl::from_duration(app.config.tokens.default_ttl)
            .map_err(|_| Refusal::Unavailable("tokens.default_ttl is zero".into()))?,
        Some(v) => v
            .parse::<u64>()
            .ok()
            .and_then(|s| Ttl::from_secs(s).ok())
            .ok_or_else(|| {
                Refusal::InvalidRequest(
                    "requested_ttl must be a positive whole number of seconds".into(),
                )
            })?,
    };
    let actor_token = form.optional("actor_token");
    if actor_token.is_some() && grant == CLIENT_CREDENTIALS {
        return Err(Refusal::InvalidRequest(
            "actor_token needs the token-exchange grant".into(),
        ));
    }
    if actor_token.is_none() && form.optional("actor_token_type").is_some() {
        return Err(Refusal::InvalidRequest(
            "actor_token_type without actor_token".into(),
        ));
    }

    let (subject, parent) = if grant == CLIENT_CREDENTIALS {
        // The caller is its own evidence: the client certificate the
        // handshake verified, or the Unix socket's peer credentials.
        let attested = match (&peer.client, &peer.unix) {
            (Some(identity), _) => MtlsAttestor::new(&app.config.server.trust_domain)
                .attest(&Evidence::ClientCertificate(identity)),
            (None, Some(unix)) => unix.current().and_then(|evidence| {
                UnixAttestor::new(&app.config.server.trust_domain)
                    .attest(&Evidence::UnixPeer(evidence))
            }),
            (None, None) => {
                return Err(Refusal::InvalidClient(
                    "client_credentials needs a client certificate that chains to the client CA and names one \
                     SPIFFE ID, or a caller on the Unix socket"
                        .into(),
                ));
            }
        }
        .map_err(|e| Refusal::InvalidClient(e.to_string()))?;
        (Arc::new(attested), None)
    } else {
        let subject_token = form.required("subject_token")?;
        match form.required("subject_token_type")? {
            TYPE_JWT | TYPE_ID_TOKEN => match app.attest.attest_jwt(subject_token).await {
                Ok(attested) => (attested, None),
                Err(e) => {
                    app.metrics.attestation_failure(e.reason());
                    return Err(e.into());
                }
            },
            TYPE_ACCESS_TOKEN => narrowing(
                app,
                peer,
                dpop_jkt.as_deref(),
                subject_token,
                &audience,
                &scopes,
                trail,
            )?,
            _ => {
                return Err(Refusal::InvalidRequest(
                    "subject_token_type is not supported".into(),
                ));
            }
        }
    };
    let delegation = match (actor_token, parent.as_ref()) {
        (None, Some(p)) => p
            .act
            .as_ref()
            .map(|act| Delegation::inherited(act, p.exp))
            .transpose()?,
        (None, None) => None,
        (Some(token), _) => Some(
            Delegation::attest(
                app,
                peer,
                dpop_jkt.as_deref(),
                token,
                form.required("actor_token_type")?,
                &subject,
                parent.as_ref().and_then(|p| p.act.as_ref()),
                &mut trail.record.revocation,
            )
            .await?,
        ),
    };
    if let Some(proof) = &dpop {
        app.dpop_replay
            .remember(proof, now)
            .map_err(super::auth::replay_refusal)?;
    }
    let ancestry = ancestry(parent.as_ref(), delegation.as_ref())?;
    // A token minted over mTLS is bound to the certificate (RFC 8705); a
    // narrowed token keeps its parent's binding (proven by this request); a
    // delegated one the binding of the agent's own token.
    let cnf = dpop_jkt
        .as_ref()
        .map(|jkt| serde_json::json!({ "jkt": jkt }))
        .or_else(|| parent.as_ref().and_then(|p| p.cnf.clone()))
        .or_else(|| delegation.as_ref().and_then(|d| d.actor_cnf.clone()))
        .or_else(|| {
            (grant == CLIENT_CREDENTIALS)
                .then(|| peer.client.as_ref().map(|c| c.confirmation()))
                .flatten()
        });
    let token_type = if dpop_jkt.is_some() { "DPoP" } else { "Bearer" };
    trail.record.principal = Some(subject.principal.to_string());
    trail.record.attestation = Some(subject.kind.as_str().to_owned());
    let actors: Vec<&str> = delegation
        .as_ref()
        .map(|d| d.actors.iter().map(String::as_str).collect())
        .unwrap_or_default();
    trail.record.act = delegation
        .as_ref()
        .map(|d| d.actors.clone())
        .unwrap_or_default();

    let attestation_issuer = match subject.attributes.get("issuer") {
        Some(AttrValue::String(s)) => Some(s.as_str()),
        _ => None,
    };
    let actor_issuers = delegation
        .as_ref()
        .map(|d| act_issuers(Some(&d.act)))
        .unwrap_or_default();
    let facts = MintFacts {
        subject: subject.principal.as_str(),
        audience: audience.as_str(),
        attestation_issuer,
        actors: &actors,
        actor_issuers: &actor_issuers,
    };
    refuse_if_blocked(app, &facts, now, trail)?;

    let decision = app.policy.decide(&DecisionRequest {
        principal: &subject,
        target: &audience,
        scopes: &scopes,
        requested_ttl,
        now,
        source_ip: peer.addr.ip(),
        sender_constrained: cnf.is_some(),
        delegation_depth: delegation.as_ref().map_or(0, |d| d.depth),
        actor: delegation.as_ref().map(|d| d.actor.as_ref()),
    })?;
    let granted = decision.granted();
    trail.record.policies = decision.policies();
    if granted.is_empty() {
        let why = match trail.record.policies.as_slice() {
            [] => "no policy permits the requested scopes".to_owned(),
            ids => format!("denied by policy {}", ids.join(", ")),
        };
        return Err(Refusal::AccessDenied(why));
    }
    trail.record.scopes_granted = granted.to_strings();

    let mut ttl = requested_ttl
        .as_secs()
        .min(app.config.tokens.max_ttl.as_secs());
    if let Some(cap) = decision.max_ttl {
        ttl = ttl.min(cap);
    }
    if let Some(parent) = &parent {
        ttl = ttl.min(parent.exp.saturating_sub(now));
    }
    // Nor may a delegated token outlive the agent's own credential.
    if let Some(d) = &delegation {
        ttl = ttl.min(d.actor.expires_at.saturating_sub(now));
    }
    let ttl = Ttl::from_secs(ttl)
        .map_err(|_| Refusal::InvalidGrant("subject_token has no lifetime left".into()))?;
    let minted = app.minter.mint(MintRequest {
        subject: &subject.principal,
        principal_type: subject.entity_type,
        attestation: subject.kind,
        attestation_issuer,
        audience: &audience,
        scopes: &granted,
        ttl,
        now,
        act: delegation.as_ref().map(|d| d.act.clone()),
        cnf,
        ancestry,
    })?;
    // A block acknowledged while this request was deciding must still win:
    // the admin answers only after the entry is in the index, so checking
    // again here means no token leaves after that answer.
    refuse_if_blocked(app, &facts, app.clock.unix_now(), trail)?;
    // Likewise a revocation of the token being narrowed: the child must not outlive it.
    if let Some(entry) = parent
        .as_ref()
        .and_then(|p| app.kill_switch.index().revoked(&p.facts()))
    {
        trail.record.revocation = Some(entry.id.clone());
        return Err(Refusal::InvalidGrant(format!(
            "subject_token was revoked by the kill switch (entry {})",
            entry.id
        )));
    }
    trail.record.jti = Some(minted.jti.clone());
    trail.record.exp = Some(minted.exp);
    Ok(json!({
        "access_token": minted.token,
        "issued_token_type": TYPE_ACCESS_TOKEN,
        "token_type": token_type,
        "expires_in": ttl.as_secs(),
        "scope": granted.to_string(),
    }))
}

/// The `jti`s a new token derives from: the token it narrows and the agent's
/// own writ token, each with its own ancestry. A `jti` entry for any of them
/// then reaches the new token too.
fn ancestry(
    parent: Option<&AccessClaims>,
    delegation: Option<&Delegation>,
) -> Result<Vec<String>, Refusal> {
    let mut ancestry: Vec<String> = Vec::new();
    let lineages = parent.into_iter().flat_map(AccessClaims::lineage).chain(
        delegation
            .into_iter()
            .flat_map(|d| d.lineage.iter().map(String::as_str)),
    );
    for jti in lineages {
        // A token the subject and the agent both derive from is listed once.
        if !ancestry.iter().any(|a| a == jti) {
            ancestry.push(jti.to_owned());
        }
    }
    if ancestry.len() > MAX_ANCESTRY {
        return Err(Refusal::InvalidGrant(format!(
            "subject_token derives from more than {MAX_ANCESTRY} tokens; ask for a fresh one"
        )));
    }
    Ok(ancestry)
}

fn refuse_if_blocked(
    app: &AppState,
    facts: &MintFacts<'_>,
    now: u64,
    trail: &mut Trail,
) -> Result<(), Refusal> {
    match app.kill_switch.index().blocked(facts, now) {
        None => Ok(()),
        Some(entry) => Err(kill_switch_refusal(&entry, trail)),
    }
}

/// 403 naming the entry, never its reason text.
fn kill_switch_refusal(entry: &Entry, trail: &mut Trail) -> Refusal {
    trail.record.revocation = Some(entry.id.clone());
    Refusal::AccessDenied(format!("blocked by the kill switch (entry {})", entry.id))
}

/// A writ token presented to be narrowed: same audience, a subset of its
/// scopes, no longer than it has left. Returns the subject and that ceiling.
#[allow(clippy::too_many_arguments)] // the request's parts, each checked here
fn narrowing(
    app: &AppState,
    peer: &Peer,
    dpop_jkt: Option<&str>,
    token: &str,
    audience: &TargetId,
    scopes: &Scopes,
    trail: &mut Trail,
) -> Result<(Arc<Attested>, Option<AccessClaims>), Refusal> {
    let claims = app.verifier.verify(token)?;
    // A bound token is narrowed only by its holder: the same certificate,
    // or a DPoP proof (already verified for this request) by the same key.
    let holder = super::auth::held_by(claims.cnf.as_ref(), peer, || dpop_jkt.map(str::to_owned));
    if !holder {
        return Err(Refusal::InvalidGrant(
            "subject_token is bound to a key this request does not prove".into(),
        ));
    }
    if let Some(entry) = app.kill_switch.index().revoked(&claims.facts()) {
        trail.record.revocation = Some(entry.id.clone());
        return Err(Refusal::InvalidGrant(format!(
            "subject_token was revoked by the kill switch (entry {})",
            entry.id
        )));
    }
    if claims.aud != audience.as_str() {
        return Err(Refusal::InvalidTarget(
            "audience must be the subject token's own audience".into(),
        ));
    }
    let own = Scopes::parse(&claims.scope)
        .map_err(|_| Refusal::InvalidGrant("subject_token scope is malformed".into()))?;
    if !scopes.is_subset_of(&own) {
        return Err(Refusal::InvalidScope(
            "scope is wider than the subject token's".into(),
        ));
    }
    let attested = writ_token_principal(app, &claims)?;
    Ok((Arc::new(attested), Some(claims)))
}

/// The principal a verified writ token speaks for, attested by the token
/// itself (`attestation: writ`).
pub(super) fn writ_token_principal(
    app: &AppState,
    claims: &AccessClaims,
) -> Result<Attested, Refusal> {
    let principal = Principal::new(claims.sub.clone())
        .map_err(|_| Refusal::InvalidGrant("a writ token's sub is malformed".into()))?;
    // The attestation issuer travels with the token, so blocks by issuer
    // still apply to what is narrowed or delegated from it.
    let mut attributes = std::collections::BTreeMap::new();
    let issuer = claims
        .attestation_issuer
        .clone()
        .unwrap_or_else(|| app.issuer.clone());
    attributes.insert("issuer".to_owned(), AttrValue::String(issuer));
    Ok(Attested {
        principal,
        entity_type: EntityType::parse(&claims.principal_type).unwrap_or_default(),
        kind: AttestationKind::Writ,
        attributes,
        expires_at: claims.exp,
    })
}
