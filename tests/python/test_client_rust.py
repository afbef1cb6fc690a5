"""arrow-rs's own Flight SQL client, the `flight_sql_client` CLI of the arrow-flight crate
(feature `cli`, the workspace's arrow version; `tests/run.sh` installs it), against the
embedded default: the seed questions with `statement-query` and `prepared-statement-query`
with parameters, each answer compared with DuckDB's, and the metadata commands. The CLI logs in
with Basic credentials (padded base64) and prints a pretty table, which is parsed back here."""

import datetime as dt
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import END, ME
from helpers import duck_rows

YEAR = END.year - 5


def cli_path():
    path = os.environ.get("FLIGHT_SQL_CLIENT") or shutil.which("flight_sql_client")
    default = Path.home() / ".cache" / "sluice" / "tools" / "bin" / "flight_sql_client"
    if not path and default.exists():
        path = str(default)
    if not path:
        pytest.skip("flight_sql_client is not installed (tests/run.sh installs it)")
    return path


def cli(server, *args, user=ME, password=None):
    host, port = server.address.rsplit(":", 1)
    return subprocess.run(
        [cli_path(), "--host", host, "--port", port, "--username", user,
         "--password", password if password is not None else user, *args],
        capture_output=True, text=True, timeout=60)


def cell(value: str):
    """A printed value as the comparable value `helpers` makes of DuckDB's."""
    for parse in (int, float):
        try:
            return parse(value)
        except ValueError:
            pass
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        if t.tzinfo is None:
            t = t.replace(tzinfo=dt.timezone.utc)
        return int(t.timestamp() * 1000)
    except ValueError:
        return value


def table(out):
    """The pretty table's header and rows."""
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("|")]
    assert lines, f"no table printed:\n{out.stdout}\n{out.stderr}"
    split = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    return split[0], [tuple(cell(c) for c in row) for row in split[1:]]


def answer(server, *args, **kw):
    out = cli(server, *args, **kw)
    assert out.returncode == 0, out.stderr
    return table(out)[1]


SEED = {
    "top_artist_in_a_year": (
        f"""SELECT a.artist_uri, a.artist_name, count(*) AS plays
            FROM streams s JOIN tracks t ON s.track_uri = t.track_uri
            JOIN artists a ON t.artist_uri = a.artist_uri
            WHERE s.ts >= '{YEAR}-01-01T00:00:00Z' AND s.ts < '{YEAR + 1}-01-01T00:00:00Z'
            GROUP BY a.artist_uri, a.artist_name ORDER BY plays DESC, a.artist_uri LIMIT 3""",
        f"""SELECT a.artist_uri, a.artist_name, count(*) AS plays
            FROM streams s JOIN tracks t USING (track_uri) JOIN artists a ON t.artist_uri = a.artist_uri
            WHERE s.user_id = '{ME}' AND s.ts >= TIMESTAMPTZ '{YEAR}-01-01 00:00:00+00'
              AND s.ts < TIMESTAMPTZ '{YEAR + 1}-01-01 00:00:00+00'
            GROUP BY ALL ORDER BY plays DESC, a.artist_uri LIMIT 3"""),
    "top_tracks_last_summer": (
        f"""SELECT s.track_uri, count(*) AS plays FROM streams s
            WHERE s.ts >= '{YEAR + 2}-06-01T00:00:00Z' AND s.ts < '{YEAR + 2}-09-01T00:00:00Z'
            GROUP BY s.track_uri ORDER BY plays DESC, s.track_uri LIMIT 10""",
        f"""SELECT track_uri, count(*) AS plays FROM streams
            WHERE user_id = '{ME}' AND ts >= TIMESTAMPTZ '{YEAR + 2}-06-01 00:00:00+00'
              AND ts < TIMESTAMPTZ '{YEAR + 2}-09-01 00:00:00+00'
            GROUP BY ALL ORDER BY plays DESC, track_uri LIMIT 10"""),
    "first_stream_ever": (
        "SELECT track_uri, ts, ms_played FROM streams ORDER BY ts, track_uri LIMIT 1",
        f"""SELECT track_uri, ts, ms_played FROM streams WHERE user_id = '{ME}'
            ORDER BY ts, track_uri LIMIT 1"""),
    "whole_history": (
        "SELECT count(*) AS plays, sum(ms_played) AS played FROM streams",
        f"SELECT count(*), sum(ms_played) FROM streams WHERE user_id = '{ME}'"),
}


@pytest.mark.parametrize("name", SEED)
def test_seed_questions_with_statement_query(server, duck, name):
    sluice_sql, duck_sql = SEED[name]
    expected = duck_rows(duck, duck_sql)
    assert expected
    assert answer(server, "statement-query", sluice_sql) == expected


def test_prepared_statement_with_parameters(server, duck):
    [(track,)] = duck_rows(duck, f"""
        SELECT track_uri FROM streams WHERE user_id = '{ME}'
        GROUP BY track_uri ORDER BY count(*) DESC, track_uri LIMIT 1""")
    got = answer(server, "prepared-statement-query",
                 "SELECT count(*) AS plays, min(ts) AS first FROM streams "
                 "WHERE track_uri = $1 AND ms_played >= $2",
                 "-p", f"$1={track}", "-p", "$2=30000")
    assert got == duck_rows(duck, f"""
        SELECT count(*), min(ts) FROM streams
        WHERE user_id = '{ME}' AND track_uri = '{track}' AND ms_played >= 30000""")
    assert got[0][0] > 0


def test_a_listener_sees_only_their_rows(server, duck):
    got = answer(server, "statement-query",
                 "SELECT user_id, count(*) AS n FROM streams GROUP BY user_id")
    assert got == duck_rows(duck, f"SELECT user_id, count(*) FROM streams WHERE user_id = '{ME}' GROUP BY 1")


def test_metadata_commands(server):
    _, catalogs = table(cli(server, "catalogs"))
    [(catalog,)] = catalogs
    _, schemas = table(cli(server, "db-schemas", str(catalog)))
    assert schemas
    header, tables = table(cli(server, "tables", str(catalog)))
    names = {row[header.index("table_name")] for row in tables}
    assert {"streams", "tracks", "artists", "albums"} <= names
    _, types = table(cli(server, "table-types"))
    assert types


def test_errors_are_clear(server):
    out = cli(server, "statement-query", "SELECT 1", password="wrong")
    assert out.returncode != 0
    assert "invalid user name or password" in out.stderr, out.stderr
    out = cli(server, "statement-query", "SELECT no_such_column FROM streams")
    assert out.returncode != 0
    assert "no_such_column" in out.stderr, out.stderr
