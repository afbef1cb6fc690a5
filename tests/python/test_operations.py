"""Running Sluice as a service: metrics with the right values, readiness, graceful shutdown
on SIGTERM, admission control and the process-wide memory pool, OpenTelemetry traces over
OTLP/HTTP, and configuration from file, environment and flags in that order."""

import contextlib
import http.server
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import adbc_driver_manager
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from conftest import (ME, connect, free_port, run_in_thread, sluice_bin, start_server,
                      wait_port, wait_until)
from helpers import duck_rows, sluice_rows
from test_auth_tls_limits import MEMORY_HEAVY, has_code

# A query that keeps a core busy for a few seconds and then answers: n pairs of a cross join.
N = 80000
LONG = (f"SELECT count(*) FROM generate_series(1, {N}) a(x), generate_series(1, {N}) b(y) "
        f"WHERE x + y = {N + 1}")


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def base(server):
    return server.metrics_url.rsplit("/", 1)[0]


def sample(samples, name, **labels):
    """The value of `name{labels}` (labels in any order), 0 when absent."""
    want = set(f'{k}="{v}"' for k, v in labels.items())
    for key, value in samples.items():
        metric, _, rest = key.partition("{")
        if metric == name and set(filter(None, rest.rstrip("}").split(","))) == want:
            return value
    return 0.0


# --- metrics and health -----------------------------------------------------------------

@pytest.fixture(scope="module")
def metered(dataset_dir):
    yield from start_server(dataset_dir)


def test_metrics_count_queries_sources_and_rollups(metered, duck):
    server = metered
    before = server.metrics()
    conn = connect(server, ME)
    try:
        # Raw events of the hot window: the memory source returns exactly the listener's rows.
        hot = sluice_rows(conn, "SELECT ts FROM streams WHERE ts >= now() - INTERVAL '2' DAY")
        # A year of play counts: the daily rollup, no raw events.
        sluice_rows(conn, "SELECT count(*) FROM streams WHERE ts >= TIMESTAMP '2020-01-01' "
                          "AND ts < TIMESTAMP '2021-01-01'")
        with pytest.raises(adbc_driver_manager.Error):
            sluice_rows(conn, "SELECT nope FROM streams")
    finally:
        conn.close()
    after = server.metrics()

    def delta(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("sluice_queries_total", outcome="ok", route="hot") == 1
    assert delta("sluice_queries_total", outcome="ok", route="rollup") == 1
    assert delta("sluice_queries_total", outcome="refused", route="none") == 1
    assert delta("sluice_query_duration_seconds_count", outcome="ok", route="hot") == 1
    assert delta("sluice_query_duration_seconds_bucket", outcome="ok", route="hot",
                 le="+Inf") == 1
    assert delta("sluice_rollup_reads_total", rollup="plays_daily") == 1
    assert delta("sluice_source_scans_total", source="memory", branch="hot") == 1
    assert delta("sluice_source_rows_total", source="memory", branch="hot") == len(hot)
    assert delta("sluice_source_bytes_total", source="memory", branch="hot") > 0
    assert delta("sluice_source_duration_seconds_count", source="memory", branch="hot") == 1
    assert sample(after, "sluice_active_queries") == 0
    assert sample(after, "sluice_memory_pool_bytes") == 0
    assert sample(after, "sluice_memory_pool_limit_bytes") == 4096 * 1024 * 1024
    assert sample(after, "sluice_process_resident_memory_bytes") > 10 * 1024 * 1024
    assert sample(after, "sluice_ready") == 1
    # The hot window read holds exactly the listener's events there (DuckDB, same files).
    (expected,) = duck_rows(duck, f"SELECT count(*) FROM streams WHERE user_id = '{ME}' "
                                  "AND ts >= now() - INTERVAL 2 DAY")
    assert len(hot) == expected[0]


def test_a_statement_asked_again_reuses_its_routed_plan(metered):
    server = metered
    sql = ("SELECT track_uri, count(*) AS n FROM streams WHERE ts >= TIMESTAMP '2020-01-01' "
           "AND ts < TIMESTAMP '2021-01-01' GROUP BY track_uri ORDER BY n DESC, track_uri LIMIT 5")
    clock = "SELECT count(*) FROM streams WHERE ts >= now() - INTERVAL '400' DAY"
    conn = connect(server, ME)
    seen = []

    def planned(run):
        """(misses, hits) of the plan cache while `run` runs, and what it returned."""
        before = server.metrics()
        out = run()
        after = server.metrics()
        counts = tuple(sample(after, "sluice_plan_cache_total", outcome=o)
                       - sample(before, "sluice_plan_cache_total", outcome=o)
                       for o in ("miss", "hit"))
        seen.append(out)
        return counts

    try:
        # Planned once (CreatePreparedStatement; its GetFlightInfo takes that plan), then
        # reused by each query after it.
        assert planned(lambda: sluice_rows(conn, sql)) == (1, 0)
        assert planned(lambda: [sluice_rows(conn, sql) for _ in range(2)]) == (0, 2)
        # now() is folded when planned: planned every time.
        assert planned(lambda: [sluice_rows(conn, clock) for _ in range(2)]) == (2, 0)
        with conn.cursor() as cur:
            cur.execute("SET sluice.route = 'raw'")
        # Other settings, another plan (here: raw events, no rollup).
        assert planned(lambda: sluice_rows(conn, sql)) == (1, 0)
    finally:
        conn.close()
    first, again, _, raw = seen
    assert first and again == [first, first] and raw == first


def test_health_endpoints(metered):
    assert get(base(metered) + "/healthz") == (200, "ok\n")
    assert get(base(metered) + "/readyz") == (200, "ready\n")
    assert get(base(metered) + "/nope")[0] == 404
    probe = subprocess.run([sluice_bin(), "probe", base(metered) + "/readyz"],
                           capture_output=True, text=True, timeout=10)
    assert probe.returncode == 0 and "200" in probe.stdout


def test_active_queries_are_counted_while_they_run(metered):
    thread, outcome = run_in_thread(metered, "analyst", LONG)
    try:
        assert wait_until(lambda: sample(metered.metrics(), "sluice_active_queries") == 1)
    finally:
        thread.join(60)
    assert outcome.get("rows") == [(N,)], outcome
    assert sample(metered.metrics(), "sluice_active_queries") == 0


# --- graceful shutdown ------------------------------------------------------------------

def test_sigterm_lets_the_running_query_finish_and_refuses_new_ones(dataset_dir, tmp_path):
    (tmp_path / "sluice.toml").write_text("[server]\nshutdown_grace_secs = 60\n")
    servers = start_server(dataset_dir, "--config", str(tmp_path / "sluice.toml"))
    server = next(servers)
    try:
        thread, outcome = run_in_thread(server, "analyst", LONG)
        assert wait_until(lambda: sample(server.metrics(), "sluice_active_queries") == 1)
        os.kill(server.proc.pid, signal.SIGTERM)
        assert wait_until(lambda: get(base(server) + "/readyz")[0] == 503, timeout=5)
        conn = connect(server, ME)
        try:
            with pytest.raises(adbc_driver_manager.Error) as e:
                sluice_rows(conn, "SELECT 1")
        finally:
            conn.close()
        assert has_code(str(e.value), "UNAVAILABLE") and "shutting down" in str(e.value)
        assert server.proc.poll() is None, "the process waits for the running query"
        thread.join(60)
        assert outcome.get("rows") == [(N,)], outcome
        assert server.proc.wait(timeout=20) == 0
        log = open(server.log_path).read()
        assert "draining" in log and "drained: no query running" in log and "stopped" in log
    finally:
        servers.close()


def test_a_query_started_at_prepare_does_not_hold_the_shutdown(dataset_dir, tmp_path):
    """A statement prepared and never asked for has its query started; SIGTERM stops it
    at once (no GetFlightInfo can claim it while draining), so the process does not wait
    for the grace."""
    (tmp_path / "sluice.toml").write_text("[server]\nshutdown_grace_secs = 60\n")
    servers = start_server(dataset_dir, "--config", str(tmp_path / "sluice.toml"))
    server = next(servers)
    try:
        conn = connect(server, "analyst")
        cur = conn.cursor()
        cur.adbc_prepare(LONG)
        assert wait_until(lambda: sample(server.metrics(), "sluice_active_queries") == 1)
        started = time.time()
        os.kill(server.proc.pid, signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0
        assert time.time() - started < 10
        assert "drained: no query running" in open(server.log_path).read()
        # The server is gone: closing the statement and the connection fails, as expected.
        for handle in (cur, conn):
            with contextlib.suppress(Exception):
                handle.close()
    finally:
        servers.close()


def test_an_unclaimed_query_gives_its_place_back_without_another_statement(dataset_dir):
    """A query started by a prepare that no GetFlightInfo claims within 1 s is stopped by
    the gateway's own sweep, not only when the next statement comes."""
    servers = start_server(dataset_dir)
    server = next(servers)
    try:
        conn = connect(server, "analyst")
        try:
            cur = conn.cursor()
            cur.adbc_prepare(LONG)
            assert wait_until(lambda: sample(server.metrics(), "sluice_active_queries") == 1)
            assert wait_until(lambda: sample(server.metrics(), "sluice_active_queries") == 0,
                              timeout=5)
            assert sample(server.metrics(), "sluice_queries_total", outcome="unused",
                          route="none") == 1
            cur.close()
        finally:
            conn.close()
    finally:
        servers.close()


def test_the_grace_period_bounds_the_shutdown(dataset_dir, tmp_path):
    (tmp_path / "sluice.toml").write_text("[server]\nshutdown_grace_secs = 1\n")
    servers = start_server(dataset_dir, "--config", str(tmp_path / "sluice.toml"))
    server = next(servers)
    try:
        endless = ("SELECT count(*) FROM generate_series(1, 2000000) a(x), "
                   "generate_series(1, 2000000) b(y) WHERE x + y = 3")
        thread, outcome = run_in_thread(server, "analyst", endless)
        assert wait_until(lambda: sample(server.metrics(), "sluice_active_queries") == 1)
        started = time.time()
        os.kill(server.proc.pid, signal.SIGTERM)
        assert server.proc.wait(timeout=20) == 0
        assert time.time() - started < 10
        thread.join(30)
        assert "error" in outcome
        assert "shutdown grace over" in open(server.log_path).read()
    finally:
        servers.close()


# --- admission and memory ---------------------------------------------------------------

@pytest.fixture(scope="module")
def crowded(dataset_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("crowded")
    (folder / "sluice.toml").write_text("""
[server]
max_active_queries = 1
memory_pool_mb = 2

[limits]
query_memory_mb = 0
""")
    yield from start_server(dataset_dir, "--config", str(folder / "sluice.toml"))


def test_a_full_gateway_answers_busy(crowded):
    thread, outcome = run_in_thread(crowded, "analyst", LONG)
    try:
        assert wait_until(lambda: sample(crowded.metrics(), "sluice_active_queries") == 1)
        conn = connect(crowded, ME)
        try:
            with pytest.raises(adbc_driver_manager.Error) as e:
                sluice_rows(conn, "SELECT 1")
            error = str(e.value)
            assert has_code(error, "UNAVAILABLE") and "busy" in error, error
            assert "max_active_queries" in error
        finally:
            conn.close()
    finally:
        thread.join(60)
    assert outcome.get("rows") == [(N,)], outcome
    assert sample(crowded.metrics(), "sluice_queries_total", outcome="busy", route="none") >= 1
    conn = connect(crowded, ME)
    try:
        assert sluice_rows(conn, "SELECT 1") == [(1,)], "the place came back"
    finally:
        conn.close()


def test_the_process_memory_pool_stops_a_heavy_query_not_the_process(crowded):
    conn = connect(crowded, "analyst")
    try:
        with pytest.raises(adbc_driver_manager.Error) as e:
            sluice_rows(conn, MEMORY_HEAVY)
        error = str(e.value)
        assert has_code(error, "RESOURCE_EXHAUSTED") and "memory_pool_mb" in error, error
        assert sluice_rows(conn, "SELECT count(*) > 0 FROM streams") == [(True,)]
    finally:
        conn.close()
    # The failed query's operators give their memory back as its task ends on the query
    # runtime, which may be just after the error reached the client.
    assert wait_until(lambda: sample(crowded.metrics(), "sluice_memory_pool_bytes") == 0), \
        sample(crowded.metrics(), "sluice_memory_pool_bytes")
    assert crowded.proc.poll() is None


# --- traces -----------------------------------------------------------------------------

class Collector(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP collector that keeps the spans it is sent."""
    spans = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource.resource.attributes}
            for scope in resource.scope_spans:
                for span in scope.spans:
                    Collector.spans.append((service.get("service.name"), span))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_each_query_is_one_trace_of_its_phases(dataset_dir, tmp_path):
    collector = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    Collector.spans = []
    port = collector.server_address[1]
    (tmp_path / "sluice.toml").write_text(
        f'[telemetry]\notlp_endpoint = "http://127.0.0.1:{port}"\nservice_name = "sluice-test"\n')
    servers = start_server(dataset_dir, "--config", str(tmp_path / "sluice.toml"))
    server = next(servers)
    try:
        conn = connect(server, ME)
        try:
            sluice_rows(conn, "SELECT count(*) FROM streams WHERE ts >= now() - INTERVAL '2' DAY")
        finally:
            conn.close()
        # Spans not exported yet are flushed at exit.
        os.kill(server.proc.pid, signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0
    finally:
        servers.close()
        collector.shutdown()
    queries = [s for _, s in Collector.spans if s.name == "query"]
    assert queries, [s.name for _, s in Collector.spans]
    query = queries[-1]
    attributes = {a.key: a.value for a in query.attributes}
    assert attributes["principal"].string_value == ME
    assert attributes["outcome"].string_value == "ok"
    assert attributes["route"].string_value == "hot"
    assert attributes["rows"].int_value == 1
    children = {s.name: s for _, s in Collector.spans
                if s.trace_id == query.trace_id and s.parent_span_id == query.span_id}
    assert {"plan", "route", "execute", "stream"} <= set(children), sorted(children)
    assert all(service == "sluice-test" for service, _ in Collector.spans)
    for name, child in children.items():
        assert query.start_time_unix_nano <= child.start_time_unix_nano, name
        assert child.end_time_unix_nano <= query.end_time_unix_nano, name


# --- configuration ----------------------------------------------------------------------

def check(tmp_path, env=None, *flags):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    return subprocess.run(
        [sluice_bin(), "serve", "--check", "--config", str(tmp_path / "sluice.toml"), *flags],
        env={**clean, **(env or {})}, capture_output=True, text=True, timeout=30)


def test_configuration_precedence_file_then_environment_then_flags(tmp_path):
    (tmp_path / "sluice.toml").write_text("""
metrics_listen = "127.0.0.1:9101"
[server]
max_active_queries = 5
memory_pool_mb = 100
[limits]
max_rows = 10
""")
    out = check(tmp_path).stdout
    assert "metrics_listen = 127.0.0.1:9101" in out
    assert "server.max_active_queries = 5" in out and "limits.max_rows = 10" in out
    env = {"SLUICE_METRICS_LISTEN": "127.0.0.1:9102", "SLUICE_LIMITS__MAX_ROWS": "20",
           "SLUICE_SERVER__MAX_ACTIVE_QUERIES": "7"}
    out = check(tmp_path, env).stdout
    assert "metrics_listen = 127.0.0.1:9102" in out
    assert "server.max_active_queries = 7" in out and "limits.max_rows = 20" in out
    assert "server.memory_pool_mb = 100" in out, "keys the environment leaves keep the file's"
    out = check(tmp_path, env, "--metrics-listen", "127.0.0.1:9103").stdout
    assert "metrics_listen = 127.0.0.1:9103" in out and "limits.max_rows = 20" in out


@pytest.mark.parametrize("file, env, message", [
    ("[server]\nmax_active_queries = -1\n", {}, "sluice.toml"),
    ("[sever]\n", {}, "unknown field `sever`"),
    ("", {"SLUICE_SERVER__MAX_ACTIVE_QUERIES": "many"},
     "environment variable SLUICE_SERVER__MAX_ACTIVE_QUERIES"),
    ("", {"SLUICE_CLICKHOUSE__PASWORD": "x"}, "unknown field `pasword`"),
    ("", {"SLUICE_CLICKHOUSE__PASSWORD": "x"}, "missing field `url`"),
    ('[telemetry]\notlp_endpoint = "127.0.0.1:4318"\n', {}, "expected an http:// address"),
    ("[[principal]]\nname = \"x\"\nrole = \"listener\"\npassword = \"p\"\n", {},
     "a listener needs user_id"),
])
def test_configuration_mistakes_stop_the_start_with_a_clear_error(tmp_path, file, env, message):
    (tmp_path / "sluice.toml").write_text(file)
    result = check(tmp_path, env)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert "panicked" not in result.stderr


def test_a_redis_password_from_the_environment(dataset_dir, tmp_path):
    """`SLUICE_REDIS__PASSWORD` reaches Redis AUTH; a password of digits stays a string."""
    port = free_port()
    redis = subprocess.Popen(
        [shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path), "--requirepass", "0123"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        clean = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        env = {**clean, "SLUICE_REDIS__URL": f"redis://127.0.0.1:{port}/"}
        load = [sluice_bin(), "load", "--from", str(dataset_dir)]
        refused = subprocess.run(load, env=env, capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0 and "NOAUTH" in refused.stderr, refused.stderr
        env["SLUICE_REDIS__PASSWORD"] = "0123"
        loaded = subprocess.run(load, env=env, capture_output=True, text=True, timeout=60)
        assert loaded.returncode == 0, loaded.stderr
        assert "into Redis" in loaded.stderr + loaded.stdout
    finally:
        os.kill(redis.pid, signal.SIGTERM)
        redis.wait(timeout=20)
