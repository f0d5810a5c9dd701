//! The policy directory every test starts from: a schema declaring what the
//! tests use, a few permits, and the entities (targets, teams, parents).

/// `schema.cedarschema`. Principal attributes are optional (each attestation
/// kind fills different ones), so policies guard them with `has`.
pub const SCHEMA: &str = r#"// Who asks (workloads and agents), for what (targets), and the context of each ask.
entity Team;

entity Workload in [Team] {
  "issuer"?: String,
  "namespace"?: String,
  "service_account"?: String,
  "pod"?: String,
  "uid"?: String,
  "repository"?: String,
  "ref"?: String,
  "environment"?: String,
  "unix_uid"?: Long,
  "unix_gid"?: Long,
  "pid"?: Long,
  "exe"?: String,
  "exe_sha256"?: String,
  "spiffe_id"?: String,
  "cert_sha256"?: String
};

entity Agent in [Team] {
  "issuer"?: String,
  "repository"?: String,
  "ref"?: String,
  "environment"?: String
};

entity User in [Team] {
  "issuer"?: String,
  "email"?: String
};

entity Target {
  "owner"?: String
};

entity Admin in [Team];

action "mint" appliesTo {
  principal: [Workload, Agent, User],
  resource: [Target],
  context: {
    "scope": String,
    "requested_ttl": Long,
    "now": datetime,
    "hour": Long,
    "weekday": String,
    "source_ip": ipaddr,
    "attestation": String,
    "sender_constrained": Bool,
    "delegation_depth": Long,
    "actor"?: Agent,
    "transaction"?: { "requester": String, "chain": Long }
  }
};

action "revoke" appliesTo {
  principal: [Admin],
  resource: [Target],
  context: {
    "selector": String,
    "block": Bool
  }
};

action "lift" appliesTo {
  principal: [Admin],
  resource: [Target],
  context: {
    "selector": String,
    "block": Bool,
    "author": String,
    "kind": String
  }
};

action "read" appliesTo {
  principal: [Admin],
  resource: [Target],
  context: {
    "selector"?: String,
    "block"?: Bool,
    "author"?: String,
    "kind"?: String
  }
};

action "rotate_key" appliesTo {
  principal: [Admin],
  resource: [Target],
  context: {}
};

action "revoke_key" appliesTo {
  principal: [Admin],
  resource: [Target],
  context: { "kid": String }
};

action "explain" appliesTo {
  principal: [Admin],
  resource: [Target],
  context: {}
};

action "inventory" appliesTo {
  principal: [Admin],
  resource: [Target],
  context: {}
};

entity Role;

action "approve" appliesTo {
  principal: [Admin],
  resource: [Role],
  context: { "decision": String }
};
"#;

/// `standard.cedar`: what the standard environment permits.
pub const STANDARD_POLICIES: &str = r#"// The payments API may read and write orders.
@id("payments-orders")
permit (principal is Workload, action == Action::"mint", resource == Target::"orders")
when {
  principal has namespace && principal.namespace == "payments" &&
  ["orders.read", "orders.write"].contains(context.scope)
};

// CI jobs of acme/app may read orders.
@id("ci-orders")
permit (principal is Workload, action == Action::"mint", resource == Target::"orders")
when {
  principal has repository && principal.repository == "acme/app" &&
  context.scope == "orders.read"
};

// Anyone attested may get a token for writ itself, to call introspection.
@id("self-introspect")
permit (principal, action == Action::"mint", resource == Target::"https://writ.test")
when { context.scope == "introspect" };

// Admins may use the kill switch on anything (CONTRACT section 5).
@id("admin-revoke")
permit (
  principal is Admin,
  action in [Action::"revoke", Action::"lift", Action::"read", Action::"rotate_key", Action::"revoke_key", Action::"explain", Action::"inventory"],
  resource
);
"#;

/// A policy file permitting re-exchanges of writ tokens (`subject_token_type`
/// access_token); the subset and audience rules are writ's own.
pub const NARROWING_POLICY: &str = r#"@id("narrowing")
permit (principal, action == Action::"mint", resource)
when { context.attestation == "writ" };
"#;

/// `entities.json`: targets with owners, the payments team, and the payments
/// API workload as a member of it.
pub const ENTITIES: &str = r#"[
  {"uid": {"type": "Target", "id": "orders"}, "attrs": {"owner": "payments"}, "parents": []},
  {"uid": {"type": "Target", "id": "ledger"}, "attrs": {"owner": "finance"}, "parents": []},
  {"uid": {"type": "Target", "id": "https://writ.test"}, "attrs": {"owner": "platform"}, "parents": []},
  {"uid": {"type": "Team", "id": "payments"}, "attrs": {}, "parents": []},
  {
    "uid": {"type": "Workload", "id": "spiffe://cluster.local/ns/payments/sa/api"},
    "attrs": {},
    "parents": [{"type": "Team", "id": "payments"}]
  }
]
"#;

/// A single permit for `orders.read` on `orders` under `condition`.
pub fn permit_orders_read_when(condition: &str) -> String {
    format!(
        r#"@id("orders-read-when")
permit (principal, action == Action::"mint", resource == Target::"orders")
when {{ context.scope == "orders.read" && ({condition}) }};
"#
    )
}
