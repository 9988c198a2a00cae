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
echo "== nginx (a real upstream for the HTTP/2 conformance case) and httpwg (the suite)"
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] \
  || { apt-get update -qq && apt-get install -y -qq nginx-light; }
# httpwg-cli from crates.io: an independent port of h2spec. Built once per machine.
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
command -v httpwg >/dev/null || cargo install --quiet --locked httpwg-cli@0.2.5
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
echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
  # nextest does not run doctests
  cargo test --workspace --doc --locked
else
  cargo test --workspace --locked --no-fail-fast
fi
