#!/usr/bin/env bash
# Starts the server on a fresh embedded database (or VITALIS_DATABASE_URL) and runs
# schemathesis against its /openapi.json with a bearer token, failing on any 5xx or any
# response that does not match the document (status, content type, headers, schema).
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS=${SCHEMATHESIS:-schemathesis}
MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-60}
BIN=${VITALIS_BIN:-target/debug/vitalis}
[ -x "$BIN" ] || cargo build --locked --bin vitalis

work=$(mktemp -d /tmp/vitalis-schemathesis.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN" --data-dir "$work/data" serve --dev --listen "127.0.0.1:$port" >"$work/stdout" 2>"$work/server.log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT

for _ in $(seq 100); do
    grep -q '^listening on' "$work/stdout" 2>/dev/null && break
    sleep 0.1
done
grep -q '^listening on' "$work/stdout" || { cat "$work/server.log"; echo "server did not start" >&2; exit 1; }
base="http://127.0.0.1:$port"
project=$(sed -n 's/^project_id: //p' "$work/stdout")
secret=$(sed -n 's/^client_secret: //p' "$work/stdout")
token=$(curl -fsS -X POST "$base/v1/projects/$project/auth/server" -u "server:$secret" \
    -H 'Content-Type: application/json' -d '{}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

"$SCHEMATHESIS" run "$base/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --header "Authorization: Bearer $token" \
    --max-examples "$MAX_EXAMPLES" \
    --generation-database none \
    --request-timeout 10

if grep -q '"status":5[0-9][0-9]\|status=5[0-9][0-9]' "$work/server.log"; then
    echo "the server logged a 5xx during the run" >&2
    exit 1
fi
