#!/usr/bin/env bash
# The whole test suite, on SQLite and on a real PostgreSQL. Uses VITALIS_TEST_POSTGRES_URL
# if set; otherwise installs (if needed) and starts a throwaway PostgreSQL for the run.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${VITALIS_TEST_POSTGRES_URL:-}" ]; then
    # shellcheck source=scripts/postgres.sh
    source scripts/postgres.sh
    pg_start
    export VITALIS_TEST_POSTGRES_URL="$PG_URL"
fi

cargo test --workspace --locked "$@"
