#!/usr/bin/env bash
# tests/bench/tls.sh — TLS termination: gatewayd against nginx and HAProxy terminating the same
# ECDSA P-256 certificate with TLS 1.3, one worker each, same upstreams as run.sh (issue 10).
# Run by hand on Debian; not part of CI.
#
#   bash tests/bench/tls.sh                        # builds target/release/gatewayd, runs, prints
#   GATEWAYD=/path/to/gatewayd LABEL=ring bash tests/bench/tls.sh
#
# Knobs [defaults]: ROUNDS [5], DURATION [8] s per run, WARMUP [2] s, CONNS [64] wrk connections,
# GATEWAYD [target/release/gatewayd, built], LABEL [gatewayd], CLEAR [1] also the cleartext
# row (gatewayd.toml against nginx-proxy.conf, as run.sh), OUT [print only; a file gets the TSV].
#
# Rows, each as work per proxy CPU-second (utime+stime from /proc, process and children, before
# and after; the load generators' CPU is not counted):
#   keepalive  wrk -t1 -cCONNS over HTTPS, keep-alive: requests per proxy CPU-second;
#   handshake  openssl s_time -new -tls1_3 -www /api/: a full handshake (no resumption) and one
#              GET per connection: connections per proxy CPU-second;
#   cleartext  wrk over HTTP (the existing headline row), to show TLS did not cost the plain path.
# Systems run interleaved (gatewayd nginx haproxy, gatewayd nginx haproxy, ...); medians and the
# ratio to nginx of the medians are printed.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-64}
LABEL=${LABEL:-gatewayd}
CLEAR=${CLEAR:-1}
OUT=${OUT:-}
CLK_TCK=$(getconf CLK_TCK)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# shellcheck source=tests/bench/common.sh
source "$HERE/common.sh"

log() { printf '[tls-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

for t in nginx haproxy wrk openssl curl; do
    command -v "$t" >/dev/null || {
        echo "$t is missing (apt-get install nginx haproxy wrk openssl curl)" >&2
        exit 1
    }
done
if [[ -z ${GATEWAYD:-} ]]; then
    log "building gatewayd (release)"
    (cd "$ROOT" && cargo build --release --locked -q -p gatewayd --bin gatewayd)
    GATEWAYD=$ROOT/target/release/gatewayd
fi
GATEWAYD=$(realpath "$GATEWAYD")

bench_setup meshgate-tls-bench
bench_upstream

# One ECDSA P-256 certificate for every proxy.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -keyout "$RUN/key.pem" -out "$RUN/cert.pem" -subj "/CN=bench.local" \
    -addext "subjectAltName=DNS:bench.local" 2>/dev/null
cat "$RUN/cert.pem" "$RUN/key.pem" >"$RUN/combined.pem"

# gatewayd: the lean scenario of gatewayd.toml plus a TLS listener on :18490.
sed -e 's/^address = "127.0.0.1:18090"/address = "127.0.0.1:18090"\n\n[[listeners]]\naddress = "127.0.0.1:18490"\nname = "tls"\n[listeners.tls]\ncertificates = [{ cert = "cert.pem", key = "key.pem" }]\nmin_version = "1.3"/' \
    "$HERE/gatewayd.toml" >"$RUN/gatewayd.toml"
grep -q 18490 "$RUN/gatewayd.toml" || { echo "could not add the TLS listener" >&2; exit 1; }

cat >"$RUN/nginx-tls.conf" <<EOF
worker_processes 1;
pid nginx-tls.pid;
error_log nginx-tls.error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    upstream api {
        server 127.0.0.1:19001;
        server 127.0.0.1:19002;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:18091;
        listen 127.0.0.1:18491 ssl;
        ssl_certificate $RUN/cert.pem;
        ssl_certificate_key $RUN/key.pem;
        ssl_protocols TLSv1.3;
        location /api/ {
            proxy_pass http://api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF

cat >"$RUN/haproxy-tls.cfg" <<EOF
global
    nbthread 1
    maxconn 8000
    ssl-default-bind-options ssl-min-ver TLSv1.3
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
    http-reuse always
frontend fe
    bind 127.0.0.1:18092
    bind 127.0.0.1:18492 ssl crt $RUN/combined.pem alpn http/1.1
    use_backend api
backend api
    balance roundrobin
    server a 127.0.0.1:19001
    server b 127.0.0.1:19002
EOF

declare -A PID_OF TLS_PORT_OF CLEAR_PORT_OF
(cd "$RUN" && exec "$GATEWAYD" --config "$RUN/gatewayd.toml" >"$RUN/gatewayd.log" 2>&1) &
PID_OF[gatewayd]=$!
PIDS+=("$!")
nginx -p "$RUN/" -c "$RUN/nginx-tls.conf" -g 'daemon off;' &
PID_OF[nginx]=$!
PIDS+=("$!")
haproxy -db -f "$RUN/haproxy-tls.cfg" >"$RUN/haproxy.log" 2>&1 &
PID_OF[haproxy]=$!
PIDS+=("$!")
TLS_PORT_OF=([gatewayd]=18490 [nginx]=18491 [haproxy]=18492)
CLEAR_PORT_OF=([gatewayd]=18090 [nginx]=18091 [haproxy]=18092)
SYSTEMS=(gatewayd nginx haproxy)
for s in "${SYSTEMS[@]}"; do
    wait_http "http://127.0.0.1:${CLEAR_PORT_OF[$s]}/api/"
    for i in $(seq 1 100); do
        [[ $(curl -sk -o /dev/null -w '%{http_code}' --tls-max 1.3 --tlsv1.3 \
            "https://127.0.0.1:${TLS_PORT_OF[$s]}/api/" || true) == 200 ]] && break
        sleep 0.1
    done
done
for s in "${SYSTEMS[@]}"; do
    # Every row must measure the same work: a 1 KiB 200 over TLS, also for s_time's HTTP/1.0
    # request without Host.
    n=$(curl -sk --tlsv1.3 "https://127.0.0.1:${TLS_PORT_OF[$s]}/api/" | wc -c)
    n10=$(printf 'GET /api/ HTTP/1.0\r\n\r\n' | openssl s_client -quiet -tls1_3 \
        -connect "127.0.0.1:${TLS_PORT_OF[$s]}" 2>/dev/null | head -n 1 | tr -d '\r')
    [[ $n == 1024 && $n10 == *" 200 "* ]] || {
        echo "$s: TLS body $n bytes, HTTP/1.0 without Host: '$n10'" >&2
        exit 1
    }
    log "$s answers over TLS 1.3 (1 KiB body; HTTP/1.0 without Host: $n10)"
done

cpu_ticks() { # utime+stime of the process and its children
    local pid total=0 f
    for pid in $1 $(ps -o pid= --ppid "$1" 2>/dev/null || true); do
        f=$(cut -d' ' -f14,15 "/proc/$pid/stat" 2>/dev/null) || continue
        total=$((total + ${f% *} + ${f#* }))
    done
    echo "$total"
}

# per_cpu ROW SYSTEM: one measured run; prints work per proxy CPU-second.
per_cpu() {
    local row=$1 s=$2 pid=${PID_OF[$2]} before after work out
    case $row in
    keepalive | cleartext)
        local url="https://127.0.0.1:${TLS_PORT_OF[$s]}/api/"
        [[ $row == cleartext ]] && url="http://127.0.0.1:${CLEAR_PORT_OF[$s]}/api/"
        wrk -t1 -c"$CONNS" -d"${WARMUP}s" "$url" >/dev/null
        before=$(cpu_ticks "$pid")
        out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" "$url")
        after=$(cpu_ticks "$pid")
        work=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
        work=$(echo "$work * $DURATION" | bc -l)
        ;;
    handshake)
        local target="127.0.0.1:${TLS_PORT_OF[$s]}"
        openssl s_time -connect "$target" -new -tls1_3 -www /api/ -time "$WARMUP" >/dev/null 2>&1 || true
        before=$(cpu_ticks "$pid")
        out=$(openssl s_time -connect "$target" -new -tls1_3 -www /api/ -time "$DURATION" 2>&1 || true)
        after=$(cpu_ticks "$pid")
        work=$(awk '/connections in [0-9.]+s/ {print $1; exit}' <<<"$out")
        ;;
    esac
    [[ -n $work && $after -gt $before ]] || { echo "no measurement for $row/$s: $out" >&2; echo 0; return; }
    echo "$work / (($after - $before) / $CLK_TCK)" | bc -l
}

ROWS=(keepalive handshake)
[[ $CLEAR == 1 ]] && ROWS+=(cleartext)
declare -A SAMPLES
for r in $(seq 1 "$ROUNDS"); do
    for row in "${ROWS[@]}"; do
        for s in "${SYSTEMS[@]}"; do
            v=$(per_cpu "$row" "$s")
            SAMPLES[$row/$s]+="$v "
            log "round $r $row $s: $(printf '%.0f' "$v") per CPU-s"
        done
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
printf '%-10s %-10s %14s %10s   %s\n' row system median vs_nginx samples
tsv="row\tsystem\tlabel\tmedian_per_cpu_s\tvs_nginx\tsamples\n"
for row in "${ROWS[@]}"; do
    base=$(median <<<"${SAMPLES[$row/nginx]}")
    for s in "${SYSTEMS[@]}"; do
        m=$(median <<<"${SAMPLES[$row/$s]}")
        ratio=$(echo "$m / $base" | bc -l)
        name=$s
        [[ $s == gatewayd ]] && name=$LABEL
        printf '%-10s %-10s %14.0f %9.2fx   %s\n' "$row" "$name" "$m" "$ratio" "${SAMPLES[$row/$s]}"
        tsv+="$row\t$name\t$LABEL\t$(printf '%.0f' "$m")\t$(printf '%.3f' "$ratio")\t${SAMPLES[$row/$s]}\n"
    done
done
if [[ -n $OUT ]]; then
    printf '%b' "$tsv" >>"$OUT"
    log "appended to $OUT"
fi
