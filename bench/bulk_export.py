"""Bulk export: millions of rows of `streams` fetched through Sluice (Flight SQL over the real
Python ADBC driver, ClickHouse as the cold store) and directly from ClickHouse over HTTP in
`Native` format, alternately, in one run, on the same private Debian clickhouse-server.

Prints rows/s per path and the ratio, and writes bench/results/bulk_export.{json,md}."""

import argparse
import datetime as dt
import json
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import adbc_driver_flightsql.dbapi as flight_sql

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(REPO / "tests" / "servers"))
from clickhouse import ClickHouse  # noqa: E402


def run(*args):
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True)


def direct_native(url, sql):
    """The whole `Native` response of `sql`, read off the socket; returns bytes read."""
    req = urllib.request.Request(f"{url}/?database=sluice", data=(sql + " FORMAT Native").encode())
    n = 0
    with urllib.request.urlopen(req, timeout=600) as r:
        while chunk := r.read(1 << 20):
            n += len(chunk)
    return n


def through_sluice(uri, sql):
    with flight_sql.connect(uri, db_kwargs={"username": "analyst", "password": "analyst"},
                            autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(sql)
        reader = cur.fetch_record_batch()
        return sum(b.num_rows for b in reader)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sluice", required=True, help="the sluice binary")
    ap.add_argument("--users", type=int, default=30)
    ap.add_argument("--years", type=int, default=10)
    ap.add_argument("--passes", type=int, default=3)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        end = dt.datetime.now(dt.timezone.utc).date()
        run(args.sluice, "generate", "--users", args.users, "--years", args.years,
            "--artists", 2000, "--end", end.isoformat(), "--out", data)
        server = ClickHouse(tmp / "clickhouse").start()
        gateway = None
        try:
            config = tmp / "sluice.toml"
            config.write_text(f'[clickhouse]\nurl = "{server.url}"\nquery_timeout_ms = 600000\n')
            run(args.sluice, "clickhouse", "init", "--config", config)
            loaded = run(args.sluice, "load", "--config", config, "--from", data).stdout.strip()
            print(loaded, flush=True)
            rows = int(server.query("SELECT count() FROM sluice.streams").strip())
            log = open(tmp / "sluice.log", "w")
            gateway = subprocess.Popen(
                [args.sluice, "serve", "--config", config, "--data", data, "--listen", "127.0.0.1:0"],
                stdout=subprocess.PIPE, stderr=log, text=True)
            uri = None
            for line in gateway.stdout:
                m = re.search(r"Flight SQL: (grpc://\S+)", line)
                if m:
                    uri = m.group(1)
                    break
            assert uri, "sluice did not start"
            w = dt.datetime.combine(end - dt.timedelta(days=7), dt.time(), tzinfo=dt.timezone.utc)
            sluice_sql = ("SELECT user_id, track_uri, ts, ms_played FROM streams "
                          f"WHERE ts < '{w.strftime('%Y-%m-%dT%H:%M:%SZ')}'")
            direct_sql = "SELECT user_id, track_uri, timestamp_ms, ms_played FROM streams"
            times = {"sluice": [], "direct": []}
            for i in range(args.passes + 1):  # the first pass warms caches and is not counted
                t = time.perf_counter()
                got = through_sluice(uri, sluice_sql)
                ts = time.perf_counter() - t
                t = time.perf_counter()
                direct_native(server.url, direct_sql)
                td = time.perf_counter() - t
                assert got == rows, (got, rows)
                if i:
                    times["sluice"].append(ts)
                    times["direct"].append(td)
                print(f"pass {i}: sluice {ts:.2f}s, direct Native {td:.2f}s", flush=True)
        finally:
            if gateway is not None and gateway.poll() is None:
                gateway.terminate()
                gateway.wait(timeout=30)
            server.stop()

    med = {k: statistics.median(v) for k, v in times.items()}
    rate = {k: rows / v for k, v in med.items()}
    result = {
        "benchmark": "bulk_export",
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.node()}",
        "clickhouse": "Debian clickhouse-server 18.16",
        "rows": rows,
        "passes": args.passes,
        "seconds_median": med,
        "rows_per_second": rate,
        "sluice_over_direct": rate["sluice"] / rate["direct"],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bulk_export.json").write_text(json.dumps(result, indent=2) + "\n")
    md = (f"Bulk export of {rows:,} rows ({args.users} listeners x {args.years} years), median of "
          f"{args.passes} passes\n\n| path | seconds | rows/s |\n|---|---:|---:|\n"
          f"| Sluice (ADBC, Arrow batches) | {med['sluice']:.2f} | {rate['sluice']:,.0f} |\n"
          f"| ClickHouse HTTP `Native` (bytes read) | {med['direct']:.2f} | {rate['direct']:,.0f} |\n"
          f"\nSluice / direct: {result['sluice_over_direct']:.2f}\n")
    (RESULTS / "bulk_export.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
