# shellcheck shell=bash
# Test services for scripts/test: Redis, PostgreSQL, Chromium, and the tools that check
# deploy/ (nginx, coturn, systemd-analyze). Sourced, not run.
#
# Each ensure_* function reuses a service already on this machine when it answers, else
# installs it with apt-get when missing and starts a throwaway instance on a free port in
# $CIRCLE_SVC_TMP (stopped by svc_cleanup), then exports its URL. A service that cannot be
# provided is reported loudly and left unset; the tests skip on a missing URL outside CI.
#
# Probe overrides (to exercise the fallback path): CIRCLE_REDIS_PROBE_HOST/PORT (127.0.0.1:6379),
# CIRCLE_PG_PROBE_HOST/PORT (127.0.0.1:5432), CIRCLE_CHROMIUM_PATH (/usr/bin/chromium).
# A URL already set by the caller (CIRCLE_TEST_REDIS_URL, ...) is used as is.

SVC_CLEANUP=()          # commands run by svc_cleanup, last first
SVC_SUMMARY=()          # one line per service for the final report
SVC_APT_UPDATED=0

svc_say()  { printf 'circle: %s\n' "$*" >&2; }
svc_loud() {
    printf '\ncircle: !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n' >&2
    printf 'circle: !!! %s\n' "$@" >&2
    printf 'circle: !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\n' >&2
}

svc_init() {
    CIRCLE_SVC_TMP=$(mktemp -d "${TMPDIR:-/tmp}/circle-test.XXXXXX")
    chmod 755 "$CIRCLE_SVC_TMP"   # a non-root postgres must reach its own subdirectory
    SVC_CLEANUP+=("rm -rf '$CIRCLE_SVC_TMP'")
}

svc_cleanup() {
    local i
    for ((i = ${#SVC_CLEANUP[@]} - 1; i >= 0; i--)); do
        eval "${SVC_CLEANUP[i]}" >/dev/null 2>&1 || true
    done
    SVC_CLEANUP=()
}

svc_free_port() {
    "${CIRCLE_PY:-python3}" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# apt_install PKG...: as root (or with passwordless sudo); `apt-get update` once, only on failure.
svc_apt_install() {
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo=(sudo -n); else
            svc_say "cannot apt-get install $* (not root, no passwordless sudo)"; return 1
        fi
    fi
    command -v apt-get >/dev/null 2>&1 || { svc_say "no apt-get to install $*"; return 1; }
    local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q
               -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confold)
    svc_say "installing $* with apt-get…"
    if "${apt[@]}" install --no-install-recommends "$@" </dev/null >"$CIRCLE_SVC_TMP/apt.log" 2>&1; then
        return 0
    fi
    if [[ $SVC_APT_UPDATED -eq 0 ]]; then
        SVC_APT_UPDATED=1
        svc_say "apt-get install failed; running apt-get update once and retrying…"
        "${apt[@]}" update </dev/null >>"$CIRCLE_SVC_TMP/apt.log" 2>&1 || true
        "${apt[@]}" install --no-install-recommends "$@" </dev/null >>"$CIRCLE_SVC_TMP/apt.log" 2>&1 \
            && return 0
    fi
    svc_say "apt-get install $* failed; last lines of the log:"
    tail -n 5 "$CIRCLE_SVC_TMP/apt.log" >&2 || true
    return 1
}

# ---------------------------------------------------------------------------- Redis
svc_redis_ping() {  # host port -> true when it answers PING with +PONG
    timeout 3 bash -c '
        exec 3<>"/dev/tcp/$1/$2" || exit 1
        printf "PING\r\n" >&3
        IFS= read -r -t 2 line <&3 || exit 1
        [[ "${line%$'"'"'\r'"'"'}" == "+PONG" ]]' _ "$1" "$2" 2>/dev/null
}

ensure_redis() {
    # tests/cluster start (and restart) redis-servers of their own: the binary must be here
    # even when a Redis already answers.
    if ! command -v redis-server >/dev/null 2>&1; then
        svc_apt_install redis-server || true
    fi
    if [[ -n "${CIRCLE_TEST_REDIS_URL:-}" ]]; then
        SVC_SUMMARY+=("redis:    $CIRCLE_TEST_REDIS_URL (given)"); return 0
    fi
    local host=${CIRCLE_REDIS_PROBE_HOST:-127.0.0.1} port=${CIRCLE_REDIS_PROBE_PORT:-6379}
    if svc_redis_ping "$host" "$port"; then
        export CIRCLE_TEST_REDIS_URL="redis://$host:$port/0"
        SVC_SUMMARY+=("redis:    $CIRCLE_TEST_REDIS_URL (already running)"); return 0
    fi
    if ! command -v redis-server >/dev/null 2>&1; then
        svc_loud "NO REDIS: nothing answers on $host:$port and redis-server could not be installed." \
                 "Tests that need Redis will be SKIPPED (and fail under CI=true)."
        SVC_SUMMARY+=("redis:    MISSING"); return 0
    fi
    local dir="$CIRCLE_SVC_TMP/redis" p attempt
    mkdir -p "$dir"
    # A port found free can be taken before redis binds it: try again on another one.
    for attempt in 1 2 3; do
        p=$(svc_free_port)
        svc_say "starting a throwaway redis-server on 127.0.0.1:$p…"
        if redis-server --bind 127.0.0.1 --port "$p" --save '' --appendonly no --dir "$dir" \
                --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null 2>&1; then
            SVC_CLEANUP+=("kill \$(cat '$dir/redis.pid' 2>/dev/null) 2>/dev/null")
            local i
            for ((i = 0; i < 50; i++)); do
                svc_redis_ping 127.0.0.1 "$p" && break
                sleep 0.1
            done
        fi
        svc_redis_ping 127.0.0.1 "$p" && break
        svc_say "redis-server did not come up on port $p (attempt $attempt)"
    done
    if svc_redis_ping 127.0.0.1 "$p"; then
        export CIRCLE_TEST_REDIS_URL="redis://127.0.0.1:$p/0"
        SVC_SUMMARY+=("redis:    $CIRCLE_TEST_REDIS_URL (throwaway)")
    else
        tail -n 5 "$dir/redis.log" >&2 2>/dev/null || true
        svc_loud "NO REDIS: the throwaway redis-server did not start (log above)." \
                 "Tests that need Redis will be SKIPPED (and fail under CI=true)."
        SVC_SUMMARY+=("redis:    MISSING (start failed)")
    fi
}

# ---------------------------------------------------------------------------- PostgreSQL
# svc_pg_try HOST PORT: connect as postgres with no password to database "test", creating it if
# the server lets us; true when SELECT 1 works.
svc_pg_try() {
    "$CIRCLE_PY" - "$1" "$2" <<'PY' 2>/dev/null
import asyncio, sys
import asyncpg

host, port = sys.argv[1], int(sys.argv[2])

async def main() -> None:
    try:
        conn = await asyncpg.connect(host=host, port=port, user="postgres", database="test",
                                     timeout=3, password=None)
    except asyncpg.InvalidCatalogNameError:
        admin = await asyncpg.connect(host=host, port=port, user="postgres",
                                      database="postgres", timeout=3)
        await admin.execute("CREATE DATABASE test")
        await admin.close()
        conn = await asyncpg.connect(host=host, port=port, user="postgres", database="test",
                                     timeout=3)
    await conn.fetchval("SELECT 1")
    await conn.close()

asyncio.run(main())
PY
}

svc_pg_bindir() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [[ -n "$d" && -x "$d/initdb" ]]; then echo "$d"; return 0; fi
    d=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")
    [[ -x "$d/initdb" ]] && echo "$d"
}

ensure_postgres() {
    if [[ -n "${CIRCLE_TEST_PG_URL:-}" ]]; then
        SVC_SUMMARY+=("postgres: $CIRCLE_TEST_PG_URL (given)"); return 0
    fi
    local host=${CIRCLE_PG_PROBE_HOST:-127.0.0.1} port=${CIRCLE_PG_PROBE_PORT:-5432}
    if svc_pg_try "$host" "$port"; then
        export CIRCLE_TEST_PG_URL="postgresql+asyncpg://postgres@$host:$port/test"
        SVC_SUMMARY+=("postgres: $CIRCLE_TEST_PG_URL (already running)"); return 0
    fi
    local bin
    bin=$(svc_pg_bindir || true)
    if [[ -z "$bin" ]]; then
        svc_apt_install postgresql || true
        bin=$(svc_pg_bindir || true)
    fi
    if [[ -z "$bin" ]]; then
        svc_loud "NO POSTGRESQL: nothing usable on $host:$port and postgresql could not be installed." \
                 "Tests marked postgres will be SKIPPED (and fail under CI=true)."
        SVC_SUMMARY+=("postgres: MISSING"); return 0
    fi
    # initdb refuses to run as root: run the throwaway cluster as the postgres user.
    local as=()
    if [[ $(id -u) -eq 0 ]]; then
        if ! id postgres >/dev/null 2>&1; then
            useradd --system --home-dir /var/lib/postgresql --shell /usr/sbin/nologin postgres \
                >/dev/null 2>&1 || true
        fi
        as=(runuser -u postgres --)
    fi
    local dir="$CIRCLE_SVC_TMP/pg" p=0 attempt
    mkdir -p "$dir"; chmod 700 "$dir"
    [[ $(id -u) -eq 0 ]] && chown postgres: "$dir"
    if "${as[@]}" "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale --no-sync \
            >"$CIRCLE_SVC_TMP/initdb.log" 2>&1; then
        # A port found free can be taken before postgres binds it: try again on another one.
        for attempt in 1 2 3; do
            p=$(svc_free_port)
            svc_say "starting a throwaway PostgreSQL ($(basename "$(dirname "$bin")")) on 127.0.0.1:$p…"
            if "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
                    -o "-p $p -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
                    start >/dev/null 2>&1; then
                SVC_CLEANUP+=("$(printf '%q ' "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate stop)")
                break
            fi
            svc_say "PostgreSQL did not start on port $p (attempt $attempt)"
        done
    fi
    if svc_pg_try 127.0.0.1 "$p"; then
        export CIRCLE_TEST_PG_URL="postgresql+asyncpg://postgres@127.0.0.1:$p/test"
        SVC_SUMMARY+=("postgres: $CIRCLE_TEST_PG_URL (throwaway)")
    else
        tail -n 5 "$CIRCLE_SVC_TMP/initdb.log" "$dir/server.log" >&2 2>/dev/null || true
        svc_loud "NO POSTGRESQL: the throwaway cluster did not start (log above)." \
                 "Tests marked postgres will be SKIPPED (and fail under CI=true)."
        SVC_SUMMARY+=("postgres: MISSING (start failed)")
    fi
}

# ---------------------------------------------------------------------------- Chromium
# curl: the README walk-through (tests/integration/test_readme_walkthrough.py) runs with it.
ensure_curl() {
    command -v curl >/dev/null 2>&1 || svc_apt_install curl ca-certificates || true
    if command -v curl >/dev/null 2>&1; then
        SVC_SUMMARY+=("curl:     $(command -v curl)")
    else
        svc_loud "NO CURL and it could not be installed." \
                 "The README walk-through test will be SKIPPED (and fail under CI=true)."
        SVC_SUMMARY+=("curl:     MISSING")
    fi
}

ensure_chromium() {
    if [[ -n "${CIRCLE_TEST_CHROMIUM:-}" ]]; then
        SVC_SUMMARY+=("chromium: $CIRCLE_TEST_CHROMIUM (given)"); return 0
    fi
    local path=${CIRCLE_CHROMIUM_PATH:-/usr/bin/chromium}
    if [[ ! -x "$path" && "$path" == /usr/bin/chromium ]]; then
        svc_apt_install chromium || true
    fi
    if [[ -x "$path" ]]; then
        export CIRCLE_TEST_CHROMIUM="$path"
        SVC_SUMMARY+=("chromium: $path")
    else
        svc_loud "NO CHROMIUM at $path and it could not be installed." \
                 "Browser tests will be SKIPPED (and fail under CI=true)."
        SVC_SUMMARY+=("chromium: MISSING")
    fi
}

# ---------------------------------------------------------------------------- nginx
# nginx: tests/integration/test_nginx_config.py checks deploy/nginx/circle.conf with `nginx -t`
# and runs it in front of two test servers. Only the binary is needed (the tests start their
# own instance on a free port, with a temporary prefix); Debian's package does not start a
# daemon where policy-rc.d forbids it, as in containers.
ensure_nginx() {
    if [[ -n "${CIRCLE_TEST_NGINX:-}" ]]; then
        SVC_SUMMARY+=("nginx:    $CIRCLE_TEST_NGINX (given)"); return 0
    fi
    local path=/usr/sbin/nginx
    [[ -x "$path" ]] || svc_apt_install nginx || true
    if [[ -x "$path" ]]; then
        export CIRCLE_TEST_NGINX="$path"
        SVC_SUMMARY+=("nginx:    $path")
    else
        svc_loud "NO NGINX at $path and it could not be installed." \
                 "The nginx config tests will be SKIPPED (and fail under CI=true)."
        SVC_SUMMARY+=("nginx:    MISSING")
    fi
}

# ---------------------------------------------------------------------------- coturn
# coturn: tests/deploy/test_turn_relay.py and test_doctor.py start Debian's `turnserver` from
# deploy/coturn/turnserver.conf on free loopback ports (tests/deploy/coturn.py). Only the
# binary is needed. Debian's package enables a system coturn service; it is not started
# where policy-rc.d forbids it (containers, CI); on a workstation with systemd, run
# `systemctl disable --now coturn` if you do not want that one.
ensure_coturn() {
    if [[ -n "${CIRCLE_TEST_TURNSERVER:-}" ]]; then
        SVC_SUMMARY+=("coturn:   $CIRCLE_TEST_TURNSERVER (given)"); return 0
    fi
    command -v turnserver >/dev/null 2>&1 || svc_apt_install coturn || true
    if command -v turnserver >/dev/null 2>&1; then
        export CIRCLE_TEST_TURNSERVER
        CIRCLE_TEST_TURNSERVER=$(command -v turnserver)
        SVC_SUMMARY+=("coturn:   $CIRCLE_TEST_TURNSERVER")
    else
        svc_loud "NO COTURN (turnserver) and it could not be installed." \
                 "The TURN tests will be SKIPPED (and fail under CI=true)."
        SVC_SUMMARY+=("coturn:   MISSING")
    fi
}

# ---------------------------------------------------------------------------- systemd-analyze
# tests/deploy/test_deploy_files.py checks deploy/systemd/circle.service with
# `systemd-analyze verify` (it needs no running systemd). Debian's `systemd` package has it.
ensure_systemd_analyze() {
    command -v systemd-analyze >/dev/null 2>&1 || svc_apt_install systemd || true
    if command -v systemd-analyze >/dev/null 2>&1; then
        SVC_SUMMARY+=("systemd:  $(command -v systemd-analyze)")
    else
        svc_loud "NO systemd-analyze and systemd could not be installed." \
                 "The systemd unit check will be SKIPPED (and fail under CI=true)."
        SVC_SUMMARY+=("systemd:  MISSING")
    fi
}

# ---------------------------------------------------------------------------- docker compose
# Compose v2 (`docker compose`) is in none of the registries this machine reaches (Debian 12
# has only compose v1, which cannot read the Compose Specification's top-level `name:`).
# Nothing is installed: the summary says plainly whether deploy/docker-compose.yml was run
# through `docker compose config` or checked statically only (tests/deploy).
report_compose() {
    if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
        SVC_SUMMARY+=("compose:  $(docker compose version --short 2>/dev/null)")
    else
        svc_loud "NO docker compose (v2) here: deploy/docker-compose.yml is checked statically" \
                 "only; \`docker compose config\` runs where the plugin is installed."
        SVC_SUMMARY+=("compose:  MISSING (deploy/docker-compose.yml checked statically only)")
    fi
}
