"""Hot-window latency: the same questions about the last days of a listener, asked through
Sluice (Flight SQL over the real Python ADBC driver, Redis as the hot store) and read
directly from Redis (redis-py with hiredis), interleaved in one run.

Prints p50 / p95 per question and path, and writes bench/results/hot_window.{json,md}."""

import argparse
import collections
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import adbc_driver_flightsql.dbapi as flight_sql
import redis

RESULTS = Path(__file__).resolve().parent / "results"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def stop(proc):
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)  # exactly the process this run started
        proc.wait(timeout=30)


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sluice", required=True, help="the sluice binary")
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--years", type=int, default=1)
    ap.add_argument("--listeners", type=int, default=20, help="listeners sampled")
    ap.add_argument("--passes", type=int, default=30)
    args = ap.parse_args()

    end = dt.datetime.now(dt.timezone.utc).date()
    since = dt.datetime.combine(end - dt.timedelta(days=7), dt.time(), tzinfo=dt.timezone.utc)
    since_ms = int(since.timestamp() * 1000)
    since_sql = since.strftime("%Y-%m-%dT%H:%M:%SZ")

    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        t = time.time()
        subprocess.run([args.sluice, "generate", "--users", str(args.users), "--years",
                        str(args.years), "--end", end.isoformat(), "--out", str(data)],
                       check=True, capture_output=True)
        print(f"generated {args.users} listeners x {args.years} years in {time.time() - t:.1f}s")

        port = free_port()
        redis_proc = subprocess.Popen(
            [shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(tmp)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sluice = None
        try:
            wait_port(port)
            config = tmp / "sluice.toml"
            config.write_text(f'[redis]\nurl = "redis://127.0.0.1:{port}/"\n')
            out = subprocess.run([args.sluice, "load", "--config", str(config), "--from",
                                  str(data)], check=True, capture_output=True, text=True)
            print(out.stdout.strip())
            log = open(tmp / "sluice.log", "w")
            sluice = subprocess.Popen(
                [args.sluice, "serve", "--config", str(config), "--data", str(data),
                 "--listen", "127.0.0.1:0"],
                stdout=subprocess.PIPE, stderr=log, text=True,
                env={**os.environ, "SLUICE_LOG": "warn"})
            address = None
            for line in sluice.stdout:
                m = re.search(r"Flight SQL: grpc://(\S+)", line)
                if m:
                    address = m.group(1)
                    break
            assert address, "sluice did not start"
            results = run(args, address, port, since_ms, since_sql)
        finally:
            if sluice is not None:
                stop(sluice)
            stop(redis_proc)

    report(args, results)


def run(args, address, port, since_ms, since_sql):
    direct = redis.Redis(host="127.0.0.1", port=port)
    listeners = [f"u{i:04d}" for i in range(1, args.users + 1)][:: max(1, args.users // args.listeners)]
    listeners = listeners[: args.listeners]

    def key(user):
        return f"sluice:{{{user}}}:events"

    def count_direct(user):
        return direct.zcount(key(user), since_ms, "+inf")

    def rows_direct(user):
        members = direct.zrangebyscore(key(user), since_ms, "+inf")
        return [m.split(b"|") for m in members]

    def top_direct(user):
        plays = collections.Counter(m.split(b"|")[1] for m in
                                    direct.zrangebyscore(key(user), since_ms, "+inf"))
        return sorted(plays.items(), key=lambda kv: (-kv[1], kv[0]))[:5]

    def last_direct(user):
        return direct.zrange(key(user), -1, -1, withscores=True)

    questions = {
        "plays in the last 7 days (count)": (
            f"SELECT count(*) FROM streams WHERE ts >= '{since_sql}'", count_direct),
        "plays in the last 7 days (rows)": (
            f"SELECT track_uri, ts, ms_played FROM streams WHERE ts >= '{since_sql}'",
            rows_direct),
        "most played this week (top 5)": (
            f"SELECT track_uri, count(*) AS plays FROM streams WHERE ts >= '{since_sql}' "
            "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5", top_direct),
        "last played track": (
            "SELECT track_uri, ts FROM streams ORDER BY ts DESC LIMIT 1", last_direct),
    }
    conns = {u: flight_sql.connect(f"grpc://{address}",
                                   db_kwargs={"username": u, "password": u}, autocommit=True)
             for u in listeners}
    cursors = {u: c.cursor() for u, c in conns.items()}
    timings = {q: {"sluice": [], "redis": []} for q in questions}
    rows_seen = {q: [] for q in questions}
    errors = 0
    try:
        # One warm-up pass, then the measured ones, the two paths interleaved.
        for p in range(args.passes + 1):
            for user in listeners:
                for q, (sql, read) in questions.items():
                    t0 = time.perf_counter()
                    try:
                        cur = cursors[user]
                        cur.execute(sql)
                        table = cur.fetch_arrow_table()
                    except Exception:  # noqa: BLE001 - counted, the run goes on
                        errors += 1
                        continue
                    t1 = time.perf_counter()
                    answer = read(user)
                    t2 = time.perf_counter()
                    if p == 0:
                        if q.endswith("(count)"):
                            assert table.column(0)[0].as_py() == answer, (q, user)
                        if q.endswith("(rows)"):
                            assert table.num_rows == len(answer), (q, user)
                        continue
                    timings[q]["sluice"].append((t1 - t0) * 1e3)
                    timings[q]["redis"].append((t2 - t1) * 1e3)
                    rows_seen[q].append(table.num_rows)
    finally:
        for c in cursors.values():
            c.close()
        for c in conns.values():
            c.close()
    out = []
    for q in questions:
        s, r = timings[q]["sluice"], timings[q]["redis"]
        out.append({
            "question": q,
            "runs": len(s),
            "rows_median": statistics.median(rows_seen[q]) if rows_seen[q] else 0,
            "sluice_ms": {"p50": pct(s, 50), "p95": pct(s, 95)},
            "redis_ms": {"p50": pct(r, 50), "p95": pct(r, 95)},
        })
    return {"errors": errors, "questions": out}


def report(args, results):
    meta = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "users": args.users, "listeners": args.listeners, "passes": args.passes,
    }
    lines = [
        "| question | rows | Sluice p50 / p95 (ms) | direct Redis p50 / p95 (ms) | p50 ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for q in results["questions"]:
        s, r = q["sluice_ms"], q["redis_ms"]
        lines.append(f"| {q['question']} | {q['rows_median']:.0f} | {s['p50']:.2f} / {s['p95']:.2f}"
                     f" | {r['p50']:.3f} / {r['p95']:.3f} | {s['p50'] / r['p50']:.1f}x |")
    table = "\n".join(lines)
    print()
    print(f"hot window, {args.listeners} listeners x {args.passes} passes, "
          f"{results['errors']} errors ({meta['date']}, {meta['machine']})")
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "hot_window.json").write_text(json.dumps({**meta, **results}, indent=2) + "\n")
    (RESULTS / "hot_window.md").write_text(
        f"Hot window ({meta['date']}, {meta['machine']}; {args.users} listeners generated, "
        f"{args.listeners} sampled x {args.passes} passes; {results['errors']} errors)\n\n"
        f"{table}\n")


if __name__ == "__main__":
    main()
