"""Bulk export through Sluice against ClickHouse's own output for the same rows, in rows/s,
on each ClickHouse the tests cover: the real 18.16 server (Sluice reads `Native`, the only
format it has for Sluice) and ClickHouse 26.9's engine behind the test front
(tests/servers/chdb_front.py; Sluice reads `ArrowStream`, and `Native` when forced).

    python bench/bulk_export.py --sluice target/release/sluice [--users 40 --years 4]

Each version gets a private server loaded by `sluice load` with no Redis (every event in
ClickHouse), then `sluice serve --config` as a deployment runs it. A pass is the analyst
exporting every event of `--listeners` listeners through ADBC (Arrow batches, counted), then
the same rows asked of ClickHouse directly in the format Sluice read them in, read off the
socket to the last byte. The first pass warms caches and is not counted; the medians of the
rest are printed and written to --out. The 26.9 front is a stand-in transport (Python, one
query at a time): both sides of that comparison go through it. Beside each median it
prints the CPU seconds the ClickHouse server, the gateway and the client (this process) spent
on each path: on two cores shared by the three, they say where the time goes.
"""

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "tests" / "servers"))
from sluice_bench import (  # noqa: E402
    ClickHouseHttp, Gateway, Process, export_passes, log, principals, run)
from clickhouse import ClickHouse  # noqa: E402
from chdb_front import ChdbClickHouse  # noqa: E402

FORMATS = {"18.16": ["native"], "26.9": ["arrow_stream", "native"]}
WIRE = {"native": "Native", "arrow_stream": "ArrowStream"}
# What Sluice sends with an ArrowStream read (connectors/clickhouse/src/arrow_stream.rs),
# sent with the direct read too: the same bytes on both sides.
DIRECT_SETTINGS = {
    "native": "",
    "arrow_stream": " SETTINGS output_format_arrow_string_as_string = 1, "
                    "output_format_arrow_low_cardinality_as_dictionary = 0, "
                    "output_format_arrow_compression_method = 'none'",
}


def config(folder, url, users, result_format):
    path = folder / f"sluice-{result_format}.toml"
    path.write_text(f'[clickhouse]\nurl = "{url}"\nquery_timeout_ms = 600000\n'
                    f'result_format = "{result_format}"\n' + principals(users))
    return path


def export(args, tmp, version, server, data):
    url = server.url
    first = config(tmp, url, args.users, "native")
    run([args.sluice, "clickhouse", "init", "--config", first])
    t = time.perf_counter()
    run([args.sluice, "load", "--config", first, "--from", data])
    log(f"{version}: loaded in {time.perf_counter() - t:.0f} s")
    ch = ClickHouseHttp(url)
    listeners = ", ".join(f"'u{i:04d}'" for i in range(1, args.listeners + 1))
    sluice_sql = f"SELECT user_id, track_uri, ts, ms_played FROM streams WHERE user_id IN ({listeners})"
    direct_sql = (f"SELECT user_id, track_uri, timestamp_ms, ms_played FROM sluice.streams "
                  f"WHERE user_id IN ({listeners})")
    [[rows]] = ch.rows(f"SELECT count() FROM sluice.streams WHERE user_id IN ({listeners})")
    out = {"rows": rows, "formats": {}}
    for fmt in FORMATS[version]:
        gw = Gateway([args.sluice, "serve", "--config", config(tmp, url, args.users, fmt),
                      "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"],
                     tmp / f"sluice-{version}-{fmt}.log")
        try:
            conn = gw.connect("analyst")
            med, cpu = export_passes(
                conn, sluice_sql,
                lambda: ch.native_bytes(direct_sql + DIRECT_SETTINGS[fmt], WIRE[fmt]), rows,
                args.passes, cpu={"clickhouse": Process(server.proc.pid), "gateway": gw.stats})
            conn.close()
        finally:
            gw.stop()
        rate = {k: rows / v for k, v in med.items()}
        out["formats"][WIRE[fmt]] = {"seconds_median": med, "rows_per_second": rate,
                                     "sluice_of_direct": rate["sluice"] / rate["direct"],
                                     "cpu_seconds_median": cpu}
        log(f"{version} {WIRE[fmt]}: {rows:,} rows; Sluice {rate['sluice']:,.0f} rows/s, "
            f"ClickHouse directly {rate['direct']:,.0f} rows/s "
            f"({100 * rate['sluice'] / rate['direct']:.0f}%)")
        for path in ("sluice", "direct"):
            c = cpu[path]
            log(f"  {path:>6}: {med[path]:.3f} s wall; CPU s: "
                + ", ".join(f"{k} {v:.3f}" for k, v in c.items())
                + f" (total {sum(c.values()):.3f})")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sluice", required=True)
    ap.add_argument("--users", type=int, default=40)
    ap.add_argument("--years", type=int, default=4)
    ap.add_argument("--artists", type=int, default=500)
    ap.add_argument("--listeners", type=int, default=20, help="listeners exported")
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--versions", default="18.16,26.9")
    ap.add_argument("--out", type=Path, default=BENCH / "results" / "bulk_export.json")
    args = ap.parse_args()
    results = {"when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "scale": {"users": args.users, "years": args.years, "listeners": args.listeners,
                         "passes": args.passes},
               "versions": {}}
    with tempfile.TemporaryDirectory(prefix="sluice-bulk-") as tmp:
        tmp = Path(tmp)
        end = dt.datetime.now(dt.timezone.utc).date()
        data = tmp / "data"
        run([args.sluice, "generate", "--users", args.users, "--years", args.years,
             "--artists", args.artists, "--end", end.isoformat(), "--out", data])
        for version in args.versions.split(","):
            folder = tmp / version
            folder.mkdir()
            server = (ClickHouse(folder / "clickhouse") if version == "18.16"
                      else ChdbClickHouse(folder / "chdb"))
            server.start()
            try:
                results["versions"][version] = export(args, folder, version, server, data)
            finally:
                server.stop()
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
