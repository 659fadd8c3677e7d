# Throwaway PostgreSQL for tests and benchmarks. Source it, then call `pg_start`;
# it exports PG_URL and stops and deletes the cluster when the calling shell exits.
# Installs Debian's postgresql package when no server binaries are present.

pg_install_if_missing() {
    if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
        return 0
    fi
    echo "PostgreSQL server not found; installing Debian's postgresql package" >&2
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
}

pg_start() {
    pg_install_if_missing
    local bin port dir as_postgres=()
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    port=${PG_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
    dir=$(mktemp -d /tmp/vitalis-pg.XXXXXX)
    if [ "$(id -u)" -eq 0 ]; then
        # initdb refuses to run as root.
        chown postgres:postgres "$dir"
        as_postgres=(runuser -u postgres --)
    fi
    "${as_postgres[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
    "${as_postgres[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 30 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=400 -c fsync=${PG_FSYNC:-off} -c synchronous_commit=${PG_SYNC_COMMIT:-off} -c full_page_writes=off" start >/dev/null
    PG_DIR=$dir
    PG_BIN=$bin
    PG_AS=("${as_postgres[@]}")
    export PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
    trap pg_stop EXIT
    echo "throwaway PostgreSQL ready at $PG_URL" >&2
}

pg_stop() {
    if [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR" ]; then
        "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
        rm -rf "$PG_DIR"
        PG_DIR=""
    fi
}
