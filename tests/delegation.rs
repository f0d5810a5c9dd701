//! Delegation (issue 7; RFC 8693 `actor_token`): an AI agent acting for a
//! workload or a person. The minted token keeps the subject as `sub`, names
//! the agent in `act` (newest actor outermost) and `client_id`; Cedar sees
//! `context.actor` with its parents and `delegation_depth`; a delegated token
//! never widens what it came from; the chain is bounded; and the kill switch
//! by actor stops an agent everywhere while its principals' own tokens live.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use common::*;
use serde_json::json;

/// The agent platform's issuer: each `act` level names it as the agent's `iss`.
const AGENTS_IDP: &str = "https://agents.test";

/// Agents of the assistants team may read orders for others; no agent
/// writes for anyone, and agents outside the team act for no one.
const DELEGATION_POLICY: &str = r#"
@id("assistants-read-orders")
permit (principal, action == Action::"mint", resource == Target::"orders")
when { context has actor && context.actor in Team::"assistants" && context.scope == "orders.read" };

@id("only-assistants-act")
forbid (principal, action == Action::"mint", resource)
when { context has actor && !(context.actor in Team::"assistants") };

@id("no-delegated-writes")
forbid (principal, action == Action::"mint", resource)
when { context.delegation_depth > 0 && context.scope != "orders.read" };
"#;

/// The standard entities plus the assistants team and its agents; `rogue`
/// belongs to no team.
const ENTITIES_WITH_AGENTS: &str = r#"[
  {"uid": {"type": "Target", "id": "orders"}, "attrs": {"owner": "payments"}, "parents": []},
  {"uid": {"type": "Target", "id": "ledger"}, "attrs": {"owner": "finance"}, "parents": []},
  {"uid": {"type": "Target", "id": "https://writ.test"}, "attrs": {"owner": "platform"}, "parents": []},
  {"uid": {"type": "Team", "id": "payments"}, "attrs": {}, "parents": []},
  {"uid": {"type": "Team", "id": "assistants"}, "attrs": {}, "parents": []},
  {
    "uid": {"type": "Workload", "id": "spiffe://cluster.local/ns/payments/sa/api"},
    "attrs": {},
    "parents": [{"type": "Team", "id": "payments"}]
  },
  {"uid": {"type": "Agent", "id": "planner"}, "attrs": {}, "parents": [{"type": "Team", "id": "assistants"}]},
  {"uid": {"type": "Agent", "id": "helper"}, "attrs": {}, "parents": [{"type": "Team", "id": "assistants"}]},
  {"uid": {"type": "Agent", "id": "checker"}, "attrs": {}, "parents": [{"type": "Team", "id": "assistants"}]},
  {"uid": {"type": "Agent", "id": "auditor"}, "attrs": {}, "parents": [{"type": "Team", "id": "assistants"}]},
  {"uid": {"type": "Agent", "id": "rogue"}, "attrs": {}, "parents": []},
  {"uid": {"type": "User", "id": "alice"}, "attrs": {}, "parents": [{"type": "Team", "id": "payments"}]}
]
"#;

/// The broker with agents and the delegation policy. Its `issuer` is
/// pinned to [`SELF_ISSUER`], a target, so agents can hold writ tokens for
/// the broker itself.
async fn start() -> (TestEnv, Server) {
    let mut env = env_with_agents();
    env.config.issuer = Some(SELF_ISSUER.into());
    let server = env.start().await;
    (env, server)
}

fn env_with_agents() -> TestEnv {
    let env = TestEnv::new();
    env.write("policies/entities.json", ENTITIES_WITH_AGENTS);
    env.write_policy("delegation.cedar", DELEGATION_POLICY);
    env.write_policy("narrowing.cedar", NARROWING_POLICY);
    env
}

/// `subject_token` (of `subject_type`) exchanged by the agent holding
/// `actor_token` (an OIDC agent token unless `actor_type` says otherwise).
fn delegate(
    subject_token: &str,
    subject_type: &str,
    actor_token: &str,
    actor_type: &str,
    scope: &str,
) -> TokenRequest {
    TokenRequest::exchange(subject_token, ORDERS, scope)
        .set("subject_token_type", subject_type)
        .with("actor_token", actor_token)
        .with("actor_token_type", actor_type)
}

/// Sends `request` and asserts a token was granted.
async fn granted(server: &Server, request: &TokenRequest) -> Minted {
    assert_granted(&server.token(request).await)
}

/// The agent `agent` acting for the workload `payments/api`.
fn agent_for_workload(env: &TestEnv, agent: &str, scope: &str) -> TokenRequest {
    delegate(&env.k8s_token(), JWT, &env.agent_token(agent), JWT, scope)
}

/// The agent `agent` extending the chain of the writ token `token`.
fn agent_for_token(env: &TestEnv, token: &str, agent: &str) -> TokenRequest {
    delegate(
        token,
        ACCESS_TOKEN,
        &env.agent_token(agent),
        JWT,
        "orders.read",
    )
}

#[tokio::test]
async fn delegated_token_keeps_the_subject_and_names_the_agent() {
    let (env, server) = start().await;

    let minted = granted(&server, &agent_for_workload(&env, "planner", "orders.read")).await;

    assert_eq!(minted.claims["sub"], WORKLOAD);
    assert_eq!(
        minted.claims["act"],
        json!({"sub": "planner", "iss": AGENTS_IDP})
    );
    assert_eq!(minted.claims["client_id"], "planner");
    assert_eq!(minted.claims["scope"], "orders.read");
    let introspected = server.introspect_as_admin(&minted.access_token).await;
    assert_eq!(introspected["active"], true);
    assert_eq!(
        introspected["act"],
        json!({"sub": "planner", "iss": AGENTS_IDP})
    );
    let jti = minted.claims["jti"].as_str().unwrap().to_owned();
    let record = env
        .audit_record_where("the delegated mint", |r| r["jti"] == jti.as_str())
        .await;
    assert_eq!(record["principal"], WORKLOAD);
    assert_eq!(record["act"], json!(["planner"]));
    let policies = record["policies"].as_array().unwrap();
    assert!(
        policies.contains(&json!("assistants-read-orders")),
        "{policies:?}"
    );
}

#[tokio::test]
async fn agent_may_act_for_a_person_from_the_identity_provider() {
    let (env, server) = start().await;
    let alice = env.people.oidc_token("alice", 600);

    let minted = granted(
        &server,
        &delegate(&alice, JWT, &env.agent_token("helper"), JWT, "orders.read"),
    )
    .await;

    assert_eq!(minted.claims["sub"], "alice");
    assert_eq!(minted.claims["principal_type"], "User");
    assert_eq!(minted.claims["act"]["sub"], "helper");
}

#[tokio::test]
async fn policy_refuses_an_agent_outside_the_team_and_delegated_writes() {
    let (env, server) = start().await;

    let rogue = server
        .token(&agent_for_workload(&env, "rogue", "orders.read"))
        .await;
    assert_refused_because(&rogue, 403, "access_denied", "only-assistants-act");

    let write = server
        .token(&agent_for_workload(&env, "planner", "orders.write"))
        .await;
    assert_refused_because(&write, 403, "access_denied", "no-delegated-writes");

    // The workload itself may still write: the forbid is about agents.
    let own = server
        .token(&TokenRequest::exchange(
            &env.k8s_token(),
            ORDERS,
            "orders.write",
        ))
        .await;
    assert_granted(&own);
}

#[tokio::test]
async fn chains_of_two_and_three_hops_nest_the_newest_actor_outermost() {
    let (env, server) = start().await;
    let first = granted(&server, &agent_for_workload(&env, "planner", "orders.read")).await;

    let second = granted(
        &server,
        &agent_for_token(&env, &first.access_token, "helper"),
    )
    .await;
    assert_eq!(second.claims["sub"], WORKLOAD);
    assert_eq!(
        second.claims["act"],
        json!({"sub": "helper", "iss": AGENTS_IDP, "act": {"sub": "planner", "iss": AGENTS_IDP}})
    );
    assert_eq!(second.claims["client_id"], "helper");

    let third = granted(
        &server,
        &agent_for_token(&env, &second.access_token, "checker"),
    )
    .await;
    assert_eq!(
        third.claims["act"],
        json!({"sub": "checker", "iss": AGENTS_IDP, "act": {"sub": "helper", "iss": AGENTS_IDP, "act": {"sub": "planner", "iss": AGENTS_IDP}}})
    );

    // A fourth hop passes tokens.max_delegation_depth (3 by default).
    let fourth = server
        .token(&agent_for_token(&env, &third.access_token, "auditor"))
        .await;
    assert_refused_because(
        &fourth,
        400,
        "invalid_request",
        "delegation depth 4 exceeds tokens.max_delegation_depth (3)",
    );
}

#[tokio::test]
async fn a_delegated_token_never_widens_what_it_came_from() {
    let (env, server) = start().await;
    let first = granted(
        &server,
        &agent_for_workload(&env, "planner", "orders.read").requested_ttl(120),
    )
    .await;

    let wider_scope = delegate(
        &first.access_token,
        ACCESS_TOKEN,
        &env.agent_token("helper"),
        JWT,
        "orders.read orders.write",
    );
    assert_refused(&server.token(&wider_scope).await, 400, "invalid_scope");

    let other_audience =
        agent_for_token(&env, &first.access_token, "helper").set("audience", "ledger");
    assert_refused(&server.token(&other_audience).await, 400, "invalid_target");

    let longer = agent_for_token(&env, &first.access_token, "helper").requested_ttl(900);
    let second = granted(&server, &longer).await;
    assert!(
        second.claims["exp"].as_u64().unwrap() <= first.claims["exp"].as_u64().unwrap(),
        "a delegated token outlived its subject token: {} > {}",
        second.claims["exp"],
        first.claims["exp"]
    );
}

#[tokio::test]
async fn narrowing_a_delegated_token_keeps_its_chain() {
    let (env, server) = start().await;
    let delegated = granted(&server, &agent_for_workload(&env, "planner", "orders.read")).await;

    let narrowed = granted(
        &server,
        &TokenRequest::narrow(&delegated.access_token, ORDERS, "orders.read"),
    )
    .await;

    assert_eq!(
        narrowed.claims["act"],
        json!({"sub": "planner", "iss": AGENTS_IDP})
    );
    assert_eq!(narrowed.claims["client_id"], "planner");
}

#[tokio::test]
async fn the_actor_kill_switch_stops_the_agent_for_everyone_and_only_the_agent() {
    let (env, server) = start().await;
    let for_workload = granted(&server, &agent_for_workload(&env, "planner", "orders.read")).await;
    let alice = env.people.oidc_token("alice", 600);
    let for_alice = granted(
        &server,
        &delegate(&alice, JWT, &env.agent_token("planner"), JWT, "orders.read"),
    )
    .await;
    let hop_two = granted(
        &server,
        &agent_for_token(&env, &for_workload.access_token, "helper"),
    )
    .await;
    let by_another_agent =
        granted(&server, &agent_for_workload(&env, "helper", "orders.read")).await;
    let own = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;

    server.revoke(json!({"actor": "planner"}), true, None).await;

    for (what, token) in [
        ("planner for the workload", &for_workload),
        ("planner for alice", &for_alice),
        ("helper after planner", &hop_two),
    ] {
        let answer = server.introspect_as_admin(&token.access_token).await;
        assert_eq!(answer["active"], false, "{what}: {answer}");
    }
    for (what, token) in [
        ("helper alone", &by_another_agent),
        ("the workload's own", &own),
    ] {
        let answer = server.introspect_as_admin(&token.access_token).await;
        assert_eq!(answer["active"], true, "{what}: {answer}");
    }
    let blocked = server
        .token(&agent_for_workload(&env, "planner", "orders.read"))
        .await;
    assert_refused_because(&blocked, 403, "access_denied", "blocked by the kill switch");
    granted(
        &server,
        &TokenRequest::exchange(&env.k8s_token(), ORDERS, "orders.read"),
    )
    .await;
    granted(&server, &agent_for_workload(&env, "helper", "orders.read")).await;
}

#[tokio::test]
async fn an_expired_or_revoked_actor_token_is_refused() {
    let (env, server) = start().await;
    let expired = env.agents.oidc_token("planner", -600);
    let reply = server
        .token(&delegate(
            &env.k8s_token(),
            JWT,
            &expired,
            JWT,
            "orders.read",
        ))
        .await;
    assert_refused(&reply, 400, "invalid_grant");
    assert!(reply.text.contains("actor_token"), "{}", reply.text);

    // The agent's own writ token for the broker works as its attestation...
    let own = server
        .mint(&env.agent_token("planner"), SELF_ISSUER, "introspect")
        .await;
    let as_writ_token = delegate(
        &env.k8s_token(),
        JWT,
        &own.access_token,
        ACCESS_TOKEN,
        "orders.read",
    );
    let minted = granted(&server, &as_writ_token).await;
    assert_eq!(
        minted.claims["act"],
        json!({"sub": "planner", "iss": AGENTS_IDP})
    );

    // ...until it is revoked.
    let jti = own.claims["jti"].as_str().unwrap();
    server.revoke(json!({"jti": jti}), false, None).await;
    let refused = server.token(&as_writ_token).await;
    assert_refused_because(&refused, 400, "invalid_grant", "actor_token was revoked");
}

#[tokio::test]
async fn an_actor_token_that_is_not_an_agent_is_refused() {
    let (env, server) = start().await;

    let ci_job = delegate(&env.k8s_token(), JWT, &env.ci_token(), JWT, "orders.read");
    assert_refused_because(
        &server.token(&ci_job).await,
        400,
        "invalid_grant",
        "actor_token must attest an agent",
    );
    let workload_writ_token = server
        .mint(&env.k8s_token(), SELF_ISSUER, "introspect")
        .await;
    let as_writ = delegate(
        &env.ci_token(),
        JWT,
        &workload_writ_token.access_token,
        ACCESS_TOKEN,
        "orders.read",
    );
    assert_refused_because(
        &server.token(&as_writ).await,
        400,
        "invalid_grant",
        "actor_token must attest an agent",
    );
}

#[tokio::test]
async fn malformed_delegation_requests_are_invalid_request() {
    let (env, server) = start().await;
    let cases: [(&str, TokenRequest); 3] = [
        (
            "actor_token without its type",
            TokenRequest::exchange(&env.k8s_token(), ORDERS, "orders.read")
                .with("actor_token", &env.agent_token("planner")),
        ),
        (
            "actor_token_type without actor_token",
            TokenRequest::exchange(&env.k8s_token(), ORDERS, "orders.read")
                .with("actor_token_type", JWT),
        ),
        (
            "an unknown actor_token_type",
            agent_for_workload(&env, "planner", "orders.read")
                .set("actor_token_type", "urn:example:saml"),
        ),
    ];
    for (what, request) in cases {
        let reply = server.token(&request).await;
        assert_eq!(reply.status, 400, "{what}: {}", reply.text);
        assert_eq!(
            reply.json["error"], "invalid_request",
            "{what}: {}",
            reply.text
        );
    }
    let self_acting = delegate(
        &env.agent_token("planner"),
        JWT,
        &env.agent_token("planner"),
        JWT,
        "orders.read",
    );
    assert_refused(&server.token(&self_acting).await, 400, "invalid_request");
}

#[tokio::test]
async fn an_sdk_verifier_refuses_delegated_tokens_once_the_agent_is_killed() {
    // The issuer stays the bound address, which the SDK can reach.
    let env = env_with_agents();
    let server = env.start().await;
    let broker =
        writ_sdk::Broker::with_ca_pem(server.url.as_str(), server.ca_pem().as_bytes()).unwrap();
    let verifier = writ_sdk::Verifier::builder(broker, ORDERS)
        .follow_revocations(
            writ_sdk::FeedAuth::Bearer(server.admin_token().to_owned()),
            std::time::Duration::from_secs(60),
        )
        .build()
        .await
        .unwrap();
    let first = granted(&server, &agent_for_workload(&env, "planner", "orders.read")).await;
    let second = granted(
        &server,
        &agent_for_token(&env, &first.access_token, "helper"),
    )
    .await;
    let own = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;
    assert!(verifier.verify(&second.access_token).await.is_ok());

    server
        .revoke(json!({"actor": "planner"}), false, None)
        .await;

    eventually(
        "the verifier to refuse a token planner is in the chain of",
        async || match verifier.verify(&second.access_token).await {
            Err(writ_sdk::VerifyError::Revoked(_)) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    assert!(verifier.verify(&own.access_token).await.is_ok());
}

#[tokio::test]
async fn a_delegated_decision_is_recorded_with_its_agent_and_re_evaluated_with_it() {
    let (env, server) = start().await;
    let minted = granted(&server, &agent_for_workload(&env, "helper", "orders.read")).await;
    let jti = minted.claims["jti"].as_str().unwrap().to_owned();
    let record = env
        .audit_record_where("the delegated mint", |r| r["jti"] == jti.as_str())
        .await;
    assert_eq!(record["actor"]["type"], "Agent", "{record}");
    assert_eq!(record["actor"]["id"], "helper", "{record}");
    assert_eq!(record["delegation_depth"], 1, "{record}");
    let id = record["decision_id"].as_str().unwrap();

    let out = run_writ(
        env.dir(),
        &[
            "policy",
            "explain",
            "--dir",
            "policies",
            "--decision",
            id,
            "--audit",
            "audit.jsonl",
            "--json",
        ],
    )
    .await;

    assert_eq!(out.code, Some(0), "{}", out.describe());
    let answer: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(answer["decision"], "allow", "{}", out.describe());
    assert_eq!(answer["recorded"], "allow", "{}", out.describe());
    // The same permits decide as did then, the agent's among them.
    let sorted = |v: &serde_json::Value| {
        let mut ids: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(sorted(&answer["policies"]), sorted(&record["policies"]));
    assert!(sorted(&answer["policies"]).contains(&"assistants-read-orders".to_owned()));
    assert!(!out.stderr.contains("not recorded"), "{}", out.describe());
}
