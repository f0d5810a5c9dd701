#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]
//! The Kubernetes examples (`examples/kubernetes/`) parse, and name the
//! pieces their README walks through: every YAML document parses; the
//! embedded `writ.toml` and `sidecar.toml` are valid writ configurations; the
//! paths they name are where the manifests mount things; the policy ConfigMap
//! is a valid Cedar set (checked by the real `writ policy check`). No cluster
//! is involved: this proves the files agree with writ and with each other,
//! not that a cluster runs them.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_yaml::Value;

/// The broker's URL: its Service, and the `server.issuer` of `writ.toml`.
const ISSUER: &str = "https://writ.writ-system.svc:8443";
/// The audience of the projected service-account token writ accepts.
const ATTESTATION_AUDIENCE: &str = "writ";

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join("kubernetes")
}

fn read_example(name: &str) -> String {
    let path = example_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every non-empty YAML document of an example file.
fn documents(name: &str) -> Vec<Value> {
    let text = read_example(name);
    let mut docs = Vec::new();
    for (i, document) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        let value = Value::deserialize(document)
            .unwrap_or_else(|e| panic!("{name}: document {i} is not valid YAML: {e}"));
        if !value.is_null() {
            docs.push(value);
        }
    }
    assert!(!docs.is_empty(), "{name} holds no YAML document");
    docs
}

fn text<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value:?}"))
}

fn list<'a>(value: &'a Value, what: &str) -> &'a [Value] {
    value
        .as_sequence()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("{what} is not a list: {value:?}"))
}

/// The one object of `kind` named `name`.
fn object<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = docs
        .iter()
        .filter(|d| {
            d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name)
        })
        .collect();
    let present: Vec<String> = docs
        .iter()
        .map(|d| format!("{:?}/{:?}", d["kind"], d["metadata"]["name"]))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {kind} {name}; present: {present:?}"
    );
    found[0]
}

/// The text of `key` in the ConfigMap `name`.
fn config_map_file<'a>(docs: &'a [Value], name: &str, key: &str) -> &'a str {
    text(
        &object(docs, "ConfigMap", name)["data"][key],
        &format!("ConfigMap {name} key {key}"),
    )
}

fn pod_spec(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]
}

fn container<'a>(deployment: &'a Value, name: &str) -> &'a Value {
    list(&pod_spec(deployment)["containers"], "containers")
        .iter()
        .find(|c| c["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn args(container: &Value) -> Vec<&str> {
    list(&container["args"], "args")
        .iter()
        .map(|a| text(a, "an arg"))
        .collect()
}

/// The value following `flag` in a container's args.
fn arg_after<'a>(container: &'a Value, flag: &str) -> &'a str {
    let args = args(container);
    let at = args
        .iter()
        .position(|a| *a == flag)
        .unwrap_or_else(|| panic!("args {args:?} have no {flag}"));
    args.get(at + 1)
        .copied()
        .unwrap_or_else(|| panic!("{flag} has no value in {args:?}"))
}

/// The pod volume named `name`.
fn volume<'a>(deployment: &'a Value, name: &str) -> &'a Value {
    list(&pod_spec(deployment)["volumes"], "volumes")
        .iter()
        .find(|v| v["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no volume {name}"))
}

/// The name of the pod volume whose `source` (e.g. `configMap`) has `key: value`.
fn volume_named_by<'a>(deployment: &'a Value, source: &str, key: &str, value: &str) -> &'a str {
    let v = list(&pod_spec(deployment)["volumes"], "volumes")
        .iter()
        .find(|v| v[source][key].as_str() == Some(value))
        .unwrap_or_else(|| panic!("no {source} volume with {key} {value}"));
    text(&v["name"], "a volume name")
}

/// The container's mount of the volume `name`.
fn mount<'a>(container: &'a Value, volume: &str) -> &'a Value {
    list(&container["volumeMounts"], "volumeMounts")
        .iter()
        .find(|m| m["name"].as_str() == Some(volume))
        .unwrap_or_else(|| panic!("container {:?} does not mount {volume}", container["name"]))
}

fn mount_path<'a>(container: &'a Value, volume: &str) -> &'a str {
    text(&mount(container, volume)["mountPath"], "a mountPath")
}

/// The file `path` is mounted one-to-one from `key` of the volume `volume`.
fn assert_file_mounted(container: &Value, volume: &str, path: &str, key: &str) {
    let m = mount(container, volume);
    assert_eq!(text(&m["mountPath"], "mountPath"), path);
    assert_eq!(text(&m["subPath"], "subPath"), key);
}

fn parent(path: &str) -> &str {
    Path::new(path)
        .parent()
        .and_then(Path::to_str)
        .unwrap_or_else(|| panic!("{path} has no parent"))
}

fn env_value<'a>(container: &'a Value, name: &str) -> &'a str {
    let var = list(&container["env"], "env")
        .iter()
        .find(|e| e["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("container {:?} has no env {name}", container["name"]));
    text(&var["value"], name)
}

fn toml_str<'a>(table: &'a toml::Value, dotted: &str) -> &'a str {
    dotted
        .split('.')
        .try_fold(table, |t, key| t.get(key))
        .and_then(toml::Value::as_str)
        .unwrap_or_else(|| panic!("{dotted} is not a string"))
}

fn writ_toml(docs: &[Value]) -> (&str, toml::Value) {
    let source = config_map_file(docs, "writ-config", "writ.toml");
    let parsed = toml::from_str::<toml::Value>(source)
        .unwrap_or_else(|e| panic!("writ.toml is not TOML: {e}"));
    (source, parsed)
}

fn sidecar_toml(docs: &[Value]) -> (&str, toml::Value) {
    let source = config_map_file(docs, "writ-sidecar", "sidecar.toml");
    let parsed = toml::from_str::<toml::Value>(source)
        .unwrap_or_else(|e| panic!("sidecar.toml is not TOML: {e}"));
    (source, parsed)
}

/// The only `[[issuers]]` entry of writ.toml.
fn kubernetes_issuer(config: &toml::Value) -> &toml::Value {
    let issuers = config["issuers"].as_array().expect("[[issuers]]");
    assert_eq!(issuers.len(), 1, "one attestation issuer: the cluster");
    &issuers[0]
}

#[test]
fn writ_yaml_has_the_pieces_the_readme_names() {
    let docs = documents("writ.yaml");

    object(&docs, "Namespace", "writ-system");
    object(&docs, "ServiceAccount", "writ");
    object(&docs, "ConfigMap", "writ-config");
    object(&docs, "ConfigMap", "writ-policies");
    object(&docs, "Deployment", "writ");
    object(&docs, "Service", "writ");
    for doc in docs
        .iter()
        .filter(|d| d["kind"].as_str() != Some("Namespace"))
    {
        assert_eq!(
            doc["metadata"]["namespace"].as_str(),
            Some("writ-system"),
            "{:?} {:?} belongs in writ-system",
            doc["kind"],
            doc["metadata"]["name"]
        );
    }
}

#[test]
fn writ_deployment_is_one_replica_running_serve_with_the_mounted_config() {
    let docs = documents("writ.yaml");
    let deployment = object(&docs, "Deployment", "writ");
    let writ = container(deployment, "writ");

    // SQLite has one writer: never two pods on one database.
    assert_eq!(deployment["spec"]["replicas"].as_u64(), Some(1));
    assert_eq!(
        deployment["spec"]["strategy"]["type"].as_str(),
        Some("Recreate")
    );
    assert_eq!(args(writ).last(), Some(&"serve"));
    let config_path = arg_after(writ, "--config");
    assert_eq!(config_path, "/etc/writ/writ.toml");
    let config_volume = volume_named_by(deployment, "configMap", "name", "writ-config");
    assert_file_mounted(writ, config_volume, config_path, "writ.toml");
    assert_eq!(
        pod_spec(deployment)["serviceAccountName"].as_str(),
        Some("writ")
    );
    let ports = list(&writ["ports"], "ports");
    assert!(
        ports
            .iter()
            .any(|p| p["containerPort"].as_u64() == Some(8443)),
        "writ listens on 8443: {ports:?}"
    );
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &writ[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe}");
        assert_eq!(get["scheme"].as_str(), Some("HTTPS"), "{probe}");
    }
}

#[test]
fn writ_toml_is_a_valid_writ_configuration_that_matches_the_deployment() {
    let docs = documents("writ.yaml");
    let deployment = object(&docs, "Deployment", "writ");
    let writ = container(deployment, "writ");
    let (source, config) = writ_toml(&docs);

    assert_eq!(toml_str(&config, "server.listen"), "0.0.0.0:8443");
    assert_eq!(toml_str(&config, "server.issuer"), ISSUER);
    let issuer = kubernetes_issuer(&config);
    assert_eq!(toml_str(issuer, "kind"), "kubernetes");
    assert_eq!(
        toml_str(issuer, "issuer"),
        "https://kubernetes.default.svc.cluster.local"
    );
    assert_eq!(
        toml_str(issuer, "jwks_uri"),
        "https://kubernetes.default.svc/openid/v1/jwks"
    );
    assert_eq!(toml_str(issuer, "audience"), ATTESTATION_AUDIENCE);
    assert_eq!(toml_str(issuer, "trust_domain"), "cluster.local");

    // writ itself accepts it: no unknown key, consistent values.
    let parsed = writ::Config::parse(source).unwrap_or_else(|e| panic!("writ.toml: {e}"));
    parsed
        .validate()
        .unwrap_or_else(|e| panic!("writ.toml: {e}"));

    // Every path it names is where the Deployment mounts that thing.
    let tls = volume_named_by(deployment, "secret", "secretName", "writ-tls");
    assert_eq!(parent(toml_str(&config, "tls.cert")), mount_path(writ, tls));
    assert_eq!(parent(toml_str(&config, "tls.key")), mount_path(writ, tls));
    let policies = volume_named_by(deployment, "configMap", "name", "writ-policies");
    assert_eq!(toml_str(&config, "policy.dir"), mount_path(writ, policies));
    assert!(
        mount(writ, policies)["subPath"].is_null(),
        "the policy directory is mounted whole, so ConfigMap edits reach writ"
    );
    let data = mount_path(writ, "data");
    let db = toml_str(&config, "store.url")
        .strip_prefix("sqlite://")
        .expect("a sqlite store");
    assert_eq!(parent(db), data);
    assert_eq!(parent(toml_str(&config, "audit.path")), data);
    assert!(
        toml_str(issuer, "jwks_ca").starts_with("/var/run/secrets/kubernetes.io/serviceaccount/"),
        "jwks_ca is the automounted service-account CA"
    );
    assert_ne!(
        pod_spec(deployment)["automountServiceAccountToken"].as_bool(),
        Some(false),
        "jwks_ca needs the automounted service-account volume"
    );
}

#[test]
fn service_is_the_issuer_url() {
    let docs = documents("writ.yaml");
    let service = object(&docs, "Service", "writ");
    let deployment = object(&docs, "Deployment", "writ");

    let host = format!(
        "{}.{}.svc",
        text(&service["metadata"]["name"], "name"),
        text(&service["metadata"]["namespace"], "namespace")
    );
    let ports = list(&service["spec"]["ports"], "ports");
    assert_eq!(ports.len(), 1);
    let port = ports[0]["port"].as_u64().expect("a port");
    assert_eq!(format!("https://{host}:{port}"), ISSUER);
    let selector = service["spec"]["selector"]
        .as_mapping()
        .expect("a selector");
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (key, value) in selector {
        assert_eq!(&labels[key], value, "the Service selects writ's pods");
    }
}

#[test]
fn policy_config_map_ships_the_examples_and_passes_writ_policy_check() {
    let docs = documents("writ.yaml");
    let files = object(&docs, "ConfigMap", "writ-policies")["data"]
        .as_mapping()
        .expect("ConfigMap data");

    // The shipped examples, verbatim.
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    for entry in std::fs::read_dir(&shipped).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            // policies/tests: the policy tests, for CI, not for the cluster.
            continue;
        }
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let copy = text(&files[name.as_str()], &format!("writ-policies {name}"));
        let original = std::fs::read_to_string(&path).unwrap();
        if name == "entities.json" {
            let copy: serde_json::Value = serde_json::from_str(copy).unwrap();
            let original: serde_json::Value = serde_json::from_str(&original).unwrap();
            let copy = copy.as_array().unwrap();
            for entity in original.as_array().unwrap() {
                assert!(copy.contains(entity), "entities.json lacks {entity}");
            }
            assert!(
                copy.iter()
                    .any(|e| e["uid"]["type"] == "Target" && e["uid"]["id"] == ISSUER),
                "the broker itself is a Target, so sidecars can mint a feed token"
            );
        } else {
            assert_eq!(
                copy, original,
                "writ-policies {name} is not policies/{name}"
            );
        }
    }
    let target = format!("Target::\"{ISSUER}\"");
    assert!(
        files.iter().any(|(_, policy)| {
            policy
                .as_str()
                .is_some_and(|p| p.contains(&target) && p.contains("\"revocations\""))
        }),
        "a policy lets workloads mint `revocations` for {target}"
    );

    // The real binary accepts the set.
    let dir = tempfile::tempdir().unwrap();
    for (name, contents) in files {
        std::fs::write(
            dir.path().join(text(name, "a key")),
            text(contents, "a policy file"),
        )
        .unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_writ"))
        .arg("policy")
        .arg("check")
        .arg("--dir")
        .arg(dir.path())
        .env_remove("WRIT_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "writ policy check failed: {stdout}{stderr}"
    );
    assert!(stdout.starts_with("ok: "), "{stdout}");
}

#[test]
fn workload_yaml_has_the_pieces_the_readme_names() {
    let docs = documents("workload.yaml");

    object(&docs, "Namespace", "payments");
    object(&docs, "ServiceAccount", "api");
    object(&docs, "ConfigMap", "writ-sidecar");
    object(&docs, "Deployment", "api");
    for doc in docs
        .iter()
        .filter(|d| d["kind"].as_str() != Some("Namespace"))
    {
        assert_eq!(
            doc["metadata"]["namespace"].as_str(),
            Some("payments"),
            "{:?} {:?} belongs in payments",
            doc["kind"],
            doc["metadata"]["name"]
        );
    }
}

/// The sidecar container: the one whose args run `writ sidecar`.
fn sidecar_container(deployment: &Value) -> &Value {
    let sidecars: Vec<&Value> = list(&pod_spec(deployment)["containers"], "containers")
        .iter()
        .filter(|c| c["args"].as_sequence().is_some() && args(c).contains(&"sidecar"))
        .collect();
    assert_eq!(sidecars.len(), 1, "one container runs `writ sidecar`");
    sidecars[0]
}

#[test]
fn workload_pod_runs_the_sidecar_on_a_projected_token_for_writ() {
    let docs = documents("workload.yaml");
    let deployment = object(&docs, "Deployment", "api");
    let sidecar = sidecar_container(deployment);
    let (_, config) = sidecar_toml(&docs);

    assert_eq!(sidecar["name"].as_str(), Some("writ-sidecar"));
    let config_path = arg_after(sidecar, "--config");
    let config_volume = volume_named_by(deployment, "configMap", "name", "writ-sidecar");
    assert_file_mounted(sidecar, config_volume, config_path, "sidecar.toml");

    // The projected service-account token: audience writ, what writ.toml accepts.
    let projected = list(
        &volume(deployment, "writ-sa-token")["projected"]["sources"],
        "projected sources",
    );
    let sa_token = projected
        .iter()
        .map(|s| &s["serviceAccountToken"])
        .find(|t| !t.is_null())
        .expect("a serviceAccountToken source");
    assert_eq!(sa_token["audience"].as_str(), Some(ATTESTATION_AUDIENCE));
    let writ_docs = documents("writ.yaml");
    let (_, writ_config) = writ_toml(&writ_docs);
    assert_eq!(
        toml_str(kubernetes_issuer(&writ_config), "audience"),
        ATTESTATION_AUDIENCE
    );
    assert_eq!(sa_token["expirationSeconds"].as_u64(), Some(600));
    let token_path = text(&sa_token["path"], "path");
    assert_eq!(token_path, "writ");
    let mounted_at = mount_path(sidecar, "writ-sa-token");
    assert_eq!(mounted_at, "/var/run/secrets/tokens");
    assert_eq!(
        toml_str(&config, "attestation.token_file"),
        format!("{mounted_at}/{token_path}")
    );

    // The sidecar runs as non-root on a read-only root filesystem.
    let pod_security = &pod_spec(deployment)["securityContext"];
    let security = &sidecar["securityContext"];
    assert!(
        security["runAsNonRoot"].as_bool() == Some(true)
            || pod_security["runAsNonRoot"].as_bool() == Some(true),
        "the sidecar runs as non-root"
    );
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));

    // It trusts writ's CA from the ConfigMap writ-ca.
    let ca_volume = volume_named_by(deployment, "configMap", "name", "writ-ca");
    assert_eq!(
        parent(toml_str(&config, "broker.ca")),
        mount_path(sidecar, ca_volume)
    );
}

#[test]
fn sidecar_toml_is_valid_and_writes_where_the_app_is_told_to_read() {
    let docs = documents("workload.yaml");
    let deployment = object(&docs, "Deployment", "api");
    let sidecar = sidecar_container(deployment);
    let app = container(deployment, "app");
    let (source, config) = sidecar_toml(&docs);

    // writ itself accepts it (unknown keys are an error there).
    toml::from_str::<writ_sidecar::SidecarConfig>(source)
        .unwrap_or_else(|e| panic!("sidecar.toml: {e}"));
    assert_eq!(toml_str(&config, "broker.url"), ISSUER);
    assert_eq!(toml_str(&config, "revocations.audience"), ISSUER);
    let scopes = config["revocations"]["scopes"].as_array().expect("scopes");
    assert_eq!(scopes, &[toml::Value::from("revocations")]);

    let tokens = config["tokens"].as_array().expect("[[tokens]]");
    assert_eq!(tokens.len(), 1);
    let token = &tokens[0];
    assert_eq!(toml_str(token, "audience"), "payments-db");
    assert_eq!(
        token["scopes"].as_array().expect("scopes"),
        &[toml::Value::from("read")]
    );
    assert_eq!(toml_str(token, "requested_ttl"), "5m");
    let file = toml_str(token, "file");
    assert_eq!(file, "/var/run/writ/tokens/payments-db");

    // The app is told that file and the loopback URL serving the same token.
    assert_eq!(env_value(app, "WRIT_TOKEN_FILE"), file);
    let listen = toml_str(&config, "serve.listen");
    assert_eq!(listen, "127.0.0.1:8181");
    assert_eq!(
        env_value(app, "WRIT_TOKEN_URL"),
        format!("http://{listen}/token?audience=payments-db")
    );

    // Both containers mount the same in-memory directory there.
    let shared = list(&pod_spec(deployment)["volumes"], "volumes")
        .iter()
        .find(|v| v["emptyDir"]["medium"].as_str() == Some("Memory"))
        .expect("an in-memory emptyDir for tokens");
    let shared = text(&shared["name"], "a volume name");
    assert_eq!(mount_path(sidecar, shared), parent(file));
    assert_eq!(mount_path(app, shared), parent(file));
}

#[test]
fn the_workload_is_the_principal_the_policies_and_readme_name() {
    let docs = documents("workload.yaml");
    let deployment = object(&docs, "Deployment", "api");
    let writ_docs = documents("writ.yaml");
    let (_, writ_config) = writ_toml(&writ_docs);

    let principal = format!(
        "spiffe://{}/ns/{}/sa/{}",
        toml_str(kubernetes_issuer(&writ_config), "trust_domain"),
        text(&deployment["metadata"]["namespace"], "namespace"),
        text(
            &pod_spec(deployment)["serviceAccountName"],
            "serviceAccountName"
        ),
    );
    assert_eq!(principal, "spiffe://cluster.local/ns/payments/sa/api");
    let entities: serde_json::Value = serde_json::from_str(config_map_file(
        &writ_docs,
        "writ-policies",
        "entities.json",
    ))
    .unwrap();
    let workload = entities
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["uid"]["type"] == "Workload" && e["uid"]["id"] == principal.as_str())
        .unwrap_or_else(|| panic!("entities.json does not name {principal}"));
    assert!(
        workload["parents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["type"] == "Team" && p["id"] == "payments"),
        "{principal} is in Team::\"payments\", which payments-read-db permits"
    );

    let readme = read_example("README.md");
    for piece in [
        "kubectl apply -f writ.yaml",
        "kubectl apply -f workload.yaml",
        "jwks-access.yaml",
        "writ-tls",
        "writ-ca",
        "/var/run/writ/tokens/payments-db",
        "http://127.0.0.1:8181/token?audience=payments-db",
    ] {
        assert!(readme.contains(piece), "README.md does not mention {piece}");
    }
    assert!(
        readme.contains(&format!("writ revoke --subject {principal} --block")),
        "README.md shows the kill switch on {principal}"
    );
}

#[test]
fn jwks_access_binds_only_the_issuer_discovery_role() {
    let docs = documents("jwks-access.yaml");
    assert_eq!(docs.len(), 1);
    let binding = object(
        &docs,
        "ClusterRoleBinding",
        "writ-service-account-issuer-discovery",
    );

    assert_eq!(
        binding["roleRef"]["name"].as_str(),
        Some("system:service-account-issuer-discovery")
    );
    let subjects = list(&binding["subjects"], "subjects");
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0]["name"].as_str(), Some("system:unauthenticated"));
}

#[test]
fn writ_replicas_yaml_is_three_replicas_on_postgresql_with_every_secret_outside_the_config() {
    let docs = documents("writ-replicas.yaml");
    let deployment = object(&docs, "Deployment", "writ");
    let writ = container(deployment, "writ");
    let (source, config) = writ_toml(&docs);

    assert_eq!(deployment["spec"]["replicas"].as_u64(), Some(3));
    assert_eq!(
        deployment["spec"]["strategy"]["type"].as_str(),
        Some("RollingUpdate")
    );
    // Drains keep at least one replica, and never need all of them down.
    let budget = object(&docs, "PodDisruptionBudget", "writ");
    let min_available = budget["spec"]["minAvailable"]
        .as_u64()
        .expect("minAvailable");
    assert!((1..3).contains(&min_available), "{budget:?}");
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert_eq!(&budget["spec"]["selector"]["matchLabels"], pod_labels);
    let service = object(&documents("writ.yaml"), "Service", "writ").clone();
    assert_eq!(&service["spec"]["selector"], pod_labels);

    // A valid writ configuration on PostgreSQL, the same issuer as writ.yaml.
    let parsed = writ::Config::parse(source).unwrap_or_else(|e| panic!("writ.toml: {e}"));
    parsed
        .validate()
        .unwrap_or_else(|e| panic!("writ.toml: {e}"));
    assert_eq!(toml_str(&config, "server.issuer"), ISSUER);
    let url = toml_str(&config, "store.url");
    let userinfo = url
        .strip_prefix("postgres://")
        .and_then(|rest| rest.split_once('@'))
        .map(|(userinfo, _)| userinfo)
        .expect("a postgres:// URL with a user");
    assert!(
        !userinfo.contains(':'),
        "no password in the ConfigMap: {url}"
    );
    assert!(url.contains("sslmode=verify-full"), "{url}");

    // The password comes from the Secret, through the environment.
    let password = list(&writ["env"], "env")
        .iter()
        .find(|e| e["name"].as_str() == Some("PGPASSWORD"))
        .expect("PGPASSWORD");
    assert_eq!(
        password["valueFrom"]["secretKeyRef"]["name"].as_str(),
        Some("writ-postgres")
    );
    // The server's CA is where sslrootcert says.
    let root_cert = url
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("sslrootcert="))
        .expect("sslrootcert");
    let postgres = volume_named_by(deployment, "secret", "secretName", "writ-postgres");
    assert_eq!(parent(root_cert), mount_path(writ, postgres));

    // The key-encryption key: copied from its Secret by the init container
    // (umask 077, as writ's user) into a memory volume writ reads.
    let kek = toml_str(&config, "store.key_encryption_key_file");
    assert_eq!(parent(kek), mount_path(writ, "run"));
    assert_eq!(
        volume(deployment, "run")["emptyDir"]["medium"].as_str(),
        Some("Memory")
    );
    let init = list(&pod_spec(deployment)["initContainers"], "initContainers")
        .iter()
        .find(|c| c["name"].as_str() == Some("kek"))
        .expect("the kek init container");
    let script = list(&init["command"], "command")
        .iter()
        .map(|a| text(a, "command"))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        script.contains("umask 077") && script.contains(&format!("> {kek}")),
        "{script}"
    );
    let kek_secret = volume_named_by(deployment, "secret", "secretName", "writ-kek");
    assert!(script.contains(mount_path(init, kek_secret)), "{script}");
    assert_eq!(mount_path(init, "run"), parent(kek));

    // Everything else as in writ.yaml; no SQLite volume.
    let tls = volume_named_by(deployment, "secret", "secretName", "writ-tls");
    assert_eq!(parent(toml_str(&config, "tls.cert")), mount_path(writ, tls));
    let policies = volume_named_by(deployment, "configMap", "name", "writ-policies");
    assert_eq!(toml_str(&config, "policy.dir"), mount_path(writ, policies));
    assert!(
        list(&pod_spec(deployment)["volumes"], "volumes")
            .iter()
            .all(|v| v["persistentVolumeClaim"].is_null()),
        "replicas share the database, not a volume"
    );
    assert_eq!(
        writ["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
}
