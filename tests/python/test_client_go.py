"""The Flight SQL surface through real Go clients: arrow-go's `flightsql.Client` and ADBC's Go
Flight SQL driver (directly and through `database/sql`). `go test` in tests/clients/go runs them
against the embedded gateway and checks codes, messages, schemas and isolation itself; the seed
answers it writes (one JSON object a line) are compared here with DuckDB's over the same Parquet
files, with the listener's filter written out."""

import datetime as dt
import decimal
import json
import os
import shutil
import subprocess
import time

import pyarrow as pa
import pytest

from conftest import END, ME, REPO

GO_MODULE = REPO / "tests" / "clients" / "go"
YEAR = END.year - 5
CLIENTS = ("flightsql", "adbc")

pytestmark = pytest.mark.skipif(shutil.which("go") is None, reason="go is not installed")


def _since(days):
    return (END - dt.timedelta(days=days)).isoformat()


_W = _since(7)
_SUMMER = (f"{YEAR + 2}-06-01", f"{YEAR + 2}-09-01")

# Each answer the Go tests write, as DuckDB computes it ({track} and {artist} are filled in).
EXPECTED = {
    "top_artist_in_a_year": f"""
        SELECT a.artist_uri, a.artist_name, count(*) AS plays
        FROM streams s JOIN tracks t USING (track_uri) JOIN artists a ON t.artist_uri = a.artist_uri
        WHERE s.user_id = '{ME}'
          AND s.ts >= TIMESTAMPTZ '{YEAR}-01-01 00:00:00+00'
          AND s.ts < TIMESTAMPTZ '{YEAR + 1}-01-01 00:00:00+00'
        GROUP BY ALL ORDER BY plays DESC, a.artist_uri LIMIT 3""",
    "top_tracks_in_a_date_range": f"""
        SELECT t.track_name, s.track_uri, count(*) AS plays
        FROM streams s JOIN tracks t USING (track_uri)
        WHERE s.user_id = '{ME}' AND s.ts BETWEEN TIMESTAMPTZ '{_SUMMER[0]} 00:00:00+00'
                                           AND TIMESTAMPTZ '{_SUMMER[1]} 00:00:00+00'
        GROUP BY ALL ORDER BY plays DESC, s.track_uri LIMIT 10""",
    "first_stream_ever": f"""
        SELECT track_uri, ts, ms_played FROM streams WHERE user_id = '{ME}' ORDER BY ts LIMIT 1""",
    "first_and_last_play_of_a_track": f"""
        SELECT min(ts), max(ts), count(*) FROM streams
        WHERE user_id = '{ME}' AND track_uri = '{{track}}'""",
    "monthly_plays_per_genre": f"""
        SELECT date_trunc('month', s.ts::TIMESTAMP) AS month, a.genre, count(*) AS plays
        FROM streams s JOIN tracks t USING (track_uri) JOIN artists a ON t.artist_uri = a.artist_uri
        WHERE s.user_id = '{ME}' AND s.ts >= TIMESTAMPTZ '{END.year}-01-01 00:00:00+00'
        GROUP BY 1, 2 ORDER BY 1, 2""",
    "tracks_of_a_favourite_artist_never_played": f"""
        SELECT t.track_uri, t.track_name FROM tracks t
        WHERE t.artist_uri = '{{artist}}'
          AND t.track_uri NOT IN (SELECT track_uri FROM streams WHERE user_id = '{ME}')
        ORDER BY t.track_uri""",
    "whole_history_count": f"SELECT count(*) FROM streams WHERE user_id = '{ME}'",
    "analyst_counts_per_user": "SELECT user_id, count(*) FROM streams GROUP BY 1 ORDER BY 1",
    "parameters_of_three_types": f"""
        SELECT count(*) FROM streams WHERE user_id = '{ME}'
          AND ts >= TIMESTAMPTZ '2024-01-01 00:00:00+00' AND ms_played > 60000
          AND track_uri LIKE 'spotify:track:%'""",
    "isolation_union_with_another_user": f"SELECT count(*) FROM streams WHERE user_id = '{ME}'",
    **{f"recent_plays_{days}_days": f"""
        SELECT count(*), sum(ms_played), count(DISTINCT track_uri) FROM streams
        WHERE user_id = '{ME}' AND ts >= TIMESTAMPTZ '{_since(days)} 00:00:00+00'"""
       for days in (3, 10, 30)},
    **{f"watermark_{name}": f"SELECT count(*) FROM streams WHERE ts {op} TIMESTAMPTZ '{_W} 00:00:00+00'"
       for op, name in (("<", "lt"), (">=", "ge"), ("=", "eq"))},
}


def _plain(v):
    """The Go tests' JSON form of a value: instants as UTC ISO strings with microseconds
    (a timestamp without a zone is taken as UTC), dates as YYYY-MM-DD, whole numbers as ints."""
    if isinstance(v, dt.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=dt.timezone.utc)
        return v.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, decimal.Decimal) and v == v.to_integral_value():
        return int(v)
    return v


def _duck_kind(t):
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_integer(t) or (pa.types.is_decimal(t) and t.scale == 0):
        return "int"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    return str(t)


def _go_kind(name):
    """The kind of an Arrow type as Go prints it (`timestamp[ms, tz=UTC]`, `int64`, `utf8`)."""
    if name.startswith("timestamp"):
        return "timestamp"
    if name in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"):
        return "int"
    if name in ("utf8", "large_utf8", "string_view", "utf8_view"):
        return "string"
    return name


def duck_answer(duck, sql):
    """DuckDB's rows in the Go tests' JSON form, and each column's kind."""
    table = duck.sql(sql).to_arrow_table()
    cols = [c.to_pylist() for c in table.columns]
    return [[_plain(v) for v in row] for row in zip(*cols)], [_duck_kind(t) for t in table.schema.types]


def _one(duck, sql):
    [(value,)] = duck.sql(sql).fetchall()
    return value


@pytest.fixture(scope="module")
def go_run(server, duck, tmp_path_factory):
    """Runs the Go module's tests once against `server`; returns the process result, the
    answers by (client, name), the parameters the questions used and the time it took."""
    track = _one(duck, f"""
        SELECT track_uri FROM streams WHERE user_id = '{ME}'
        GROUP BY track_uri ORDER BY count(*) DESC, track_uri LIMIT 1""")
    artist = _one(duck, f"""
        WITH mine AS (
            SELECT track_uri, count(*) AS n FROM streams WHERE user_id = '{ME}' GROUP BY 1),
        per_artist AS (
            SELECT t.artist_uri, sum(coalesce(m.n, 0)) AS plays,
                   count(*) FILTER (WHERE m.track_uri IS NULL) AS unplayed
            FROM tracks t LEFT JOIN mine m ON m.track_uri = t.track_uri GROUP BY 1)
        SELECT artist_uri FROM per_artist WHERE unplayed > 0 AND plays > 0
        ORDER BY plays DESC, artist_uri LIMIT 1""")
    answers_path = tmp_path_factory.mktemp("go-answers") / "answers.jsonl"
    env = {
        **os.environ,
        "SLUICE_FLIGHT_ADDR": server.address,
        "SLUICE_END": END.isoformat(),
        "SLUICE_TRACK": track,
        "SLUICE_ARTIST": artist,
        "SLUICE_ANSWERS": str(answers_path),
    }
    started = time.monotonic()
    proc = subprocess.run(["go", "test", "-count=1", "-v", "./..."], cwd=GO_MODULE, env=env,
                          capture_output=True, text=True, timeout=1500)
    took = time.monotonic() - started
    answers = {}
    if answers_path.exists():
        for line in answers_path.read_text().splitlines():
            a = json.loads(line)
            answers[(a["client"], a["name"])] = a
    return {"proc": proc, "answers": answers, "params": {"track": track, "artist": artist},
            "took": took, "log": server.log_path}


def test_go_client_tests_pass(go_run):
    proc = go_run["proc"]
    assert proc.returncode == 0, (
        f"go test failed (rc {proc.returncode}, Sluice's log: {go_run['log']}):\n"
        f"{proc.stdout}\n{proc.stderr}")
    assert "--- PASS" in proc.stdout and "--- SKIP" not in proc.stdout, proc.stdout


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("client", CLIENTS)
def test_seed_answer_matches_duckdb(go_run, duck, client, name):
    got = go_run["answers"].get((client, name))
    assert got is not None, \
        f"the Go {client} test wrote no answer {name}:\n{go_run['proc'].stdout[-4000:]}"
    expected, kinds = duck_answer(duck, EXPECTED[name].format(**go_run["params"]))
    assert expected, f"{name}: DuckDB's answer is empty, the question tests nothing"
    # Same values, and typed alike: an instant is a timestamp, not its text.
    assert [_go_kind(t) for t in got["types"]] == kinds, f"{client} {name}: {got['types']}"
    assert got["rows"] == expected, f"{client} {name} ({got['types']})"


@pytest.mark.parametrize("client", CLIENTS)
def test_relative_time_with_now(go_run, duck, client):
    got = go_run["answers"].get((client, "relative_time_with_now"))
    assert got is not None, go_run["proc"].stdout
    [[n]] = got["rows"]
    week = _one(duck, f"""SELECT count(*) FROM streams WHERE user_id = '{ME}'
                          AND ts >= now() - INTERVAL 8 DAY""")
    assert 0 < n <= week
