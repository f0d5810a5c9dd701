#!/usr/bin/env bash
# Load benchmark: token exchange over HTTPS keep-alive against a release
# build of writ on loopback, driven by wrk with 64 connections for a bounded
# time, compared with the in-process pipeline measured in the same run.
#
#   benches/load.sh            # 20 s of load
#   WRIT_LOAD_SECONDS=60 benches/load.sh
#   WRIT_LOAD_STORE=postgres benches/load.sh   # store on 127.0.0.1:5432
#                              # (database writ_load_bench, recreated)
#   WRIT_LOAD_OPENLOOP=0 benches/load.sh   # skip the open-loop runs
#   WRIT_OPENLOOP_RATES=2000 WRIT_OPENLOOP_SECONDS=20 benches/load.sh
#   WRIT_LOAD_BIN=/tmp/writ-before benches/load.sh   # a binary built before
#                              # (compare two builds, run after run)
#   WRIT_LOAD_STORE=postgres WRIT_LOAD_REPLICAS=2 benches/load.sh
#                              # two replicas on that database, the same 64
#                              # connections split between them
#
# It installs wrk (Debian package) if missing, starts writ on an ephemeral
# loopback port in a scratch directory, and stops it when done.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${WRIT_LOAD_SECONDS:-20}"
connections="${WRIT_LOAD_CONNECTIONS:-64}"
store="${WRIT_LOAD_STORE:-sqlite}"
replicas="${WRIT_LOAD_REPLICAS:-1}"
if [ "$replicas" -gt 1 ] && [ "$store" != postgres ]; then
  echo "several replicas share a PostgreSQL store: set WRIT_LOAD_STORE=postgres" >&2; exit 2
fi
case "$store" in
  sqlite) store_url="sqlite://writ.db" ;;
  postgres)
    dropdb --if-exists --force -h 127.0.0.1 -U postgres writ_load_bench
    createdb -h 127.0.0.1 -U postgres writ_load_bench
    store_url="postgres://postgres@127.0.0.1:5432/writ_load_bench" ;;
  *) echo "WRIT_LOAD_STORE is sqlite or postgres" >&2; exit 2 ;;
esac

WRIT_OPENLOOP_RATES_DEFAULT="${WRIT_OPENLOOP_RATES:-2000,6000}"
if ! command -v wrk >/dev/null; then
  echo "installing wrk..." >&2
  (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null
fi
[ -n "${WRIT_LOAD_BIN:-}" ] || cargo build --release --bin writ >&2
[ "${WRIT_LOAD_OPENLOOP:-1}" = 1 ] && cargo bench --bench openloop --no-run >&2
writ="${WRIT_LOAD_BIN:-$PWD/target/release/writ}"

scratch="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null || true; rm -rf "$scratch"; }
trap cleanup EXIT

. benches/broker.sh
broker_setup "$writ" "$scratch" "$store_url"
urls=()
for r in $(seq "$replicas"); do
  broker_start "$writ" "$scratch" "$r" || exit 1
  pids+=("$BROKER_PID")
  urls+=("$BROKER_URL")
done
exchange_lua "$writ" "$scratch"
subject="$SUBJECT"
# One request to each replica first: the load must measure minting, not refusals.
for url in "${urls[@]}"; do
  curl -sf --cacert "$scratch/certs/ca.pem" -X POST "$url/oauth2/token" \
    -H 'Content-Type: application/x-www-form-urlencoded' --data "@-" <<<"$(sed -n 's/^wrk.body = "\(.*\)"$/\1/p' "$scratch/exchange.lua")" >/dev/null
done

# Resident memory of the first replica, in MB (VmRSS now, VmHWM the peak).
rss_mb() { awk -v k="$1:" '$1 == k { printf "%.1f", $2 / 1024 }' "/proc/${pids[0]}/status"; }
rss_idle="$(rss_mb VmRSS)"
# CPU time (user + system ticks) of every replica.
cpu_ticks() { local t=0; for p in "${pids[@]}"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
per_replica=$((connections / replicas))
echo "load: wrk -c$per_replica -d${seconds}s POST <replica>/oauth2/token on ${replicas} replica(s)" >&2
ticks_before="$(cpu_ticks)"
wrk_threads=$(( replicas > 1 ? 1 : 2 ))
wrks=()
for r in $(seq "$replicas"); do
  wrk -t"$wrk_threads" -c"$per_replica" -d"${seconds}s" --latency -s "$scratch/exchange.lua" "${urls[$((r - 1))]}/oauth2/token" > "$scratch/wrk-$r" &
  wrks+=($!)
done
wait "${wrks[@]}"
ticks_after="$(cpu_ticks)"
rss_load="$(rss_mb VmHWM)"
# Open loop: requests at a fixed rate, latency from the intended send time
# (benches/openloop.rs), against the first replica, same connections.
openloop=""
if [ "${WRIT_LOAD_OPENLOOP:-1}" = 1 ]; then
  echo "open loop: $WRIT_OPENLOOP_RATES_DEFAULT requests/s" >&2
  openloop="$(WRIT_OPENLOOP_URL="${urls[0]}" WRIT_OPENLOOP_CA="$scratch/certs/ca.pem" \
    WRIT_OPENLOOP_SUBJECT="$subject" WRIT_OPENLOOP_CONNECTIONS="$connections" \
    cargo bench --bench openloop | grep '^openloop ')"
fi
for p in "${pids[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done; pids=()
out="$(cat "$scratch"/wrk-*)"

inproc="$(cargo bench --bench inprocess 2>/dev/null | sed -n 's/^pipeline_tokens_per_sec \([0-9]*\).*/\1/p')"
# Summed over the replicas' wrk runs (latency: the first replica's).
get() { sed -n "s/^$1 //p" <<<"$out" | head -1; }
sum() { sed -n "s/^$1 //p" <<<"$out" | python3 -c 'import sys; print(sum(int(l) for l in sys.stdin))'; }
requests="$(sum wrk_requests)"; secs="$(get wrk_seconds)"; non2xx="$(sum wrk_non2xx)"; errors="$(sum wrk_errors)"
rate="$(python3 -c "print(round($requests / $secs))")"
ratio="$(python3 -c "print(f'{100 * $rate / $inproc:.0f}%')")"
# The server shares the cores with wrk: also compare per core-second it used.
server_cores="$(python3 -c "print(f'{($ticks_after - $ticks_before) / $(getconf CLK_TCK) / $secs:.2f}')")"
per_core_ratio="$(python3 -c "print(f'{100 * ($rate / $server_cores) / ($inproc / $(nproc)):.0f}%')")"
cat <<REPORT
writ load benchmark ($(nproc) cores, wrk beside the server, ${connections} connections, ${seconds} s, $store store, $replicas replica(s))
  tokens/s over HTTPS:        $rate
  latency p50 / p99:          $(get wrk_p50_ms) ms / $(get wrk_p99_ms) ms
  non-2xx / socket errors:    $non2xx / $errors
  in-process pipeline:        $inproc tokens/s (attest cached + decide + mint, all cores)
  HTTPS / in-process:         $ratio
  server CPU during load:     $server_cores cores (wrk used the rest)
  per core, HTTPS/in-process: $per_core_ratio
  server RSS idle / peak:     $rss_idle MB / $rss_load MB
$(sed 's/^/  /' <<<"$openloop")
REPORT
[ "$non2xx" = "0" ] || { echo "load benchmark saw non-2xx responses" >&2; exit 1; }
