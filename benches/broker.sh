# Sourced by benches/load.sh and benches/profile_https.sh: a broker in a
# scratch directory on a loopback port, and the token exchange wrk sends.

# broker_setup WRIT DIR STORE_URL: dev certificates, the example policies
# and a writ.toml in DIR.
broker_setup() {
  local writ="$1" dir="$2" store_url="$3"
  "$writ" certs init --dir "$dir/certs" >/dev/null
  cp -r policies "$dir/policies"
  cat > "$dir/writ.toml" <<TOML
[server]
listen = "127.0.0.1:0"
[store]
url = "$store_url"
[audit]
path = "audit.jsonl"
[[issuers]]
name = "dev"
kind = "kubernetes"
issuer = "https://dev.writ.local"
jwks_file = "certs/dev-issuer.jwks.json"
audience = "writ"
TOML
}

# broker_start WRIT DIR NAME: starts `writ serve` in DIR (stdout-NAME,
# stderr-NAME there), sets BROKER_PID and BROKER_URL once it listens.
broker_start() {
  local writ="$1" dir="$2" name="$3"
  (cd "$dir" && exec "$writ" --config writ.toml --log warn serve > "$dir/stdout-$name" 2> "$dir/stderr-$name") &
  BROKER_PID=$!
  BROKER_URL=""
  for _ in $(seq 100); do
    BROKER_URL="$(sed -n 's/^writ listening on //p' "$dir/stdout-$name")"
    [ -n "$BROKER_URL" ] && return 0
    sleep 0.1
  done
  echo "writ did not start:" >&2; cat "$dir/stderr-$name" >&2
  return 1
}

# exchange_lua WRIT DIR: sets SUBJECT (a dev Kubernetes token for
# payments/api) and writes DIR/exchange.lua, the RFC 8693 exchange wrk
# posts. `done` prints wrk's summary as lines load.sh reads.
exchange_lua() {
  local writ="$1" dir="$2"
  SUBJECT="$("$writ" token --certs "$dir/certs" --as payments/api --print-subject-token)"
  cat > "$dir/exchange.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt&audience=payments-db&scope=read&subject_token=${SUBJECT}"
done = function(summary, latency, requests)
  io.write(string.format("wrk_requests %d\nwrk_errors %d\nwrk_non2xx %d\nwrk_seconds %.2f\nwrk_p50_ms %.2f\nwrk_p99_ms %.2f\n",
    summary.requests, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
LUA
}
