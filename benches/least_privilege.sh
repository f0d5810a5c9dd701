#!/usr/bin/env bash
# The operator commands' figures (issue 15 "Numbers"), on a release build:
#   - writ policy explain and writ access on the example policies, and on
#     10,000 generated policies concerning one target;
#   - writ rightsize over a generated audit log of 1,000,000 token requests
#     (wall time and peak RSS, from /usr/bin/time).
#
#   benches/least_privilege.sh             # WRIT_BIN defaults to target/release/writ
#   WRIT_LP_RECORDS=200000 benches/least_privilege.sh
#
# Everything is generated in a scratch directory and removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
writ="$(realpath "${WRIT_BIN:-target/release/writ}")"
records="${WRIT_LP_RECORDS:-1000000}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cd "$scratch"

timed() { # label, command...: wall seconds and peak RSS of one run
  local label="$1"; shift
  /usr/bin/time -f "%e %M" -o t.txt "$@" > out.txt 2> err.txt || { cat err.txt >&2; exit 1; }
  read -r secs kib < t.txt
  printf '%-58s %8.3f s  %7.1f MB RSS  (%s lines)\n' "$label" "$secs" "$(echo "$kib/1024" | bc -l)" "$(wc -l < out.txt)"
}

cp -r "$root/policies" examples
cat > request.json <<'JSON'
{"principal": {"type": "Workload", "id": "spiffe://cluster.local/ns/payments/sa/api",
  "attrs": {"namespace": "payments", "service_account": "api"}},
 "target": "payments-db", "scopes": ["read", "write", "admin"], "context": {"source_ip": "10.1.2.3"}}
JSON
echo '{"namespace": "payments", "service_account": "api", "issuer": "https://dev.writ.local"}' > attrs.json
api='Workload::"spiffe://cluster.local/ns/payments/sa/api"'

# 10,000 permits on payments-db, each for another namespace, none sliced away.
mkdir generated
cp examples/schema.cedarschema examples/entities.json generated/
python3 - <<'PY'
with open("generated/generated.cedar", "w") as f:
    for i in range(9_999):
        f.write(f'permit (principal is Workload, action == Action::"mint", resource == Target::"payments-db") '
                f'when {{ principal has namespace && principal.namespace == "ns{i}" && context.scope == "read{i % 50}" }};\n')
    f.write('permit (principal in Team::"payments", action == Action::"mint", resource == Target::"payments-db") '
            'when { context.scope == "read" };\n')
PY

# An audit log of token requests by 100 workloads over 60 days.
python3 - "$records" <<'PY'
import json, sys, time
n = int(sys.argv[1])
now = int(time.time())
with open("audit.jsonl", "w") as f:
    for i in range(n):
        svc = i % 100
        ns = "payments" if svc % 10 == 0 else f"team{svc % 9}"
        who = f"spiffe://cluster.local/ns/{ns}/sa/svc{svc}"
        t = now - (i * 5_184_000 // n)
        scope = ["read", "write", "admin"][i % 3]
        granted = [scope] if i % 7 else []
        f.write(json.dumps({
            "action": "mint", "decision_id": f"{i:032x}",
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)),
            "principal": who, "principal_type": "Workload",
            "attrs": {"namespace": ns, "service_account": f"svc{svc}", "issuer": "https://dev.writ.local"},
            "attestation": "kubernetes", "source_ip": "10.1.2.3", "target": "payments-db",
            "scopes_requested": [scope], "scopes_granted": granted,
            "decision": "allow" if granted else "deny", "policies": ["payments-read-db"],
            "requested_ttl": 300, "sender_constrained": False, "delegation_depth": 0,
        }, separators=(",", ":")) + "\n")
PY

echo "writ $("$writ" --version 2>/dev/null || echo release build), $(nproc) cores"
timed "policy explain, example policies (3 scopes)" "$writ" policy explain --dir examples --request request.json --json
timed "access --principal, example policies" "$writ" access --dir examples --principal "$api" --attrs attrs.json --json
timed "policy explain, 10,000 policies on one target" "$writ" policy explain --dir generated --request request.json --json
timed "access --principal, 10,000 policies on one target" "$writ" access --dir generated --principal "$api" --attrs attrs.json --json
timed "rightsize, $records audit records, example policies" "$writ" rightsize --dir examples --audit audit.jsonl --json
