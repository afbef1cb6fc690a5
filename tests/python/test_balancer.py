"""Replicas behind a real L7 gRPC balancer: a private nginx (`grpc_pass`, round robin) sends
every call (each HTTP/2 stream) to the next of two Sluice replicas, as Kubernetes ingress-nginx,
Envoy or a cloud L7 balancer do. The replicas are a deployment's: ClickHouse (18.16, private)
for the history and Redis (private) for the hot events, loaded with `sluice load`, no dataset
folder, one `[server] replica_secret` given through SLUICE_SERVER__REPLICA_SECRET as the Helm
chart does. Through it, the ADBC driver and flightsql-dbapi log in, ask, bind parameters, set
session settings and ingest; answers are checked against DuckDB over the generated Parquet
files, and nginx's access log shows which replica served each call. Then a replica is killed
mid-query and the replicas are restarted one by one under load."""

import os
import signal
import subprocess
import threading
import time

import adbc_driver_manager
import jwt
import pyarrow as pa
import pytest

import adbc_driver_flightsql.dbapi as flight_sql
from conftest import (ME, GrpcBalancer, free_port, sluice, sluice_bin, start_clickhouse,
                      start_redis,
                      start_server, wait_until, write_clickhouse_config)
from helpers import duck_rows, sluice_rows, table_rows
from test_auth_tls_limits import AUTH_HEADER, TLS_ROOTS, self_signed
from test_routes import manifest_of

SECRET = "balancer-test-replica-secret-0123456789"
JWT_SECRET = "balancer-test-jwt-secret-0123456789abcdef"
STATIC_TOKEN = "balancer-test-static-token-of-an-agent"

TOP_ARTISTS = """SELECT a.artist_name, count(*) AS plays FROM streams s
    JOIN tracks t ON s.track_uri = t.track_uri JOIN artists a ON t.artist_uri = a.artist_uri
    GROUP BY a.artist_name ORDER BY plays DESC, a.artist_name LIMIT 5"""
FIRST_STREAM = "SELECT min(ts) AS first, count(*) AS plays FROM streams"
BY_TRACK = "SELECT count(*) AS plays FROM streams WHERE track_uri = ?"
SLOW = "SELECT count(*) FROM streams a, streams b WHERE a.ms_played + b.ms_played = 1"


class Replicas:
    """`count` replicas on fixed loopback ports (a balancer's upstream does not move), each
    restartable in place."""

    def __init__(self, dataset_dir, config, count, env, tls=None):
        self.dataset_dir = dataset_dir
        self.config = config
        self.env = env
        self.tls = tls
        self.ports = [free_port() for _ in range(count)]
        self.gens = [None] * count
        self.servers = [None] * count
        for i in range(count):
            self.start(i)

    @property
    def addresses(self):
        return [f"127.0.0.1:{p}" for p in self.ports]

    def start(self, i):
        extra = ["--config", str(self.config)]
        if self.tls:
            extra += ["--tls-cert", str(self.tls[0]), "--tls-key", str(self.tls[1])]
        self.gens[i] = start_server(self.dataset_dir, *extra, data=False,
                                    listen=self.addresses[i], env=self.env)
        self.servers[i] = next(self.gens[i])

    def kill(self, i):
        """SIGKILL: the replica dies with whatever it was serving."""
        os.kill(self.servers[i].proc.pid, signal.SIGKILL)
        self.servers[i].proc.wait()
        self.gens[i].close()

    def restart(self, i):
        """A rolling restart's step: SIGTERM (the replica drains), then start it again.
        Returns what the stopped replica logged of its drain."""
        self.gens[i].close()
        with open(self.servers[i].log_path) as f:
            drained = [line for line in f if "drain" in line or "stopped" in line]
        self.start(i)
        return drained

    def stop(self):
        for g in self.gens:
            g.close()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, dataset_dir):
    """A private ClickHouse and Redis, initialised and loaded with the dataset, and the
    configuration file of the replicas that serve them."""
    folder = tmp_path_factory.mktemp("balanced")
    ch_gen = start_clickhouse(folder / "clickhouse")
    clickhouse = next(ch_gen)
    redis_gen = start_redis(folder)
    _, redis_port = next(redis_gen)
    config = write_clickhouse_config(
        folder, clickhouse.url, database="sluice_balanced",
        extra=f'[redis]\nurl = "redis://127.0.0.1:{redis_port}/"\ncommand_timeout_ms = 1000\n'
              f'[auth.jwt]\nalgorithm = "HS256"\nsecret = "{JWT_SECRET}"\n'
              f'[[principal]]\nname = "agent"\ntoken = "{STATIC_TOKEN}"\nrole = "listener"\n'
              f'user_id = "{ME}"\n')
    sluice("clickhouse", "init", "--config", config)
    sluice("load", "--config", config, "--from", dataset_dir)
    yield config
    redis_gen.close()
    ch_gen.close()


@pytest.fixture(scope="module")
def balanced(deployment, dataset_dir, tmp_path_factory):
    """Two replicas sharing the secret behind nginx; yields (balancer, replicas)."""
    replicas = Replicas(dataset_dir, deployment, 2, {"SLUICE_SERVER__REPLICA_SECRET": SECRET})
    balancer = GrpcBalancer(tmp_path_factory.mktemp("nginx"), replicas.addresses).start()
    try:
        yield balancer, replicas
    finally:
        balancer.stop()
        replicas.stop()


def adbc(uri, user, **kwargs):
    return flight_sql.connect(uri, db_kwargs={"username": user, "password": user, **kwargs},
                              autocommit=True)


def both_served(balancer, since):
    """The replicas that served the calls logged after the first `since`."""
    return set(balancer.served_by()[since:])


def test_adbc_calls_spread_over_replicas_answer_as_duckdb(balanced, mine):
    balancer, replicas = balanced
    since = len(balancer.served_by())
    conn = adbc(balancer.uri, ME)
    try:
        for sql in (TOP_ARTISTS, FIRST_STREAM, TOP_ARTISTS):
            # A new cursor per query, as agents and notebooks do.
            assert sluice_rows(conn, sql) == duck_rows(mine, sql), sql
        track = duck_rows(mine, "SELECT track_uri FROM streams ORDER BY ts LIMIT 1")[0][0]
        expected = duck_rows(mine, BY_TRACK.replace("?", f"'{track}'"))
        for _ in range(3):
            assert sluice_rows(conn, BY_TRACK, [track]) == expected
        with conn.cursor() as cur:
            cur.execute("EXPLAIN " + FIRST_STREAM)
            assert "streams" in "\n".join(str(r) for r in cur.fetchall())
    finally:
        conn.close()
    served = balancer.served_by()[since:]
    # Each query is four calls or more (prepare, bind, FlightInfo, DoGet) spread over both.
    assert set(served) == set(replicas.addresses), served
    assert len(served) >= 20


def test_static_tokens_and_jwts_through_the_balancer(balanced, mine):
    """Bearer credentials sent on every call (no handshake): a static token and a JWT, each
    with a new cursor per query and bound parameters, over both replicas."""
    balancer, replicas = balanced
    since = len(balancer.served_by())
    token = jwt.encode({"sub": "agent-jwt", "role": "listener", "user_id": ME,
                        "exp": int(time.time()) + 600}, JWT_SECRET, algorithm="HS256")
    track = duck_rows(mine, "SELECT track_uri FROM streams ORDER BY ts LIMIT 1")[0][0]
    expected = duck_rows(mine, BY_TRACK.replace("?", f"'{track}'"))
    for bearer in (STATIC_TOKEN, token):
        conn = flight_sql.connect(balancer.uri, db_kwargs={AUTH_HEADER: f"Bearer {bearer}"},
                                  autocommit=True)
        try:
            for _ in range(2):
                assert sluice_rows(conn, TOP_ARTISTS) == duck_rows(mine, TOP_ARTISTS)
                assert sluice_rows(conn, BY_TRACK, [track]) == expected
        finally:
            conn.close()
    assert both_served(balancer, since) == set(replicas.addresses)


def test_a_session_setting_holds_on_every_replica(balanced, mine):
    balancer, _ = balanced
    conn = adbc(balancer.uri, ME)
    try:
        # Each query's FlightInfo comes from one replica or the other: the setting travels in
        # the session token the SET's reply gave the driver.
        for route, times in (("raw", 4), ("auto", 2)):
            with conn.cursor() as cur:
                cur.execute(f"SET sluice.route = '{route}'")
            for _ in range(times):
                with conn.cursor() as cur:
                    partitions, _ = cur.adbc_execute_partitions(FIRST_STREAM)
                    assert manifest_of(partitions[0])["route"] == route
                    cur.adbc_read_partition(partitions[0])
                    assert table_rows(cur.fetch_arrow_table()) == duck_rows(mine, FIRST_STREAM)
    finally:
        conn.close()


def test_flightsql_dbapi_through_the_balancer(balanced, mine):
    """flightsql-dbapi executes a statement without parameters as one GetFlightInfo and its
    DoGet: they work on any replica. With parameters it binds them by DoPut and ignores the
    handle the reply gives back, so only the replica that took the DoPut knows them: where
    the GetFlightInfo reaches another, the query is refused as unbound, never answered
    without its parameters (docs/scaling.md)."""
    from flightsql import FlightSQLClient, connect
    balancer, replicas = balanced
    since = len(balancer.served_by())
    host, port = balancer.address.split(":")
    client = FlightSQLClient(host=host, port=int(port), user=ME, password=ME, insecure=True)
    conn = connect(client)
    try:
        for _ in range(3):
            cur = conn.cursor()
            cur.execute(TOP_ARTISTS)
            assert [tuple(r) for r in cur.fetchall()] == duck_rows(mine, TOP_ARTISTS)
        track = duck_rows(mine, "SELECT track_uri FROM streams ORDER BY ts DESC LIMIT 1")[0][0]
        expected = duck_rows(mine, BY_TRACK.replace("?", f"'{track}'"))
        answered = refused = 0
        for _ in range(4):
            cur = conn.cursor()
            try:
                cur.execute(BY_TRACK, [track])
            except Exception as e:  # noqa: BLE001 - pyarrow's error, checked here
                assert "bind values before running it" in str(e), e
                refused += 1
                continue
            assert [tuple(r) for r in cur.fetchall()] == expected
            answered += 1
        assert answered + refused == 4
    finally:
        conn.close()
    assert both_served(balancer, since) == set(replicas.addresses)


def test_ingest_on_one_replica_is_read_on_the_others(balanced):
    balancer, _ = balanced
    now = int(time.time() * 1000)
    events = pa.table({
        "user_id": pa.array(["u0003"] * 3),
        "ts": pa.array([now - 3000, now - 2000, now - 1000], type=pa.timestamp("ms", tz="UTC")),
        "track_uri": pa.array(["spotify:track:balanced"] * 3),
        "ms_played": pa.array([1000, 2000, 3000], type=pa.int64()),
    })
    admin = adbc(balancer.uri, "admin")
    try:
        with admin.cursor() as cur:
            cur.adbc_ingest("streams", events, mode="append")
    finally:
        admin.close()
    listener = adbc(balancer.uri, "u0003")
    try:
        sql = "SELECT count(*), sum(ms_played) FROM streams WHERE track_uri = 'spotify:track:balanced'"
        for _ in range(4):
            assert sluice_rows(listener, sql) == [(3, 6000)]
    finally:
        listener.close()


def test_cancelling_through_the_balancer(balanced):
    balancer, _ = balanced
    conn = adbc(balancer.uri, "analyst")
    try:
        with conn.cursor() as cur:
            done = {}

            def run():
                try:
                    cur.execute(SLOW)
                    cur.fetchall()
                    done["rows"] = True
                except Exception as e:  # noqa: BLE001 - the driver's error, checked below
                    done["error"] = str(e)

            t = threading.Thread(target=run)
            t.start()
            time.sleep(1.5)
            cur.adbc_cancel()
            t.join(timeout=60)
            assert not t.is_alive()
            assert "error" in done, done
    finally:
        conn.close()
    # The connection's replicas still serve.
    conn = adbc(balancer.uri, ME)
    try:
        assert sluice_rows(conn, "SELECT 1") == [(1,)]
    finally:
        conn.close()


def test_replicas_without_a_shared_secret_refuse_each_others_tokens(deployment, dataset_dir,
                                                                     tmp_path):
    """The control: the same setup without `replica_secret`. A token or ticket made by one
    replica is refused by the other, so the driver's calls fail as soon as they alternate."""
    replicas = Replicas(dataset_dir, deployment, 2, {})
    balancer = GrpcBalancer(tmp_path / "nginx", replicas.addresses).start()
    try:
        with pytest.raises(adbc_driver_manager.Error) as e:
            conn = adbc(balancer.uri, ME)
            try:
                for _ in range(3):
                    sluice_rows(conn, FIRST_STREAM)
            finally:
                conn.close()
        assert "UNAUTHENTICATED" in str(e.value) or "NOT_FOUND" in str(e.value), e.value
    finally:
        balancer.stop()
        replicas.stop()


def test_tls_at_the_balancer_and_to_the_replicas(deployment, dataset_dir, tmp_path, mine):
    certs = tmp_path / "certs"
    certs.mkdir()
    ca = self_signed(certs)
    tls = (certs / "tls.crt", certs / "tls.key")
    replicas = Replicas(dataset_dir, deployment, 2, {"SLUICE_SERVER__REPLICA_SECRET": SECRET},
                        tls=tls)
    balancer = GrpcBalancer(tmp_path / "nginx", replicas.addresses, tls=tls,
                            upstream_ca=ca).start()
    try:
        conn = adbc(balancer.uri, ME, **{TLS_ROOTS: ca.read_text()})
        try:
            for _ in range(3):
                assert sluice_rows(conn, TOP_ARTISTS) == duck_rows(mine, TOP_ARTISTS)
        finally:
            conn.close()
        assert set(balancer.served_by()) == set(replicas.addresses)
    finally:
        balancer.stop()
        replicas.stop()


def ask_with_retries(uri, sql, expected, attempts=60):
    """What a client that retries does: a new connection and the query again, up to
    `attempts` times half a second apart (30 s: nginx keeps a failed replica out for its
    fail_timeout of 10 s, and a restart on a loaded machine takes seconds more; 15 s was
    once not enough in CI). Returns the errors seen before it succeeded."""
    errors = []
    for _ in range(attempts):
        try:
            conn = adbc(uri, ME)
            try:
                rows = sluice_rows(conn, sql)
            finally:
                conn.close()
            assert rows == expected, "a wrong answer"
            return errors
        except adbc_driver_manager.Error as e:
            errors.append(str(e))
            time.sleep(0.5)
    raise AssertionError(f"no attempt succeeded: {errors}")


def test_a_killed_replica_and_a_rolling_restart_lose_no_retried_query(deployment, dataset_dir,
                                                                       tmp_path, mine):
    replicas = Replicas(dataset_dir, deployment, 2, {"SLUICE_SERVER__REPLICA_SECRET": SECRET})
    balancer = GrpcBalancer(tmp_path / "nginx", replicas.addresses).start()
    expected = duck_rows(mine, TOP_ARTISTS)
    stop = threading.Event()
    outcome = {"queries": 0, "errors": [], "failed": []}

    def load():
        while not stop.is_set():
            try:
                outcome["errors"] += ask_with_retries(balancer.uri, TOP_ARTISTS, expected)
                outcome["queries"] += 1
            except AssertionError as e:
                outcome["failed"].append(str(e))

    workers = [threading.Thread(target=load) for _ in range(2)]
    try:
        for w in workers:
            w.start()
        assert wait_until(lambda: outcome["queries"] >= 4, timeout=60)
        # Killed outright: what it was serving fails; the retries go to the other.
        replicas.kill(1)
        before = outcome["queries"]
        assert wait_until(lambda: outcome["queries"] >= before + 4, timeout=60)
        replicas.start(1)
        # A rolling restart: each replica in turn drains, stops and comes back.
        for i in range(2):
            outcome.setdefault("drains", []).append(replicas.restart(i))
            before = outcome["queries"]
            assert wait_until(lambda: outcome["queries"] >= before + 4, timeout=60)
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=120)
        balancer.stop()
        replicas.stop()
    assert not outcome["failed"], (outcome["failed"], outcome.get("drains"))
    # The errors clients saw said what happened: the balancer lost its upstream (502, or the
    # stream it was relaying reset), or the replica was going away; never a wrong answer.
    for e in outcome["errors"]:
        assert any(w in e for w in ("shutting down", "502 (Bad Gateway)", "Unavailable",
                                    "stream terminated by RST_STREAM")), e
    assert outcome["queries"] >= 16


def test_a_short_replica_secret_is_refused_at_start(deployment):
    out = subprocess.run(
        [sluice_bin(), "serve", "--check", "--config", str(deployment)],
        capture_output=True, text=True, env={**os.environ, "SLUICE_SERVER__REPLICA_SECRET": "short"})
    assert out.returncode != 0
    assert "replica_secret is 5 bytes; give at least 32" in out.stderr, out.stderr
    out = subprocess.run(
        [sluice_bin(), "serve", "--check", "--config", str(deployment)],
        capture_output=True, text=True, env={**os.environ, "SLUICE_SERVER__REPLICA_SECRET": SECRET})
    assert out.returncode == 0, out.stderr
    assert "server.replica_secret = set" in out.stdout and SECRET not in out.stdout
