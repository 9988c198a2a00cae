#!/usr/bin/env bash
# Runs gatewayd on docs/examples/gatewayd.toml with three throw-away origins (Python's
# http.server) so the example answers: blue = :9001 and :9002, green = :9003.
# Ctrl-C stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -p gatewayd
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT INT TERM
for port in 9001 9002 9003; do
  mkdir -p "$work/$port"
  color=blue; [ "$port" = 9003 ] && color=green
  echo "hello from $color ($port)" > "$work/$port/index.html"
  python3 -m http.server "$port" --bind 127.0.0.1 --directory "$work/$port" >/dev/null 2>&1 &
  pids+=($!)
done
cp docs/examples/gatewayd.toml "$work/gatewayd.toml"
./target/release/gatewayd --config "$work/gatewayd.toml" &
pids+=($!)
sleep 1
cat <<TXT

gatewayd is serving on http://127.0.0.1:8080 (admin API on 127.0.0.1:9901).
  curl http://127.0.0.1:8080/                          # blue answers
  curl -H 'x-canary: always' http://127.0.0.1:8080/    # green answers (cohort rule)
  TOKEN=\$(cat $work/state/admin.token)
  curl -X POST -H "Authorization: Bearer \$TOKEN" http://127.0.0.1:9901/v1/routes/web/flip
  curl -H "Authorization: Bearer \$TOKEN" http://127.0.0.1:9901/v1/stats
Ctrl-C stops it.
TXT
wait
