#!/usr/bin/env bash
# Webhook delivery benchmark: a release server in dev mode (plain http to the loopback
# receiver), 100 projects with one endpoint each, 1,000 user creations per second spread
# over them for 10 s. Prints events/s delivered, the latency from the API's 2xx to the
# receiver's receipt (p50/p99), and loss.
#
#   scripts/bench-webhooks.sh [sqlite|postgres]     RATE=1000 DURATION=10 ENDPOINTS=100
set -euo pipefail
cd "$(dirname "$0")/.."
backend=${1:-sqlite}
RATE=${RATE:-1000}
DURATION=${DURATION:-10}
ENDPOINTS=${ENDPOINTS:-100}

cargo build --release --locked --bin vitalis --example webhook_bench >&2
bin=target/release/vitalis
work=$(mktemp -d /tmp/vitalis-whbench.XXXXXX)
if [ "$backend" = postgres ]; then
    # shellcheck source=scripts/postgres.sh
    source scripts/postgres.sh
    PG_FSYNC=${PG_FSYNC:-on} PG_SYNC_COMMIT=${PG_SYNC_COMMIT:-on} pg_start
    export VITALIS_DATABASE_URL="$PG_URL"
fi
export VITALIS_MASTER_KEY=$(head -c 32 /dev/urandom | base64)
"$bin" --data-dir "$work/data" migrate >/dev/null
for _ in $(seq "$ENDPOINTS"); do
    project=$("$bin" --data-dir "$work/data" project create --name bench --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["project_id"])')
    secret=$("$bin" --data-dir "$work/data" client create --project "$project" --id server --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])')
    echo "$project $secret" >>"$work/projects.txt"
done
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
VITALIS_LOG_LEVEL=warn VITALIS_AUTH_FAILURES_PER_MINUTE=0 "$bin" --data-dir "$work/data" serve --dev --listen "127.0.0.1:$port" >"$work/stdout" 2>"$work/server.log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"; [ "$backend" = postgres ] && pg_stop; true' EXIT
for _ in $(seq 100); do grep -q '^listening on' "$work/stdout" 2>/dev/null && break; sleep 0.1; done
echo "backend=$backend, $(nproc) cores shared by server, driver and receiver"
target/release/examples/webhook_bench "http://127.0.0.1:$port" "$work/projects.txt" "$RATE" "$DURATION"
echo "server peak RSS: $(awk '/^VmHWM:/ {print int($2/1024)}' /proc/$server/status) MB"
