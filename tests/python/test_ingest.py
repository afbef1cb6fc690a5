"""Ingest through the real ADBC driver (`adbc_ingest`, i.e. DoPut CommandStatementIngest):
an admin's new events are read by the next query, on the embedded hot store and on Redis;
everyone else, older events and other tables are refused clearly."""

import datetime as dt
import subprocess

import adbc_driver_manager
import pyarrow as pa
import pytest

from conftest import connect, sluice_bin, start_redis, start_server
from helpers import sluice_rows

ME = "u0004"


@pytest.fixture(scope="module", params=["embedded", "redis"])
def gateway(request, dataset_dir, tmp_path_factory):
    """A gateway of this module's own, so its writes do not reach other tests."""
    if request.param == "embedded":
        yield from start_server(dataset_dir)
        return
    folder = tmp_path_factory.mktemp("ingest-redis")
    redis = start_redis(folder)
    _, port = next(redis)
    try:
        config = folder / "sluice.toml"
        config.write_text(f'[redis]\nurl = "redis://127.0.0.1:{port}/"\n')
        subprocess.run([sluice_bin(), "load", "--config", str(config), "--from", str(dataset_dir)],
                       check=True, capture_output=True)
        yield from start_server(dataset_dir, "--config", str(config))
    finally:
        redis.close()


def events(rows, ts_type=pa.timestamp("ms", tz="UTC")):
    users, tracks, times, played = zip(*rows)
    return pa.table({
        "user_id": pa.array(users, pa.string()),
        "track_uri": pa.array(tracks, pa.string()),
        "ts": pa.array(times, ts_type),
        "ms_played": pa.array(played, pa.int64()),
    })


def ingest(conn, table, name="streams", mode="append"):
    with conn.cursor() as cur:
        return cur.adbc_ingest(name, table, mode=mode)


def a_track(conn):
    return sluice_rows(conn, "SELECT track_uri FROM tracks ORDER BY track_uri LIMIT 1")[0][0]


def test_ingested_events_are_read_by_the_next_query(gateway):
    admin, me = connect(gateway, "admin"), connect(gateway, ME)
    try:
        track = a_track(me)
        # A few minutes ago, at odd milliseconds no generated event has.
        base = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(minutes=5)
        new = [(ME, track, base + dt.timedelta(seconds=i, milliseconds=7), 1000 + i)
               for i in range(3)]
        count = f"SELECT count(*), sum(ms_played) FROM streams WHERE ts >= '{base.isoformat()}'"
        before = sluice_rows(me, count)[0]
        assert ingest(admin, events(new)) == 3
        after = sluice_rows(me, count)[0]
        assert after[0] == before[0] + 3
        assert after[1] == (before[1] or 0) + 3003
        # The same events again: nothing new is stored.
        assert ingest(admin, events(new)) == 0
        assert sluice_rows(me, count)[0] == after
        # Microsecond timestamps without a zone are read as UTC milliseconds.
        naive = [(ME, track, (base + dt.timedelta(seconds=9)).replace(tzinfo=None), 500)]
        assert ingest(admin, events(naive, pa.timestamp("us"))) == 1
        last = sluice_rows(me, "SELECT ts, ms_played FROM streams ORDER BY ts DESC LIMIT 1")
        assert last == [(int((base + dt.timedelta(seconds=9)).timestamp() * 1000), 500)]
        # Other listeners do not see them.
        other = connect(gateway, "u0001")
        try:
            mine = sluice_rows(other, f"SELECT count(*) FROM streams WHERE user_id = '{ME}'")
            assert mine == [(0,)]
        finally:
            other.close()
    finally:
        admin.close()
        me.close()


def test_a_kept_physical_plan_reads_the_events_ingested_since(gateway, request):
    """A statement asked again runs its kept operators again where that is exact. On Redis
    they are kept and read every event ingested since; the embedded hot store's scan takes
    its rows when it is planned, so there the operators are planned again."""
    admin, me = connect(gateway, "admin"), connect(gateway, ME)
    hits = 'sluice_physical_plan_cache_total{outcome="hit"}'
    try:
        track = a_track(me)
        base = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(minutes=2)
        since = f"ts >= '{base.isoformat()}'"
        count = f"SELECT count(*), sum(ms_played) FROM streams WHERE {since}"
        last = f"SELECT ts, ms_played FROM streams WHERE {since} ORDER BY ts DESC LIMIT 1"
        before = sluice_rows(me, count)[0], sluice_rows(me, last)
        for i in range(3):
            ts = base + dt.timedelta(seconds=20 + i, milliseconds=13)
            assert ingest(admin, events([(ME, track, ts, 300 + i)])) == 1
            kept = gateway.metrics().get(hits, 0)
            got = sluice_rows(me, count)[0], sluice_rows(me, last)
            reused = gateway.metrics().get(hits, 0) - kept
            played = (before[0][1] or 0) + sum(300 + j for j in range(i + 1))
            assert got == ((before[0][0] + i + 1, played),
                           [(int(ts.timestamp() * 1000), 300 + i)])
            assert reused == (2 if request.node.callspec.params["gateway"] == "redis" else 0)
    finally:
        admin.close()
        me.close()


def test_a_query_prepared_before_an_ingest_or_a_setting_reads_as_of_its_run(gateway):
    """A prepared query starts at its CreatePreparedStatement; an ingest or a new session
    setting before its GetFlightInfo makes it run again, so neither is missed."""
    admin, me = connect(gateway, "admin"), connect(gateway, ME)
    try:
        track = a_track(me)
        base = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(minutes=3)
        count = f"SELECT count(*) FROM streams WHERE ts >= '{base.isoformat()}'"
        before = sluice_rows(me, count)[0][0]
        new = [(ME, track, base + dt.timedelta(seconds=i, milliseconds=11), 700 + i)
               for i in range(2)]
        with me.cursor() as cur:
            cur.adbc_prepare(count)
            assert ingest(admin, events(new)) == 2
            cur.execute(count)
            assert cur.fetchall() == [(before + 2,)]
        with me.cursor() as cur, me.cursor() as setting:
            cur.adbc_prepare(count)
            # Only events before W: the ones just ingested are hot.
            setting.execute("SET sluice.freshness = 'cold'")
            cur.execute(count)
            assert cur.fetchall() == [(0,)]
    finally:
        admin.close()
        me.close()


def test_events_before_the_watermark_are_refused(gateway):
    admin = connect(gateway, "admin")
    try:
        old = [(ME, "spotify:track:x", dt.datetime(2019, 5, 1, tzinfo=dt.timezone.utc), 1)]
        with pytest.raises(adbc_driver_manager.Error) as e:
            ingest(admin, events(old))
        assert "InvalidArgument" in type(e.value).__name__ or "INVALID_ARGUMENT" in str(e.value)
        assert "older than the watermark" in str(e.value)
    finally:
        admin.close()


@pytest.mark.parametrize("login", [ME, "analyst"])
def test_only_admins_ingest(gateway, login):
    conn = connect(gateway, login)
    try:
        now = [(ME, "spotify:track:x", dt.datetime.now(dt.timezone.utc), 1)]
        with pytest.raises(adbc_driver_manager.Error) as e:
            ingest(conn, events(now))
        assert "only admins ingest" in str(e.value), str(e.value)
    finally:
        conn.close()


@pytest.mark.parametrize("name,mode,message", [
    ("tracks", "append", "only 'streams' does"),
    ("streams", "create", "already exists"),
    ("streams", "replace", "may not replace"),
])
def test_ingest_target_and_mode(gateway, name, mode, message):
    admin = connect(gateway, "admin")
    try:
        now = [(ME, "spotify:track:x", dt.datetime.now(dt.timezone.utc), 1)]
        with pytest.raises(adbc_driver_manager.Error) as e:
            ingest(admin, events(now), name=name, mode=mode)
        assert message in str(e.value), str(e.value)
    finally:
        admin.close()


def test_bad_columns_are_refused(gateway):
    admin = connect(gateway, "admin")
    try:
        table = pa.table({"user_id": [ME], "colour": ["red"]})
        with pytest.raises(adbc_driver_manager.Error) as e:
            ingest(admin, table)
        assert "unknown column 'colour'" in str(e.value)
        nulls = events([(ME, None, dt.datetime.now(dt.timezone.utc), 1)])
        with pytest.raises(adbc_driver_manager.Error) as e:
            ingest(admin, nulls)
        assert "'track_uri' has nulls" in str(e.value)
    finally:
        admin.close()
