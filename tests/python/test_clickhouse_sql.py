"""Golden files of the SQL Sluice sends ClickHouse for the seed questions, read from `EXPLAIN`
(the statements a `ClickHouseStatementExec` runs) against the private ClickHouse, and of the
route EXPLAIN describes in words (its `sluice_route` row: sources, rollups and why). Times are
written back as readable placeholders (`<W>`, `<2021-01-01T00:00:00Z>`) so the files do not
change with the day the tests run. The SQL is kept per ClickHouse version (`18.16/`, `26.9/`);
the route is the same on both. Regenerate with `SLUICE_BLESS=1` and review the diff."""

import datetime as dt
import os
import re

import pytest

from conftest import END, REPO, connect
from helpers import duck_rows, sluice_rows

GOLDEN = REPO / "tests" / "golden" / "clickhouse"
GOLDEN_ROUTES = REPO / "tests" / "golden" / "explain"
W = dt.datetime.combine(END - dt.timedelta(days=7), dt.time(), tzinfo=dt.timezone.utc)
W_MS = int(W.timestamp() * 1000)

# (principal, SQL): the seed questions in the form agents and analysts write them.
CASES = {
    "top_artist_in_2021": ("u0002", """
        SELECT a.artist_name, count(*) AS plays
        FROM streams s JOIN tracks t ON s.track_uri = t.track_uri
        JOIN artists a ON t.artist_uri = a.artist_uri
        WHERE s.ts >= '2021-01-01T00:00:00Z' AND s.ts < '2022-01-01T00:00:00Z'
        GROUP BY a.artist_name ORDER BY plays DESC LIMIT 1"""),
    "top_tracks_summer_2022": ("u0002", """
        SELECT track_uri, count(*) AS plays FROM streams
        WHERE ts >= '2022-06-01T00:00:00Z' AND ts < '2022-09-01T00:00:00Z'
        GROUP BY track_uri ORDER BY plays DESC, track_uri LIMIT 10"""),
    "first_stream_before_2023": ("u0002", """
        SELECT track_uri, ts FROM streams WHERE ts < '2023-01-01T00:00:00Z' ORDER BY ts LIMIT 1"""),
    "first_stream_ever": ("u0002", """
        SELECT track_uri, ts, ms_played FROM streams ORDER BY ts, track_uri LIMIT 1"""),
    "never_played_tracks_of_an_artist": ("u0002", """
        SELECT t.track_uri, t.track_name FROM tracks t
        WHERE t.artist_uri = 'spotify:artist:x' AND t.track_uri NOT IN (SELECT track_uri FROM streams)
        ORDER BY t.track_uri"""),
    "monthly_plays_per_genre_2022": ("u0002", """
        SELECT date_trunc('month', s.ts) AS month, a.genre, count(*) AS plays
        FROM streams s JOIN tracks t ON s.track_uri = t.track_uri
        JOIN artists a ON t.artist_uri = a.artist_uri
        WHERE s.ts >= '2022-01-01T00:00:00Z' AND s.ts < '2023-01-01T00:00:00Z'
        GROUP BY 1, 2 ORDER BY 1, 2"""),
    "first_and_last_play_of_a_track_2020": ("u0002", """
        SELECT min(ts), max(ts), count(*) FROM streams
        WHERE track_uri = 'spotify:track:x' AND ts < '2021-01-01T00:00:00Z'"""),
    "monthly_plays_2022": ("u0002", """
        SELECT date_trunc('month', ts) AS month, count(*) AS plays FROM streams
        WHERE ts >= '2022-01-01T00:00:00Z' AND ts < '2023-01-01T00:00:00Z'
        GROUP BY 1 ORDER BY 1"""),
    "plays_per_year_extract": ("u0002", """
        SELECT EXTRACT(YEAR FROM ts) AS year, count(*) FROM streams
        WHERE ts < '2024-01-01T00:00:00Z' GROUP BY 1 ORDER BY 1"""),
    "analyst_plays_per_genre_2021": ("analyst", """
        SELECT a.genre, count(*) AS plays FROM streams s
        JOIN tracks t ON s.track_uri = t.track_uri JOIN artists a ON t.artist_uri = a.artist_uri
        WHERE s.ts >= '2021-01-01T00:00:00Z' AND s.ts < '2022-01-01T00:00:00Z'
        GROUP BY a.genre ORDER BY plays DESC"""),
    "analyst_listeners_per_track_2021": ("analyst", """
        SELECT t.track_name, count(DISTINCT s.user_id) AS listeners FROM streams s
        JOIN tracks t ON s.track_uri = t.track_uri
        WHERE s.ts >= '2021-01-01T00:00:00Z' AND s.ts < '2022-01-01T00:00:00Z'
        GROUP BY t.track_name ORDER BY listeners DESC, t.track_name LIMIT 5"""),
    # A predicate ClickHouse cannot run stays in the gateway; the listener and the range
    # still go to ClickHouse.
    "listener_beside_a_filter_clickhouse_cannot_run": ("u0002", """
        SELECT count(*) FROM streams
        WHERE ts < '2022-01-01T00:00:00Z' AND track_uri || 'x' = 'spotify:track:xx'"""),
    "rollup_first_last_by_name": ("u0002", """
        SELECT track_uri, first_ts, plays FROM track_first_last ORDER BY first_ts LIMIT 3"""),
}


def placeholder(m):
    ms = int(m.group(0))
    if ms == W_MS:
        return "<W>"
    t = dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc)
    return "<" + t.strftime("%Y-%m-%dT%H:%M:%SZ") + ">"


def explain(conn, sql):
    with conn.cursor() as cur:
        cur.execute("EXPLAIN " + sql)
        return cur.fetchall()


def route_text(conn, sql):
    [route] = [plan for kind, plan in explain(conn, sql) if kind == "sluice_route"]
    return route.replace(W.strftime("%Y-%m-%dT%H:%M:%SZ"), "<W>") + "\n"


def sent_sql(conn, sql):
    text = "\n".join(str(v) for row in explain(conn, sql) for v in row)
    # Per statement, the SQL as sent.
    statements = [line.split(" sql=", 1)[1] for line in text.splitlines()
                  if "ClickHouseStatementExec" in line]
    assert statements, text
    out = []
    for s in statements:
        s = re.sub(r"\b1\d{12}\b", placeholder, s)
        out.append(s.strip())
    return "\n".join(out) + "\n"


def compare_golden(path, got):
    if os.environ.get("SLUICE_BLESS") == "1" or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(got)
        if os.environ.get("SLUICE_BLESS") != "1":
            pytest.fail(f"wrote new golden file {path}; review it and run again")
    assert got == path.read_text(), f"{path.name} changed; SLUICE_BLESS=1 regenerates it"


@pytest.mark.parametrize("name", sorted(CASES))
def test_sql_sent_to_clickhouse(full_stack, name):
    principal, sql = CASES[name]
    with connect(full_stack, principal) as conn:
        got = sent_sql(conn, sql)
    # Per version: 18.16 runs one JOIN per SELECT, so joins are nested there.
    compare_golden(GOLDEN / full_stack.clickhouse_version / f"{name}.sql", got)


@pytest.mark.parametrize("name", sorted(CASES))
def test_explain_describes_the_route(full_stack, name):
    principal, sql = CASES[name]
    with connect(full_stack, principal) as conn:
        got = route_text(conn, sql)
    compare_golden(GOLDEN_ROUTES / f"{name}.txt", got)


# Not asked of DuckDB: a tie for the top without a tie-break, and a rollup DuckDB lacks.
NOT_ANSWERED = {"top_artist_in_2021", "rollup_first_last_by_name"}
# Ordered by their last column alone.
SORTED_BY_COUNT_ALONE = {"analyst_plays_per_genre_2021"}


@pytest.mark.parametrize("name", sorted(set(CASES) - NOT_ANSWERED))
def test_the_sql_sent_answers_as_duckdb(full_stack, name, duck, mine):
    """The statements above, as each version runs them, give DuckDB's answer over the
    generated files (the listener's filter written out for DuckDB)."""
    principal, sql = CASES[name]
    with connect(full_stack, principal) as conn:
        got = sluice_rows(conn, sql)
    expected = duck_rows(mine if principal == "u0002" else duck, sql)
    if name in SORTED_BY_COUNT_ALONE:
        # Rows tied on the count may come in either order: the same rows, the same counts.
        assert sorted(got) == sorted(expected)
        assert [r[-1] for r in got] == [r[-1] for r in expected]
    else:
        assert got == expected
