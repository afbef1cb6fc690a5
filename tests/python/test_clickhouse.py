"""ClickHouse as the cold store: `sluice clickhouse init` and `sluice load` against a private
Debian clickhouse-server 18.16, what Sluice asks ClickHouse (read back from
`system.query_log`), the rollups by name, and ClickHouse going away."""

import datetime as dt
import time

import adbc_driver_manager
import pytest

from conftest import (CLICKHOUSE_DB, END, SERVER_18, connect, needs_the_real_server, sluice,
                      start_clickhouse, start_redis, start_server, write_clickhouse_config)
from helpers import duck_rows, sluice_rows

ME = "u0002"
# With ClickHouse alone it holds every event: `W` is the end of the dataset's history.
W = dt.datetime.combine(END, dt.time(), tzinfo=dt.timezone.utc)
W_MS = int(W.timestamp() * 1000)


def ch(clickhouse, sql):
    return clickhouse.query(sql).strip()


def test_init_creates_the_schema_and_load_records_w(clickhouse, clickhouse_config, duck):
    tables = set(ch(clickhouse, f"SHOW TABLES FROM {CLICKHOUSE_DB}").split())
    assert {"streams", "plays_daily", "plays_daily_state", "plays_daily_mv", "track_first_last",
            "track_first_last_state", "track_first_last_mv", "tracks", "artists",
            "plays_monthly_artist", "plays_monthly_artist_state", "plays_monthly_artist_mv",
            "plays_monthly_genre", "plays_monthly_genre_state", "plays_monthly_genre_mv",
            "sluice_watermark"} <= tables
    engine = ch(clickhouse, f"SELECT engine FROM system.tables "
                            f"WHERE database = '{CLICKHOUSE_DB}' AND name = 'streams'")
    assert engine == "MergeTree"
    # Not partitioned: one listener's read is one index probe, not one per month.
    assert ch(clickhouse, f"SELECT uniqExact(partition) FROM system.parts "
                          f"WHERE database = '{CLICKHOUSE_DB}' AND table = 'streams' AND active") == "1"
    # Every event before W, once; W recorded after the inserts.
    [(cold,)] = duck_rows(duck, f"SELECT count(*) FROM streams WHERE ts < TIMESTAMPTZ '{W.isoformat()}'")
    assert int(ch(clickhouse, f"SELECT count() FROM {CLICKHOUSE_DB}.streams")) == cold
    assert int(ch(clickhouse, f"SELECT max(w_ms) FROM {CLICKHOUSE_DB}.sluice_watermark")) == W_MS
    # The rollups saw the same events.
    assert int(ch(clickhouse, f"SELECT sum(plays) FROM {CLICKHOUSE_DB}.plays_daily")) == cold
    assert int(ch(clickhouse, f"SELECT sum(plays) FROM {CLICKHOUSE_DB}.track_first_last")) == cold
    # The rollups by artist and genre saw them joined with the catalog (loaded first).
    for rollup in ("plays_monthly_artist", "plays_monthly_genre"):
        assert int(ch(clickhouse, f"SELECT sum(plays) FROM {CLICKHOUSE_DB}.{rollup}")) == cold
    month = dt.date(END.year - 2, 3, 1)
    [(genre, plays)] = duck_rows(duck, f"""
        SELECT a.genre, count(*) FROM streams s JOIN tracks t USING (track_uri)
        JOIN artists a USING (artist_uri) WHERE s.user_id = '{ME}'
          AND s.ts >= TIMESTAMPTZ '{month.isoformat()} 00:00:00+00'
          AND s.ts < TIMESTAMPTZ '{month.replace(month=4).isoformat()} 00:00:00+00'
        GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1""")
    month_ms = int(dt.datetime.combine(month, dt.time(), tzinfo=dt.timezone.utc).timestamp() * 1000)
    assert int(ch(clickhouse, f"SELECT plays FROM {CLICKHOUSE_DB}.plays_monthly_genre "
                              f"WHERE user_id = '{ME}' AND month = {month_ms} "
                              f"AND genre = '{genre}'")) == plays
    [(tracks,)] = duck_rows(duck, "SELECT count(*) FROM tracks")
    assert int(ch(clickhouse, f"SELECT count() FROM {CLICKHOUSE_DB}.tracks")) == tracks


def test_loading_again_adds_nothing(clickhouse, clickhouse_config, dataset_dir):
    before = ch(clickhouse, f"SELECT count() FROM {CLICKHOUSE_DB}.streams")
    out = sluice("load", "--config", clickhouse_config, "--from", dataset_dir)
    assert "already holds every event before" in out.stdout, out.stdout
    assert ch(clickhouse, f"SELECT count() FROM {CLICKHOUSE_DB}.streams") == before


def test_init_fills_a_rollup_the_events_came_before(clickhouse, clickhouse_config):
    """A database loaded before a rollup by the catalog existed: `init` fills it from the
    events held, and leaves a filled one alone."""
    held = ch(clickhouse, f"SELECT count() FROM {CLICKHOUSE_DB}.plays_monthly_genre_state")
    sluice("clickhouse", "init", "--config", clickhouse_config)
    assert ch(clickhouse, f"SELECT count() FROM {CLICKHOUSE_DB}.plays_monthly_genre_state") == held
    cold = ch(clickhouse, f"SELECT count() FROM {CLICKHOUSE_DB}.streams")
    ch(clickhouse, f"TRUNCATE TABLE {CLICKHOUSE_DB}.plays_monthly_genre_state")
    sluice("clickhouse", "init", "--config", clickhouse_config)
    assert ch(clickhouse, f"SELECT sum(plays) FROM {CLICKHOUSE_DB}.plays_monthly_genre") == cold


def logged_queries(clickhouse, marker):
    """The queries ClickHouse logged whose text contains `marker`, by query id, with their rows
    (event_time has whole seconds only: two queries in one second cannot be ordered by it)."""
    ch(clickhouse, "SYSTEM FLUSH LOGS")
    rows = ch(clickhouse, f"""
        SELECT query_id, query, read_rows, result_rows FROM system.query_log
        WHERE type = 2 AND query LIKE '%{marker}%' AND query NOT LIKE '%query_log%'""")
    logged = {}
    for line in rows.splitlines():
        query_id, query, read_rows, result_rows = line.split("\t")
        logged[query_id] = (query.replace("\\'", "'"), int(read_rows), int(result_rows))
    return logged


def new_query(clickhouse, marker, before):
    """The one query with `marker` that ClickHouse logged since `before` (`logged_queries`)."""
    new = [q for i, q in logged_queries(clickhouse, marker).items() if i not in before]
    assert len(new) == 1, f"ClickHouse logged {len(new)} new queries with {marker!r}: {new}"
    return new[0]


def test_a_cross_listener_aggregate_joined_with_artists_moves_only_its_groups(
        clickhouse, clickhouse_server, duck):
    needs_the_real_server(clickhouse, "system.query_log")
    year = END.year - 3
    sql = f"""
        SELECT a.genre, count(*) AS plays, sum(s.ms_played) AS played
        FROM streams s JOIN tracks t ON s.track_uri = t.track_uri
        JOIN artists a ON t.artist_uri = a.artist_uri
        WHERE s.ts >= '{year}-01-01T00:00:00Z' AND s.ts < '{year + 1}-01-01T00:00:00Z'
        GROUP BY a.genre ORDER BY plays DESC, a.genre"""
    expected = duck_rows(duck, f"""
        SELECT a.genre, count(*) AS plays, sum(s.ms_played) AS played
        FROM streams s JOIN tracks t USING (track_uri) JOIN artists a ON t.artist_uri = a.artist_uri
        WHERE s.ts >= TIMESTAMPTZ '{year}-01-01 00:00:00+00' AND s.ts < TIMESTAMPTZ '{year + 1}-01-01 00:00:00+00'
        GROUP BY a.genre ORDER BY plays DESC, a.genre""")
    read = {}
    for route in ("raw", "auto"):
        before = logged_queries(clickhouse, '"genre"')
        with connect(clickhouse_server, "analyst") as conn:
            with conn.cursor() as cur:
                cur.execute(f"SET sluice.route = '{route}'")
            assert sluice_rows(conn, sql) == expected, route
        query, read_rows, result_rows = new_query(clickhouse, '"genre"', before)
        # One statement did the filtering (joining) and grouping in ClickHouse, and sent the
        # gateway one row per genre, out of a year of every listener's events ...
        assert "GROUP BY" in query, query
        assert result_rows == len(expected)
        read[route] = read_rows
        if route == "raw":
            assert "JOIN" in query and "timestamp_ms" in query, query
        else:
            # ... or, on `auto`, out of the monthly rollup by genre, with no join at all.
            assert "plays_monthly_genre" in query and "JOIN" not in query, query
    assert read["raw"] > 10_000
    assert read["auto"] * 5 < read["raw"], read


def test_a_listener_sees_only_its_own_rollup_rows(clickhouse_server, duck):
    with connect(clickhouse_server, ME) as conn:
        users = sluice_rows(conn, "SELECT DISTINCT user_id FROM track_first_last")
        assert users == [(ME,)]
        rows = sluice_rows(conn, """
            SELECT track_uri, first_ts, last_ts, plays FROM track_first_last
            ORDER BY plays DESC, track_uri LIMIT 5""")
        days = sluice_rows(conn, """
            SELECT day, sum(plays) FROM plays_daily GROUP BY day ORDER BY day DESC LIMIT 3""")
    expected = duck_rows(duck, f"""
        SELECT track_uri, min(ts), max(ts), count(*) AS plays FROM streams
        WHERE user_id = '{ME}' AND ts < TIMESTAMPTZ '{W.isoformat()}'
        GROUP BY track_uri ORDER BY plays DESC, track_uri LIMIT 5""")
    assert rows == expected
    expected_days = duck_rows(duck, f"""
        SELECT date_trunc('day', ts::TIMESTAMP)::TIMESTAMPTZ AS day, count(*) FROM streams
        WHERE user_id = '{ME}' AND ts < TIMESTAMPTZ '{W.isoformat()}'
        GROUP BY day ORDER BY day DESC LIMIT 3""")
    assert days == expected_days


def test_explain_shows_the_sql_sent_to_clickhouse(clickhouse_server):
    with connect(clickhouse_server, ME) as conn, conn.cursor() as cur:
        cur.execute(f"""EXPLAIN SELECT count(*) FROM streams
                        WHERE ts >= '{END.year - 4}-01-01T00:00:00Z' AND ts < '{END.year - 3}-01-01T00:00:00Z'""")
        plan = "\n".join(str(v) for row in cur.fetchall() for v in row)
    assert "ClickHouseStatementExec: clickhouse" in plan, plan
    # A whole year of counts: the daily rollup, for this listener, no hot store.
    assert '"plays_daily"."day" >=' in plan and f"'{ME}'" in plan, plan
    assert "cold clickhouse: rollup plays_daily" in plan, plan
    assert "Redis" not in plan and "memory" not in plan, plan


@pytest.fixture
def doomed_clickhouse(tmp_path, dataset_dir):
    """A second private ClickHouse with Redis as the hot store, loaded and served, that the
    test stops."""
    gen = start_clickhouse(tmp_path / "ch")
    server = next(gen)
    redis = start_redis(tmp_path)
    _, port = next(redis)
    path = write_clickhouse_config(
        tmp_path, server.url, timeout_ms=3000,
        extra=f'[redis]\nurl = "redis://127.0.0.1:{port}/"\n')
    sluice("clickhouse", "init", "--config", path)
    sluice("load", "--config", path, "--from", dataset_dir)
    gateway_gen = start_server(dataset_dir, "--config", str(path), data=False)
    gateway = next(gateway_gen)
    yield server, gateway
    for g in (gateway_gen, redis, gen):
        try:
            next(g)
        except StopIteration:
            pass


def test_clickhouse_down_is_a_clear_error_and_redis_queries_still_work(doomed_clickhouse, duck):
    server, gateway = doomed_clickhouse
    since = (END - dt.timedelta(days=3)).isoformat()
    with connect(gateway, ME) as conn:
        # Reads W once while ClickHouse is up (the gateway keeps the last W it read).
        hot = sluice_rows(conn, f"SELECT count(*) FROM streams WHERE ts >= '{since}T00:00:00Z'")
        server.stop()
        started = time.monotonic()
        with pytest.raises(adbc_driver_manager.Error) as err:
            sluice_rows(conn, f"SELECT count(*) FROM streams WHERE ts < '{END.year - 1}-01-01T00:00:00Z'")
        assert time.monotonic() - started < 10
        message = str(err.value)
        assert "UNAVAILABLE" in message.upper() and "ClickHouse" in message, message
        # A question about the last days needs only the hot store.
        assert sluice_rows(conn, f"SELECT count(*) FROM streams WHERE ts >= '{since}T00:00:00Z'") == hot
    expected = duck_rows(duck, f"SELECT count(*) FROM streams WHERE user_id = '{ME}' AND ts >= TIMESTAMPTZ '{since} 00:00:00+00'")
    assert hot == expected


def test_an_unreachable_clickhouse_is_named_at_start(tmp_path, dataset_dir):
    path = write_clickhouse_config(tmp_path, "http://127.0.0.1:9")
    out = sluice("serve", "--config", path, "--listen", "127.0.0.1:0", check=False)
    assert out.returncode != 0
    assert "ClickHouse at http://127.0.0.1:9" in out.stderr, out.stderr


def ch_rows(clickhouse, sql):
    text = clickhouse.query(f"{sql} FORMAT TabSeparated")
    return [tuple(line.split("\t")) for line in text.splitlines()]


def as_text(rows):
    return [tuple(str(v) for v in row) for row in rows]


YEAR = END.year - 3
A = int(dt.datetime(YEAR, 1, 1, tzinfo=dt.timezone.utc).timestamp() * 1000)
B = int(dt.datetime(YEAR + 1, 1, 1, tzinfo=dt.timezone.utc).timestamp() * 1000)
S = int(dt.datetime(YEAR, 6, 1, tzinfo=dt.timezone.utc).timestamp() * 1000)
E = int(dt.datetime(YEAR, 9, 1, tzinfo=dt.timezone.utc).timestamp() * 1000)
RAW = f"{CLICKHOUSE_DB}.streams"
MINE = f"user_id = '{ME}'"

# (Sluice SQL as a listener writes it, the same question hand-written for ClickHouse over the
# raw table in SQL both 18.16 and current releases read alike: one JOIN per SELECT, every
# subquery named, ALL joins; times in milliseconds). Ranges end before W,
# where the raw table holds every event.
DIRECT = {
    "top artist in a year": (
        f"""SELECT a.artist_uri, a.artist_name, count(*) AS plays FROM streams s
            JOIN tracks t ON s.track_uri = t.track_uri JOIN artists a ON t.artist_uri = a.artist_uri
            WHERE s.ts >= '{YEAR}-01-01T00:00:00Z' AND s.ts < '{YEAR + 1}-01-01T00:00:00Z'
            GROUP BY a.artist_uri, a.artist_name ORDER BY plays DESC, a.artist_uri LIMIT 3""",
        f"""SELECT artist_uri, artist_name, count() AS plays FROM (
              SELECT artist_uri FROM (SELECT track_uri FROM {RAW}
                WHERE {MINE} AND timestamp_ms >= {A} AND timestamp_ms < {B}) AS events
              ALL INNER JOIN {CLICKHOUSE_DB}.tracks USING track_uri) AS played
            ALL INNER JOIN {CLICKHOUSE_DB}.artists USING artist_uri
            GROUP BY artist_uri, artist_name ORDER BY plays DESC, artist_uri LIMIT 3"""),
    "top tracks last summer": (
        f"""SELECT track_uri, count(*) AS plays, sum(ms_played) FROM streams
            WHERE ts >= '{YEAR}-06-01T00:00:00Z' AND ts < '{YEAR}-09-01T00:00:00Z'
            GROUP BY track_uri ORDER BY plays DESC, track_uri LIMIT 10""",
        f"""SELECT track_uri, count() AS plays, sum(ms_played) FROM {RAW}
            WHERE {MINE} AND timestamp_ms >= {S} AND timestamp_ms < {E}
            GROUP BY track_uri ORDER BY plays DESC, track_uri LIMIT 10"""),
    "first stream": (
        "SELECT track_uri, ts, ms_played FROM streams ORDER BY ts, track_uri LIMIT 1",
        f"SELECT track_uri, timestamp_ms, ms_played FROM {RAW} WHERE {MINE} "
        "ORDER BY timestamp_ms, track_uri LIMIT 1"),
    "first and last play of each track, a year": (
        f"""SELECT track_uri, min(ts), max(ts), count(*) AS n FROM streams
            WHERE ts >= '{YEAR}-01-01T00:00:00Z' AND ts < '{YEAR + 1}-01-01T00:00:00Z'
            GROUP BY track_uri ORDER BY n DESC, track_uri LIMIT 5""",
        f"""SELECT track_uri, min(timestamp_ms), max(timestamp_ms), count() AS n FROM {RAW}
            WHERE {MINE} AND timestamp_ms >= {A} AND timestamp_ms < {B}
            GROUP BY track_uri ORDER BY n DESC, track_uri LIMIT 5"""),
    "monthly plays per genre": (
        f"""SELECT date_trunc('month', s.ts) AS month, a.genre, count(*) AS plays FROM streams s
            JOIN tracks t ON s.track_uri = t.track_uri JOIN artists a ON t.artist_uri = a.artist_uri
            WHERE s.ts >= '{YEAR}-01-01T00:00:00Z' AND s.ts < '{YEAR + 1}-01-01T00:00:00Z'
            GROUP BY 1, 2 ORDER BY 1, 2""",
        f"""SELECT toUInt64(toStartOfMonth(toDateTime(intDiv(timestamp_ms, 1000), 'UTC'))) * 86400000 AS month,
                   genre, count() AS plays FROM (
              SELECT timestamp_ms, artist_uri FROM (SELECT timestamp_ms, track_uri FROM {RAW}
                WHERE {MINE} AND timestamp_ms >= {A} AND timestamp_ms < {B}) AS events
              ALL INNER JOIN {CLICKHOUSE_DB}.tracks USING track_uri) AS played
            ALL INNER JOIN {CLICKHOUSE_DB}.artists USING artist_uri
            GROUP BY month, genre ORDER BY month, genre"""),
    "plays per weekday": (
        f"""SELECT EXTRACT(DOW FROM ts) AS dow, count(*) FROM streams
            WHERE ts >= '{YEAR}-01-01T00:00:00Z' AND ts < '{YEAR + 1}-01-01T00:00:00Z'
            GROUP BY 1 ORDER BY 1""",
        f"""SELECT toDayOfWeek(toDateTime(intDiv(timestamp_ms, 1000), 'UTC')) % 7 AS dow, count()
            FROM {RAW} WHERE {MINE} AND timestamp_ms >= {A} AND timestamp_ms < {B}
            GROUP BY dow ORDER BY dow"""),
}


@pytest.mark.parametrize("question", sorted(DIRECT))
def test_seed_questions_match_clickhouse_asked_directly(clickhouse, clickhouse_server, question):
    sluice_sql, direct_sql = DIRECT[question]
    with connect(clickhouse_server, ME) as conn:
        got = as_text(sluice_rows(conn, sluice_sql))
    expected = ch_rows(clickhouse, direct_sql)
    assert expected, "the question has an answer"
    assert got == expected


# --- only the configured sources ----------------------------------------------------------

def test_serve_refuses_a_dataset_folder_beside_clickhouse(tmp_path, dataset_dir):
    path = write_clickhouse_config(tmp_path, "http://127.0.0.1:9")
    out = sluice("serve", "--check", "--config", path, "--data", dataset_dir, check=False)
    assert out.returncode != 0
    assert "[clickhouse] is configured" in out.stderr and "sluice load" in out.stderr, out.stderr


def test_serve_with_clickhouse_needs_principals(tmp_path):
    path = tmp_path / "sluice.toml"
    path.write_text('[clickhouse]\nurl = "http://127.0.0.1:9"\n')
    out = sluice("serve", "--check", "--config", path, check=False)
    assert out.returncode != 0 and "[[principal]]" in out.stderr, out.stderr


def test_serve_with_redis_alone_needs_the_dataset_folder(tmp_path):
    path = tmp_path / "sluice.toml"
    path.write_text('[redis]\nurl = "redis://127.0.0.1:9/"\n')
    out = sluice("serve", "--check", "--config", path, check=False)
    assert out.returncode != 0 and "--data DIR" in out.stderr, out.stderr


def test_a_clickhouse_without_a_catalog_is_refused(clickhouse, tmp_path):
    """Sluice never invents a catalog: a database with events' W but no catalog loaded."""
    path = write_clickhouse_config(tmp_path, clickhouse.url, database="sluice_no_catalog")
    sluice("clickhouse", "init", "--config", path)
    ch(clickhouse, "INSERT INTO sluice_no_catalog.sluice_watermark (w_ms, published) "
                   "VALUES (1000, now())")
    out = sluice("serve", "--config", path, "--listen", "127.0.0.1:0", check=False)
    assert out.returncode != 0
    assert "holds no catalog (tracks is empty)" in out.stderr, out.stderr


def test_a_catalog_whose_keys_repeat_is_refused_before_anything_is_loaded(
        clickhouse, dataset_dir, tmp_path):
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq
    copy = tmp_path / "data"
    shutil.copytree(dataset_dir, copy)
    tracks = pq.read_table(copy / "tracks.parquet")
    pq.write_table(pa.concat_tables([tracks, tracks.slice(3, 1)]), copy / "tracks.parquet")
    repeated = tracks.column("track_uri")[3].as_py()
    path = write_clickhouse_config(tmp_path, clickhouse.url, database="sluice_repeated_keys")
    sluice("clickhouse", "init", "--config", path)
    out = sluice("load", "--config", path, "--from", copy, check=False)
    assert out.returncode != 0
    assert f'track_uri = "{repeated}" more than once' in out.stderr, out.stderr
    assert ch(clickhouse, "SELECT count() FROM sluice_repeated_keys.streams") == "0"
    assert ch(clickhouse, "SELECT count() FROM sluice_repeated_keys.tracks") == "0"


def test_a_window_over_an_aggregate_reads_its_columns_by_name(clickhouse_server, mine):
    """The statement ClickHouse ran sent its aggregate before its groups; the plan expects
    the groups first (`track_uri (String) cannot be read as Int64`, or worse, shifted values
    where the types agree)."""
    year = END.year - 3
    sql = f"""
        SELECT m, track_uri, n FROM (
          SELECT EXTRACT(MONTH FROM ts) AS m, track_uri, count(*) AS n,
                 ROW_NUMBER() OVER (PARTITION BY EXTRACT(MONTH FROM ts)
                                    ORDER BY count(*) DESC, track_uri) AS r
          FROM streams WHERE EXTRACT(YEAR FROM ts) = {year} GROUP BY 1, 2) x
        WHERE r <= 3 ORDER BY m, r"""
    expected = duck_rows(mine, sql)
    assert len(expected) == 36
    for route in ("raw", "auto"):
        with connect(clickhouse_server, ME) as conn:
            with conn.cursor() as cur:
                cur.execute(f"SET sluice.route = '{route}'")
            got = sluice_rows(conn, sql)
        assert [(int(m), t, n) for m, t, n in got] == [(int(m), t, n) for m, t, n in expected], route


# --- result formats ----------------------------------------------------------------------

def test_results_come_in_the_format_the_server_has(clickhouse, clickhouse_server):
    """`result_format = "auto"`: ArrowStream from 23.x, Native before, named in the banner."""
    expected = "Native" if clickhouse.version == SERVER_18 else "ArrowStream"
    assert f"(results in {expected})" in clickhouse_server.banner, clickhouse_server.banner


def test_either_format_gives_the_same_answers(clickhouse, clickhouse_config, dataset_dir,
                                              tmp_path, mine):
    """Forcing the other format: the same answers as DuckDB's (catalog join, times, counts);
    ArrowStream forced on a server without it is refused at start, saying what to set."""
    other = "native" if clickhouse.version != SERVER_18 else "arrow_stream"
    path = write_clickhouse_config(tmp_path, clickhouse.url,
                                   extra=f'result_format = "{other}"\n')
    if other == "arrow_stream":
        out = sluice("serve", "--config", path, "--listen", "127.0.0.1:0", check=False)
        assert out.returncode != 0
        assert 'result_format = "arrow_stream" needs ClickHouse 23.x' in out.stderr, out.stderr
        return
    sql = """SELECT a.artist_name, min(s.ts) AS first, count(*) AS plays, sum(s.ms_played) AS ms
             FROM streams s JOIN tracks t ON s.track_uri = t.track_uri
             JOIN artists a ON t.artist_uri = a.artist_uri
             GROUP BY a.artist_name ORDER BY plays DESC, a.artist_name LIMIT 10"""
    expected = duck_rows(mine, sql)
    servers = start_server(dataset_dir, "--config", str(path), data=False)
    server = next(servers)
    try:
        assert "(results in Native)" in server.banner, server.banner
        with connect(server, ME) as conn:
            assert sluice_rows(conn, sql) == expected
    finally:
        servers.close()
