//! Resource indicators (RFC 8707, CONTRACT section 9): `resource` names the
//! target at the token endpoint as `audience` does. Cedar decides on
//! `Target::"<the URI>"`, the token's `aud` is the URI exactly, and a
//! malformed, repeated or conflicting `resource` is `invalid_target`, audited
//! under the `decision_id` the client saw.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use common::*;
use serde_json::Value;

/// The MCP tool server's URI: a `Target` in [`ENTITIES_WITH_TOOLS`].
const TOOLS: &str = "https://mcp.example.com/tools";
/// A principal with a client certificate (client credentials over mTLS).
const BUILDER: &str = "spiffe://writ.local/ci/builder";

/// `tools.read` on the tool server for the payments workloads, for mTLS
/// callers, for narrowing and for agents acting for someone; nothing else.
const TOOLS_POLICY: &str = r#"
@id("tools-read")
permit (principal, action == Action::"mint", resource == Target::"https://mcp.example.com/tools")
when {
  context.scope == "tools.read" && (
    (principal has namespace && principal.namespace == "payments") ||
    context.attestation == "mtls" ||
    context.attestation == "writ" ||
    context has actor
  )
};
"#;

/// The standard entities, the tool server and an agent.
const ENTITIES_WITH_TOOLS: &str = r#"[
  {"uid": {"type": "Target", "id": "orders"}, "attrs": {"owner": "payments"}, "parents": []},
  {"uid": {"type": "Target", "id": "ledger"}, "attrs": {"owner": "finance"}, "parents": []},
  {"uid": {"type": "Target", "id": "https://writ.test"}, "attrs": {"owner": "platform"}, "parents": []},
  {"uid": {"type": "Target", "id": "https://mcp.example.com/tools"}, "attrs": {"owner": "platform"}, "parents": []},
  {"uid": {"type": "Team", "id": "payments"}, "attrs": {}, "parents": []},
  {
    "uid": {"type": "Workload", "id": "spiffe://cluster.local/ns/payments/sa/api"},
    "attrs": {},
    "parents": [{"type": "Team", "id": "payments"}]
  },
  {"uid": {"type": "Agent", "id": "helper"}, "attrs": {}, "parents": []}
]
"#;

fn env() -> TestEnv {
    let env = TestEnv::new();
    env.write("policies/entities.json", ENTITIES_WITH_TOOLS);
    env.write_policy("tools.cedar", TOOLS_POLICY);
    env
}

async fn start() -> (TestEnv, Server) {
    let env = env();
    let server = env.start().await;
    (env, server)
}

/// An exchange of `subject_token` for `scope` with the target named by
/// `resource` (and no `audience`).
fn for_resource(subject_token: &str, resource: &str, scope: &str) -> TokenRequest {
    TokenRequest::exchange(subject_token, ORDERS, scope)
        .without("audience")
        .with("resource", resource)
}

/// The audit record of the refusal `reply` reports, by its `decision_id`.
async fn audit_record_of(env: &TestEnv, reply: &Reply) -> Value {
    let decision_id = reply
        .decision_id()
        .expect("a refusal carries a decision_id")
        .to_string();
    env.audit_record_where(&format!("decision {decision_id}"), |record| {
        record["decision_id"] == decision_id.as_str()
    })
    .await
}

// --- Success -------------------------------------------------------------------

#[tokio::test]
async fn a_resource_is_the_target_and_the_token_audience_exactly() {
    let (env, server) = start().await;

    let reply = server
        .token(&for_resource(&env.k8s_token(), TOOLS, "tools.read"))
        .await;

    let minted = assert_granted(&reply);
    assert_eq!(minted.claims["aud"], TOOLS);
    assert_eq!(minted.scope, "tools.read");
    // A resource server checking its own URI as the audience accepts it.
    let jwks = server.jwks().await;
    let claims = verify_with_jwks(&minted.access_token, &jwks, &server.url, TOOLS)
        .unwrap_or_else(|e| panic!("a standard JWT check refused the token: {e}"));
    assert_eq!(claims["sub"], WORKLOAD);
    // ...and one expecting another audience does not.
    assert!(verify_with_jwks(&minted.access_token, &jwks, &server.url, ORDERS).is_err());
    let jti = minted.claims["jti"].clone();
    let record = env
        .audit_record_where("the minted token", |r| r["jti"] == jti)
        .await;
    assert_eq!(record["target"], TOOLS);
    assert_eq!(record["policies"], serde_json::json!(["tools-read"]));
}

#[tokio::test]
async fn a_resource_equal_to_the_audience_is_accepted_and_another_is_invalid_target() {
    let (env, server) = start().await;

    let same = for_resource(&env.k8s_token(), TOOLS, "tools.read").with("audience", TOOLS);
    let minted = assert_granted(&server.token(&same).await);
    assert_eq!(minted.claims["aud"], TOOLS);

    let other = for_resource(&env.k8s_token(), TOOLS, "tools.read").with("audience", ORDERS);
    let reply = server.token(&other).await;
    assert_refused_because(&reply, 400, "invalid_target", "different targets");
}

#[tokio::test]
async fn a_resource_works_for_client_credentials_narrowing_and_delegation() {
    let mut env = env();
    env.config.client_ca = true;
    env.write_policy("narrowing.cedar", NARROWING_POLICY);
    let server = env.start().await;

    // Client credentials over mTLS.
    let cert = env.client_pki.client_cert(vec![uri_san(BUILDER)]);
    let reply = Reply::read(
        server
            .client_with_certificate(&cert)
            .post(server.endpoint("/oauth2/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("resource", TOOLS),
                ("scope", "tools.read"),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    let minted = assert_granted(&reply);
    assert_eq!(
        (&minted.claims["sub"], &minted.claims["aud"]),
        (&Value::from(BUILDER), &Value::from(TOOLS))
    );

    // Narrowing a token for the URI, naming it again by `resource`.
    let parent = assert_granted(
        &server
            .token(&for_resource(&env.k8s_token(), TOOLS, "tools.read"))
            .await,
    );
    let narrowed = for_resource(&parent.access_token, TOOLS, "tools.read")
        .set("subject_token_type", ACCESS_TOKEN);
    let child = assert_granted(&server.token(&narrowed).await);
    assert_eq!(child.claims["aud"], TOOLS);

    // An agent acting for the workload.
    let delegated = for_resource(&env.k8s_token(), TOOLS, "tools.read")
        .with("actor_token", &env.agent_token("helper"))
        .with("actor_token_type", JWT);
    let minted = assert_granted(&server.token(&delegated).await);
    assert_eq!(minted.claims["aud"], TOOLS);
    assert_eq!(minted.claims["act"]["sub"], "helper");
}

// --- Policy --------------------------------------------------------------------

#[tokio::test]
async fn policy_decides_on_the_uri_target() {
    let (env, server) = start().await;

    // A URI writ knows, but no policy permits this principal there.
    let reply = server
        .token(&for_resource(&env.ci_token(), TOOLS, "tools.read"))
        .await;
    assert_refused_because(&reply, 403, "access_denied", "no policy permits");
    let record = audit_record_of(&env, &reply).await;
    assert_eq!(record["target"], TOOLS);

    // ...nor this scope to a principal it permits.
    let reply = server
        .token(&for_resource(&env.k8s_token(), TOOLS, "tools.write"))
        .await;
    assert_refused(&reply, 403, "access_denied");

    // A URI that is no target at all.
    let unknown = "https://mcp.example.com/other";
    let reply = server
        .token(&for_resource(&env.k8s_token(), unknown, "tools.read"))
        .await;
    assert_refused_because(
        &reply,
        400,
        "invalid_target",
        "resource is not a known target",
    );
    let record = audit_record_of(&env, &reply).await;
    assert_eq!(record["target"], unknown);
    assert_eq!(record["error"], "invalid_target");
}

// --- Bad input -----------------------------------------------------------------

#[tokio::test]
async fn each_malformed_resource_is_invalid_target_and_audited() {
    let (env, server) = start().await;
    let token = env.k8s_token();
    let oversized = format!("{TOOLS}/{}", "a".repeat(1024));
    let cases: Vec<(&str, TokenRequest, &str)> = vec![
        (
            "relative",
            for_resource(&token, "/tools", "tools.read"),
            "not an absolute URI",
        ),
        (
            "not https",
            for_resource(&token, "http://mcp.example.com/tools", "tools.read"),
            "must be an https URI",
        ),
        (
            "a URN",
            for_resource(&token, "urn:example:tools", "tools.read"),
            "must be an https URI",
        ),
        (
            "a fragment",
            for_resource(&token, &format!("{TOOLS}#x"), "tools.read"),
            "must not have a fragment",
        ),
        (
            "user information",
            for_resource(&token, "https://u:p@mcp.example.com/tools", "tools.read"),
            "must not carry user information",
        ),
        (
            "a control character",
            for_resource(&token, &format!("{TOOLS}\nx"), "tools.read"),
            "characters a URI may not",
        ),
        (
            "oversized",
            for_resource(&token, &oversized, "tools.read"),
            "longer than 1024 bytes",
        ),
        (
            "two resources",
            for_resource(&token, TOOLS, "tools.read").with("resource", "https://mcp.example.com/b"),
            "send one resource",
        ),
        (
            "more than the form keeps",
            (0..9).fold(for_resource(&token, TOOLS, "tools.read"), |r, _| {
                r.with("resource", TOOLS)
            }),
            "at most 8 resource parameters",
        ),
    ];
    for (what, request, why) in cases {
        let reply = server.token(&request).await;
        assert_refused_because(&reply, 400, "invalid_target", why);
        let record = audit_record_of(&env, &reply).await;
        assert_eq!(
            (&record["decision"], &record["error"]),
            (&Value::from("deny"), &Value::from("invalid_target")),
            "{what}: {record}"
        );
        assert!(
            record["reason"].as_str().is_some_and(|r| r.contains(why)),
            "{what}: {record}"
        );
        // Nothing about the refused value is taken for the target.
        assert!(record["target"].is_null(), "{what}: {record}");
    }
    // The log line names the decision too.
    let reply = server
        .token(&for_resource(&token, "http://x.example", "tools.read"))
        .await;
    let decision_id = reply.decision_id().unwrap().to_string();
    server.wait_for_stderr(&decision_id).await;
}

#[tokio::test]
async fn the_metadata_says_resource_indicators_are_supported() {
    let (_env, server) = start().await;

    let document = server.metadata().await;

    assert_eq!(
        document["resource_indicators_supported"], true,
        "{document}"
    );
}
