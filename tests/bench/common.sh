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

# bench_upstream: the scenario's origin, one Debian nginx worker on 127.0.0.1:19001 and :19002
# answering a fixed 1 KiB body with keep-alive; its PID is added to PIDS and set in UPSTREAM_PID.
bench_upstream() {
    local body n
    body=$(head -c 1024 /dev/zero | tr '\0' 'x')
    cat >"$RUN/upstream.conf" <<EOF
worker_processes 1;
pid upstream.pid;
error_log upstream.error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    server {
        listen 127.0.0.1:19001;
        listen 127.0.0.1:19002;
        location / {
            default_type text/plain;
            return 200 "$body";
        }
    }
}
EOF
    nginx -p "$RUN/" -c "$RUN/upstream.conf" -g 'daemon off;' &
    UPSTREAM_PID=$!
    PIDS+=("$UPSTREAM_PID")
    wait_http http://127.0.0.1:19001/api/
    wait_http http://127.0.0.1:19002/api/
    n=$(curl -s http://127.0.0.1:19001/api/ | wc -c)
    [[ $n == 1024 ]] || { echo "upstream body is $n bytes, not 1024" >&2; exit 1; }
}
