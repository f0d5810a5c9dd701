#!/usr/bin/env bash
# Sidecar resident memory at steady state: a release broker in dev mode and
# a release sidecar keeping one token fresh (and following the revocation
# feed) in a scratch directory; VmRSS is read after the sidecar settles.
#
#   benches/sidecar_rss.sh            # settles 10 s
set -euo pipefail
cd "$(dirname "$0")/.."
settle="${WRIT_SETTLE_SECONDS:-10}"
cargo build --release --bin writ >&2
writ="$PWD/target/release/writ"
scratch="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$scratch"; }
trap cleanup EXIT
cd "$scratch"
"$writ" --log warn serve --listen 127.0.0.1:0 > broker.out 2> broker.err &
pids+=($!)
for _ in $(seq 100); do grep -q "listening" broker.out 2>/dev/null && break; sleep 0.1; done
url="$(sed -n 's/^writ listening on //p' broker.out)"
"$writ" token --as payments/api --print-subject-token > sa.jwt
cat > sidecar.toml <<TOML
[broker]
url = "$url"
ca = "certs/ca.pem"
[attestation]
token_file = "sa.jwt"
[serve]
listen = "127.0.0.1:0"
[revocations]
bearer_token_file = "certs/dev-admin-token"
[[tokens]]
audience = "payments-db"
scopes = ["read"]
file = "tokens/payments-db"
TOML
"$writ" --log warn --config sidecar.toml sidecar > sidecar.out 2> sidecar.err &
sidecar=$!
pids+=("$sidecar")
for _ in $(seq 100); do [ -f tokens/payments-db ] && break; sleep 0.1; done
[ -f tokens/payments-db ] || { echo "the sidecar wrote no token" >&2; cat sidecar.err >&2; exit 1; }
sleep "$settle"
rss_kb="$(awk '/^VmRSS/ {print $2}' "/proc/$sidecar/status")"
echo "sidecar_rss_mb $(python3 -c "print(f'{$rss_kb / 1024:.1f}')") (one token, following the feed, after ${settle} s)"
