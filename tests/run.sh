#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs, then runs format and lint
# checks, the Rust unit and end-to-end tests, and the client tests (Python ADBC and others, and
# through tests/python the JDBC, Go and Rust clients of tests/clients, with Maven's and Go's
# caches in their default places and arrow-flight's CLI in ~/.cache/sluice/tools). Tests that need
# Redis or ClickHouse start their own redis-server / clickhouse-server (Debian's packages,
# installed here if missing) on free loopback ports with their data in a temporary folder,
# and stop them by process id.
#
#   ./tests/run.sh
#
# Environment: CARGO_TARGET_DIR (default ./target, the one `cargo run` builds into, so the
# README's two commands share one build; .ci/run keeps CI's outside the clone),
# SLUICE_VENV (default ~/.cache/sluice/venv), SLUICE_SKIP_LINT=1 to skip fmt and clippy.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
VENV="${SLUICE_VENV:-$HOME/.cache/sluice/venv}"

step() { printf '\n== %s\n' "$*"; }

step "Servers the tests start privately"
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v clickhouse-server >/dev/null 2>&1 || missing+=(clickhouse-server clickhouse-client)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  # The packages' own services are not started here (and never touched): tests run
  # private instances on free ports.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# nginx (the gRPC balancer of tests/python/test_balancer.py) is unpacked, not installed:
# installing Debian's package would start a system nginx on port 80.
NGINX_DIR="$HOME/.cache/sluice/nginx"
if ! command -v nginx >/dev/null 2>&1 && [ ! -x "$NGINX_DIR/usr/sbin/nginx" ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  deb="$(mktemp -d)"
  (cd "$deb" && { apt-get download nginx 2>/dev/null || { $SUDO apt-get update -qq && apt-get download nginx; }; })
  mkdir -p "$NGINX_DIR"
  dpkg -x "$deb"/nginx_*.deb "$NGINX_DIR"
  rm -rf "$deb"
fi
redis-server --version
clickhouse-client --version
"$(command -v nginx || echo "$NGINX_DIR/usr/sbin/nginx")" -v

step "Python client environment ($VENV)"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt

if [ "${SLUICE_SKIP_LINT:-0}" != 1 ]; then
  step "cargo fmt --check"
  cargo fmt --all -- --check
  step "cargo clippy"
  cargo clippy --release --workspace --all-targets --locked -- -D warnings
fi

step "cargo build (release)"
cargo build --release --workspace --bins --locked

# arrow-rs's own Flight SQL client (tests/python/test_client_rust.py): the arrow-flight
# crate's CLI at the workspace's version, installed once into a cache outside the clone.
TOOLS="${SLUICE_TOOLS:-$HOME/.cache/sluice/tools}"
ARROW_FLIGHT="$(grep -A1 '^name = "arrow-flight"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')"
step "flight_sql_client $ARROW_FLIGHT (arrow-flight's CLI, into $TOOLS)"
cargo install --quiet --locked arrow-flight --version "=$ARROW_FLIGHT" \
  --features cli,flight-sql,tls-ring --bin flight_sql_client --root "$TOOLS"
export FLIGHT_SQL_CLIENT="$TOOLS/bin/flight_sql_client"

step "cargo test (unit, end-to-end, and the connectors against real servers)"
cargo test --release --workspace --locked

step "Python ADBC client tests"
SLUICE_BIN="$CARGO_TARGET_DIR/release/sluice" "$VENV/bin/python" -m pytest tests/python -q -p no:cacheprovider
