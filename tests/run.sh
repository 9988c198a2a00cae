#!/usr/bin/env bash
# Runs every test of the workspace: formatting, lints, unit tests and the end-to-end suite
# (real binaries on loopback). One build serves unit and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== rustfmt"
cargo fmt --all -- --check
echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== build binaries (the e2e suite runs them)"
cargo build --workspace --bins --locked
echo "== tmux (the console test drives gwctl in a real terminal)"
# CI runs as root on Debian.
command -v tmux >/dev/null || { apt-get update -qq && apt-get install -y -qq tmux; }
echo "== chromium (the CORS case loads a page in a real headless browser)"
command -v chromium >/dev/null \
  || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; }
echo "== nginx (a real upstream for the HTTP/2 conformance case) and httpwg (the suite)"
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] \
  || { apt-get update -qq && apt-get install -y -qq nginx-light; }
# httpwg-cli from crates.io: an independent port of h2spec. Built once per machine.
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
command -v httpwg >/dev/null || cargo install --quiet --locked httpwg-cli@0.2.5
echo "== openssl and curl (the TLS cases drive them as real clients; curl needs HTTP/2)"
if ! command -v openssl >/dev/null || ! command -v curl >/dev/null \
  || ! curl --version | grep -q HTTP2; then
  apt-get update -qq && apt-get install -y -qq openssl curl
fi
echo "== haproxy (the L4 balancer sending PROXY v2 in front of a TLS listener)"
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] \
  || { apt-get update -qq && apt-get install -y -qq haproxy; }
echo "== prometheus and promtool (the metrics, alert rules and dashboard cases run them)"
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus
fi
echo "== python tools (real Consul clients the e2e suite points at devconsul)"
# .venv at the repository root (git-ignored); pinned in tests/python/requirements.txt. pip is
# only asked when the requirements changed since the last install, so reruns cost nothing.
if [ ! -x .venv/bin/python ]; then
  # --clear: a venv whose interpreter went away is rebuilt whole (and reinstalled below).
  python3 -m venv --clear .venv
fi
if ! cmp -s tests/python/requirements.txt .venv/.meshgate-requirements.txt; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-input \
    -r tests/python/requirements.txt
  cp tests/python/requirements.txt .venv/.meshgate-requirements.txt
fi
echo "== GitHub's REST description (npm @octokit/openapi: the OpenAPI import case imports it)"
# Into .cache/openapi (git-ignored); npm is only asked when the pinned version is not there.
OCTOKIT_OPENAPI=23.0.2
if ! grep -qs "\"version\": \"$OCTOKIT_OPENAPI\"" \
    .cache/openapi/node_modules/@octokit/openapi/package.json; then
  command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq npm; }
  mkdir -p .cache/openapi
  npm install --prefix .cache/openapi --no-save --no-audit --no-fund --silent \
    "@octokit/openapi@$OCTOKIT_OPENAPI"
fi
echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
  # nextest does not run doctests
  cargo test --workspace --doc --locked
else
  cargo test --workspace --locked --no-fail-fast
fi
echo "== ansible (roles and playbooks run for real against the built binaries: tests/ansible/)"
# systemd-analyze checks the gatewayd unit offline (systemd is not PID 1 here); strip shrinks the
# debug binaries the roles copy into their throw-away roots.
command -v systemd-analyze >/dev/null || { apt-get update -qq && apt-get install -y -qq systemd; }
command -v strip >/dev/null || { apt-get update -qq && apt-get install -y -qq binutils; }
if ! cmp -s ansible/requirements.txt .venv/.meshgate-ansible-requirements.txt; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-input \
    -r ansible/requirements.txt
  cp ansible/requirements.txt .venv/.meshgate-ansible-requirements.txt
fi
# --basetemp under the git-ignored target/: each run clears the previous run's roots (target/ may
# not exist when CARGO_TARGET_DIR points elsewhere).
mkdir -p target
PYTHONDONTWRITEBYTECODE=1 .venv/bin/python -m pytest -p no:cacheprovider -q \
  --basetemp=target/ansible-tests tests/ansible
