//! The revocation feed for sidecars, SDKs and resource servers
//! (`/v1/revocations`, JSON pages and Server-Sent Events), and RFC 7009
//! revocation of a token by its own holder.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{broadcast, mpsc};

use super::error::ApiError;
use super::extract::Authenticated;
use super::form;
use super::{AppState, auth};
use crate::attest::Peer;
use crate::grant::Refusal;
use crate::revoke::{Entry, KillSwitch, PAGE};
use crate::token::Verified;

/// SSE comment heartbeats keep idle streams (and proxies) alive.
const HEARTBEAT: Duration = Duration::from_secs(15);

#[derive(Debug, Deserialize)]
pub(super) struct FeedQuery {
    since: Option<u64>,
    limit: Option<usize>,
}

fn refused(refusal: Refusal) -> Response {
    ApiError::fresh(refusal).into_response()
}

/// `GET /v1/revocations?since=SEQ&limit=N`
pub(super) async fn page(
    State(app): State<Arc<AppState>>,
    _caller: Authenticated,
    Query(q): Query<FeedQuery>,
) -> Response {
    let since = q.since.unwrap_or(0);
    let limit = q.limit.unwrap_or(PAGE).clamp(1, 10 * PAGE);
    match app.kill_switch.since(since, limit).await {
        Ok(entries) => {
            let next = entries.last().map_or(since, |e| e.seq);
            let entries: Vec<_> = entries.iter().map(|e| e.to_json(false)).collect();
            Json(json!({"entries": entries, "next_since": next})).into_response()
        }
        Err(e) => refused(e.into()),
    }
}

/// `GET /v1/revocations/stream`: every entry after `Last-Event-ID` (or
/// `?since=`), then each new one as soon as it is durable.
pub(super) async fn stream(
    State(app): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    headers: HeaderMap,
    Query(q): Query<FeedQuery>,
) -> Response {
    // A stream lives no longer than the token that opened it.
    let lifetime = match &caller {
        auth::Caller::Workload(claims) => Some(Duration::from_secs(
            claims.exp.saturating_sub(app.clock.unix_now()),
        )),
        _ => None,
    };
    let since = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or(q.since)
        .unwrap_or(0);
    // Subscribe before reading the backlog, so nothing falls between them.
    let live = app.kill_switch.subscribe();
    let (tx, rx) = mpsc::channel::<Event>(256);
    tokio::spawn(async move {
        match lifetime {
            Some(d) => {
                let _ =
                    tokio::time::timeout(d, follow(app.kill_switch.clone(), live, since, tx)).await;
            }
            None => follow(app.kill_switch.clone(), live, since, tx).await,
        }
    });
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|event| (Ok::<_, Infallible>(event), rx))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat"))
        .into_response()
}

fn event(entry: &Entry) -> Event {
    Event::default()
        .id(entry.seq.to_string())
        .event("revocation")
        .data(entry.to_json(false).to_string())
}

/// Sends entries after `last` in seq order until the client goes away.
async fn follow(
    ks: Arc<KillSwitch>,
    mut live: broadcast::Receiver<Arc<Entry>>,
    mut last: u64,
    tx: mpsc::Sender<Event>,
) {
    // From the store: the backlog, and again whenever the live feed skipped.
    async fn catch_up(ks: &KillSwitch, last: &mut u64, tx: &mpsc::Sender<Event>) -> bool {
        loop {
            let page = match ks.since(*last, PAGE).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "feed catch-up failed; closing the stream");
                    return false;
                }
            };
            if page.is_empty() {
                return true;
            }
            for entry in &page {
                if tx.send(event(entry)).await.is_err() {
                    return false;
                }
                *last = entry.seq;
            }
        }
    }
    if !catch_up(&ks, &mut last, &tx).await {
        return;
    }
    loop {
        let received = tokio::select! {
            r = live.recv() => r,
            () = tx.closed() => return,
        };
        match received {
            Ok(entry) if entry.seq <= last => {}
            Ok(entry) if entry.seq == last + 1 => {
                if tx.send(event(&entry)).await.is_err() {
                    return;
                }
                last = entry.seq;
            }
            // A gap or a lag: the store has everything, in order.
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                if !catch_up(&ks, &mut last, &tx).await {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// `POST /oauth2/revoke` (RFC 7009): the holder gives up its own token. The
/// token is its own credential; anything that is not a live writ token is
/// answered 200 all the same, so the endpoint reveals nothing.
pub(super) async fn self_revoke(
    State(app): State<Arc<AppState>>,
    peer: Peer,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let mut record = app.audit_record("self_revoke", app.clock.unix_now(), &peer)?;
    let outcome = async {
        let form = form::read(&headers, body)?;
        let token = form.required("token")?;
        let Ok(Verified { claims, kid }) = app.verifier.verify(token) else {
            record.reason = Some("not a live writ token; nothing to revoke".into());
            return Ok(());
        };
        record.principal = Some(claims.sub.clone());
        record.jti = Some(claims.jti.clone());
        // A bound token is given up only by its holder: whoever merely saw
        // it must not be able to cut the workload off.
        let request = auth::RequestFacts {
            method: "POST",
            uri: &format!("{}/oauth2/revoke", app.issuer),
            headers: &headers,
        };
        if !auth::binding_holds(&app, &claims, token, None, &peer, &request).await {
            return Err(Refusal::InvalidClient(
                "the token is bound to a key; revoke it with its DPoP proof or client certificate"
                    .into(),
            ));
        }
        if let Some(entry) = app.kill_switch.index().revokes(&claims, &kid) {
            record.revocation = Some(entry.id.clone());
            return Ok(());
        }
        // Each revocation is a durable entry every follower receives: one
        // workload may not flood the kill switch by minting and giving up.
        app.self_revocations
            .admit(&claims.sub, app.clock.unix_now())
            .map_err(|retry_after| Refusal::RateLimited {
                why: "too many revocations by this principal; try again later".into(),
                retry_after,
            })?;
        let entry = app
            .kill_switch
            .revoke_token(
                claims.jti.clone(),
                claims.iat,
                claims.exp,
                claims.sub.clone(),
            )
            .await?;
        record.revocation = Some(entry.id.clone());
        Ok::<(), Refusal>(())
    }
    .await
    .map(|()| StatusCode::OK.into_response());
    Ok(super::respond(&app, record, outcome).await)
}
