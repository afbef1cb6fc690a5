"""The benchmark program (bench/) at its `--quick` scale, so it cannot rot: it must complete
against real ClickHouse and Redis, write its files, and find every path agreeing on every
answer. Its figures are not checked here: speed is shown by the full run, never by tests."""

import json
import subprocess
import sys
from pathlib import Path

from conftest import REPO, sluice_bin


def test_quick_benchmark_completes_and_writes_its_files(tmp_path):
    floor = Path(sluice_bin()).parent / "flight-sql-floor"
    assert floor.exists(), "cargo build --workspace --bins builds the floor server"
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "sluice_bench.py"), "--quick", "--sluice",
         sluice_bin(), "--floor", str(floor), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=900,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    for name in ("results.json", "results.md", "latency.png", "throughput.png", "memory.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["latency"]["mismatches"] == []
    assert {q["key"] for q in results["latency"]["questions"]} >= {
        "top_artist_year", "first_stream", "never_played", "week_rows", "analyst_genres_year"}
