#!/usr/bin/env bash
# tests/bench/profile.sh — CPU profile of gatewayd in the bench scenario (run by hand, as root).
#
#   GATEWAYD=target/release/gatewayd bash tests/bench/profile.sh     # perf (default)
#   TOOL=callgrind bash tests/bench/profile.sh                        # valgrind instead of perf
#   CONFIG=tests/bench/gatewayd-defaults.toml bash tests/bench/profile.sh   # policies on
#
# Starts the upstream nginx (19001/19002) and gatewayd with CONFIG (default tests/bench/gatewayd.toml,
# the lean row: request ids, X-Forwarded-* and latency histograms off), records
# gatewayd while `wrk -t1 -c64 -d${DURATION}s` runs, and prints the top functions by inclusive
# ("children") cost to stdout. The release profile keeps debug info (debug = 1), so symbols
# resolve. Every process started here is stopped by PID on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
GATEWAYD=${GATEWAYD:-$ROOT/target/release/gatewayd}
TOOL=${TOOL:-perf}
DURATION=${DURATION:-10}
TOP=${TOP:-40}
PERF_OUT=${PERF_OUT:-/tmp/gatewayd.perf.data}   # kept for further `perf report -i` runs
CONFIG=${CONFIG:-$HERE/gatewayd.toml}
# The first `address = "IP:PORT"` is the [[listeners]] entry in both bench configs.
PORT=$(sed -nE 's/^address = "127\.0\.0\.1:([0-9]+)".*/\1/p' "$CONFIG" | head -n 1)
[[ -n $PORT ]] || { echo "no 127.0.0.1 listener address in $CONFIG" >&2; exit 1; }
# shellcheck source=tests/bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bench_setup meshgate-profile
bench_upstream

if [[ $TOOL == callgrind ]]; then
    valgrind --tool=callgrind --callgrind-out-file="$RUN/callgrind.out" \
        "$GATEWAYD" --config "$CONFIG" >"$RUN/gw.log" 2>&1 &
    PIDS+=($!)
    wait_http http://127.0.0.1:$PORT/api/
    wrk -t1 -c64 -d"${DURATION}s" http://127.0.0.1:$PORT/api/
    kill -TERM "${PIDS[-1]}"
    wait "${PIDS[-1]}" || true
    callgrind_annotate --inclusive=yes "$RUN/callgrind.out" | head -n $((TOP + 25))
else
    "$GATEWAYD" --config "$CONFIG" >"$RUN/gw.log" 2>&1 &
    gw=$!
    PIDS+=($gw)
    wait_http http://127.0.0.1:$PORT/api/
    wrk -t1 -c64 -d2s http://127.0.0.1:$PORT/api/ >/dev/null
    perf record -q -e cpu-clock -F 1999 --call-graph dwarf,16384 -p "$gw" -o "$PERF_OUT" \
        -- sleep "$DURATION" &
    rec=$!
    wrk -t1 -c64 -d"${DURATION}s" http://127.0.0.1:$PORT/api/
    wait "$rec" || true
    # Inclusive cost per function, inlined frames folded into their callers.
    perf report -i "$PERF_OUT" --children --no-inline --stdio -g none \
        --percent-limit 1.5 --sort symbol 2>"$RUN/report.err" | grep -v "^$" | head -n "$TOP" || cat "$RUN/report.err" >&2
fi
