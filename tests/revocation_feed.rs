//! The revocation feed followers read (`/v1/revocations` as JSON pages and
//! `/v1/revocations/stream` as Server-Sent Events), and RFC 7009
//! self-revocation (`POST /oauth2/revoke`), which feeds it too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use common::*;
use serde_json::{Value, json};

/// Creates `count` revoke-only entries, each for a different payments workload.
async fn create_entries(server: &Server, first: usize, count: usize) -> Vec<Revocation> {
    let mut created = Vec::with_capacity(count);
    for index in first..first + count {
        let subject = format!("spiffe://cluster.local/ns/{NAMESPACE}/sa/follower-{index}");
        created.push(server.revoke(json!({"subject": subject}), true, None).await);
    }
    created
}

fn seqs_of(entries: &[Revocation]) -> Vec<u64> {
    entries.iter().map(|entry| entry.seq).collect()
}

fn event_seqs(events: &[FeedEvent]) -> Vec<u64> {
    events.iter().map(FeedEvent::seq).collect()
}

/// Every event is a `revocation` whose data is the entry its `id:` names.
#[track_caller]
fn assert_revocation_events(events: &[FeedEvent]) {
    for event in events {
        assert_eq!(
            event.event.as_deref(),
            Some("revocation"),
            "event type of {event:?}"
        );
        let entry = event.entry();
        assert_eq!(entry_seq(&entry), event.seq(), "id: and data of {event:?}");
    }
}

/// 401 with `invalid_client`, a `decision_id` and `WWW-Authenticate: Bearer`.
#[track_caller]
fn assert_invalid_client(reply: &Reply) {
    assert_refused(reply, 401, "invalid_client");
    assert!(
        reply
            .header("www-authenticate")
            .is_some_and(|value| value.starts_with("Bearer")),
        "no WWW-Authenticate: Bearer on {}",
        reply.describe()
    );
}

/// A server whose `issuer` is pinned to [`SELF_ISSUER`], a target workloads may ask tokens for.
async fn start_with_self_issuer() -> (TestEnv, Server) {
    let mut env = TestEnv::new();
    env.config.issuer = Some(SELF_ISSUER.to_string());
    let server = env.start().await;
    (env, server)
}

// --- JSON feed ----------------------------------------------------------------------------

#[tokio::test]
async fn json_feed_pages_through_every_entry_by_since_and_limit() {
    let (_env, server) = start_standard().await;
    let created = create_entries(&server, 0, 5).await;

    let mut seen = Vec::new();
    let mut since = 0;
    for _ in 0..10 {
        let page = server.feed(since, Some(2)).await;
        let entries = entries_of(&page);
        assert!(entries.len() <= 2, "limit 2 gave {page}");
        if entries.is_empty() {
            assert_eq!(
                page["next_since"], since,
                "an empty page keeps since: {page}"
            );
            break;
        }
        for entry in &entries {
            assert!(entry_seq(entry) > since, "since={since} gave {entry}");
        }
        let last = entry_seq(entries.last().expect("a non-empty page"));
        assert_eq!(page["next_since"], last, "next_since of {page}");
        seen.extend(entries.iter().map(entry_seq));
        since = last;
    }

    assert_eq!(seen, seqs_of(&created));
}

#[tokio::test]
async fn json_feed_entries_omit_the_reason() {
    let (_env, server) = start_standard().await;
    let body = json!({
        "selector": {"subject": WORKLOAD},
        "reason": "internal incident notes",
        "block": true,
    });
    let entry = assert_revocation_created(&server.post_revocation(&body).await);

    let page = server.feed(0, None).await;

    let entries = entries_of(&page);
    let listed = entries
        .iter()
        .find(|candidate| entry_id(candidate) == entry.id)
        .unwrap_or_else(|| panic!("entry {} not in {page}", entry.id));
    assert!(listed.get("reason").is_none(), "{listed}");
    assert_eq!(listed["kind"], "revoke", "{listed}");
    assert_eq!(listed["selector"], json!({"subject": WORKLOAD}), "{listed}");
    assert_eq!(listed["block"], true, "{listed}");
}

#[tokio::test]
async fn json_feed_without_credentials_is_invalid_client() {
    let (_env, server) = start_standard().await;

    let reply = server.feed_as(None, "?since=0").await;

    assert_invalid_client(&reply);
}

#[tokio::test]
async fn json_feed_with_a_wrong_token_is_invalid_client() {
    let (_env, server) = start_standard().await;

    let reply = server
        .feed_as(Some("not-the-admin-token"), "?since=0")
        .await;

    assert_invalid_client(&reply);
}

#[tokio::test]
async fn writ_token_for_the_broker_may_read_the_feed() {
    let (env, server) = start_with_self_issuer().await;
    let entry = server
        .revoke(json!({"subject": WORKLOAD}), false, None)
        .await;
    let follower = server
        .mint(
            &env.service_account_token(NAMESPACE, "sidecar"),
            SELF_ISSUER,
            "introspect",
        )
        .await;

    let reply = server
        .feed_as(Some(&follower.access_token), "?since=0")
        .await;

    assert_eq!(reply.status, 200, "{}", reply.describe());
    let ids: Vec<Value> = entries_of(&reply.json)
        .iter()
        .map(|listed| listed["id"].clone())
        .collect();
    assert!(ids.contains(&json!(entry.id)), "{}", reply.describe());
}

#[tokio::test]
async fn writ_token_for_another_audience_may_not_read_the_feed() {
    let (env, server) = start_with_self_issuer().await;
    let workload = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;

    let reply = server
        .feed_as(Some(&workload.access_token), "?since=0")
        .await;

    assert_invalid_client(&reply);
}

// --- Server-Sent Events -------------------------------------------------------------------

#[tokio::test]
async fn stream_without_credentials_is_invalid_client() {
    let (_env, server) = start_standard().await;

    let response = server.feed_stream_response(None, None, None).await;

    assert_invalid_client(&Reply::read(response).await);
}

#[tokio::test]
async fn stream_delivers_every_entry_in_seq_order() {
    let (_env, server) = start_standard().await;
    let mut expected: Vec<(u64, String)> = create_entries(&server, 0, 3)
        .await
        .into_iter()
        .map(|entry| (entry.seq, entry.id))
        .collect();
    let lift = server.lift(&expected[0].1).await;
    assert_eq!(lift.status, 200, "{}", lift.describe());
    expected.push((
        lift.json["seq"].as_u64().expect("lift seq"),
        lift.json["id"].as_str().expect("lift id").to_string(),
    ));
    for entry in create_entries(&server, 3, 1).await {
        expected.push((entry.seq, entry.id));
    }

    let mut stream = server.open_feed_stream(None, None).await;
    let events = stream.take(expected.len()).await;

    assert_revocation_events(&events);
    let delivered: Vec<(u64, String)> = events
        .iter()
        .map(|event| (event.seq(), entry_id(&event.entry()).to_string()))
        .collect();
    assert_eq!(delivered, expected);
    let seqs = event_seqs(&events);
    assert!(
        seqs.windows(2).all(|pair| pair[0] < pair[1]),
        "seqs {seqs:?}"
    );
}

#[tokio::test]
async fn stream_since_starts_after_that_seq() {
    let (_env, server) = start_standard().await;
    let created = create_entries(&server, 0, 4).await;

    let mut stream = server.open_feed_stream(Some(created[1].seq), None).await;
    let events = stream.take(2).await;

    assert_revocation_events(&events);
    assert_eq!(event_seqs(&events), seqs_of(&created[2..]));
}

#[tokio::test]
async fn live_entry_reaches_an_open_stream() {
    let (_env, server) = start_standard().await;
    let earlier = create_entries(&server, 0, 1).await;
    let mut stream = server.open_feed_stream(None, None).await;
    // Reading the backlog shows the stream is open and caught up.
    assert_eq!(event_seqs(&stream.take(1).await), seqs_of(&earlier));

    let live = server
        .revoke(json!({"subject": WORKLOAD}), true, None)
        .await;

    let event = stream.next_event().await;
    assert_revocation_events(std::slice::from_ref(&event));
    assert_eq!(event.seq(), live.seq);
    let entry = event.entry();
    assert_eq!(entry_id(&entry), live.id, "{entry}");
    assert_eq!(entry["selector"], json!({"subject": WORKLOAD}), "{entry}");
    assert_eq!(entry["block"], true, "{entry}");
}

#[tokio::test]
async fn live_entry_reaches_every_open_stream() {
    let (_env, server) = start_standard().await;
    let earlier = create_entries(&server, 0, 1).await;
    let mut first = server.open_feed_stream(None, None).await;
    let mut second = server.open_feed_stream(None, None).await;
    assert_eq!(event_seqs(&first.take(1).await), seqs_of(&earlier));
    assert_eq!(event_seqs(&second.take(1).await), seqs_of(&earlier));

    let live = server
        .revoke(json!({"subject": WORKLOAD}), true, None)
        .await;

    assert_eq!(first.next_event().await.seq(), live.seq);
    assert_eq!(second.next_event().await.seq(), live.seq);
}

#[tokio::test]
async fn resuming_with_last_event_id_loses_and_repeats_nothing() {
    let (_env, server) = start_standard().await;
    let mut created = create_entries(&server, 0, 4).await;
    let mut stream = server.open_feed_stream(None, None).await;
    let before = stream.take(2).await;
    drop(stream);
    // Entries made while the follower is away.
    created.extend(create_entries(&server, 4, 3).await);
    let last_seen = before.last().expect("two events").seq();
    let last_created = created.last().expect("seven entries").seq;

    let mut resumed = server.open_feed_stream(None, Some(last_seen)).await;
    let after = resumed.until_seq(last_created).await;

    assert_revocation_events(&after);
    let mut delivered = event_seqs(&before);
    delivered.extend(event_seqs(&after));
    assert_eq!(delivered, seqs_of(&created));
}

// --- RFC 7009 self-revocation -------------------------------------------------------------

#[tokio::test]
async fn holder_revokes_its_own_token() {
    let (env, server) = start_standard().await;
    let minted = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;

    let reply = server.self_revoke(&minted.access_token).await;

    assert_eq!(reply.status, 200, "{}", reply.describe());
    assert_eq!(
        server.introspect_as_admin(&minted.access_token).await,
        json!({"active": false})
    );
}

#[tokio::test]
async fn self_revocation_spares_the_holders_other_tokens() {
    let (env, server) = start_standard().await;
    let given_up = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;
    let kept = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;

    let reply = server.self_revoke(&given_up.access_token).await;

    assert_eq!(reply.status, 200, "{}", reply.describe());
    let introspection = server.introspect_as_admin(&kept.access_token).await;
    assert_eq!(introspection["active"], true, "{introspection}");
}

#[tokio::test]
async fn self_revocation_is_a_jti_entry_by_the_holder_in_the_feed_and_the_audit_log() {
    let (env, server) = start_standard().await;
    let minted = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;
    let jti = minted.claims["jti"].as_str().expect("jti").to_string();

    let reply = server.self_revoke(&minted.access_token).await;
    assert_eq!(reply.status, 200, "{}", reply.describe());

    let entries = server.feed_entries().await;
    let entry = entries
        .iter()
        .find(|entry| entry["selector"] == json!({"jti": jti}))
        .unwrap_or_else(|| panic!("no jti entry for {jti} in {entries:?}"));
    assert_eq!(entry["kind"], "revoke", "{entry}");
    assert!(entry.get("who").is_none(), "the feed names no one: {entry}");
    let id = entry_id(entry).to_string();
    let admin_view = server.revocation(&id).await;
    assert_eq!(
        admin_view.json["who"],
        WORKLOAD,
        "{}",
        admin_view.describe()
    );
    env.audit_record_where("the self-revocation", |record| {
        record["action"] == "self_revoke" && record["revocation"] == id.as_str()
    })
    .await;
}

#[tokio::test]
async fn revoking_twice_is_200_both_times() {
    let (env, server) = start_standard().await;
    let minted = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;

    let first = server.self_revoke(&minted.access_token).await;
    let second = server.self_revoke(&minted.access_token).await;

    assert_eq!(first.status, 200, "{}", first.describe());
    assert_eq!(second.status, 200, "{}", second.describe());
}

#[tokio::test]
async fn revoking_garbage_is_200_with_an_empty_body_and_no_entry() {
    let (_env, server) = start_standard().await;
    let before = server.feed_entries().await.len();

    let reply = server.self_revoke("not-a-jwt").await;

    assert_eq!(reply.status, 200, "{}", reply.describe());
    assert!(reply.text.is_empty(), "{}", reply.describe());
    assert_eq!(server.feed_entries().await.len(), before);
}

#[tokio::test]
async fn revoking_a_forged_copy_of_a_token_is_200_and_revokes_nothing() {
    let (env, server) = start_standard().await;
    let minted = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;
    let forged = SigningKey::generate(Alg::Es256).sign_with_header(&minted.header, &minted.claims);
    let before = server.feed_entries().await.len();

    let reply = server.self_revoke(&forged).await;

    assert_eq!(reply.status, 200, "{}", reply.describe());
    assert!(reply.text.is_empty(), "{}", reply.describe());
    assert_eq!(server.feed_entries().await.len(), before);
    let introspection = server.introspect_as_admin(&minted.access_token).await;
    assert_eq!(introspection["active"], true, "{introspection}");
}
