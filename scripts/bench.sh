#!/usr/bin/env bash
# Load benchmark: release build, wrk (keep-alive) on loopback, the server and the load
# generator sharing this machine's cores. Prints requests/s, p50/p99 latency, the server's
# idle and peak RSS, and whether issuing tokens wrote to the database. Scenarios:
#   (a) server tokens  (b) list users  (d) OIDC token exchange  (e) refresh with rotation
#
#   scripts/bench.sh [sqlite|postgres]      (default sqlite)
#   DURATION=10 CONNECTIONS=32 THREADS=1 scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."

backend=${1:-sqlite}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}

if ! command -v wrk >/dev/null; then
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --locked --bin vitalis --example bench_idp >&2
bin=target/release/vitalis

work=$(mktemp -d /tmp/vitalis-bench.XXXXXX)
db_args=()
if [ "$backend" = postgres ]; then
    # shellcheck source=scripts/postgres.sh
    source scripts/postgres.sh
    PG_FSYNC=${PG_FSYNC:-on} PG_SYNC_COMMIT=${PG_SYNC_COMMIT:-on} pg_start
    export VITALIS_DATABASE_URL="$PG_URL"
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
VITALIS_LOG_LEVEL=warn "$bin" --data-dir "$work/data" serve --dev --listen "127.0.0.1:$port" >"$work/stdout" 2>"$work/server.log" &
server=$!
idp_pid=""
cleanup() {
    kill "$server" $idp_pid 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    rm -rf "$work"
    [ "$backend" = postgres ] && pg_stop
    true
}
trap cleanup EXIT
for _ in $(seq 100); do grep -q '^listening on' "$work/stdout" 2>/dev/null && break; sleep 0.1; done
base="http://127.0.0.1:$port"
project=$(sed -n 's/^project_id: //p' "$work/stdout")
secret=$(sed -n 's/^client_secret: //p' "$work/stdout")

rss_kb() { awk -v key="$1:" '$1 == key { print $2 }' "/proc/$server/status"; }
sleep 1
idle_rss=$(rss_kb VmRSS)

token=$(curl -fsS -X POST "$base/v1/projects/$project/auth/server" -u "server:$secret" -H 'Content-Type: application/json' \
    -d '{"scope":"users:create users:read"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
for i in $(seq -w 1 100); do
    curl -fsS -o /dev/null -X POST "$base/users" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
        -d "{\"id\":\"user_$i\",\"firstname\":\"Bench\",\"lastname\":\"User $i\",\"language\":\"en\",\"tz_offset\":3600}"
done

report='function done(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT %.0f %.3f %.3f %d %d\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, errors, summary.requests))
end'
basic=$(printf 'server:%s' "$secret" | base64 -w0)
cat >"$work/token.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"scope":"users:read"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Basic $basic"
$report
LUA
cat >"$work/users.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $token"
$report
LUA

db_state() {
    if [ "$backend" = sqlite ]; then
        stat -c '%s:%Y' "$work/data/vitalis.db" "$work/data/vitalis.db-wal" 2>/dev/null | tr '\n' ' '
    else
        # The next transaction id moves with every writing transaction, never with reads.
        psql "$PG_URL" -tAc "SELECT 'next_xid=' || pg_snapshot_xmax(pg_current_snapshot())"
    fi
}

run() {
    local name=$1 script=$2 url=$3 out
    out="$work/$(basename "$script" .lua).out"
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$script" "$url" >"$out"
    read -r _ rps p50 p99 errors requests < <(grep '^RESULT' "$out")
    printf '%-40s %10s %9s %9s %8s %10s\n' "$name" "$rps" "$p50" "$p99" "$errors" "$requests"
}

echo "backend=$backend wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s, $(nproc) cores shared by server and wrk"
printf '%-40s %10s %9s %9s %8s %10s\n' "scenario" "req/s" "p50 ms" "p99 ms" "errors" "requests"
before=$(db_state)
run "(a) POST /v1/projects/{id}/auth/server" "$work/token.lua" "$base/v1/projects/$project/auth/server"
sleep 1
after=$(db_state)
run "(b) GET /users?limit=10 (bearer)" "$work/users.lua" "$base/users?limit=10"

# OIDC token exchange against a simulated provider (JWKS cached after the first call).
target/release/examples/bench_idp >"$work/idp.out" &
idp_pid=$!
for _ in $(seq 100); do grep -q '^id_token' "$work/idp.out" 2>/dev/null && break; sleep 0.1; done
admin=$(curl -fsS -X POST "$base/v1/projects/$project/auth/server" -u "server:$secret" -H 'Content-Type: application/json' -d '{}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
curl -fsS -o /dev/null -X POST "$base/v1/projects/$project/identity_providers" -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
    -d "{\"id\":\"bench\",\"issuer\":\"$(sed -n 's/^issuer: //p' "$work/idp.out")\",\"discovery_url\":\"$(sed -n 's/^discovery_url: //p' "$work/idp.out")\",\"audiences\":[\"$(sed -n 's/^audience: //p' "$work/idp.out")\"],\"create_users\":true}"
curl -fsS -o /dev/null -X POST "$base/v1/projects/$project/oauth_clients" -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
    -d '{"client_id":"sdk","name":"bench app","kind":"public","allowed_scopes":"users:read users:update"}'
id_token=$(sed -n 's/^id_token: //p' "$work/idp.out")
cat >"$work/exchange.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"grant":"exchange","token":"$id_token","client_id":"sdk"}'
wrk.headers["Content-Type"] = "application/json"
$report
LUA
run "(d) POST .../auth/sdk exchange" "$work/exchange.lua" "$base/v1/projects/$project/auth/sdk"

# Refresh with rotation: every response's new refresh token goes back in the queue, so each
# request uses a token exactly once (like clients refreshing continuously).
{
    echo 'local queue = {'
    for _ in $(seq 96); do
        curl -fsS -X POST "$base/v1/projects/$project/auth/sdk" -H 'Content-Type: application/json' \
            -d "{\"grant\":\"exchange\",\"token\":\"$id_token\",\"client_id\":\"sdk\"}" |
            python3 -c 'import json,sys; print("  \"" + json.load(sys.stdin)["refresh_token"] + "\",")'
    done
    echo '}'
    cat <<LUA
request = function()
  local token = table.remove(queue, 1) or "vrt_exhausted"
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, '{"grant":"refresh","token":"' .. token .. '","client_id":"sdk"}')
end
response = function(status, headers, body)
  local token = body:match('"refresh_token":"([^"]+)"')
  if token then table.insert(queue, token) end
end
$report
LUA
} >"$work/refresh.lua"
run "(e) POST .../auth/sdk refresh (rotation)" "$work/refresh.lua" "$base/v1/projects/$project/auth/sdk"
batches=$(curl -fsS "$base/metrics" | awk '/^vitalis_refresh_batch_size_sum/ {s=$2} /^vitalis_refresh_batch_size_count/ {c=$2} END { if (c > 0) printf "%.1f operations per commit over %d commits", s/c, c }')
peak_rss=$(rss_kb VmHWM)
echo
echo "(c) idle RSS after start: $((idle_rss / 1024)) MB ($idle_rss kB)"
echo "    peak RSS over the run:  $((peak_rss / 1024)) MB ($peak_rss kB)"
if [ "$before" = "$after" ]; then
    echo "    database writes during (a): none (state before = after: $before)"
else
    echo "    database writes during (a): CHANGED ($before -> $after)"
fi
echo "(e) group commit of refresh-token writes: ${batches:-no data}"
