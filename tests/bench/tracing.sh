#!/usr/bin/env bash
# tests/bench/tracing.sh — what `[tracing]` costs on the bench scenario (run by hand, as root).
#
#   GATEWAYD=target/release/gatewayd bash tests/bench/tracing.sh
#   ROUNDS=5 DURATION=10 bash tests/bench/tracing.sh
#
# The cleartext scenario of run.sh (tests/bench/gatewayd.toml: one worker, /api/ -> two nginx
# upstreams, keep-alive, policies off) in three gatewayd variants, interleaved with the nginx proxy
# of run.sh, ROUNDS rounds, medians printed as docs/benchmarks.md rows:
#   off        tests/bench/gatewayd.toml as is (no [tracing]: the headline row's config)
#   on, 100 %  [tracing] sample_ratio = 1, every span exported over OTLP/HTTP to a local receiver
#              (the upstream nginx's 127.0.0.1:19001 answers the POSTs 200, so the receiver costs
#              the gateway nothing but the export itself)
#   on, 0 %    [tracing] sample_ratio = 0 with the same exporter: trace context (ids, traceparent
#              upstream) on every request, nothing exported
# Throughput: `wrk -t1 -c64 -dDURATION` after a 2 s warm-up; the proxy's CPU is utime+stime from
# /proc/PID/stat (the process and its children) before and after: req per CPU-second =
# requests / CPU seconds. With CALLGRIND=1, also valgrind's instructions per request of each
# gatewayd variant: marginal between a SHORT and a LONG `wrk -t1 -c64` run (start-up cancels out),
# independent of machine noise. Every process started here is stopped by PID on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
GATEWAYD=${GATEWAYD:-$ROOT/target/release/gatewayd}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
CALLGRIND=${CALLGRIND:-0}
SHORT=${SHORT:-4}
LONG=${LONG:-8}
CLK_TCK=$(getconf CLK_TCK)
# shellcheck source=tests/bench/common.sh
source "$HERE/common.sh"
bench_setup meshgate-tracing
bench_upstream

# The three gatewayd configs: gatewayd.toml, plus a [tracing] table for the "on" variants.
cp "$HERE/gatewayd.toml" "$RUN/off.toml"
for v in on100 on0; do
    ratio=1.0
    [[ $v == on0 ]] && ratio=0.0
    {
        cat "$HERE/gatewayd.toml"
        printf '\n[tracing]\nsample_ratio = %s\notlp_endpoint = "http://127.0.0.1:19001/v1/traces"\n' "$ratio"
    } >"$RUN/$v.toml"
done

# As run.sh: utime+stime of the process and its children (nginx's worker).
tree() { echo "$1"; ps -o pid= --ppid "$1" 2>/dev/null || true; }
cpu_ticks() {
    local p t=0 v
    for p in $(tree "$1"); do
        v=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}') || v=0
        t=$((t + ${v:-0}))
    done
    echo "$t"
}

# run_one NAME: starts the system, warms up, measures one wrk run; prints "reqs cpu_seconds".
run_one() {
    local name=$1 pid port reqs t0 t1
    case $name in
        nginx)
            nginx -p "$RUN/" -c "$HERE/nginx-proxy.conf" -g 'daemon off;' >"$RUN/nginx.log" 2>&1 &
            pid=$!
            port=18091
            ;;
        *)
            "$GATEWAYD" --config "$RUN/$name.toml" >"$RUN/$name.log" 2>&1 &
            pid=$!
            port=18090
            ;;
    esac
    PIDS+=("$pid")
    wait_http "http://127.0.0.1:$port/api/"
    wrk -t1 -c64 -d2s "http://127.0.0.1:$port/api/" >/dev/null
    t0=$(cpu_ticks "$pid")
    reqs=$(wrk -t1 -c64 -d"${DURATION}s" "http://127.0.0.1:$port/api/" \
        | awk '/requests in/ {print $1}')
    t1=$(cpu_ticks "$pid")
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    unset 'PIDS[-1]'
    echo "$reqs $(echo "($t1 - $t0) / $CLK_TCK" | bc -l)"
}

declare -A RATES
systems=(off on100 on0 nginx)
for r in $(seq 1 "$ROUNDS"); do
    for name in "${systems[@]}"; do
        read -r reqs cpu < <(run_one "$name")
        rate=$(echo "$reqs / $cpu" | bc -l | xargs printf '%.0f')
        RATES[$name]+="$rate "
        printf '[tracing bench] round %s %-6s %s requests, %.2f CPU-s, %s req per CPU-s\n' \
            "$r" "$name" "$reqs" "$cpu" "$rate" >&2
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
nginx_median=$(echo "${RATES[nginx]}" | median)
off_median=$(echo "${RATES[off]}" | median)
label() {
    case $1 in
        off) echo "gatewayd, no \`[tracing]\` (tests/bench/gatewayd.toml)" ;;
        on100) echo "gatewayd, \`[tracing]\` sample_ratio = 1, every span exported (OTLP/HTTP)" ;;
        on0) echo "gatewayd, \`[tracing]\` sample_ratio = 0 (trace context only)" ;;
        nginx) echo "nginx" ;;
    esac
}
echo "| system | req per CPU-second (median of $ROUNDS) | per round | ÷ nginx | ÷ tracing off |"
echo "|---|---|---|---|---|"
for name in "${systems[@]}"; do
    m=$(echo "${RATES[$name]}" | median)
    printf '| %s | %s | %s | %.2f× | %.2f× |\n' "$(label "$name")" "$m" \
        "$(echo "${RATES[$name]}" | xargs | sed 's/ /, /g')" \
        "$(echo "$m / $nginx_median" | bc -l)" "$(echo "$m / $off_median" | bc -l)"
done

[[ $CALLGRIND == 1 ]] || exit 0

# callgrind_run NAME SECONDS: prints "requests instructions" of one run under valgrind.
callgrind_run() {
    local name=$1 secs=$2 pid reqs ir out=$RUN/cg.$1.$2
    valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$GATEWAYD" --config "$RUN/$name.toml" >"$RUN/cg.$name.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_http "http://127.0.0.1:18090/api/"
    reqs=$(wrk -t1 -c64 -d"${secs}s" "http://127.0.0.1:18090/api/" | awk '/requests in/ {print $1}')
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    unset 'PIDS[-1]'
    ir=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    echo "$reqs $ir"
}
echo
echo "| system | instructions per request (callgrind, marginal ${SHORT} s → ${LONG} s) |"
echo "|---|---|"
for name in off on100 on0; do
    read -r r1 i1 < <(callgrind_run "$name" "$SHORT")
    read -r r2 i2 < <(callgrind_run "$name" "$LONG")
    printf '| %s | %s |\n' "$(label "$name")" "$(echo "($i2 - $i1) / ($r2 - $r1)" | bc -l | xargs printf '%.0f')"
done
