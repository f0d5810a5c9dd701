#!/usr/bin/env bash
# The agent example end to end, in a scratch directory, on loopback:
#   1. a stand-in identity provider makes a key; writ trusts it for people
#      and for agents (writ.toml below);
#   2. writ starts with this example's policies; the tool (the Rust
#      resource-server example) starts and follows writ's kill switch;
#   3. the agent exchanges alice's token and its own for a tool token and
#      calls the tool;
#   4. the operator kills the agent: the tool refuses its token within a
#      second, writ refuses it a new one, and alice's own token still works.
#
# Run from the repository root:  examples/agent/run.sh
# WRIT_BIN and TOOL_BIN name prebuilt binaries (default: cargo builds them);
# WRIT_PORT and TOOL_PORT the loopback ports (default 8443 and 8080).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
writ_port="${WRIT_PORT:-8443}"
tool_port="${TOOL_PORT:-8080}"
if [ -z "${WRIT_BIN:-}" ] || [ -z "${TOOL_BIN:-}" ]; then
    (cd "$root" && cargo build --release --quiet --bin writ --example resource_server)
fi
writ_bin="$(realpath "${WRIT_BIN:-$root/target/release/writ}")"
tool_bin="$(realpath "${TOOL_BIN:-$root/target/release/examples/resource_server}")"

scratch="$(mktemp -d)"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$scratch"; }
trap cleanup EXIT
cd "$scratch"

step() { printf '\n== %s\n' "$*"; }

step "1. the identity provider makes its key; writ will trust it"
python3 "$here/idp.py" init idp
"$writ_bin" certs init >/dev/null
admin_sha256="$(python3 -c 'import hashlib,sys; print(hashlib.sha256(open("certs/dev-admin-token").read().strip().encode()).hexdigest())')"
cat > writ.toml <<TOML
[server]
listen = "127.0.0.1:$writ_port"

[tls]
cert = "certs/server.pem"
key = "certs/server-key.pem"

[policy]
dir = "$here/policies"

[admin]
token_sha256 = ["$admin_sha256"]

[[issuers]]
name = "people"
kind = "oidc"
issuer = "https://people.idp.example"
jwks_file = "idp/jwks.json"
audience = "writ"
entity_type = "User"

[[issuers]]
name = "agents"
kind = "oidc"
issuer = "https://agents.idp.example"
jwks_file = "idp/jwks.json"
audience = "writ"
entity_type = "Agent"
TOML

step "2. writ and the tool start"
"$writ_bin" serve --config writ.toml >writ.out 2>writ.log &
pids+=($!)
for _ in $(seq 300); do grep -q "listening" writ.out 2>/dev/null && break; sleep 0.1; done
grep -q "listening" writ.out || { cat writ.log; exit 1; }
export WRIT_ADMIN_TOKEN="$(cat certs/dev-admin-token)"
WRIT_BROKER="https://127.0.0.1:$writ_port" WRIT_CA=certs/ca.pem LISTEN="127.0.0.1:$tool_port" \
    "$tool_bin" >tool.log 2>&1 &
pids+=($!)
for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:$tool_port/balance" && break; sleep 0.1; done
echo "writ on https://127.0.0.1:$writ_port, the tool on http://127.0.0.1:$tool_port/balance"

step "3. the agent acts for alice"
python3 "$here/idp.py" token idp people alice@example.com >alice.jwt
python3 "$here/idp.py" token idp agents assistant >agent.jwt
agent=(python3 "$here/agent.py" --broker "https://127.0.0.1:$writ_port" --ca certs/ca.pem
       --tool "http://127.0.0.1:$tool_port/balance" --user-token-file alice.jwt --agent-token-file agent.jwt)
"${agent[@]}" --calls 60 >agent.log 2>&1 &
agent_pid=$!
for _ in $(seq 300); do grep -q "tool answered 200" agent.log && break; sleep 0.1; done
cat agent.log

step "4. the operator kills the agent: writ revoke --actor assistant --block"
"$writ_bin" revoke --server "https://127.0.0.1:$writ_port" --ca certs/ca.pem \
    --actor assistant --block --reason "agent misbehaving"
wait "$agent_pid" && status=0 || status=$?
cat agent.log
[ "$status" -eq 3 ] || { echo "the agent should have been refused (exit 3), got $status"; exit 1; }

step "alice's own token is untouched"
own="$(curl -s --cacert certs/ca.pem "https://127.0.0.1:$writ_port/oauth2/token" \
    -d grant_type=urn:ietf:params:oauth:grant-type:token-exchange \
    -d subject_token_type=urn:ietf:params:oauth:token-type:jwt \
    -d subject_token="$(cat alice.jwt)" -d audience=payments-db -d scope=read)"
python3 -c 'import json,sys; t=json.loads(sys.argv[1]); print("alice herself: granted", t["scope"], "for", t["expires_in"], "s")' "$own"
curl -s -H "Authorization: Bearer $(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["access_token"])' "$own")" \
    "http://127.0.0.1:$tool_port/balance"
echo
step "done: the agent is stopped everywhere; alice is not"
