"""The Flight SQL surface through the real ADBC driver: metadata, parameters, sessions,
errors, and a listener's isolation."""

import adbc_driver_manager
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from conftest import USERS, connect
from helpers import duck_rows, sluice_rows


def test_get_info(listener):
    info = listener.adbc_get_info()
    assert info["vendor_name"] == "Sluice"
    assert info["driver_name"].startswith("ADBC Flight SQL")


def test_get_objects_lists_tables_and_columns(listener):
    objects = listener.adbc_get_objects(depth="all").read_all().to_pylist()
    [catalog] = [c for c in objects if c["catalog_name"] == "sluice"]
    schemas = {s["db_schema_name"]: s for s in catalog["catalog_db_schemas"]}
    assert set(schemas) == {"public", "information_schema"}
    tables = {t["table_name"]: t for t in schemas["public"]["db_schema_tables"]}
    assert set(tables) == {"streams", "tracks", "artists", "albums", "plays_daily",
                           "plays_monthly_artist", "plays_monthly_genre", "track_first_last"}
    columns = [c["column_name"] for c in tables["streams"]["table_columns"]]
    assert columns == ["user_id", "track_uri", "ts", "ms_played"]


def test_get_table_schema(listener):
    schema = listener.adbc_get_table_schema("streams", catalog_filter="sluice", db_schema_filter="public")
    assert schema.names == ["user_id", "track_uri", "ts", "ms_played"]
    assert schema.field("ts").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("ms_played").type == pa.int64()
    # Column and table descriptions travel as Flight SQL remarks.
    assert b"UTC" in schema.field("ts").metadata[b"ARROW:FLIGHT:SQL:REMARKS"]
    assert b"listening event" in schema.metadata[b"ARROW:FLIGHT:SQL:REMARKS"]
    assert listener.adbc_get_table_types() == ["BASE TABLE", "VIEW"]


def test_information_schema_has_descriptions(listener):
    rows = sluice_rows(listener, """
        SELECT table_name, description FROM information_schema.tables
        WHERE table_schema = 'public' ORDER BY table_name""")
    assert [r[0] for r in rows] == ["albums", "artists", "plays_daily", "plays_monthly_artist",
                                    "plays_monthly_genre", "streams", "track_first_last",
                                    "tracks"]
    assert all(len(r[1]) > 20 for r in rows)
    rows = sluice_rows(listener, """
        SELECT column_name, data_type, description FROM information_schema.columns
        WHERE table_name = 'streams' ORDER BY ordinal_position""")
    assert rows[2][:2] == ("ts", "TIMESTAMP WITH TIME ZONE")
    assert "skipped" in rows[3][2]


def test_parameters_of_several_types(listener, duck):
    sql = "SELECT count(*) FROM streams WHERE ts >= ? AND ms_played > ? AND track_uri LIKE ?"
    got = sluice_rows(listener, sql, ("2024-01-01T00:00:00Z", 60000, "spotify:track:%"))
    expected = duck_rows(duck, """SELECT count(*) FROM streams WHERE user_id = 'u0002'
        AND ts >= TIMESTAMPTZ '2024-01-01 00:00:00+00' AND ms_played > 60000""")
    assert got == expected


def test_same_cursor_runs_new_statements_and_rebinds(listener):
    with listener.cursor() as cur:
        for limit in (1, 3, 2):
            cur.execute("SELECT track_uri FROM tracks ORDER BY track_uri LIMIT ?", (limit,))
            assert cur.fetch_arrow_table().num_rows == limit
        cur.execute("SELECT 42 AS answer")
        assert cur.fetchone() == (42,)


def test_a_row_count_parameter_is_announced_as_int64(listener):
    # Clients that bind by the announced type (the JDBC driver) cannot bind a count to Null.
    with listener.cursor() as cur:
        params = cur.adbc_prepare("SELECT track_uri FROM tracks ORDER BY track_uri LIMIT ? OFFSET ?")
    assert [f.type for f in params] == [pa.int64(), pa.int64()]


def test_set_applies_to_the_session(listener):
    with listener.cursor() as cur:
        cur.execute("SET datafusion.execution.batch_size = 7")
        cur.execute("SELECT track_uri FROM tracks LIMIT 20")
        reader = cur.fetch_record_batch()
        assert max(b.num_rows for b in reader) <= 7


def _error(conn, sql, params=None):
    with pytest.raises(adbc_driver_manager.Error) as e:
        sluice_rows(conn, sql, params)
    return e.value


def test_user_mistakes_are_clear_and_the_server_keeps_serving(listener):
    bad = _error(listener, "SELEC track_uri FROM streams")
    assert isinstance(bad, adbc_driver_manager.ProgrammingError), bad
    assert "SELEC" in str(bad)
    unknown_table = _error(listener, "SELECT * FROM playlists")
    assert "playlists" in str(unknown_table) and "INVALID_ARGUMENT" in str(unknown_table)
    unknown_column = _error(listener, "SELECT genre FROM streams")
    assert "genre" in str(unknown_column)
    wrong_type = _error(listener, "SELECT count(*) FROM streams WHERE ts >= ?", ("not a date",))
    assert "parameter $1" in str(wrong_type) and "INVALID_ARGUMENT" in str(wrong_type)
    read_only = _error(listener, "CREATE TABLE mine (a INT)")
    assert "read-only" in str(read_only)
    insert = _error(listener, "INSERT INTO streams VALUES ('u0002', 'x', now(), 1)")
    assert "read-only" in str(insert)
    two = _error(listener, "SELECT 1; SELECT 2")
    assert "several statements" in str(two) and "INVALID_ARGUMENT" in str(two)
    setting = _error(listener, "SET datafusion.catalog.information_schema = true")
    assert "cannot be changed" in str(setting)
    # Still serving, same connection.
    assert sluice_rows(listener, "SELECT 1") == [(1,)]


def test_wrong_password_is_refused(server):
    with pytest.raises(adbc_driver_manager.Error) as e:
        conn = connect(server, "u0002", "wrong")
        sluice_rows(conn, "SELECT 1")
    assert "UNAUTHENTICATED" in str(e.value) or "Unauthenticated" in str(e.value)
    assert "invalid user name or password" in str(e.value)


def test_calls_without_credentials_are_unauthenticated(server):
    client = flight.FlightClient(server.uri)
    with pytest.raises(flight.FlightUnauthenticatedError):
        list(client.list_actions())
    with pytest.raises(flight.FlightUnauthenticatedError):
        client.get_flight_info(flight.FlightDescriptor.for_command(b"anything"))
    bad = flight.FlightCallOptions(headers=[(b"authorization", b"Bearer not-a-token")])
    with pytest.raises(flight.FlightUnauthenticatedError):
        list(client.list_actions(options=bad))
    client.close()


def test_a_listener_sees_only_its_own_rows(server, duck):
    for user in ("u0001", "u0004"):
        conn = connect(server, user)
        try:
            assert sluice_rows(conn, "SELECT DISTINCT user_id FROM streams") == [(user,)]
            assert sluice_rows(conn, "SELECT count(*) FROM streams WHERE user_id <> ?", (user,)) == [(0,)]
            other = "u0003"
            assert sluice_rows(conn, f"SELECT count(*) FROM streams WHERE user_id = '{other}'") == [(0,)]
            own = duck_rows(duck, f"SELECT count(*) FROM streams WHERE user_id = '{user}'")
            assert sluice_rows(conn, "SELECT count(*) FROM (SELECT * FROM streams UNION ALL "
                                     "SELECT * FROM streams WHERE user_id = 'u0003')") == [(own[0][0] * 1,)]
            assert sluice_rows(conn, "SELECT count(*) FROM streams s WHERE EXISTS "
                                     "(SELECT 1 FROM streams o WHERE o.user_id = 'u0005' "
                                     "AND o.track_uri = s.track_uri)") == [(0,)]
        finally:
            conn.close()


def test_an_analyst_reads_every_listener(analyst):
    users = sluice_rows(analyst, "SELECT DISTINCT user_id FROM streams ORDER BY 1")
    assert [u for (u,) in users] == [f"u{i:04d}" for i in range(1, USERS + 1)]
