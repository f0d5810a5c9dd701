//! Protected resource metadata (RFC 9728, CONTRACT section 9) in the SDK's
//! layer, against the real broker: the document and every field, the 401
//! and 403 challenges that point at it, and the MCP discovery story end to
//! end: a client that knows only the resource server's URL finds writ
//! through the 401, asks it for exactly the scope the 403 named, for the
//! advertised `resource` (RFC 8707), and gets in.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use axum::Router;
use axum::routing::get;
use common::*;
use serde_json::{Value, json};
use writ_sdk::layer::{METADATA_PATH, RequireToken};
use writ_sdk::{Broker, DpopKey, Verified, Verifier};

/// The tool server's identifier: the verifier's audience and a `Target`.
const TOOLS: &str = "https://mcp.example.com/tools";

/// Payments workloads may read and write tools.
const TOOLS_POLICY: &str = r#"
@id("payments-tools")
permit (principal is Workload, action == Action::"mint", resource == Target::"https://mcp.example.com/tools")
when {
  principal has namespace && principal.namespace == "payments" &&
  ["tools.read", "tools.write"].contains(context.scope)
};
"#;

const ENTITIES_WITH_TOOLS: &str = r#"[
  {"uid": {"type": "Target", "id": "orders"}, "attrs": {"owner": "payments"}, "parents": []},
  {"uid": {"type": "Target", "id": "https://mcp.example.com/tools"}, "attrs": {"owner": "platform"}, "parents": []},
  {"uid": {"type": "Team", "id": "payments"}, "attrs": {}, "parents": []}
]
"#;

async fn start() -> (TestEnv, Server) {
    let env = TestEnv::new();
    env.write("policies/entities.json", ENTITIES_WITH_TOOLS);
    env.write_policy("tools.cedar", TOOLS_POLICY);
    let server = env.start().await;
    (env, server)
}

async fn whoami(token: Verified) -> String {
    token.subject
}

/// A verifier of tokens for [`TOOLS`] that need `required`.
async fn verifier(server: &Server, audience: &str, required: &[&str]) -> Verifier {
    let broker = Broker::with_ca_pem(&server.url, server.ca_pem().as_bytes()).unwrap();
    Verifier::builder(broker, audience)
        .require_scopes(required.iter().copied())
        .build()
        .await
        .unwrap()
}

/// The tool server on loopback: `/tools` behind a layer requiring
/// `tools.write` that publishes its metadata. Returns its origin.
async fn tool_server(server: &Server, dpop: bool) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let mut guard = RequireToken::new(verifier(server, TOOLS, &["tools.write"]).await, &origin)
        .unwrap()
        .publish_metadata(["tools.read", "tools.write"])
        .unwrap();
    if dpop {
        guard = guard.require_dpop();
    }
    assert_eq!(guard.metadata_url(), format!("{origin}{METADATA_PATH}"));
    let app = Router::new().route("/tools", get(whoami)).layer(guard);
    tokio::spawn(async move { axum::serve(listener, app).await });
    origin
}

async fn call(url: &str, authorization: Option<&str>, dpop: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(url);
    if let Some(value) = authorization {
        req = req.header("authorization", value);
    }
    if let Some(proof) = dpop {
        req = req.header("dpop", proof);
    }
    req.send().await.unwrap()
}

#[track_caller]
fn challenge(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("www-authenticate")
        .unwrap_or_else(|| panic!("no WWW-Authenticate on {}", resp.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

/// The value of the quoted parameter `name` of a challenge.
#[track_caller]
fn param(challenge: &str, name: &str) -> String {
    let start = challenge
        .find(&format!("{name}=\""))
        .unwrap_or_else(|| panic!("no {name} in {challenge}"))
        + name.len()
        + 2;
    let len = challenge[start..].find('"').unwrap();
    challenge[start..start + len].to_owned()
}

#[tokio::test]
async fn the_layer_serves_the_metadata_document_without_a_token() {
    let (_env, server) = start().await;
    let origin = tool_server(&server, false).await;

    let resp = call(&format!("{origin}{METADATA_PATH}"), None, None).await;

    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let document: Value = resp.json().await.unwrap();
    let issuer = server.metadata().await["issuer"].clone();
    assert_eq!(
        document,
        json!({
            "resource": TOOLS,
            "authorization_servers": [issuer],
            "scopes_supported": ["tools.read", "tools.write"],
            "bearer_methods_supported": ["header"],
            "dpop_bound_access_tokens_required": false,
        })
    );
    // RFC 9728 section 3.1: also after the well-known path, the resource's path.
    let resp = call(&format!("{origin}{METADATA_PATH}/tools"), None, None).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), document);
    // Any other path under it is behind the layer like every route.
    let resp = call(&format!("{origin}{METADATA_PATH}/other"), None, None).await;
    assert_eq!(resp.status().as_u16(), 401);
}

#[tokio::test]
async fn a_401_names_the_metadata_url_and_a_403_the_scope_needed() {
    let (env, server) = start().await;
    let origin = tool_server(&server, false).await;
    let url = format!("{origin}/tools");

    let resp = call(&url, None, None).await;
    assert_eq!(resp.status().as_u16(), 401);
    let challenge_401 = challenge(&resp);
    assert!(challenge_401.starts_with("Bearer "), "{challenge_401}");
    assert_eq!(
        param(&challenge_401, "resource_metadata"),
        format!("{origin}{METADATA_PATH}")
    );

    let read = server.mint(&env.k8s_token(), TOOLS, "tools.read").await;
    let resp = call(&url, Some(&format!("Bearer {}", read.access_token)), None).await;
    assert_eq!(resp.status().as_u16(), 403);
    let challenge_403 = challenge(&resp);
    assert!(challenge_403.starts_with("Bearer "), "{challenge_403}");
    assert_eq!(param(&challenge_403, "error"), "insufficient_scope");
    assert_eq!(param(&challenge_403, "scope"), "tools.write");
    assert_eq!(
        param(&challenge_403, "resource_metadata"),
        format!("{origin}{METADATA_PATH}")
    );
}

#[tokio::test]
async fn a_client_discovers_writ_from_the_challenges_and_steps_up() {
    let (env, server) = start().await;
    let origin = tool_server(&server, false).await;
    let url = format!("{origin}/tools");
    let http = server.client().clone();

    // 1. Unauthenticated: the 401 says where the metadata is.
    let resp = call(&url, None, None).await;
    assert_eq!(resp.status().as_u16(), 401);
    let metadata_url = param(&challenge(&resp), "resource_metadata");
    // 2. The metadata names the resource and its authorization server.
    let document: Value = reqwest::get(&metadata_url)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let resource = document["resource"].as_str().unwrap().to_owned();
    let authorization_server = document["authorization_servers"][0]
        .as_str()
        .unwrap()
        .to_owned();
    // 3. RFC 8414: the authorization server's token endpoint.
    let as_metadata: Value = http
        .get(format!(
            "{authorization_server}/.well-known/oauth-authorization-server"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(as_metadata["resource_indicators_supported"], true);
    let token_endpoint = as_metadata["token_endpoint"].as_str().unwrap().to_owned();
    let ask = async |scope: &str| {
        let form = [
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", &env.k8s_token()),
            ("subject_token_type", JWT),
            ("resource", &resource),
            ("scope", scope),
        ];
        let reply = Reply::read(http.post(&token_endpoint).form(&form).send().await.unwrap()).await;
        assert_granted(&reply)
    };
    // 4. A token with the scope the client guessed is not enough...
    let read = ask("tools.read").await;
    assert_eq!(read.claims["aud"], TOOLS);
    let resp = call(&url, Some(&format!("Bearer {}", read.access_token)), None).await;
    assert_eq!(resp.status().as_u16(), 403);
    let needed = param(&challenge(&resp), "scope");
    // 5. ...so it asks for exactly what the 403 named, and gets in.
    let stepped_up = ask(&needed).await;
    assert_eq!(stepped_up.scope, "tools.write");
    let resp = call(
        &url,
        Some(&format!("Bearer {}", stepped_up.access_token)),
        None,
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.text().await.unwrap(), WORKLOAD);
}

#[tokio::test]
async fn a_layer_requiring_dpop_says_so_and_refuses_bearer_tokens() {
    let (env, server) = start().await;
    let origin = tool_server(&server, true).await;
    let url = format!("{origin}/tools");

    let document: Value = reqwest::get(format!("{origin}{METADATA_PATH}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(document["dpop_bound_access_tokens_required"], true);

    let resp = call(&url, None, None).await;
    assert_eq!(resp.status().as_u16(), 401);
    let value = challenge(&resp);
    assert!(value.starts_with("DPoP "), "{value}");
    assert_eq!(param(&value, "algs"), "ES256 ES384 EdDSA RS256 PS256");
    assert_eq!(
        param(&value, "resource_metadata"),
        format!("{origin}{METADATA_PATH}")
    );

    // A valid bearer token with the right scope is still refused.
    let bearer = server.mint(&env.k8s_token(), TOOLS, "tools.write").await;
    let resp = call(&url, Some(&format!("Bearer {}", bearer.access_token)), None).await;
    assert_eq!(resp.status().as_u16(), 401);
    let value = challenge(&resp);
    assert!(value.starts_with("DPoP "), "{value}");
    assert!(value.contains("DPoP-bound token is required"), "{value}");

    // A DPoP-bound one, with its proof, gets in.
    let key = DpopKey::generate().unwrap();
    let proof = key
        .proof("POST", &server.endpoint("/oauth2/token"), None)
        .unwrap();
    let request = TokenRequest::exchange(&env.k8s_token(), TOOLS, "tools.write")
        .without("audience")
        .with("resource", TOOLS);
    let bound = assert_granted(&server.token_with_dpop(&request, &proof).await);
    let proof = key.proof("GET", &url, Some(&bound.access_token)).unwrap();
    let resp = call(
        &url,
        Some(&format!("DPoP {}", bound.access_token)),
        Some(&proof),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn metadata_values_unsafe_in_a_header_are_refused_when_building() {
    let (_env, server) = start().await;
    let origin = "http://127.0.0.1:1";

    // The audience is no https URI.
    let guard = RequireToken::new(verifier(&server, ORDERS, &[]).await, origin).unwrap();
    assert!(guard.publish_metadata(["orders.read"]).is_err());
    // A quote in the resource would end the header parameter.
    let quoted = "https://mcp.example.com/\"x";
    let guard = RequireToken::new(verifier(&server, quoted, &[]).await, origin).unwrap();
    assert!(guard.publish_metadata(["tools.read"]).is_err());
    // So would one in a scope, advertised or required.
    let guard = RequireToken::new(verifier(&server, TOOLS, &[]).await, origin).unwrap();
    assert!(guard.publish_metadata(["tools\"read"]).is_err());
    let guard = RequireToken::new(verifier(&server, TOOLS, &["a\r\nb"]).await, origin).unwrap();
    assert!(guard.publish_metadata(["tools.read"]).is_err());
    // ...and a quote in the origin, which the metadata URL is made of.
    let verifier = verifier(&server, TOOLS, &[]).await;
    assert!(RequireToken::new(verifier.clone(), "http://a\"b").is_err());
    // The same configuration, clean, builds.
    let guard = RequireToken::new(verifier, origin).unwrap();
    assert!(guard.publish_metadata(["tools.read"]).is_ok());
}
