"""A configuration file replaces the demo logins: passwords, static tokens, roles."""

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import pytest

from conftest import connect, start_server
from helpers import sluice_rows

CONFIG = """
[auth]
session_ttl_secs = 600

[[principal]]
name = "alice"
password = "wonderland"
role = "listener"
user_id = "u0003"

[[principal]]
name = "notebook"
token = "static-token-for-tests"
role = "analyst"
"""


@pytest.fixture(scope="module")
def configured(dataset_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "sluice.toml"
    path.write_text(CONFIG)
    yield from start_server(dataset_dir, "--config", str(path))


def test_configured_listener_is_bound_to_its_user(configured):
    conn = connect(configured, "alice", "wonderland")
    try:
        assert sluice_rows(conn, "SELECT DISTINCT user_id FROM streams") == [("u0003",)]
    finally:
        conn.close()


def test_static_token_without_handshake(configured):
    conn = flight_sql.connect(
        configured.uri,
        db_kwargs={adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value:
                   "Bearer static-token-for-tests"},
        autocommit=True,
    )
    try:
        users = sluice_rows(conn, "SELECT count(DISTINCT user_id) FROM streams")
        assert users[0][0] > 1, "an analyst reads every listener"
    finally:
        conn.close()


def test_demo_logins_are_gone_with_a_configuration(configured):
    with pytest.raises(adbc_driver_manager.Error):
        conn = connect(configured, "u0001")
        sluice_rows(conn, "SELECT 1")


def test_an_invalid_configuration_stops_the_start(dataset_dir, tmp_path):
    import subprocess
    from conftest import sluice_bin

    path = tmp_path / "bad.toml"
    path.write_text('[[principal]]\nname = "x"\npassword = "y"\nrole = "listener"\n')
    result = subprocess.run(
        [sluice_bin(), "serve", "--data", str(dataset_dir), "--listen", "127.0.0.1:0",
         "--config", str(path)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "a listener needs user_id" in result.stderr
