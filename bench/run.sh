#!/usr/bin/env bash
# The benchmark, one command (after the README's set-up: Debian's clickhouse-server and
# redis-server installed, which ./tests/run.sh does):
#
#   ./bench/run.sh            # 200 listeners x 10 years, results in bench/results (~18 min)
#   ./bench/run.sh --quick    # a smoke run of a minute or two
#   ./bench/run.sh --users 300 --years 11 --out /tmp/results   # any scale (see --help)
#
# Builds Sluice twice (with jemalloc, and with the system allocator for the memory comparison)
# and the trivial Flight SQL server the gateway's overhead is measured against, prepares the
# Python clients, then runs bench/sluice_bench.py. ClickHouse and Redis are private instances
# on free loopback ports with their data in a temporary folder, stopped by process id.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
VENV="${SLUICE_VENV:-$HOME/.cache/sluice/venv}"
bin="$CARGO_TARGET_DIR/release"

# The system-allocator build first, copied aside; then the default one, which stays in place.
# Both build the whole workspace, as tests/run.sh does, so that dependencies are built with the
# same features and reused: only the `sluice` binary differs.
cargo build --release --locked --workspace --bins --no-default-features
cp "$bin/sluice" "$bin/sluice-system-alloc"
cargo build --release --locked --workspace --bins

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt
exec "$VENV/bin/python" bench/sluice_bench.py --sluice "$bin/sluice" \
  --sluice-system-alloc "$bin/sluice-system-alloc" --floor "$bin/flight-sql-floor" "$@"
