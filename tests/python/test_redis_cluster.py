"""Redis Cluster as the hot store: three private masters on loopback ports, joined with
`redis-cli --cluster create`; `sluice load` and the gateway reach it through `nodes`, and the
hot-window questions answer as DuckDB computes them."""

import datetime as dt
import os
import random
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import END, connect, sluice_bin, start_server, wait_port
from helpers import duck_rows, sluice_rows

ME = "u0003"


def cluster_port():
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    for _ in range(200):
        port = random.randint(20000, 50000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair for a cluster node")


def redis_cli(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port), *args], check=True,
                          capture_output=True, text=True, timeout=30).stdout


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    exe = shutil.which("redis-server")
    assert exe and shutil.which("redis-cli"), "redis-server and redis-cli are needed"
    ports, procs = [], []
    try:
        for i in range(3):
            port = cluster_port()
            folder = tmp_path_factory.mktemp(f"cluster-{i}")
            procs.append(subprocess.Popen(
                [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(folder), "--cluster-enabled", "yes",
                 "--cluster-config-file", str(folder / "nodes.conf"),
                 "--cluster-node-timeout", "5000"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            ports.append(port)
        for port in ports:
            wait_port(port)
        created = subprocess.run(["redis-cli", "--cluster", "create",
                                  *[f"127.0.0.1:{p}" for p in ports], "--cluster-replicas",
                                  "0", "--cluster-yes"], capture_output=True, text=True,
                                 timeout=60)
        assert created.returncode == 0, created.stdout + created.stderr
        for _ in range(200):
            if all("cluster_state:ok" in redis_cli(p, "cluster", "info") for p in ports):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the cluster did not become ready")
        yield ports
    finally:
        for proc in procs:  # exactly the servers this module started
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                proc.wait(timeout=20)


@pytest.fixture(scope="module")
def cluster_config(cluster, dataset_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("cluster-config") / "sluice.toml"
    nodes = ", ".join(f'"redis://127.0.0.1:{p}"' for p in cluster[:2])  # the rest is found
    path.write_text(f"[redis]\nnodes = [{nodes}]\n")
    out = subprocess.run([sluice_bin(), "load", "--config", str(path), "--from", str(dataset_dir)],
                         check=True, capture_output=True, text=True)
    assert "cluster redis://" in out.stdout, out.stdout
    return path


@pytest.fixture(scope="module")
def gateway(cluster_config, dataset_dir):
    yield from start_server(dataset_dir, "--config", str(cluster_config))


def since(days):
    return (END - dt.timedelta(days=days)).isoformat()


def test_each_listener_lives_in_one_slot_and_listeners_spread(cluster, cluster_config):
    holders = {}
    for port in cluster:
        for key in redis_cli(port, "--scan", "--pattern", "sluice:{*}:events").split():
            holders.setdefault(key, []).append(port)
    assert len(holders) >= 6
    assert all(len(p) == 1 for p in holders.values()), holders
    assert len({p[0] for p in holders.values()}) >= 2, "all listeners landed on one master"


def test_hot_window_questions_on_the_cluster(gateway, duck):
    me = connect(gateway, ME)
    try:
        got = sluice_rows(me, f"""SELECT track_uri, count(*) AS plays FROM streams
            WHERE ts >= '{since(7)}T00:00:00Z' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5""")
        expected = duck_rows(duck, f"""SELECT track_uri, count(*) AS plays FROM streams
            WHERE user_id = '{ME}' AND ts >= TIMESTAMPTZ '{since(7)} 00:00:00+00'
            GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5""")
        assert got == expected and len(expected) == 5
        last = sluice_rows(me, "SELECT track_uri, ts FROM streams ORDER BY ts DESC LIMIT 1")
        assert last == duck_rows(duck, f"""SELECT track_uri, ts FROM streams
            WHERE user_id = '{ME}' ORDER BY ts DESC LIMIT 1""")
    finally:
        me.close()


def test_analyst_reads_every_listener_across_masters(gateway, duck):
    conn = connect(gateway, "analyst")
    try:
        got = sluice_rows(conn, f"""SELECT user_id, count(*), sum(ms_played) FROM streams
            WHERE ts >= '{since(4)}T00:00:00Z' GROUP BY 1 ORDER BY 1""")
    finally:
        conn.close()
    assert got == duck_rows(duck, f"""SELECT user_id, count(*), sum(ms_played) FROM streams
        WHERE ts >= TIMESTAMPTZ '{since(4)} 00:00:00+00' GROUP BY 1 ORDER BY 1""")


def test_ingest_into_the_cluster(gateway):
    import pyarrow as pa
    admin, me = connect(gateway, "admin"), connect(gateway, ME)
    try:
        at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(minutes=3)
        before = sluice_rows(me, f"SELECT count(*) FROM streams WHERE ts >= '{at.isoformat()}'")
        table = pa.table({"user_id": [ME], "track_uri": ["spotify:track:cluster"],
                          "ts": pa.array([at], pa.timestamp("ms", tz="UTC")),
                          "ms_played": [1234]})
        with admin.cursor() as cur:
            assert cur.adbc_ingest("streams", table, mode="append") == 1
        after = sluice_rows(me, f"SELECT count(*) FROM streams WHERE ts >= '{at.isoformat()}'")
        assert after[0][0] == before[0][0] + 1
    finally:
        admin.close()
        me.close()
