#!/usr/bin/env bash
# The MCP example end to end, in a scratch directory, on loopback:
#   1. a stand-in identity provider (examples/agent/idp.py) makes a key;
#      writ trusts it for people and for agents;
#   2. writ starts with this example's policies; the tool server (an MCP
#      server, the official mcp SDK, guarded by writ's ASGI middleware)
#      starts on HTTPS and follows writ's kill switch;
#   3. the agent discovers writ from the tool's 401 and RFC 9728 metadata,
#      gets a DPoP-bound token acting for alice, calls a tool, is stepped up
#      for write and refused by policy, and keeps calling;
#   4. the operator kills the agent (writ revoke --actor assistant --block):
#      the tool refuses its token, writ refuses it a new one; alice's own
#      access still works.
#
# Run from the repository root:  examples/mcp/run.sh
# PYTHON names a Python with examples/mcp/requirements.txt and
# clients/python[asgi] installed (default python3); WRIT_BIN a prebuilt writ
# (default: cargo builds it); WRIT_PORT and TOOL_PORT the loopback ports
# (default 8443 and 8444).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="${PYTHON:-python3}"
writ_port="${WRIT_PORT:-8443}"
tool_port="${TOOL_PORT:-8444}"
if [ -z "${WRIT_BIN:-}" ]; then
    (cd "$root" && cargo build --release --quiet --bin writ)
fi
writ_bin="$(realpath "${WRIT_BIN:-$root/target/release/writ}")"
"$python" -c 'import mcp, uvicorn, writ.asgi' 2>/dev/null || {
    echo "run.sh: $python lacks the example's packages:"
    echo "  pip install -r examples/mcp/requirements.txt './clients/python[asgi]'"
    exit 2
}

scratch="$(mktemp -d)"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$scratch"; }
trap cleanup EXIT
cd "$scratch"

step() { printf '\n== %s\n' "$*"; }

step "1. the identity provider makes its key; writ will trust it"
python3 "$root/examples/agent/idp.py" init idp
"$writ_bin" certs init >/dev/null
admin_sha256="$(python3 -c 'import hashlib; print(hashlib.sha256(open("certs/dev-admin-token").read().strip().encode()).hexdigest())')"
tool_url="https://127.0.0.1:$tool_port/mcp"
mkdir policies
cp -L "$here"/policies/*.cedar "$here"/policies/schema.cedarschema policies/
sed "s|TOOL_RESOURCE|$tool_url|" "$here/policies/entities.json" > policies/entities.json
cat > writ.toml <<TOML
[server]
listen = "127.0.0.1:$writ_port"

[tls]
cert = "certs/server.pem"
key = "certs/server-key.pem"

[policy]
dir = "policies"

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

step "2. writ and the MCP tool server start"
"$writ_bin" serve --config writ.toml >writ.out 2>writ.log &
pids+=($!)
for _ in $(seq 300); do grep -q "listening" writ.out 2>/dev/null && break; sleep 0.1; done
grep -q "listening" writ.out || { cat writ.log; exit 1; }
export WRIT_ADMIN_TOKEN="$(cat certs/dev-admin-token)"
# The tool reuses writ's dev server certificate (127.0.0.1, same CA).
WRIT_FEED_TOKEN="$WRIT_ADMIN_TOKEN" "$python" "$here/server.py" --writ "https://127.0.0.1:$writ_port" \
    --ca certs/ca.pem --listen "127.0.0.1:$tool_port" --cert certs/server.pem --key certs/server-key.pem \
    >tool.log 2>&1 &
pids+=($!)
for _ in $(seq 300); do
    curl -s -o /dev/null --cacert certs/ca.pem "https://127.0.0.1:$tool_port/.well-known/oauth-protected-resource" && break
    sleep 0.1
done
cat tool.log

step "3. the agent acts for alice"
python3 "$root/examples/agent/idp.py" token idp people alice@example.com >alice.jwt
python3 "$root/examples/agent/idp.py" token idp agents assistant >agent.jwt
"$python" "$here/agent.py" --tool "$tool_url" --ca certs/ca.pem \
    --user-token-file alice.jwt --agent-token-file agent.jwt >agent.log 2>&1 &
agent_pid=$!
for _ in $(seq 600); do
    grep -q "tool answered 200" agent.log && break
    kill -0 "$agent_pid" 2>/dev/null || break
    sleep 0.1
done
cat agent.log
shown="$(wc -l <agent.log)"

step "4. the operator kills the agent: writ revoke --actor assistant --block"
"$writ_bin" revoke --server "https://127.0.0.1:$writ_port" --ca certs/ca.pem \
    --actor assistant --block --reason "agent misbehaving"
wait "$agent_pid" && status=0 || status=$?
tail -n "+$((shown + 1))" agent.log | grep -v "tool answered 200" || true
[ "$status" -eq 3 ] || { echo "the agent should have been refused (exit 3), got $status"; cat tool.log; exit 1; }

step "alice's own access is untouched"
"$python" "$here/agent.py" --tool "$tool_url" --ca certs/ca.pem --user-token-file alice.jwt --own
step "done: the agent is stopped everywhere; alice is not"
