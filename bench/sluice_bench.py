"""Sluice against the best direct reads, DuckDB and its own raw route, in one run.

Generates a dataset (default 200 listeners x 10 years), loads it into a private ClickHouse
(Debian's clickhouse-server) and Redis (started like the tests start them, on free loopback
ports, data in a temporary folder, stopped by process id), starts Sluice on them and then:

1. latency: each seed question for a sample of listeners, through Sluice (`route = 'auto'`),
   Sluice (`route = 'raw'`), the best hand-written direct read (ClickHouse over HTTP on the
   best table, or Redis for the hot window) and DuckDB over the same Parquet files, interleaved;
   every path's answer is checked against the others first;
2. the floor: `SELECT 1` through Sluice and through a trivial Flight SQL server;
3. throughput of a mixed agent workload at 1, 8 and 32 concurrent clients;
4. bulk export through Sluice against ClickHouse's `Native` format;
5. a soak at 32 clients (errors, resident memory), and the same workload on a Sluice built
   with the system allocator (resident memory, jemalloc against glibc).

Writes results.json, results.md and charts (PNG) to the results folder.

    ./bench/run.sh                # the default scale, results in bench/results
    ./bench/run.sh --quick        # a minute-long smoke run (the test suite runs it)
"""

import argparse
import contextlib
import datetime as dt
import http.client
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
import urllib.parse
import urllib.request
from pathlib import Path

import adbc_driver_flightsql.dbapi as flight_sql
import duckdb
import redis

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "tests" / "servers"))
import questions as Q  # noqa: E402
import report  # noqa: E402
from clickhouse import ClickHouse  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def stop(proc):
    """Stops exactly the process this run started."""
    if proc is not None and proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def pct(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def summary(values):
    return {"n": len(values), "p50": pct(values, 50), "p95": pct(values, 95),
            "p99": pct(values, 99)}


class Process:
    """CPU seconds and resident bytes of one running process, from /proc."""

    def __init__(self, pid):
        self.pid = pid

    def cpu(self):
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime

    def minor_faults(self):
        with open(f"/proc/{self.pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[7])

    def rss(self):
        with open(f"/proc/{self.pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE


class Sampler(threading.Thread):
    """Resident memory of a process every `every` seconds, as (seconds since start, bytes)."""

    def __init__(self, proc: Process, every=0.5):
        super().__init__(daemon=True)
        self.proc, self.every = proc, every
        self.samples = []
        self.halt = threading.Event()
        self.t0 = time.perf_counter()

    def run(self):
        while not self.halt.is_set():
            try:
                self.samples.append((time.perf_counter() - self.t0, self.proc.rss()))
            except OSError:
                return
            self.halt.wait(self.every)

    def finish(self):
        self.halt.set()
        self.join()
        return self.samples


class Gateway:
    """One `sluice serve` (or the floor server), started on a free port and stopped by pid."""

    def __init__(self, argv, log_path, env=None):
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     env={**os.environ, "SLUICE_LOG": os.environ.get("SLUICE_LOG", "warn"),
                                          **(env or {})})
        self.uri = self.metrics_url = None
        for line in self.proc.stdout:
            m = re.search(r"Metrics: (http://\S+)", line)
            if m:
                self.metrics_url = m.group(1)
            m = re.search(r"Flight SQL: (grpc://\S+)", line)
            if m:
                self.uri = m.group(1)
                break
        if not self.uri:
            stop(self.proc)
            raise RuntimeError(f"{argv[0]} did not start; see {log_path}")
        # Keep reading stdout so the process never blocks on a full pipe.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        self.stats = Process(self.proc.pid)

    def connect(self, user=None, route=None):
        kwargs = {"username": user, "password": user} if user else {}
        conn = flight_sql.connect(self.uri, db_kwargs=kwargs, autocommit=True)
        if route:
            with conn.cursor() as cur:
                cur.execute(f"SET sluice.route = '{route}'")
        return conn

    def plan_cache_counts(self):
        """The plan cache metrics (`sluice_*plan_cache_total`), one line, or '' without them."""
        if not self.metrics_url:
            return ""
        with urllib.request.urlopen(self.metrics_url, timeout=10) as r:
            text = r.read().decode()
        return " ".join(line.replace("sluice_", "").replace("_total", "")
                        for line in text.splitlines()
                        if "plan_cache_total{" in line and not line.startswith("#"))

    def stop(self):
        stop(self.proc)
        self.log.close()


def query_arrow(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table()


class ClickHouseHttp:
    """The best direct client: one kept-alive HTTP connection, JSONCompact answers."""

    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
        self.path = "/?" + urllib.parse.urlencode(
            {"output_format_json_quote_64bit_integers": 0})

    def post(self, path, body):
        """The response to one POST; a kept-alive connection the server has closed since
        (ClickHouse closes idle ones after a few seconds) is opened again once."""
        for attempt in (1, 2):
            try:
                self.conn.request("POST", path, body=body)
                return self.conn.getresponse()
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                self.conn.close()
                if attempt == 2:
                    raise

    def rows(self, sql):
        r = self.post(self.path, (sql + " FORMAT JSONCompact").encode())
        body = r.read()
        if r.status != 200:
            raise RuntimeError(f"ClickHouse: {body.decode()[:300]}")
        return json.loads(body)["data"]

    def execute(self, sql, body=b""):
        r = self.post("/?" + urllib.parse.urlencode({"query": sql}), body)
        out = r.read()
        if r.status != 200:
            raise RuntimeError(f"ClickHouse: {out.decode()[:300]}")

    def native_bytes(self, sql, wire="Native"):
        """The whole response of `sql` in `wire` (`Native` unless told), read off the socket;
        returns bytes read."""
        r = self.post("/", f"{sql} FORMAT {wire}".encode())
        if r.status != 200:
            raise RuntimeError(f"ClickHouse: {r.read().decode()[:300]}")
        n = 0
        while chunk := r.read(1 << 20):
            n += len(chunk)
        return n


def run(cmd, **kw):
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True, **kw)


# ---------------------------------------------------------------------------------- setup


def prepare(args, tmp, results):
    data = tmp / "data"
    end = dt.datetime.now(dt.timezone.utc).date()
    t = time.perf_counter()
    run([args.sluice, "generate", "--users", args.users, "--years", args.years, "--artists",
         args.artists, "--end", end.isoformat(), "--out", data])
    results["setup"]["generate_s"] = time.perf_counter() - t
    log(f"generated {args.users} listeners x {args.years} years "
        f"in {results['setup']['generate_s']:.0f} s")
    return data, end


def open_duck(data):
    duck = duckdb.connect()
    duck.execute("SET TimeZone = 'UTC'")
    duck.execute(f"CREATE VIEW streams AS SELECT * FROM read_parquet('{data}/streams/*.parquet')")
    for t in ("tracks", "artists", "albums"):
        duck.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{data}/{t}.parquet')")
    return duck


def load(args, tmp, data, clickhouse, redis_port, w, duck, results):
    config = tmp / "sluice.toml"
    config.write_text(
        f'[clickhouse]\nurl = "{clickhouse.url}"\nquery_timeout_ms = 600000\n'
        f'[redis]\nurl = "redis://127.0.0.1:{redis_port}/"\n' + principals(args.users))
    run([args.sluice, "clickhouse", "init", "--config", config])
    t = time.perf_counter()
    out = run([args.sluice, "load", "--config", config, "--from", data]).stdout.strip()
    results["setup"]["load_s"] = time.perf_counter() - t
    log(out.replace("\n", "; "))
    # The direct path's own tables: every event (the cold ones copied inside ClickHouse, the
    # hot ones from the Parquet files) and a first/last rollup over them.
    ch = ClickHouseHttp(clickhouse.url)
    t = time.perf_counter()
    ch.execute("CREATE DATABASE IF NOT EXISTS direct")
    ch.execute("CREATE TABLE direct.streams AS sluice.streams")
    ch.execute("INSERT INTO direct.streams SELECT * FROM sluice.streams")
    hot = duck.sql(f"""SELECT user_id, track_uri, epoch_ms(ts), ms_played FROM streams
                       WHERE ts >= TIMESTAMPTZ '{w.isoformat()}'""").fetchall()
    tsv = "".join(f"{u}\t{t_}\t{ts}\t{m}\n" for u, t_, ts, m in hot).encode()
    ch.execute("INSERT INTO direct.streams FORMAT TabSeparated", tsv)
    ch.execute("CREATE TABLE direct.track_first_last_state AS sluice.track_first_last_state")
    ch.execute("INSERT INTO direct.track_first_last_state SELECT user_id, track_uri, "
               "minState(timestamp_ms), maxState(timestamp_ms), countState() "
               "FROM direct.streams GROUP BY user_id, track_uri")
    results["setup"]["direct_tables_s"] = time.perf_counter() - t
    [[events]] = ch.rows("SELECT count() FROM direct.streams")
    results["setup"]["events"] = events
    log(f"loaded in {results['setup']['load_s']:.0f} s; direct tables "
        f"({events:,} events) in {results['setup']['direct_tables_s']:.0f} s")
    merges, waited = settle(ch)
    results["setup"]["merges_after_load"] = merges
    results["setup"]["merge_wait_s"] = waited
    log(f"ClickHouse: {merges} merges running after the load; settled in {waited:.0f} s")
    return config


def settle(ch, limit_s=600):
    """Waits until ClickHouse runs no merges: a load leaves many parts, and merging them
    would share the cores with the timed phases. Returns the merges seen first and the wait."""
    t = time.perf_counter()
    first = None
    while time.perf_counter() - t < limit_s:
        [[running]] = ch.rows("SELECT count() FROM system.merges")
        first = running if first is None else first
        if running == 0:
            break
        time.sleep(1)
    return first, time.perf_counter() - t


def principals(users):
    """`[[principal]]` entries as a deployment names them (password = name, as the embedded
    default's demo logins): every listener, an analyst and an admin."""
    out = ""
    for i in range(1, users + 1):
        out += (f'[[principal]]\nname = "u{i:04d}"\npassword = "u{i:04d}"\nrole = "listener"\n'
                f'user_id = "u{i:04d}"\n')
    for name in ("analyst", "admin"):
        out += f'[[principal]]\nname = "{name}"\npassword = "{name}"\nrole = "{name}"\n'
    return out


def start_sluice(binary, config, tmp, name):
    """`sluice serve` as a deployment runs it: everything from the configured sources."""
    return Gateway([binary, "serve", "--config", config,
                    "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"],
                   tmp / f"{name}.log")


# ---------------------------------------------------------------------------------- phases


def latency(args, gw, floor_gw, ch, r, duck, contexts, analyst_ctx):
    """Every question on every path, interleaved in a rotating order; answers checked first.
    Hot-window questions also time `SELECT 1` on the floor server in the same rotation: their
    target (floor + Redis + 1 ms) is read against a floor measured in the same conditions,
    where each server sits idle while the other paths run."""
    log("latency: checking that every path gives the same answer")
    conns = {}
    for c in contexts:
        conns[(c.user, "auto")] = gw.connect(c.user, "auto")
        conns[(c.user, "raw")] = gw.connect(c.user, "raw")
    conns[("analyst", "auto")] = gw.connect("analyst", "auto")
    conns[("analyst", "raw")] = gw.connect("analyst", "raw")
    floor_conn = floor_gw.connect()

    def paths(q, c):
        who = "analyst" if q.analyst else c.user
        out = {
            "sluice_auto": lambda: Q.arrow_rows(query_arrow(conns[(who, "auto")], q.sluice(c))),
            "sluice_raw": lambda: Q.arrow_rows(query_arrow(conns[(who, "raw")], q.sluice(c))),
            "clickhouse": lambda: Q.rows_of(ch.rows(q.clickhouse(c))),
            "duckdb": lambda: Q.arrow_rows(duck.sql(q.duck(c)).to_arrow_table()),
        }
        if q.redis:
            out["redis"] = lambda: Q.rows_of(q.redis(r, c))
            out["floor"] = lambda: Q.arrow_rows(query_arrow(floor_conn, "SELECT 1"))
        return out

    timings = {q.key: {} for q in Q.QUESTIONS}
    cpu = {q.key: {"sluice_auto": [], "sluice_raw": []} for q in Q.QUESTIONS}
    mismatches = []
    rows = {}
    cases = [(q, analyst_ctx if q.analyst else c) for c in contexts for q in Q.QUESTIONS
             if not q.analyst] + [(q, analyst_ctx) for q in Q.QUESTIONS if q.analyst]
    for q, c in cases:
        answers = {name: read() for name, read in paths(q, c).items()}
        want = answers["duckdb"]
        rows.setdefault(q.key, []).append(len(want))
        for name, got in answers.items():
            if got != want and name != "floor":
                mismatches.append({"question": q.key, "user": c.user, "path": name,
                                   "got": repr(got[:3]), "want": repr(want[:3])})
    if mismatches:
        log(f"latency: {len(mismatches)} answers differ, e.g. {mismatches[0]}")
    log(f"latency: timing {len(contexts)} listeners x {args.passes} passes")
    for p in range(args.passes):
        for i, (q, c) in enumerate(cases):
            if q.analyst and p >= args.analyst_passes:
                continue
            names = list(paths(q, c).items())
            k = (p + i) % len(names)
            for name, read in names[k:] + names[:k]:
                sluice = name.startswith("sluice")
                c0 = gw.stats.cpu() if sluice else 0
                t0 = time.perf_counter()
                read()
                elapsed = (time.perf_counter() - t0) * 1e3
                if sluice:
                    cpu[q.key][name].append((gw.stats.cpu() - c0) * 1e3)
                timings[q.key].setdefault(name, []).append(elapsed)
    for conn in [*conns.values(), floor_conn]:
        conn.close()
    out = []
    for q in Q.QUESTIONS:
        t = timings[q.key]
        direct = [n for n in ("clickhouse", "redis") if n in t]
        best = min(direct, key=lambda n: statistics.median(t[n]))
        out.append({
            "key": q.key, "title": q.title, "analyst": q.analyst, "long_range": q.long_range,
            "hot": q.hot, "rows_median": statistics.median(rows[q.key]),
            "ms": {name: summary(v) for name, v in t.items()},
            "best_direct": best,
            "gateway_cpu_ms": {name: statistics.fmean(v) for name, v in cpu[q.key].items()},
        })
    return {"questions": out, "mismatches": mismatches}


def profile(args, gw, ch, contexts, analyst_ctx):
    """A few questions asked back to back by one client, for a profiler to watch."""
    keys = args.profile.split(",")
    questions = [q for q in Q.QUESTIONS if q.key in keys]
    for sql in args.profile_sql or []:  # ad-hoc statements, asked by each sampled listener
        questions.append(Q.Question(f"sql{len(questions)}", sql, False, False, False,
                                    lambda c, sql=sql: sql, None, None))
    if len(questions) != len(keys) + len(args.profile_sql or []):
        raise SystemExit(f"--profile: known questions are {[q.key for q in Q.QUESTIONS]}")
    conns = {c.user: gw.connect(c.user, "auto") for c in contexts}
    conns["analyst"] = gw.connect("analyst", "auto")
    cases = [(q, analyst_ctx if q.analyst else c) for q in questions for c in contexts]
    for q, c in cases:  # warm up: connections, plans, ClickHouse's caches
        query_arrow(conns[c.user], q.sluice(c))
    for q in questions:
        c = analyst_ctx if q.analyst else contexts[0]
        plan = query_arrow(conns[c.user], "EXPLAIN " + q.sluice(c)).to_pydict()
        for kind, text in zip(*plan.values()):
            if kind == "physical_plan":
                log(f"profile: {q.key}: physical plan\n{text}")
                # What ClickHouse alone takes for the SQL Sluice sends it (kept-alive HTTP).
                for line in text.splitlines():
                    if "ClickHouseStatementExec" not in line:
                        continue
                    sql = line.split(" sql=", 1)[1].strip()
                    path = "/?" + urllib.parse.urlencode({
                        "database": "sluice", "join_use_nulls": 1,
                        "enable_optimize_predicate_expression": 1})
                    t = []
                    for _ in range(30):
                        t0 = time.perf_counter()
                        ch.post(path, (sql + " FORMAT Native").encode()).read()
                        t.append((time.perf_counter() - t0) * 1e3)
                    log(f"profile: {q.key}: ClickHouse alone p50 {statistics.median(t):.2f} ms "
                        f"for {sql[:300]}")
    with perf_recording(args, gw):
        times, execute, cpu_ms = profile_loop(args, gw, conns, questions, cases)
    for key, t in times.items():
        log(f"profile: {key}: p50 {statistics.median(t):.2f} ms over {len(t)} queries "
            f"(of which execute, until FlightInfo: {statistics.median(execute[key]):.2f} ms)")
    log(f"profile: gateway CPU {cpu_ms:.2f} ms per query")
    log(f"profile: {gw.plan_cache_counts()}")
    for conn in conns.values():
        conn.close()


def profile_loop(args, gw, conns, questions, cases):
    times = {q.key: [] for q in questions}
    execute = {q.key: [] for q in questions}
    cpu0, faults0 = gw.stats.cpu(), gw.stats.minor_faults()
    stop_at, i = time.perf_counter() + args.profile_seconds, 0
    while time.perf_counter() < stop_at:
        q, c = cases[i % len(cases)]
        i += 1
        if args.profile_gap_ms:
            time.sleep(args.profile_gap_ms / 1e3)
        t0 = time.perf_counter()
        with conns[c.user].cursor() as cur:
            cur.execute(q.sluice(c))  # prepare (plans, starts the query), GetFlightInfo (claims it)
            t1 = time.perf_counter()
            cur.fetch_arrow_table()  # DoGet: streams its result
        times[q.key].append((time.perf_counter() - t0) * 1e3)
        execute[q.key].append((t1 - t0) * 1e3)
    log(f"profile: gateway minor page faults {(gw.stats.minor_faults() - faults0) / max(i, 1):.0f} "
        "per query")
    return times, execute, (gw.stats.cpu() - cpu0) * 1e3 / max(i, 1)


@contextlib.contextmanager
def perf_recording(args, gw):
    """`perf record` of the gateway while the block runs, when `--perf` asks for it."""
    if not args.perf:
        yield
        return
    recorder = subprocess.Popen(
        ["perf", "record", "-F", "499", "--call-graph", "dwarf,16384", "-p", str(gw.proc.pid),
         "-o", str(args.perf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)
        recorder.wait()


def floor(args, gw, floor_gw):
    """`SELECT 1` through Sluice and through the trivial server, a new cursor per query."""
    log(f"floor: SELECT 1 x {args.floor_runs} on each server")
    sluice_conn = gw.connect("u0001")
    floor_conn = floor_gw.connect()
    times = {"sluice": [], "floor": []}
    for i in range(args.floor_runs + 20):
        for name, conn in (("sluice", sluice_conn), ("floor", floor_conn))[:: 1 if i % 2 else -1]:
            t0 = time.perf_counter()
            query_arrow(conn, "SELECT 1")
            if i >= 20:  # the first ones warm up
                times[name].append((time.perf_counter() - t0) * 1e3)
    sluice_conn.close()
    floor_conn.close()
    out = {name: summary(v) for name, v in times.items()}
    out["overhead_p50_ms"] = out["sluice"]["p50"] - out["floor"]["p50"]
    return out


def workload(gw, contexts, clients, seconds):
    """`clients` agents, each its own connection as one listener, asking random seed
    questions back to back for `seconds`. Returns counts, errors and gateway CPU."""
    stop_at = time.perf_counter() + seconds
    counts, errors, lat = [0] * clients, [0] * clients, [[] for _ in range(clients)]
    first_error = []

    def agent(i):
        c = contexts[i % len(contexts)]
        rng = random.Random(i)
        conn = gw.connect(c.user)
        try:
            while time.perf_counter() < stop_at:
                q = rng.choice(Q.LISTENER_QUESTIONS)
                t0 = time.perf_counter()
                try:
                    query_arrow(conn, q.sluice(c))
                    counts[i] += 1
                    lat[i].append((time.perf_counter() - t0) * 1e3)
                except Exception as e:  # noqa: BLE001 - counted, the run goes on
                    errors[i] += 1
                    if not first_error:
                        first_error.append(f"{q.key}: {e}")
        finally:
            conn.close()

    cpu0, t0 = gw.stats.cpu(), time.perf_counter()
    threads = [threading.Thread(target=agent, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    n = sum(counts)
    all_lat = [x for xs in lat for x in xs]
    return {"clients": clients, "seconds": wall, "queries": n, "errors": sum(errors),
            "first_error": first_error[0] if first_error else None,
            "qps": n / wall, "latency_ms": summary(all_lat),
            "gateway_cpu_ms_per_query": (gw.stats.cpu() - cpu0) * 1e3 / max(n, 1)}


def bulk_export(args, gw, ch, users, w):
    users = ", ".join(f"'{u}'" for u in users)
    sluice_sql = (f"SELECT user_id, track_uri, ts, ms_played FROM streams WHERE user_id IN "
                  f"({users}) AND ts < '{w.strftime('%Y-%m-%dT%H:%M:%SZ')}'")
    direct_sql = (f"SELECT user_id, track_uri, timestamp_ms, ms_played FROM sluice.streams "
                  f"WHERE user_id IN ({users})")
    [[rows]] = ch.rows(f"SELECT count() FROM sluice.streams WHERE user_id IN ({users})")
    log(f"bulk export: {rows:,} rows, {args.bulk_passes} passes per path")
    conn = gw.connect("analyst")
    med, _ = export_passes(conn, sluice_sql, lambda: ch.native_bytes(direct_sql), rows,
                           args.bulk_passes)
    conn.close()
    med["clickhouse_native"] = med.pop("direct")
    return {"rows": rows, "passes": args.bulk_passes, "seconds_median": med,
            "rows_per_second": {k: rows / v for k, v in med.items()},
            "sluice_over_direct": med["clickhouse_native"] / med["sluice"]}


def export_passes(conn, sluice_sql, direct, rows, passes, cpu=None):
    """Median seconds of a bulk export through Sluice (`sluice_sql` on `conn`, every batch
    counted) and of the same rows read directly (`direct()`), over `passes` passes after one
    that warms caches and is not counted; and the median CPU seconds this client and each of
    `cpu` (name -> Process: the ClickHouse server, the gateway) spent on each path, as
    {"sluice": {...}, "direct": {...}}."""
    times = {"sluice": [], "direct": []}
    spent = {"sluice": [], "direct": []}

    def cpu_now():
        now = {name: p.cpu() for name, p in (cpu or {}).items()}
        me = resource.getrusage(resource.RUSAGE_SELF)
        now["client"] = me.ru_utime + me.ru_stime
        return now

    def since(before):
        return {k: v - before[k] for k, v in cpu_now().items()}

    for i in range(passes + 1):
        c = cpu_now()
        t = time.perf_counter()
        with conn.cursor() as cur:
            cur.execute(sluice_sql)
            got = sum(b.num_rows for b in cur.fetch_record_batch())
        ts = time.perf_counter() - t
        cs = since(c)
        c = cpu_now()
        t = time.perf_counter()
        direct()
        td = time.perf_counter() - t
        cd = since(c)
        if got != rows:
            raise RuntimeError(f"bulk export: Sluice sent {got} rows, ClickHouse holds {rows}")
        if i:
            times["sluice"].append(ts)
            times["direct"].append(td)
            spent["sluice"].append(cs)
            spent["direct"].append(cd)
    med = {k: statistics.median(v) for k, v in times.items()}
    cpu_med = {path: {name: statistics.median(p[name] for p in runs) for name in runs[0]}
               for path, runs in spent.items()}
    return med, cpu_med


def soak_and_allocators(args, tmp, config, data, contexts):
    """The 32-client workload on a fresh jemalloc Sluice for the soak, then on a fresh
    system-allocator Sluice for `alloc_seconds`; resident memory sampled all along."""
    out = {}
    runs = [("jemalloc", args.sluice, args.soak_seconds)]
    if args.sluice_system_alloc:
        runs.append(("system", args.sluice_system_alloc, args.alloc_seconds))
    for name, binary, seconds in runs:
        log(f"memory: {name} allocator, {args.clients_max} clients for {seconds:.0f} s")
        gw = start_sluice(binary, config, tmp, f"sluice-{name}")
        try:
            sampler = Sampler(gw.stats)
            sampler.start()
            idle = gw.stats.rss()
            result = workload(gw, contexts, args.clients_max, seconds)
            time.sleep(1)
            samples = sampler.finish()
            result.update(rss_idle=idle, rss_after=gw.stats.rss(), rss_samples=samples)
            out[name] = result
        finally:
            gw.stop()
    return out


# ---------------------------------------------------------------------------------- main


@contextlib.contextmanager
def loaded_stack(args, tmp, results):
    """The dataset generated (`args.users` x `args.years`), DuckDB over it, and a private
    ClickHouse and Redis loaded with it by `sluice load`, as a deployment has them; yields
    them with the `args.listeners` listeners sampled (and their question contexts), and
    stops exactly the servers it started."""
    data, end = prepare(args, tmp, results)
    w = dt.datetime.combine(end - dt.timedelta(days=7), dt.time(), tzinfo=dt.timezone.utc)
    duck = open_duck(data)
    clickhouse = ClickHouse(tmp / "clickhouse").start()
    redis_port = free_port()
    redis_proc = subprocess.Popen(
        [shutil.which("redis-server"), "--port", str(redis_port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", str(tmp)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(redis_port)
        config = load(args, tmp, data, clickhouse, redis_port, w, duck, results)
        users = [f"u{i:04d}" for i in range(1, args.users + 1)]
        sample = users[:: max(1, args.users // args.listeners)][: args.listeners]
        contexts = [Q.pick_context(duck, u, end, w) for u in sample]
        yield types.SimpleNamespace(data=data, end=end, w=w, duck=duck, clickhouse=clickhouse,
                                    redis_port=redis_port, config=config, users=users,
                                    contexts=contexts)
    finally:
        stop(redis_proc)
        clickhouse.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sluice", required=True, help="the sluice binary (jemalloc)")
    ap.add_argument("--sluice-system-alloc", help="sluice built --no-default-features")
    ap.add_argument("--floor", required=True, help="the flight-sql-floor binary")
    ap.add_argument("--out", type=Path, default=BENCH / "results")
    ap.add_argument("--quick", action="store_true", help="a small smoke-test scale")
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--years", type=int, default=10)
    ap.add_argument("--artists", type=int, default=2000, help="about 25 tracks each")
    ap.add_argument("--listeners", type=int, default=20, help="listeners sampled")
    ap.add_argument("--passes", type=int, default=10)
    ap.add_argument("--analyst-passes", type=int, default=10)
    ap.add_argument("--floor-runs", type=int, default=500)
    ap.add_argument("--workload-seconds", type=float, default=20)
    ap.add_argument("--clients-max", type=int, default=32)
    ap.add_argument("--soak-seconds", type=float, default=600)
    ap.add_argument("--alloc-seconds", type=float, default=120)
    ap.add_argument("--bulk-listeners", type=int, default=20)
    ap.add_argument("--bulk-passes", type=int, default=3)
    ap.add_argument("--profile", metavar="KEY[,KEY...]",
                    help="instead of the benchmark: ask these questions (on auto, one client, "
                    "the sampled listeners in turn) for --profile-seconds and print latency and "
                    "gateway CPU per query; 'bulk': run the bulk export's passes instead; with "
                    "--perf FILE, record the gateway with perf")
    ap.add_argument("--profile-seconds", type=float, default=20)
    ap.add_argument("--profile-sql", action="append", metavar="SQL",
                    help="with --profile: also this statement, asked by each sampled listener")
    ap.add_argument("--profile-gap-ms", type=float, default=0,
                    help="with --profile: pause this long between queries (the benchmark's "
                    "interleaved passes leave the gateway idle 10-100 ms between its queries)")
    ap.add_argument("--perf", type=Path, help="perf.data to write during --profile")
    args = ap.parse_args()
    if args.quick:
        args.users, args.years, args.artists, args.listeners = 6, 2, 100, 2
        args.passes = args.analyst_passes = 2
        args.floor_runs, args.workload_seconds, args.clients_max = 20, 2, 4
        args.soak_seconds = args.alloc_seconds = 3
        args.bulk_listeners, args.bulk_passes = 2, 1
    args.out.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    results = {
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                   f"{os.sysconf('SC_PHYS_PAGES') * PAGE / 2**30:.0f} GiB",
        "clickhouse": run(["clickhouse-client", "--version"]).stdout.split()[-1].rstrip("."),
        "redis": run(["redis-server", "--version"]).stdout.split()[2],
        "duckdb": duckdb.__version__,
        "scale": {"users": args.users, "years": args.years, "artists": args.artists,
                  "listeners_sampled": args.listeners, "passes": args.passes},
        "setup": {},
    }
    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as tmp:
        tmp = Path(tmp)
        with loaded_stack(args, tmp, results) as stack:
            if not run_phases(args, tmp, results, stack):
                return
    results["total_s"] = time.perf_counter() - started
    report.write(args.out, results)
    log(f"done in {results['total_s'] / 60:.1f} min; results in {args.out}")
    print((args.out / "results.md").read_text())


def run_phases(args, tmp, results, stack):
    """The benchmark's phases over a loaded stack; False when it ran a profile instead
    (which writes no results)."""
    data, end, w, duck = stack.data, stack.end, stack.w, stack.duck
    clickhouse, redis_port, config = stack.clickhouse, stack.redis_port, stack.config
    users, contexts = stack.users, stack.contexts
    gw = floor_gw = None
    try:
        analyst_ctx = Q.Context(user="analyst", end=end, w=w)
        ch = ClickHouseHttp(clickhouse.url)
        r = redis.Redis(host="127.0.0.1", port=redis_port)

        gw = start_sluice(args.sluice, config, tmp, "sluice")
        if args.profile == "bulk":
            with perf_recording(args, gw):
                log(f"profile: {bulk_export(args, gw, ch, users[: args.bulk_listeners], w)}")
            return
        if args.profile:
            profile(args, gw, ch, contexts, analyst_ctx)
            return
        floor_gw = Gateway([args.floor, "127.0.0.1:0"], tmp / "floor.log")
        sampler = Sampler(gw.stats)
        sampler.start()
        results["latency"] = latency(args, gw, floor_gw, ch, r, duck, contexts, analyst_ctx)
        results["floor"] = floor(args, gw, floor_gw)
        results["throughput"] = []
        for clients in sorted({1, min(8, args.clients_max), args.clients_max}):
            log(f"throughput: {clients} clients for {args.workload_seconds:.0f} s")
            results["throughput"].append(
                workload(gw, contexts, clients, args.workload_seconds))
        results["bulk_export"] = bulk_export(
            args, gw, ch, users[: args.bulk_listeners], w)
        results["rss_main_run"] = sampler.finish()
        gw.stop()
        gw = None
        results["memory"] = soak_and_allocators(args, tmp, config, data, contexts)
        return True
    finally:
        for g in (gw, floor_gw):
            if g is not None:
                g.stop()


if __name__ == "__main__":
    main()
