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

. benches/broker.sh
broker_setup "$writ" "$scratch" "sqlite://writ.db"
broker_start "$writ" "$scratch" 1 || exit 1
pid="$BROKER_PID"
url="$BROKER_URL"
exchange_lua "$writ" "$scratch"
# Warm up, then profile the server while wrk runs.
wrk -t2 -c64 -d3s -s "$scratch/exchange.lua" "$url/oauth2/token" >/dev/null
perf record -F 499 --call-graph dwarf,16384 -p "$pid" -o "$out/perf.data" -- sleep 12 2>/dev/null &
perf_pid=$!
wrk -t2 -c64 -d12s -s "$scratch/exchange.lua" "$url/oauth2/token" | grep -E "Requests/sec" >&2
wait "$perf_pid"
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
perf script -i "$out/perf.data" -F comm,tid,ip,sym 2>/dev/null > "$out/stacks.txt"
python3 "$classify" "$out/stacks.txt"
