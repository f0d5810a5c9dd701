#!/usr/bin/env bash
# Where the server's CPU goes under the load of benches/load.sh: a
# profiling build of writ (names and line tables), wrk with 64 connections
# beside it, `perf record --call-graph dwarf` on the server for 12 s, then
# each sample classed by its stack (benches/profile_classify.py).
#
#   benches/profile_https.sh            # prints the table of README Benchmarks
#   PROFILE_DIR=/tmp/p benches/profile_https.sh   # keep perf.data there
#
# Needs perf and wrk (Debian packages linux-perf, wrk) and permission to
# profile another process (root, or kernel.perf_event_paranoid <= 1).
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in perf wrk; do
  command -v "$tool" >/dev/null || { echo "$tool is needed" >&2; exit 2; }
done
cargo build --profile profiling --bin writ >&2
writ="$PWD/target/profiling/writ"
classify="$PWD/benches/profile_classify.py"
out="${PROFILE_DIR:-$(mktemp -d)}"
mkdir -p "$out"
scratch="$(mktemp -d)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$scratch"; }
trap cleanup EXIT

"$writ" certs init --dir "$scratch/certs" >/dev/null
cp -r policies "$scratch/policies"
cat > "$scratch/writ.toml" <<'TOML'
[server]
listen = "127.0.0.1:0"
[store]
url = "sqlite://writ.db"
[audit]
path = "audit.jsonl"
[[issuers]]
name = "dev"
kind = "kubernetes"
issuer = "https://dev.writ.local"
jwks_file = "certs/dev-issuer.jwks.json"
audience = "writ"
TOML
(cd "$scratch" && exec "$writ" --config writ.toml --log warn serve > stdout 2> stderr) &
pid=$!
url=""
for _ in $(seq 100); do
  url="$(sed -n 's/^writ listening on //p' "$scratch/stdout")"
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { echo "writ did not start:" >&2; cat "$scratch/stderr" >&2; exit 1; }
subject="$("$writ" token --certs "$scratch/certs" --as payments/api --print-subject-token)"
cat > "$scratch/exchange.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt&audience=payments-db&scope=read&subject_token=${subject}"
LUA
# Warm up, then profile the server while wrk runs.
wrk -t2 -c64 -d3s -s "$scratch/exchange.lua" "$url/oauth2/token" >/dev/null
perf record -F 499 --call-graph dwarf,16384 -p "$pid" -o "$out/perf.data" -- sleep 12 2>/dev/null &
perf_pid=$!
wrk -t2 -c64 -d12s -s "$scratch/exchange.lua" "$url/oauth2/token" | grep -E "Requests/sec" >&2
wait "$perf_pid"
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
perf script -i "$out/perf.data" -F comm,tid,ip,sym 2>/dev/null > "$out/stacks.txt"
python3 "$classify" "$out/stacks.txt"
