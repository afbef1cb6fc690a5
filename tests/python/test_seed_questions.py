"""The seed questions, asked by a listener through the real ADBC driver, answered the same
as DuckDB computes them from the generated Parquet files (with the listener's filter written
out: Sluice adds it itself). Every question runs against the embedded default and against
Sluice with ClickHouse (a private server, loaded by `sluice load`) as the cold store, and
against two 18.16 servers as the shards of one cluster (with Redis as the hot store)."""

import datetime as dt

import pytest

from conftest import CLICKHOUSE_VERSIONS, END, SHARDED, connect, gateway_named
from helpers import duck_rows, sluice_rows

ME = "u0002"
YEAR = END.year - 5


@pytest.fixture(scope="module",
                params=["embedded"] + [f"clickhouse-{v}" for v in CLICKHOUSE_VERSIONS]
                + [f"{SHARDED}+redis"])
def gateway(request):
    return gateway_named(request, request.param)


@pytest.fixture
def listener(gateway):
    conn = connect(gateway, ME)
    yield conn
    conn.close()


@pytest.fixture
def analyst(gateway):
    conn = connect(gateway, "analyst")
    yield conn
    conn.close()


def test_top_artist_in_a_year(listener, duck):
    sluice = sluice_rows(listener, f"""
        SELECT a.artist_uri, a.artist_name, count(*) AS plays
        FROM streams s
        JOIN tracks t ON s.track_uri = t.track_uri
        JOIN artists a ON t.artist_uri = a.artist_uri
        WHERE s.ts >= '{YEAR}-01-01T00:00:00Z' AND s.ts < '{YEAR + 1}-01-01T00:00:00Z'
        GROUP BY a.artist_uri, a.artist_name
        ORDER BY plays DESC, a.artist_uri
        LIMIT 3""")
    expected = duck_rows(duck, f"""
        SELECT a.artist_uri, a.artist_name, count(*) AS plays
        FROM streams s JOIN tracks t USING (track_uri) JOIN artists a ON t.artist_uri = a.artist_uri
        WHERE s.user_id = '{ME}'
          AND s.ts >= TIMESTAMPTZ '{YEAR}-01-01 00:00:00+00'
          AND s.ts < TIMESTAMPTZ '{YEAR + 1}-01-01 00:00:00+00'
        GROUP BY ALL ORDER BY plays DESC, a.artist_uri LIMIT 3""")
    assert len(expected) == 3 and expected[0][2] > 100
    assert sluice == expected


def test_top_tracks_in_a_date_range(listener, duck):
    summer = (f"{YEAR + 2}-06-01", f"{YEAR + 2}-09-01")
    sluice = sluice_rows(listener, f"""
        SELECT t.track_name, s.track_uri, count(*) AS plays
        FROM streams s JOIN tracks t ON s.track_uri = t.track_uri
        WHERE s.ts BETWEEN '{summer[0]}T00:00:00Z' AND '{summer[1]}T00:00:00Z'
        GROUP BY t.track_name, s.track_uri
        ORDER BY plays DESC, s.track_uri LIMIT 10""")
    expected = duck_rows(duck, f"""
        SELECT t.track_name, s.track_uri, count(*) AS plays
        FROM streams s JOIN tracks t USING (track_uri)
        WHERE s.user_id = '{ME}'
          AND s.ts BETWEEN TIMESTAMPTZ '{summer[0]} 00:00:00+00' AND TIMESTAMPTZ '{summer[1]} 00:00:00+00'
        GROUP BY ALL ORDER BY plays DESC, s.track_uri LIMIT 10""")
    assert len(expected) == 10
    assert sluice == expected


def test_first_stream_ever(listener, duck):
    sluice = sluice_rows(listener, "SELECT track_uri, ts, ms_played FROM streams ORDER BY ts LIMIT 1")
    expected = duck_rows(duck, f"""
        SELECT track_uri, ts, ms_played FROM streams WHERE user_id = '{ME}' ORDER BY ts LIMIT 1""")
    assert sluice == expected


def test_first_and_last_play_of_a_track_with_a_bound_parameter(listener, duck):
    [(track,)] = duck_rows(duck, f"""
        SELECT track_uri FROM streams WHERE user_id = '{ME}'
        GROUP BY track_uri ORDER BY count(*) DESC, track_uri LIMIT 1""")
    sluice = sluice_rows(
        listener,
        "SELECT min(ts) AS first_play, max(ts) AS last_play, count(*) AS plays "
        "FROM streams WHERE track_uri = ?",
        (track,),
    )
    expected = duck_rows(duck, f"""
        SELECT min(ts), max(ts), count(*) FROM streams
        WHERE user_id = '{ME}' AND track_uri = '{track}'""")
    assert sluice == expected
    # The last play is recent: the answer spans the cold and the hot store.
    assert expected[0][1] > (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=60)).timestamp() * 1000


def test_monthly_plays_per_genre(listener, duck):
    sluice = sluice_rows(listener, f"""
        SELECT date_trunc('month', s.ts) AS month, a.genre, count(*) AS plays
        FROM streams s
        JOIN tracks t ON s.track_uri = t.track_uri
        JOIN artists a ON t.artist_uri = a.artist_uri
        WHERE s.ts >= '{END.year}-01-01T00:00:00Z'
        GROUP BY 1, 2 ORDER BY 1, 2""")
    expected = duck_rows(duck, f"""
        SELECT date_trunc('month', s.ts::TIMESTAMP) AS month, a.genre, count(*) AS plays
        FROM streams s JOIN tracks t USING (track_uri) JOIN artists a ON t.artist_uri = a.artist_uri
        WHERE s.user_id = '{ME}' AND s.ts >= TIMESTAMPTZ '{END.year}-01-01 00:00:00+00'
        GROUP BY 1, 2 ORDER BY 1, 2""")
    assert len(expected) > 10
    assert sluice == expected


def test_tracks_of_a_favourite_artist_never_played(listener, duck):
    # The listener's most played artist that still has tracks the listener never played.
    [(artist,)] = duck_rows(duck, f"""
        WITH mine AS (
            SELECT track_uri, count(*) AS n FROM streams WHERE user_id = '{ME}' GROUP BY 1),
        per_artist AS (
            SELECT t.artist_uri, sum(coalesce(m.n, 0)) AS plays,
                   count(*) FILTER (WHERE m.track_uri IS NULL) AS unplayed
            FROM tracks t LEFT JOIN mine m ON m.track_uri = t.track_uri GROUP BY 1)
        SELECT artist_uri FROM per_artist WHERE unplayed > 0 AND plays > 0
        ORDER BY plays DESC, artist_uri LIMIT 1""")
    sql = """
        SELECT t.track_uri, t.track_name FROM tracks t
        WHERE t.artist_uri = ?
          AND t.track_uri NOT IN (SELECT track_uri FROM streams)
        ORDER BY t.track_uri"""
    sluice = sluice_rows(listener, sql, (artist,))
    expected = duck_rows(duck, f"""
        SELECT t.track_uri, t.track_name FROM tracks t
        WHERE t.artist_uri = '{artist}'
          AND t.track_uri NOT IN (SELECT track_uri FROM streams WHERE user_id = '{ME}')
        ORDER BY t.track_uri""")
    assert expected, "the chosen artist has tracks the listener never played"
    assert sluice == expected


@pytest.mark.parametrize("days", [3, 10, 30])
def test_recent_plays_across_the_watermark(listener, duck, days):
    since = (END - dt.timedelta(days=days)).isoformat()
    sluice = sluice_rows(listener, f"""
        SELECT count(*), sum(ms_played), count(DISTINCT track_uri) FROM streams
        WHERE ts >= '{since}T00:00:00Z'""")
    expected = duck_rows(duck, f"""
        SELECT count(*), sum(ms_played), count(DISTINCT track_uri) FROM streams
        WHERE user_id = '{ME}' AND ts >= TIMESTAMPTZ '{since} 00:00:00+00'""")
    assert expected[0][0] > 0
    assert sluice == expected


def test_whole_history_counts(listener, analyst, duck):
    assert sluice_rows(listener, "SELECT count(*) FROM streams") == duck_rows(
        duck, f"SELECT count(*) FROM streams WHERE user_id = '{ME}'")
    assert sluice_rows(analyst, "SELECT user_id, count(*) FROM streams GROUP BY 1 ORDER BY 1") == \
        duck_rows(duck, "SELECT user_id, count(*) FROM streams GROUP BY 1 ORDER BY 1")


def test_events_exactly_at_the_watermark_are_counted_once(analyst, duck):
    # W is midnight UTC seven days before the end of the data.
    w = (END - dt.timedelta(days=7)).isoformat()
    for op in ("<", ">=", "="):
        sluice = sluice_rows(analyst, f"SELECT count(*) FROM streams WHERE ts {op} '{w}T00:00:00Z'")
        expected = duck_rows(duck, f"SELECT count(*) FROM streams WHERE ts {op} TIMESTAMPTZ '{w} 00:00:00+00'")
        assert sluice == expected, op


def test_relative_time_with_now(listener, duck):
    """Agents write "the last 7 days" with now(); it must plan and run on both branches."""
    [(n,)] = sluice_rows(listener, "SELECT count(*) FROM streams WHERE ts >= now() - INTERVAL '7 days'")
    [(week,)] = duck_rows(duck, f"""
        SELECT count(*) FROM streams WHERE user_id = '{ME}'
          AND ts >= now() - INTERVAL 8 DAY""")
    assert 0 < n <= week
