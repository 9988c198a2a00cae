# Shared by run.sh and profile.sh (sourced, not run): a scratch directory, PID bookkeeping with
# stop-by-PID on exit, and waiting for an HTTP 200.

# bench_setup PREFIX: sets RUN (a fresh directory under /tmp) and PIDS, and installs the traps
# that stop every PID in PIDS and remove RUN on exit.
bench_setup() {
    RUN=$(mktemp -d "/tmp/$1.XXXXXX")
    PIDS=()
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

bench_cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in "${PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$RUN"
}

# wait_http URL: up to 30 s for a 200.
wait_http() {
    local i
    for i in $(seq 1 300); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "$1" || true) == 200 ]] && return 0
        sleep 0.1
    done
    echo "no 200 from $1" >&2
    return 1
}
