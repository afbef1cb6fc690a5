#!/usr/bin/env bash
# Benchmarks, one command: builds Sluice (release), prepares the Python clients, runs.
#
#   ./bench/run.sh hot-window [--users 200 --listeners 20 --passes 30]
#   ./bench/run.sh bulk-export [--users 30 --years 10 --passes 3]
#
# Starts its own redis-server / clickhouse-server on free loopback ports (data in a temporary
# folder) and stops them by process id. Results: bench/results/<name>.json and .md.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
VENV="${SLUICE_BENCH_VENV:-$HOME/.cache/sluice/bench-venv}"
name="${1:-hot-window}"
shift || true
cargo build --release --locked -p sluice
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r bench/requirements.txt
case "$name" in
  hot-window) exec "$VENV/bin/python" bench/hot_window.py --sluice "$CARGO_TARGET_DIR/release/sluice" "$@" ;;
  bulk-export) exec "$VENV/bin/python" bench/bulk_export.py --sluice "$CARGO_TARGET_DIR/release/sluice" "$@" ;;
  *) echo "unknown benchmark '$name' (known: hot-window, bulk-export)" >&2; exit 2 ;;
esac
