"""Fixtures: a generated dataset, a running `sluice serve` over it, ADBC connections, and
DuckDB over the same Parquet files for answers computed independently of Sluice."""

import datetime as dt
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest

import adbc_driver_flightsql.dbapi as flight_sql

REPO = Path(__file__).resolve().parents[2]
USERS = 6
YEARS = 8
SEED = 7
# The listener the listener-side tests (routes, security) act as.
ME = "u0002"
# The data ends today, so the hot window (the last 7 days) holds real events.
END = dt.datetime.now(dt.timezone.utc).date()


def sluice_bin() -> str:
    path = os.environ.get("SLUICE_BIN")
    if not path:
        target = os.environ.get("CARGO_TARGET_DIR", str(REPO / "target"))
        path = str(Path(target) / "release" / "sluice")
    assert Path(path).exists(), f"build sluice first (cargo build --release): {path}"
    return path


@pytest.fixture(scope="session")
def dataset_dir():
    with tempfile.TemporaryDirectory(prefix="sluice-test-") as tmp:
        out = Path(tmp) / "data"
        subprocess.run(
            [sluice_bin(), "generate", "--users", str(USERS), "--years", str(YEARS),
             "--seed", str(SEED), "--artists", "300", "--end", END.isoformat(),
             "--out", str(out)],
            check=True, capture_output=True, text=True,
        )
        yield out


class Server:
    def __init__(self, proc: subprocess.Popen, address: str, metrics: str, scheme="grpc"):
        self.proc = proc
        self.address = address
        self.uri = f"{scheme}://{address}"
        self.metrics_url = metrics

    def metrics(self):
        """The Prometheus samples, as {'name{labels}': value}."""
        with urllib.request.urlopen(self.metrics_url, timeout=5) as r:
            text = r.read().decode()
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                samples[key] = float(value)
        return samples


def start_server(dataset_dir, *extra, data=True, listen="127.0.0.1:0", env=None, prefix=()):
    """Starts `sluice serve` on a free port (or `listen`); yields it and stops exactly that
    process. Its log is `server.log_path` (beside `dataset_dir`). `data=False` serves without
    `--data`, as a deployment with ClickHouse does: everything from the configured sources.
    `env`: environment variables set for it; `prefix`: a command it runs under (and
    `SLUICE_BIN` the binary), e.g. to run as another user."""
    log_path = tempfile.mkstemp(prefix="sluice-", suffix=".log", dir=dataset_dir.parent)[1]
    log = open(log_path, "w")
    served = ["--data", str(dataset_dir)] if data else []
    proc = subprocess.Popen(
        [*prefix, sluice_bin(), "serve", *served, "--listen", listen,
         "--metrics-listen", "127.0.0.1:0", *extra],
        stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ, **(env or {})},
    )
    address = metrics = None
    scheme = "grpc"
    banner = []
    try:
        for line in proc.stdout:
            banner.append(line)
            m = re.search(r"Metrics: (http://\S+)", line)
            if m:
                metrics = m.group(1)
            m = re.search(r"Flight SQL: (grpc(?:\+tls)?)://(\S+)", line)
            if m:
                scheme, address = m.group(1), m.group(2)
                break
        assert address and metrics, "sluice did not report its addresses"
        server = Server(proc, address, metrics, scheme)
        server.log_path = log_path
        server.banner = "".join(banner)
        yield server
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


def run_in_thread(server, user, sql):
    """Runs `sql` as `user` in a thread; returns (thread, outcome dict)."""
    outcome = {}

    def work():
        conn = connect(server, user)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                outcome["rows"] = [tuple(r) for r in cur.fetchall()]
        except Exception as e:  # noqa: BLE001 (the ADBC error, kept for the test)
            outcome["error"] = str(e)
        finally:
            conn.close()

    thread = threading.Thread(target=work)
    thread.start()
    return thread, outcome


def wait_until(predicate, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="session")
def server(dataset_dir):
    yield from start_server(dataset_dir)


def connect(server, user, password=None):
    return flight_sql.connect(
        server.uri,
        db_kwargs={"username": user, "password": password if password is not None else user},
        autocommit=True,
    )


@pytest.fixture
def listener(server):
    conn = connect(server, "u0002")
    yield conn
    conn.close()


@pytest.fixture
def analyst(server):
    conn = connect(server, "analyst")
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def duck(dataset_dir):
    con = duck_over(dataset_dir)
    yield con
    con.close()


def duck_over(dataset_dir):
    """DuckDB with `streams` and the catalog tables as views over a dataset's Parquet files."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
    except duckdb.Error:
        pass
    d = str(dataset_dir)
    con.execute(f"CREATE VIEW streams AS SELECT * FROM read_parquet('{d}/streams/*.parquet')")
    for t in ("tracks", "artists", "albums"):
        con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{d}/{t}.parquet')")
    return con


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port):
    """Waits (up to 5 s) until something accepts connections on the loopback port."""
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            time.sleep(0.05)


def start_redis(folder):
    """Starts a private redis-server on a free loopback port, data in `folder`; yields
    (process, port) and stops exactly that process."""
    exe = shutil.which("redis-server")
    assert exe, "redis-server is not installed (tests/run.sh installs it)"
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        yield proc, port
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)


sys.path.insert(0, str(REPO / "tests" / "servers"))
from chdb_front import ChdbClickHouse  # noqa: E402  (ClickHouse 26.9's engine behind an HTTP front)
from clickhouse import ClickHouse, start_cluster  # noqa: E402  (private servers, shared with bench/)
from nginx import GrpcBalancer  # noqa: E402,F401  (a private nginx balancing gRPC calls)

CLICKHOUSE_DB = "sluice_test"
# Every ClickHouse test runs on both: Debian's clickhouse-server 18.16 (a real server), and
# ClickHouse 26.9's own engine (chDB) behind the stand-in HTTP front of tests/servers.
SERVER_18 = "18.16"
ENGINE_26 = "26.9"
CLICKHOUSE_VERSIONS = [SERVER_18, ENGINE_26]


def start_clickhouse(folder, version=SERVER_18):
    """Starts a private ClickHouse of `version` on free loopback ports with its data in
    `folder`; yields it (`.version` says which) and stops exactly that process."""
    if version == SERVER_18:
        assert shutil.which("clickhouse-server"), \
            "clickhouse-server is not installed (tests/run.sh installs it)"
        server = ClickHouse(folder)
    else:
        server = ChdbClickHouse(folder)
    server.version = version
    server.start()
    try:
        yield server
    finally:
        server.stop()


# The `remote_servers` cluster of the sharded tests: two private 18.16 servers, one shard each.
CLUSTER = "sluice_shards"
SHARDED = f"clickhouse-{SERVER_18}-cluster"


def start_clickhouse_cluster(folder, count=2):
    """Starts `count` private 18.16 servers, each a shard of `CLUSTER`; yields them and stops
    exactly those processes."""
    assert shutil.which("clickhouse-server"), \
        "clickhouse-server is not installed (tests/run.sh installs it)"
    servers = start_cluster(folder, CLUSTER, count)
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


def cluster_config_extra(shards):
    """The `[clickhouse]` lines of a sharded deployment (after `url`)."""
    urls = ", ".join(f'"{s.url}"' for s in shards)
    return f'cluster = "{CLUSTER}"\nshards = [{urls}]\n'


def needs_the_real_server(clickhouse, what):
    """Skips on the 26.9 engine a test of what only a real server has (its query log, KILL
    QUERY, queries side by side): the front runs one query at a time and logs none."""
    if clickhouse.version != SERVER_18:
        pytest.skip(f"{what}: only the real 18.16 server has it, not the 26.9 engine's front")


def principals_toml():
    """`[[principal]]` entries for the dataset's listeners, an analyst and an admin (password =
    name, as the embedded default's demo logins): a deployment with ClickHouse names who may
    connect."""
    entries = [(f"u{i:04d}", "listener", f"u{i:04d}") for i in range(1, USERS + 1)]
    entries += [("analyst", "analyst", None), ("admin", "admin", None)]
    out = ""
    for name, role, user_id in entries:
        out += f'\n[[principal]]\nname = "{name}"\npassword = "{name}"\nrole = "{role}"\n'
        if user_id:
            out += f'user_id = "{user_id}"\n'
    return out


def write_clickhouse_config(folder, url, *, timeout_ms=10000, extra="", database=CLICKHOUSE_DB):
    path = folder / "sluice.toml"
    path.write_text(
        f'[clickhouse]\nurl = "{url}"\ndatabase = "{database}"\n'
        f"query_timeout_ms = {timeout_ms}\nconnect_timeout_ms = 2000\n{extra}"
        f"{principals_toml()}"
    )
    return path


def sluice(*args, check=True):
    out = subprocess.run([sluice_bin(), *map(str, args)], capture_output=True, text=True)
    if check and out.returncode != 0:
        raise AssertionError(f"sluice {' '.join(map(str, args))} failed:\n{out.stderr}")
    return out


class ClickHouseStacks:
    """Each ClickHouse version's servers, started on first use and kept for the session: the
    ClickHouse itself, it initialised and loaded, `sluice serve` over it alone, and over it with
    a private Redis. Built here rather than as parametrized fixtures so that a suite can choose
    its gateway by name (`getfixturevalue` cannot reach a parametrized fixture)."""

    def __init__(self, tmp_path_factory, dataset_dir):
        self._tmp = tmp_path_factory
        self._data = dataset_dir
        self._made = {}
        self._running = []

    def _start(self, gen):
        value = next(gen)
        self._running.append(gen)
        return value

    def _once(self, key, make):
        if key not in self._made:
            self._made[key] = make()
        return self._made[key]

    def clickhouse(self, version):
        return self._once(("clickhouse", version), lambda: self._start(
            start_clickhouse(self._tmp.mktemp(f"clickhouse-{version}"), version)))

    def config(self, version):
        """ClickHouse initialised (twice: it is idempotent) and loaded with the dataset."""
        def make():
            path = write_clickhouse_config(self._tmp.mktemp("ch-config"),
                                           self.clickhouse(version).url)
            for _ in range(2):
                sluice("clickhouse", "init", "--config", path)
            sluice("load", "--config", path, "--from", self._data)
            return path
        return self._once(("config", version), make)

    def server(self, version):
        """`sluice serve` with ClickHouse alone: every event and the catalog from ClickHouse."""
        return self._once(("server", version), lambda: self._start(start_server(
            self._data, "--config", str(self.config(version)), data=False)))

    def full_stack(self, version):
        """ClickHouse as the cold store and Redis as the hot store, both private, loaded."""
        def make():
            folder = self._tmp.mktemp("full-stack")
            _, port = self._start(start_redis(folder))
            # A database of its own: with Redis, ClickHouse holds the events before W only.
            path = write_clickhouse_config(
                folder, self.clickhouse(version).url, database=f"{CLICKHOUSE_DB}_stack",
                extra=f'[redis]\nurl = "redis://127.0.0.1:{port}/"\ncommand_timeout_ms = 1000\n')
            sluice("clickhouse", "init", "--config", path)
            sluice("load", "--config", path, "--from", self._data)
            server = self._start(start_server(self._data, "--config", str(path), data=False))
            server.clickhouse_version = version
            return server
        return self._once(("full_stack", version), make)

    def cluster(self):
        """Two private 18.16 servers as the shards of `CLUSTER`."""
        return self._once(("cluster",), lambda: self._start(
            start_clickhouse_cluster(self._tmp.mktemp("cluster"))))

    def cluster_stack(self):
        """The sharded ClickHouse as the cold store (entered through its first shard) and a
        private Redis as the hot store, initialised (twice) and loaded through Sluice."""
        def make():
            folder = self._tmp.mktemp("cluster-stack")
            shards = self.cluster()
            _, port = self._start(start_redis(folder))
            path = write_clickhouse_config(
                folder, shards[0].url,
                extra=cluster_config_extra(shards)
                + f'[redis]\nurl = "redis://127.0.0.1:{port}/"\ncommand_timeout_ms = 1000\n')
            for _ in range(2):
                sluice("clickhouse", "init", "--config", path)
            sluice("load", "--config", path, "--from", self._data)
            server = self._start(start_server(self._data, "--config", str(path), data=False))
            server.clickhouse_version = SERVER_18
            server.shards = shards
            server.config_path = path
            return server
        return self._once(("cluster_stack",), make)

    def close(self):
        for gen in reversed(self._running):
            gen.close()


@pytest.fixture(scope="session")
def stacks(tmp_path_factory, dataset_dir):
    pool = ClickHouseStacks(tmp_path_factory, dataset_dir)
    yield pool
    pool.close()


@pytest.fixture(scope="session", params=CLICKHOUSE_VERSIONS)
def clickhouse(request, stacks):
    """A private ClickHouse of each version the tests cover."""
    return stacks.clickhouse(request.param)


@pytest.fixture(scope="session")
def clickhouse_config(clickhouse, stacks):
    return stacks.config(clickhouse.version)


@pytest.fixture(scope="session")
def clickhouse_server(clickhouse, stacks):
    return stacks.server(clickhouse.version)


@pytest.fixture(scope="session")
def full_stack(clickhouse, stacks):
    return stacks.full_stack(clickhouse.version)


GATEWAYS = (["embedded"] + [f"clickhouse-{v}+redis" for v in CLICKHOUSE_VERSIONS]
            + [f"{SHARDED}+redis"])


def gateway_named(request, name):
    """The gateway `name` names: "embedded", "clickhouse-<version>" (ClickHouse alone),
    "clickhouse-<version>+redis", or `SHARDED`+"+redis" (two shards and Redis)."""
    if name == "embedded":
        return request.getfixturevalue("server")
    stacks = request.getfixturevalue("stacks")
    if name == f"{SHARDED}+redis":
        return stacks.cluster_stack()
    version = name.removeprefix("clickhouse-").removesuffix("+redis")
    return stacks.full_stack(version) if name.endswith("+redis") else stacks.server(version)


@pytest.fixture(scope="session", params=GATEWAYS)
def gateway(request):
    """Each gateway the listener-side suites run against: the embedded default, and
    ClickHouse (cold: each version, and two 18.16 shards) + Redis (hot)."""
    return gateway_named(request, request.param)


@pytest.fixture(scope="session")
def mine(duck):
    """DuckDB with `streams` holding only ME's events."""
    con = duck.cursor()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE SCHEMA IF NOT EXISTS me")
    con.execute(f"CREATE OR REPLACE VIEW me.streams AS SELECT * FROM main.streams WHERE user_id = '{ME}'")
    con.execute("SET search_path = 'me,main'")
    yield con
    con.close()
