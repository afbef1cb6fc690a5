"""Every route gives the same answer: a corpus of questions (the seed questions in many forms)
asked through Sluice with `sluice.route = 'auto'` (rollups, partial aggregates per source) and
with `sluice.route = 'raw'` (raw events only), against the embedded default and against
ClickHouse (cold) with Redis (hot), each compared with DuckDB over the generated Parquet files.

Queries are templates: `{ts:...}` is a UTC time (written as each engine reads it) and `{me}`
the listener; listener questions run in DuckDB over a view of the listener's own events,
as Sluice scopes them."""

import datetime as dt
import json
import re

import pytest

from conftest import END, ME, connect
from helpers import duck_rows, table_rows

Y = END.year - 5
W = dt.datetime.combine(END - dt.timedelta(days=7), dt.time(), tzinfo=dt.timezone.utc)


def iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def at(days=0, hours=0, minutes=0):
    """A time relative to W."""
    return iso(W + dt.timedelta(days=days, hours=hours, minutes=minutes))


# Time ranges, as `ts` predicates: aligned and unaligned windows, before, across and after W,
# exactly at W, empty, and forms that are not plain ranges.
RANGES = {
    "year": f"ts >= {{ts:{Y}-01-01T00:00:00.000Z}} AND ts < {{ts:{Y + 1}-01-01T00:00:00.000Z}}",
    "unaligned": f"ts >= {{ts:{Y}-03-15T13:45:00.000Z}} AND ts < {{ts:{Y}-09-02T06:00:00.500Z}}",
    "summer_between": f"ts BETWEEN {{ts:{Y + 2}-06-01T00:00:00.000Z}} AND {{ts:{Y + 2}-09-01T00:00:00.000Z}}",
    "across_w": f"ts >= {{ts:{at(-40, 7)}}} AND ts < {{ts:{at(3, 5)}}}",
    "after_w": f"ts >= {{ts:{at(1)}}}",
    "from_w": f"ts >= {{ts:{at()}}}",
    "before_w": f"ts < {{ts:{at()}}}",
    "empty": f"ts >= {{ts:{Y}-05-01T00:00:00.000Z}} AND ts < {{ts:{Y}-05-01T00:00:00.000Z}}",
    "all": "TRUE",
    "extract_year": f"EXTRACT(YEAR FROM ts) = {Y + 1}",
}

CATALOG_JOINS = ("JOIN tracks t ON s.track_uri = t.track_uri "
                 "JOIN artists a ON t.artist_uri = a.artist_uri")

# Listener questions over one range each.
SHAPES = {
    "count_and_time": "SELECT count(*) AS plays, sum(ms_played) AS ms FROM streams WHERE {r}",
    "top_tracks": "SELECT track_uri, count(*) AS plays FROM streams WHERE {r} "
                  "GROUP BY track_uri ORDER BY plays DESC, track_uri LIMIT 10",
    "first_last": "SELECT min(ts) AS first, max(ts) AS last, count(*) AS plays FROM streams WHERE {r}",
    "monthly": "SELECT date_trunc('month', ts) AS month, count(*) AS plays, sum(ms_played) AS ms "
               "FROM streams WHERE {r} GROUP BY 1 ORDER BY 1",
    "distinct_tracks": "SELECT count(DISTINCT track_uri) AS tracks, count(*) AS plays FROM streams WHERE {r}",
    "top_artist": "SELECT a.artist_name, count(*) AS plays FROM streams s "
                  "JOIN tracks t ON s.track_uri = t.track_uri JOIN artists a ON t.artist_uri = a.artist_uri "
                  "WHERE s.{r} GROUP BY a.artist_name ORDER BY plays DESC, a.artist_name LIMIT 3",
}

CORPUS = [(f"{shape}/{rng}", SHAPES[shape].replace("{r}", RANGES[rng]))
          for shape in SHAPES for rng in RANGES
          # The join template qualifies the range with `s.`; keep the ones that read well.
          if not (shape == "top_artist" and rng in ("all", "extract_year", "empty"))]

CORPUS += [
    ("first_stream", "SELECT track_uri, ts, ms_played FROM streams ORDER BY ts, track_uri LIMIT 1"),
    ("first_play_per_track", "SELECT track_uri, min(ts) AS first, max(ts) AS last, count(*) AS n "
                             "FROM streams GROUP BY track_uri ORDER BY n DESC, track_uri LIMIT 20"),
    ("one_track_whole_history", "SELECT min(ts), max(ts), count(*) FROM streams "
                                "WHERE track_uri = (SELECT min(track_uri) FROM streams)"),
    ("yearly_by_extract", "SELECT EXTRACT(YEAR FROM ts) AS y, count(*) AS n, sum(ms_played) AS ms "
                          "FROM streams GROUP BY 1 ORDER BY 1"),
    ("weekly_this_year", f"SELECT date_trunc('week', ts) AS wk, count(*) AS n FROM streams "
                         f"WHERE ts >= {{ts:{END.year}-01-01T00:00:00.000Z}} GROUP BY 1 ORDER BY 1"),
    ("daily_last_month", f"SELECT date_trunc('day', ts) AS d, count(*) AS n FROM streams "
                         f"WHERE ts >= {{ts:{at(-30, 12)}}} GROUP BY 1 ORDER BY 1"),
    ("hourly_is_raw", f"SELECT date_trunc('hour', ts) AS h, count(*) AS n FROM streams "
                      f"WHERE ts >= {{ts:{at(-3)}}} GROUP BY 1 ORDER BY n DESC, h LIMIT 5"),
    ("having", "SELECT track_uri, count(*) AS n FROM streams GROUP BY track_uri "
               "HAVING count(*) > 20 ORDER BY n DESC, track_uri LIMIT 15"),
    ("ties_in_ranking", f"SELECT track_uri, count(*) AS n FROM streams WHERE {RANGES['unaligned']} "
                        "GROUP BY track_uri ORDER BY n DESC, track_uri LIMIT 30"),
    ("rank_window", "SELECT track_uri, n, rank() OVER (ORDER BY n DESC) AS r FROM ("
                    "SELECT track_uri, count(*) AS n FROM streams GROUP BY track_uri) x "
                    "ORDER BY r, track_uri LIMIT 10"),
    ("subquery_in", "SELECT count(*) FROM tracks WHERE track_uri IN (SELECT track_uri FROM streams "
                    f"WHERE {RANGES['year']})"),
    ("never_played_of_top_artist", "SELECT count(*) FROM tracks t WHERE t.artist_uri = ("
                                   "SELECT t2.artist_uri FROM streams s JOIN tracks t2 ON s.track_uri = t2.track_uri "
                                   "GROUP BY t2.artist_uri ORDER BY count(*) DESC, t2.artist_uri LIMIT 1) "
                                   "AND t.track_uri NOT IN (SELECT track_uri FROM streams)"),
    ("distinct_rows", f"SELECT DISTINCT date_trunc('year', ts) AS y FROM streams WHERE {RANGES['across_w']} ORDER BY 1"),
    ("genre_monthly_this_year", "SELECT date_trunc('month', s.ts) AS m, a.genre, count(*) AS n FROM streams s "
                                "JOIN tracks t ON s.track_uri = t.track_uri JOIN artists a ON t.artist_uri = a.artist_uri "
                                f"WHERE s.ts >= {{ts:{END.year}-01-01T00:00:00.000Z}} GROUP BY 1, 2 ORDER BY 1, 2"),
    ("ms_filter_is_raw", f"SELECT count(*) FROM streams WHERE ms_played > 60000 AND {RANGES['year']}"),
    # Read from the monthly rollups by genre and artist for whole months, raw at the edges.
    ("genre_quarterly", "SELECT date_trunc('quarter', s.ts) AS q, a.genre, count(*) AS n, "
                        f"sum(s.ms_played) AS ms FROM streams s {CATALOG_JOINS} "
                        f"WHERE s.{RANGES['unaligned']} GROUP BY 1, 2 ORDER BY 1, 2"),
    ("artists_of_some_genres_across_w", "SELECT a.artist_uri, a.artist_name, count(*) AS n "
                                        f"FROM streams s {CATALOG_JOINS} WHERE a.genre >= 'm' "
                                        f"AND s.{RANGES['across_w']} GROUP BY 1, 2 "
                                        "ORDER BY n DESC, 1 LIMIT 10"),
    ("top_artist_uri_by_year", "SELECT EXTRACT(YEAR FROM s.ts) AS y, t.artist_uri, count(*) AS n "
                               f"FROM streams s {CATALOG_JOINS} GROUP BY 1, 2 "
                               "ORDER BY n DESC, 1, 2 LIMIT 10"),
    ("track_filter_rollup", f"SELECT count(*), sum(ms_played) FROM streams WHERE track_uri >= 'spotify:track:5' AND {RANGES['year']}"),
    ("exactly_at_w", f"SELECT count(*) FROM streams WHERE ts = {{ts:{at()}}}"),
    ("cte_taste_change", f"WITH y1 AS (SELECT track_uri, count(*) AS n FROM streams WHERE {RANGES['year']} GROUP BY 1), "
                         f"y2 AS (SELECT track_uri, count(*) AS n FROM streams WHERE ts >= {{ts:{Y + 1}-01-01T00:00:00.000Z}} "
                         f"AND ts < {{ts:{Y + 2}-01-01T00:00:00.000Z}} GROUP BY 1) "
                         "SELECT count(*) FROM y1 JOIN y2 ON y1.track_uri = y2.track_uri"),
]

# Analyst questions (across listeners).
ANALYST = [
    ("per_listener_counts", "SELECT user_id, count(*) AS n, sum(ms_played) AS ms FROM streams GROUP BY 1 ORDER BY 1"),
    ("per_listener_year", f"SELECT user_id, count(*) AS n FROM streams WHERE {RANGES['year']} GROUP BY 1 ORDER BY 1"),
    ("listeners_per_month", f"SELECT date_trunc('month', ts) AS m, count(DISTINCT user_id) AS listeners, count(*) AS n "
                            f"FROM streams WHERE {RANGES['across_w']} GROUP BY 1 ORDER BY 1"),
    ("first_play_per_listener", "SELECT user_id, min(ts) AS first, max(ts) AS last FROM streams GROUP BY 1 ORDER BY 1"),
    ("top_tracks_overall", "SELECT track_uri, count(*) AS n FROM streams GROUP BY 1 ORDER BY n DESC, track_uri LIMIT 10"),
    ("genre_year", "SELECT a.genre, count(*) AS n FROM streams s JOIN tracks t ON s.track_uri = t.track_uri "
                   f"JOIN artists a ON t.artist_uri = a.artist_uri WHERE s.{RANGES['year']} GROUP BY 1 ORDER BY n DESC, 1 LIMIT 5"),
    ("genre_listeners_year", "SELECT a.genre, count(*) AS plays, count(DISTINCT s.user_id) AS listeners "
                             f"FROM streams s {CATALOG_JOINS} WHERE s.{RANGES['year']} "
                             "GROUP BY 1 ORDER BY 1"),
    ("genre_listeners_across_w", "SELECT a.genre, count(DISTINCT s.user_id) AS listeners, count(*) AS n "
                                 f"FROM streams s {CATALOG_JOINS} WHERE s.{RANGES['across_w']} "
                                 "GROUP BY 1 ORDER BY 1"),
]

# Questions that must read a monthly rollup by catalog keys (the rest of their range raw).
MONTHLY_BY_CATALOG = {
    "top_artist/year": "plays_monthly_artist",
    "top_artist/unaligned": "plays_monthly_artist",
    "genre_quarterly": "plays_monthly_genre",
    "top_artist_uri_by_year": "plays_monthly_artist",
    "genre_year": "plays_monthly_genre",
    "genre_listeners_year": "plays_monthly_genre",
}


def for_sluice(sql):
    return re.sub(r"\{ts:([^}]+)\}", r"'\1'", sql)


def for_duck(sql):
    sql = re.sub(r"\{ts:([^}]+)\}", r"TIMESTAMPTZ '\1'", sql)
    return sql.replace("date_trunc('month', ts)", "date_trunc('month', ts::TIMESTAMP)::TIMESTAMPTZ") \
              .replace("date_trunc('month', s.ts)", "date_trunc('month', s.ts::TIMESTAMP)::TIMESTAMPTZ") \
              .replace("date_trunc('quarter', s.ts)", "date_trunc('quarter', s.ts::TIMESTAMP)::TIMESTAMPTZ") \
              .replace("date_trunc('week', ts)", "date_trunc('week', ts::TIMESTAMP)::TIMESTAMPTZ") \
              .replace("date_trunc('year', ts)", "date_trunc('year', ts::TIMESTAMP)::TIMESTAMPTZ") \
              .replace("date_trunc('day', ts)", "date_trunc('day', ts::TIMESTAMP)::TIMESTAMPTZ") \
              .replace("date_trunc('hour', ts)", "date_trunc('hour', ts::TIMESTAMP)::TIMESTAMPTZ")


def test_the_corpus_is_large_enough():
    assert len(CORPUS) + len(ANALYST) >= 60


def routed(gateway, user, route):
    conn = connect(gateway, user)
    with conn.cursor() as cur:
        cur.execute(f"SET sluice.route = '{route}'")
    return conn


@pytest.fixture(scope="module")
def listener_routes(gateway):
    conns = {r: routed(gateway, ME, r) for r in ("auto", "raw")}
    yield conns
    for c in conns.values():
        c.close()


@pytest.fixture(scope="module")
def analyst_routes(gateway):
    conns = {r: routed(gateway, "analyst", r) for r in ("auto", "raw")}
    yield conns
    for c in conns.values():
        c.close()


def proto_fields(data):
    """The top-level fields of a protobuf message, as {number: [raw values]}."""
    fields, i = {}, 0

    def varint():
        nonlocal i
        shift = value = 0
        while True:
            b = data[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return value

    while i < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            value = varint()
        elif wire == 2:
            n = varint()
            value, i = data[i:i + n], i + n
        elif wire == 1:
            value, i = data[i:i + 8], i + 8
        elif wire == 5:
            value, i = data[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def manifest_of(flight_info: bytes):
    """The manifest in a serialized FlightInfo (its app_metadata, field 7)."""
    [app_metadata] = proto_fields(flight_info)[7]
    return json.loads(app_metadata)


def run(conn, sql):
    """Rows and the result manifest. The manifest is the FlightInfo's app_metadata; ADBC hands
    out the FlightInfo as the partition descriptor of `adbc_execute_partitions`."""
    with conn.cursor() as cur:
        partitions, _ = cur.adbc_execute_partitions(sql)
        assert len(partitions) == 1
        cur.adbc_read_partition(partitions[0])
        rows = table_rows(cur.fetch_arrow_table())
    return rows, manifest_of(partitions[0])


def check(conns, duck_con, name, sql):
    expected = duck_rows(duck_con, for_duck(sql))
    auto, auto_manifest = run(conns["auto"], for_sluice(sql))
    raw, raw_manifest = run(conns["raw"], for_sluice(sql))
    assert raw == expected, f"{name} (raw)\n{sql}"
    assert auto == expected, f"{name} (auto, {auto_manifest.get('rollups')})\n{sql}"
    assert raw_manifest["route"] == "raw" and raw_manifest["rollups"] == []
    assert auto_manifest["route"] == "auto"
    return auto_manifest


@pytest.mark.parametrize("name,sql", CORPUS, ids=[n for n, _ in CORPUS])
def test_listener_question_same_on_every_route(listener_routes, mine, name, sql):
    manifest = check(listener_routes, mine, name, sql)
    # DataFusion turns `EXTRACT(YEAR FROM ts) = y` into a range of ts, so it reads a rollup too.
    if name in ("count_and_time/year", "monthly/year", "top_tracks/all", "count_and_time/extract_year"):
        assert manifest["rollups"], f"{name} should read a rollup: {manifest}"
    if name in ("ms_filter_is_raw", "hourly_is_raw"):
        assert manifest["rollups"] == [], manifest
    if name in MONTHLY_BY_CATALOG:
        assert MONTHLY_BY_CATALOG[name] in manifest["rollups"], manifest


@pytest.mark.parametrize("name,sql", ANALYST, ids=[n for n, _ in ANALYST])
def test_analyst_question_same_on_every_route(analyst_routes, duck, name, sql):
    manifest = check(analyst_routes, duck, name, sql)
    if name in MONTHLY_BY_CATALOG:
        assert MONTHLY_BY_CATALOG[name] in manifest["rollups"], manifest


def test_manifest_says_how_the_result_was_computed(listener_routes):
    _, m = run(listener_routes["auto"], for_sluice(SHAPES["count_and_time"].replace("{r}", RANGES["year"])))
    assert m["watermark"] == iso(W).replace(".000Z", "Z")
    assert m["freshness"] == "live"
    assert m["rollups"] == ["plays_daily"]
    assert any(p["rollup"] == "track_first_last" for p in m["rollups_passed_over"])
    assert all(r["users"] == [ME] for r in m["reads"])
    # A year long before W: no hot read.
    assert all(r["branch"] == "cold" for r in m["reads"])


def test_cold_freshness_skips_the_hot_store(gateway, mine):
    conn = connect(gateway, ME)
    try:
        with conn.cursor() as cur:
            cur.execute("SET sluice.freshness = 'cold'")
        rows, m = run(conn, "SELECT count(*) FROM streams")
        assert m["freshness"] == "cold"
        assert all(r["branch"] == "cold" for r in m["reads"])
        assert rows == duck_rows(mine, f"SELECT count(*) FROM streams WHERE ts < TIMESTAMPTZ '{iso(W)}'")
    finally:
        conn.close()


def test_bad_route_settings_are_refused(gateway):
    conn = connect(gateway, ME)
    try:
        with conn.cursor() as cur:
            with pytest.raises(Exception, match="sluice.route"):
                cur.execute("SET sluice.route = 'fastest'")
    finally:
        conn.close()
