"""Redis as the hot store: a private redis-server, `sluice load`, and the hot-window
questions answered the same as DuckDB computes them, with Redis the only source read."""

import datetime as dt
import os
import shutil
import signal
import subprocess
import time

import adbc_driver_manager
import pytest

from conftest import END, connect, free_port, sluice_bin, start_redis, start_server
from helpers import duck_rows, sluice_rows

ME = "u0002"
W = dt.datetime.combine(END - dt.timedelta(days=7), dt.time(), tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    yield from start_redis(tmp_path_factory.mktemp("redis"))


@pytest.fixture(scope="module")
def redis_config(redis_server, dataset_dir, tmp_path_factory):
    _, port = redis_server
    path = tmp_path_factory.mktemp("redis-config") / "sluice.toml"
    path.write_text(f'[redis]\nurl = "redis://127.0.0.1:{port}/"\ncommand_timeout_ms = 1000\n')
    for _ in range(2):  # loading twice stores each event once
        out = subprocess.run([sluice_bin(), "load", "--config", str(path), "--from", str(dataset_dir)],
                             check=True, capture_output=True, text=True)
    assert "(0 new)" in out.stdout, out.stdout
    return path


@pytest.fixture(scope="module")
def redis_gateway(redis_config, dataset_dir):
    yield from start_server(dataset_dir, "--config", str(redis_config))


@pytest.fixture
def me(redis_gateway):
    conn = connect(redis_gateway, ME)
    yield conn
    conn.close()


def since(days):
    return (END - dt.timedelta(days=days)).isoformat()


@pytest.mark.parametrize("days", [1, 3, 7])
def test_plays_in_the_last_days(me, duck, days):
    got = sluice_rows(me, f"SELECT count(*), sum(ms_played) FROM streams WHERE ts >= '{since(days)}T00:00:00Z'")
    expected = duck_rows(duck, f"""SELECT count(*), sum(ms_played) FROM streams
        WHERE user_id = '{ME}' AND ts >= TIMESTAMPTZ '{since(days)} 00:00:00+00'""")
    assert expected[0][0] > 0
    assert got == expected


def test_most_played_this_week(me, duck):
    got = sluice_rows(me, f"""SELECT track_uri, count(*) AS plays FROM streams
        WHERE ts >= '{since(7)}T00:00:00Z' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5""")
    expected = duck_rows(duck, f"""SELECT track_uri, count(*) AS plays FROM streams
        WHERE user_id = '{ME}' AND ts >= TIMESTAMPTZ '{since(7)} 00:00:00+00'
        GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5""")
    assert got == expected and len(expected) == 5


def test_last_played_track(me, duck):
    got = sluice_rows(me, "SELECT track_uri, ts, ms_played FROM streams ORDER BY ts DESC LIMIT 1")
    expected = duck_rows(duck, f"""SELECT track_uri, ts, ms_played FROM streams
        WHERE user_id = '{ME}' ORDER BY ts DESC LIMIT 1""")
    assert got == expected


def test_whole_history_is_the_same_as_embedded(me, duck):
    assert sluice_rows(me, "SELECT count(*), sum(ms_played) FROM streams") == duck_rows(
        duck, f"SELECT count(*), sum(ms_played) FROM streams WHERE user_id = '{ME}'")


def test_explain_shows_redis_as_the_only_source(me):
    rows = sluice_rows(me, f"EXPLAIN SELECT count(*) FROM streams WHERE ts >= '{since(3)}T00:00:00Z'")
    physical = next(plan for kind, plan in rows if kind == "physical_plan")
    assert "RedisScanExec" in physical and f"users={ME}" in physical
    assert "parquet" not in physical.lower(), physical
    rows = sluice_rows(me, f"EXPLAIN SELECT count(*) FROM streams WHERE ts < '{since(30)}T00:00:00Z'")
    physical = next(plan for kind, plan in rows if kind == "physical_plan")
    assert "RedisScanExec" not in physical, "a query before W never reads Redis"


def test_read_counters_show_redis_as_the_only_source(redis_gateway, me, duck):
    def reads(source, branch):
        m = redis_gateway.metrics()
        labels = f'{{branch="{branch}",source="{source}"}}'
        return (m.get(f"sluice_source_scans_total{labels}", 0),
                m.get(f"sluice_source_rows_total{labels}", 0))

    before_hot, before_cold = reads("redis", "hot"), reads("parquet", "cold")
    sql = f"SELECT track_uri, ts FROM streams WHERE ts >= '{since(7)}T00:00:00Z'"
    rows = sluice_rows(me, sql)
    after_hot, after_cold = reads("redis", "hot"), reads("parquet", "cold")
    assert len(rows) > 0
    assert after_hot == (before_hot[0] + 1, before_hot[1] + len(rows))
    assert after_cold == before_cold, "the hot-window question read the cold store"
    # And a question about last year reads only the cold store.
    sluice_rows(me, f"SELECT count(*) FROM streams WHERE ts < '{since(365)}T00:00:00Z'")
    assert reads("redis", "hot") == after_hot
    assert reads("parquet", "cold")[0] == after_cold[0] + 1


def test_analyst_reads_every_listener_in_the_hot_window(redis_gateway, duck):
    conn = connect(redis_gateway, "analyst")
    try:
        got = sluice_rows(conn, f"SELECT user_id, count(*) FROM streams WHERE ts >= '{since(5)}T00:00:00Z' GROUP BY 1 ORDER BY 1")
    finally:
        conn.close()
    assert got == duck_rows(duck, f"""SELECT user_id, count(*) FROM streams
        WHERE ts >= TIMESTAMPTZ '{since(5)} 00:00:00+00' GROUP BY 1 ORDER BY 1""")


def test_redis_down_is_a_clear_error_and_cold_queries_still_work(redis_config, dataset_dir, duck):
    # A gateway of its own, whose Redis is stopped after start.
    port = int(redis_config.read_text().split(":")[2].split("/")[0])
    folder = redis_config.parent
    exe = shutil.which("redis-server")
    own = free_port()
    proc = subprocess.Popen([exe, "--port", str(own), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    config = folder / "own.toml"
    config.write_text(redis_config.read_text().replace(str(port), str(own)))
    subprocess.run([sluice_bin(), "load", "--config", str(config), "--from", str(dataset_dir)],
                   check=True, capture_output=True)
    gen = start_server(dataset_dir, "--config", str(config))
    server = next(gen)
    try:
        conn = connect(server, ME)
        sluice_rows(conn, "SELECT count(*) FROM streams")  # the gateway has read W
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
        with pytest.raises(adbc_driver_manager.Error) as e:
            sluice_rows(conn, f"SELECT count(*) FROM streams WHERE ts >= '{since(2)}T00:00:00Z'")
        assert "Unavailable" in str(e.value) and "Redis at" in str(e.value), str(e.value)
        cold = sluice_rows(conn, f"SELECT count(*) FROM streams WHERE ts < '{since(30)}T00:00:00Z'")
        assert cold == duck_rows(duck, f"""SELECT count(*) FROM streams WHERE user_id = '{ME}'
            AND ts < TIMESTAMPTZ '{since(30)} 00:00:00+00'""")
        conn.close()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        gen.close()
