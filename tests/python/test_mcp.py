"""The MCP endpoint, through the official MCP Python SDK (`mcp`, its `Client` over Streamable
HTTP and over stdio): an agent sees exactly the four tools and the two guide pages, each
tool answers as the caller (a listener sees only its own plays, the analyst everyone's), the
seed questions come back as DuckDB computes them, the adversarial attempts of
test_security.py leak nothing through `query`, every request without an accepted Bearer
credential is 401, every call is audited under its principal, and a million-row answer is
cut at the cap at once, in flat memory, its query stopped in the gateway.

The embedded default serves MCP beside Flight SQL on loopback (demo logins: the static
bearer token of each is its login name); a server with configured principals serves it only
with `--mcp-listen`. `sluice mcp --url` serves the same tools on stdio as a Flight SQL client
of a running gateway."""

import asyncio
import base64
import contextlib
import datetime as dt
import decimal
import json
import re
import ssl
import statistics
import time
from pathlib import Path

import httpx2
import jwt
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from conftest import END, ME, USERS, sluice_bin, start_server, wait_until
from helpers import duck_rows
from test_auth_tls_limits import busy_cores, goes_idle, self_signed
from test_security import ATTEMPTS, OTHER_ID, assert_no_secret, secrets  # noqa: F401 (a fixture)

TOOLS = ["describe_table", "explain", "list_tables", "query"]
GUIDE = {"sluice://guide/schema-notes", "sluice://guide/seed-questions"}
MCP_LINE = re.compile(r"^MCP: (https?://\S+/mcp)", re.M)
HS_SECRET = "a shared secret of more than thirty-two bytes, for MCP"
YEAR = END.year - 5
# A cross join of every listener's plays: billions of rows, were they all read.
ENDLESS_ROWS = "SELECT a.ts, a.track_uri, b.ms_played FROM streams a CROSS JOIN streams b"
INITIALIZE = {
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "sluice-tests", "version": "0"}},
}


# --- helpers -----------------------------------------------------------------------------

def mcp_url(server):
    """The MCP URL of `server`'s banner (printed before its Flight SQL line)."""
    m = MCP_LINE.search(server.banner)
    assert m, f"no MCP line in the banner:\n{server.banner}"
    return m.group(1)


def run(coro, timeout=90):
    return asyncio.run(asyncio.wait_for(coro, timeout))


@contextlib.asynccontextmanager
async def over_http(url, token, mode="auto"):
    """An SDK client of `url` sending `Authorization: Bearer <token>` with every request.
    `mode`: the SDK's default "auto" (`server/discover`, falling back to `initialize`), or
    "legacy" (the `initialize` handshake)."""
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"},
                                  timeout=httpx2.Timeout(60)) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
            yield client


@contextlib.asynccontextmanager
async def over_stdio(server, env, mode="auto"):
    """An SDK client of `sluice mcp --url <server>` started with `env` (its credential)."""
    log = Path(server.log_path).with_suffix(".stdio.log")
    params = StdioServerParameters(command=sluice_bin(), args=["mcp", "--url", server.uri],
                                   env=env)
    with open(log, "a") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode=mode) as client:
            yield client


def session(transport, server, token, mode="auto"):
    if transport == "http":
        return over_http(mcp_url(server), token, mode)
    return over_stdio(server, {"SLUICE_TOKEN": token}, mode)


def text_of(result):
    assert result.content and result.content[0].type == "text", result
    return result.content[0].text


async def ok(client, tool, **arguments):
    """A tool's structured answer; fails the test on an error result."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, f"{tool} {arguments}: {text_of(result)}"
    assert result.structured_content is not None, result
    return result


async def refused(client, tool, **arguments):
    """A tool's error text; fails the test unless the call came back as an error result."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, f"{tool} {arguments} must fail: {result}"
    return text_of(result)


def epoch_ms(text):
    """A timestamp as arrow-json writes it (RFC 3339, `Z` or an offset, or none for UTC)."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?", text)
    assert m, f"not a timestamp: {text!r}"
    base = dt.datetime.fromisoformat(m.group(1).replace(" ", "T"))
    offset = m.group(3) or "Z"
    if offset == "Z":
        base = base.replace(tzinfo=dt.timezone.utc)
    else:
        base = dt.datetime.fromisoformat(m.group(1).replace(" ", "T") + offset)
    fraction = (m.group(2) or "0")[:6].ljust(6, "0")
    return int(base.timestamp()) * 1000 + int(fraction) // 1000


def plain(v):
    """One comparable value: whole decimals as ints, floats rounded."""
    if isinstance(v, decimal.Decimal):
        v = int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, float):
        return round(v, 6)
    return v


def mcp_rows(structured):
    """`query`'s rows (arrays in column order) as tuples, timestamps as epoch ms."""
    times = [c["type"].startswith("Timestamp") for c in structured["columns"]]
    out = []
    for row in structured["rows"]:
        assert len(row) == len(times), (row, structured["columns"])
        out.append(tuple(plain(epoch_ms(v) if t and v is not None else v)
                         for t, v in zip(times, row)))
    return out


def objects(structured):
    """`query`'s rows as {column: value}."""
    names = [c["name"] for c in structured["columns"]]
    return [dict(zip(names, row)) for row in structured["rows"]]


def expected_rows(duck, sql):
    return [tuple(plain(v) for v in row) for row in duck_rows(duck, sql)]


def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def post(url, headers, body=INITIALIZE):
    return httpx2.post(url, json=body, timeout=10, headers={
        "Accept": "application/json, text/event-stream", **headers})


# --- the tools and resources, over HTTP and stdio ---------------------------------------

@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.parametrize("transport", ["http", "stdio"])
def test_tools_resources_and_answers_as_each_caller(server, transport, mode):
    """Connect (the `initialize` handshake, and the SDK's default negotiation), list exactly
    the four tools and the two guide pages, read both, and call every tool as listener u0002
    and as the analyst: the listener's answers hold its own plays only, the analyst's every
    listener's; a wrong table and a wrong query come back as error results a model can act
    on."""

    async def as_listener():
        async with session(transport, server, ME, mode) as client:
            if mode == "legacy":
                assert client.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS
            assert client.server_info.name == "sluice"
            assert "sluice://guide/schema-notes" in (client.instructions or "")
            tools = (await client.list_tools()).tools
            assert sorted(t.name for t in tools) == TOOLS
            for t in tools:
                assert t.description and t.input_schema["type"] == "object", t
            schemas = {t.name: t.input_schema for t in tools}
            assert schemas["query"]["required"] == ["sql"]
            assert set(schemas["query"]["properties"]) == {"sql", "max_rows"}
            assert schemas["describe_table"]["required"] == ["table"]
            assert schemas["explain"]["required"] == ["sql"]

            resources = (await client.list_resources()).resources
            assert {str(r.uri) for r in resources} == GUIDE
            assert {r.mime_type for r in resources} == {"text/markdown"}
            pages = {}
            for uri in sorted(GUIDE):
                [page] = (await client.read_resource(uri)).contents
                assert str(page.uri) == uri and page.text.startswith("# "), page
                pages[uri] = page.text
            assert "Time is UTC" in pages["sluice://guide/schema-notes"]
            assert pages["sluice://guide/seed-questions"].count("```sql") >= 5

            listed = await ok(client, "list_tables")
            tables = {t["name"]: t for t in listed.structured_content["tables"]}
            assert {"streams", "tracks", "artists", "albums"} <= set(tables)
            assert tables["streams"]["per_listener"] is True
            assert tables["tracks"]["per_listener"] is False
            assert all(t["description"] for t in tables.values()), tables
            assert "streams [per listener]: " in text_of(listed)

            streams = (await ok(client, "describe_table", table="streams")).structured_content
            assert streams["table"]["name"] == "streams"
            columns = {c["name"]: c for c in streams["columns"]}
            assert {"user_id", "track_uri", "ts", "ms_played"} <= set(columns)
            assert all(c["type"] and c["description"] for c in columns.values()), columns
            assert {"column": "track_uri", "references": "tracks.track_uri"} in \
                streams["foreign_keys"]
            assert 0 < len(streams["example_rows"]) <= 3
            user = [c["name"] for c in streams["columns"]].index("user_id")
            assert {r[user] for r in streams["example_rows"]} == {ME}
            tracks = (await ok(client, "describe_table", table="tracks")).structured_content
            assert tracks["primary_key"] == ["track_uri"]
            assert {"column": "artist_uri", "references": "artists.artist_uri"} in \
                tracks["foreign_keys"]
            wrong = await refused(client, "describe_table", table="stream")
            assert "no table named 'stream'" in wrong and "streams" in wrong, wrong

            mine = await ok(client, "query", sql="SELECT DISTINCT user_id FROM streams")
            assert objects(mine.structured_content) == [{"user_id": ME}]
            assert mine.structured_content["row_count"] == 1
            assert mine.structured_content["truncated"] is False
            lines = text_of(mine).splitlines()
            assert lines[:3] == ["user_id", ME, "(1 rows)"], lines
            manifest = mine.structured_content["manifest"]
            assert manifest["watermark"] and lines[-1] == manifest["text"]
            assert manifest["text"].startswith(f"as of W = {manifest['watermark']}")
            explained = await ok(client, "explain", sql="SELECT count(*) FROM streams")
            route = explained.structured_content["route"]
            assert route and text_of(explained) == route
            assert ME in route, route
            wrong = await refused(client, "query", sql="SELECT nope FROM streams")
            assert "nope" in wrong and "Fix the SQL" in wrong, wrong

    async def as_analyst():
        async with session(transport, server, "analyst", mode) as client:
            assert sorted(t.name for t in (await client.list_tools()).tools) == TOOLS
            tables = (await ok(client, "list_tables")).structured_content["tables"]
            assert "streams" in {t["name"] for t in tables}
            n = await ok(client, "query", sql="SELECT count(DISTINCT user_id) AS n FROM streams")
            assert objects(n.structured_content) == [{"n": USERS}]
            explained = await ok(client, "explain", sql="SELECT count(*) FROM streams")
            assert ME not in explained.structured_content["route"]
            described = await ok(client, "describe_table", table="artists")
            assert described.structured_content["primary_key"] == ["artist_uri"]

    run(as_listener())
    run(as_analyst())


# --- the seed questions ------------------------------------------------------------------

def seed_questions(duck):
    """(name, SQL for Sluice as a listener, SQL for DuckDB with the listener's filter)."""
    [(track,)] = duck_rows(duck, f"""
        SELECT track_uri FROM streams WHERE user_id = '{ME}'
        GROUP BY track_uri ORDER BY count(*) DESC, track_uri LIMIT 1""")
    [(artist,)] = duck_rows(duck, f"""
        WITH mine AS (
            SELECT track_uri, count(*) AS n FROM streams WHERE user_id = '{ME}' GROUP BY 1),
        per_artist AS (
            SELECT t.artist_uri, sum(coalesce(m.n, 0)) AS plays,
                   count(*) FILTER (WHERE m.track_uri IS NULL) AS unplayed
            FROM tracks t LEFT JOIN mine m ON m.track_uri = t.track_uri GROUP BY 1)
        SELECT artist_uri FROM per_artist WHERE unplayed > 0 AND plays > 0
        ORDER BY plays DESC, artist_uri LIMIT 1""")
    summer = (f"{YEAR + 2}-06-01", f"{YEAR + 2}-09-01")
    out = [
        ("top artist in a year", f"""
            SELECT a.artist_uri, a.artist_name, count(*) AS plays
            FROM streams s
            JOIN tracks t ON s.track_uri = t.track_uri
            JOIN artists a ON t.artist_uri = a.artist_uri
            WHERE s.ts >= '{YEAR}-01-01T00:00:00Z' AND s.ts < '{YEAR + 1}-01-01T00:00:00Z'
            GROUP BY a.artist_uri, a.artist_name
            ORDER BY plays DESC, a.artist_uri
            LIMIT 3""", f"""
            SELECT a.artist_uri, a.artist_name, count(*) AS plays
            FROM streams s JOIN tracks t USING (track_uri)
            JOIN artists a ON t.artist_uri = a.artist_uri
            WHERE s.user_id = '{ME}'
              AND s.ts >= TIMESTAMPTZ '{YEAR}-01-01 00:00:00+00'
              AND s.ts < TIMESTAMPTZ '{YEAR + 1}-01-01 00:00:00+00'
            GROUP BY ALL ORDER BY plays DESC, a.artist_uri LIMIT 3"""),
        ("top tracks in a date range", f"""
            SELECT t.track_name, s.track_uri, count(*) AS plays
            FROM streams s JOIN tracks t ON s.track_uri = t.track_uri
            WHERE s.ts BETWEEN '{summer[0]}T00:00:00Z' AND '{summer[1]}T00:00:00Z'
            GROUP BY t.track_name, s.track_uri
            ORDER BY plays DESC, s.track_uri LIMIT 10""", f"""
            SELECT t.track_name, s.track_uri, count(*) AS plays
            FROM streams s JOIN tracks t USING (track_uri)
            WHERE s.user_id = '{ME}' AND s.ts BETWEEN TIMESTAMPTZ '{summer[0]} 00:00:00+00'
              AND TIMESTAMPTZ '{summer[1]} 00:00:00+00'
            GROUP BY ALL ORDER BY plays DESC, s.track_uri LIMIT 10"""),
        ("first stream ever",
         "SELECT track_uri, ts, ms_played FROM streams ORDER BY ts LIMIT 1",
         f"SELECT track_uri, ts, ms_played FROM streams WHERE user_id = '{ME}' "
         "ORDER BY ts LIMIT 1"),
        ("first and last play of a track", f"""
            SELECT min(ts) AS first_play, max(ts) AS last_play, count(*) AS plays
            FROM streams WHERE track_uri = '{track}'""", f"""
            SELECT min(ts), max(ts), count(*) FROM streams
            WHERE user_id = '{ME}' AND track_uri = '{track}'"""),
        ("monthly plays per genre", f"""
            SELECT date_trunc('month', s.ts) AS month, a.genre, count(*) AS plays
            FROM streams s
            JOIN tracks t ON s.track_uri = t.track_uri
            JOIN artists a ON t.artist_uri = a.artist_uri
            WHERE s.ts >= '{END.year}-01-01T00:00:00Z'
            GROUP BY 1, 2 ORDER BY 1, 2""", f"""
            SELECT date_trunc('month', s.ts::TIMESTAMP) AS month, a.genre, count(*) AS plays
            FROM streams s JOIN tracks t USING (track_uri)
            JOIN artists a ON t.artist_uri = a.artist_uri
            WHERE s.user_id = '{ME}' AND s.ts >= TIMESTAMPTZ '{END.year}-01-01 00:00:00+00'
            GROUP BY 1, 2 ORDER BY 1, 2"""),
        ("tracks of a favourite artist never played", f"""
            SELECT t.track_uri, t.track_name FROM tracks t
            WHERE t.artist_uri = '{artist}'
              AND t.track_uri NOT IN (SELECT track_uri FROM streams)
            ORDER BY t.track_uri""", f"""
            SELECT t.track_uri, t.track_name FROM tracks t
            WHERE t.artist_uri = '{artist}'
              AND t.track_uri NOT IN (SELECT track_uri FROM streams WHERE user_id = '{ME}')
            ORDER BY t.track_uri"""),
        ("whole history count", "SELECT count(*) FROM streams",
         f"SELECT count(*) FROM streams WHERE user_id = '{ME}'"),
    ]
    for days in (3, 10, 30):
        since = (END - dt.timedelta(days=days)).isoformat()
        out.append((f"recent plays, {days} days", f"""
            SELECT count(*), sum(ms_played), count(DISTINCT track_uri) FROM streams
            WHERE ts >= '{since}T00:00:00Z'""", f"""
            SELECT count(*), sum(ms_played), count(DISTINCT track_uri) FROM streams
            WHERE user_id = '{ME}' AND ts >= TIMESTAMPTZ '{since} 00:00:00+00'"""))
    return out


def analyst_questions():
    w = (END - dt.timedelta(days=7)).isoformat()
    out = [("plays per listener", "SELECT user_id, count(*) FROM streams GROUP BY 1 ORDER BY 1",
            "SELECT user_id, count(*) FROM streams GROUP BY 1 ORDER BY 1")]
    for op in ("<", ">=", "="):
        out.append((f"ts {op} W", f"SELECT count(*) FROM streams WHERE ts {op} '{w}T00:00:00Z'",
                    f"SELECT count(*) FROM streams WHERE ts {op} TIMESTAMPTZ '{w} 00:00:00+00'"))
    return out


def test_seed_questions_through_query_equal_duckdb(server, duck):
    """Every seed question of test_seed_questions.py, asked through `query` as listener
    u0002 (and the analyst's questions as the analyst), returns exactly DuckDB's rows over
    the same Parquet files (the listener's filter written out for DuckDB): the JSON rows'
    numbers are numbers and their timestamps (arrow-json's RFC 3339) are the same instants."""
    listener_questions = seed_questions(duck)

    async def ask(token, questions):
        async with over_http(mcp_url(server), token) as client:
            for name, sql, duck_sql in questions:
                answer = (await ok(client, "query", sql=sql, max_rows=1000)).structured_content
                assert answer["truncated"] is False, name
                expected = expected_rows(duck, duck_sql)
                assert expected, f"{name}: DuckDB found nothing to compare"
                assert mcp_rows(answer) == expected, name
                assert answer["row_count"] == len(expected)
                assert answer["manifest"]["watermark"], name

    run(ask(ME, listener_questions))
    run(ask("analyst", analyst_questions()))


def test_timestamps_are_rfc3339_strings(server, duck):
    """A timestamp comes back as a string naming its instant in UTC, the text table shows the
    same instant, and numbers are JSON numbers."""

    async def scenario():
        async with over_http(mcp_url(server), ME) as client:
            result = await ok(client, "query",
                              sql="SELECT ts, ms_played FROM streams ORDER BY ts LIMIT 1")
            return result

    result = run(scenario())
    [row] = objects(result.structured_content)
    assert isinstance(row["ts"], str) and isinstance(row["ms_played"], int), row
    [(ts, played)] = duck_rows(duck, f"SELECT ts, ms_played FROM streams WHERE user_id = '{ME}' "
                                     "ORDER BY ts LIMIT 1")
    assert (epoch_ms(row["ts"]), row["ms_played"]) == (ts, played)
    shown = text_of(result).splitlines()[1].split(" | ")
    assert epoch_ms(shown[0]) == ts, shown


# --- the security attempts through `query` -----------------------------------------------

PLAIN_ATTEMPTS = [a for a in ATTEMPTS if not a[1] and a[3] is None]


def test_most_attempts_run_through_mcp():
    assert len(PLAIN_ATTEMPTS) >= 40


@pytest.fixture(scope="module")
def listener_session_results(server, dataset_dir):
    """Every attempt without setup statements or parameters, sent through `query` as
    listener u0002 in one MCP client session: {name: CallToolResult}."""

    async def scenario():
        out = {}
        async with over_http(mcp_url(server), ME) as client:
            for name, _, sql, _, _ in PLAIN_ATTEMPTS:
                out[name] = await client.call_tool(
                    "query", {"sql": sql.replace("{data}", str(dataset_dir)), "max_rows": 1000})
        return out

    return run(scenario(), timeout=120)


@pytest.mark.parametrize("name,setup,sql,params,expect", PLAIN_ATTEMPTS,
                         ids=[a[0] for a in PLAIN_ATTEMPTS])
def test_attempt_through_query(listener_session_results, dataset_dir, mine, secrets,
                               name, setup, sql, params, expect):
    """The attempt either answers what the same SQL answers over u0002's own events
    (DuckDB), or only u0002's rows, or the listed rows, or is refused (an error result);
    neither its text, its JSON rows nor its manifest names another listener or a track only
    other listeners played."""
    sql = sql.replace("{data}", str(dataset_dir))
    result = listener_session_results[name]
    body = text_of(result)
    if result.structured_content is not None:
        body += "\n" + json.dumps(result.structured_content)
    if result.is_error:
        assert expect in ("refused", "any"), f"{name}: refused unexpectedly: {body}"
        assert body.strip(), name
        assert_no_secret(body.replace(sql, ""), secrets)
        return
    assert expect != "refused", f"{name}: ran, but must be refused: {body[:500]}"
    answer = result.structured_content
    reads_catalog = any(t in sql for t in ("tracks", "artists", "information_schema", "DESCRIBE"))
    written = re.findall(r"u00\d\d", sql)
    assert_no_secret(re.sub("|".join(written) or "^$", "", body) if expect != "mine" else body,
                     secrets, catalog_ok=reads_catalog)
    if answer["truncated"]:
        # Cut rows cannot be compared; the leak check above saw every row returned.
        assert expect in ("no_data", "any"), f"{name}: truncated: {answer['truncated_reason']}"
        return
    rows = mcp_rows(answer)
    if expect == "same":
        assert sorted(rows, key=repr) == sorted(expected_rows(mine, sql), key=repr), name
    elif expect == "mine":
        assert rows and {r["user_id"] for r in objects(answer)} == {ME}
    elif isinstance(expect, list):
        assert rows == [tuple(plain(v) for v in r) for r in expect], f"{name}: {rows}"


# --- authentication ----------------------------------------------------------------------

def assert_unauthorized(response, why=None):
    assert response.status_code == 401, (response.status_code, response.text)
    assert response.headers.get("www-authenticate") == 'Bearer realm="sluice"', response.headers
    assert response.text.strip(), "a 401 says why"
    if why:
        assert why in response.text, response.text


def test_requests_without_an_accepted_bearer_are_401(server):
    """No Authorization header, Basic credentials (even a listener's right ones), an unknown
    token and an empty Bearer are each answered 401 with `WWW-Authenticate: Bearer
    realm="sluice"` and a reason, before MCP sees the request; a GET too. The right token
    initializes; a session token from the Flight SQL handshake is accepted too; other paths
    are 404."""
    from pyarrow import flight

    url = mcp_url(server)
    basic = base64.b64encode(f"{ME}:{ME}".encode()).decode()
    assert_unauthorized(post(url, {}), "Authorization: Bearer")
    assert_unauthorized(post(url, {"Authorization": f"Basic {basic}"}), "Bearer")
    assert_unauthorized(post(url, {"Authorization": "Bearer not-a-login"}))
    assert_unauthorized(post(url, {"Authorization": "Bearer"}))
    assert_unauthorized(httpx2.get(url, timeout=10))

    good = post(url, {"Authorization": f"Bearer {ME}"})
    assert good.status_code == 200, (good.status_code, good.text)
    assert good.json()["result"]["serverInfo"]["name"] == "sluice"

    client = flight.FlightClient(server.uri)
    try:
        name, value = client.authenticate_basic_token(ME.encode(), ME.encode())
    finally:
        client.close()
    assert value.decode().lower().startswith("bearer "), (name, value)
    token = value.decode()[7:]
    assert token not in (ME, ""), "the handshake gives a session token"
    with_session = post(url, {"Authorization": f"Bearer {token}"})
    assert with_session.status_code == 200, (with_session.status_code, with_session.text)

    elsewhere = url.removesuffix("/mcp") + "/other"
    missing = post(elsewhere, {"Authorization": f"Bearer {ME}"})
    assert missing.status_code == 404 and "/mcp" in missing.text, missing.text


def jwt_claims(**extra):
    now = int(time.time())
    c = {"sub": "agent-7", "role": "listener", "user_id": "u0003", "exp": now + 600,
         "iss": "https://idp.example"}
    c.update(extra)
    return {k: v for k, v in c.items() if v is not None}


CONFIG = f"""
[auth.jwt]
algorithm = "HS256"
secret = "{HS_SECRET}"
issuer = "https://idp.example"
leeway_secs = 0

[audit]
file = "audit.jsonl"

[mcp]
max_rows = 500

[[principal]]
name = "lena"
token = "lena-token"
role = "listener"
user_id = "u0004"

[[principal]]
name = "ana"
token = "ana-token"
role = "analyst"

[[principal]]
name = "tiny"
token = "tiny-token"
role = "listener"
user_id = "u0004"
limits = {{ max_rows = 50 }}
"""


@pytest.fixture(scope="module")
def configured(dataset_dir, tmp_path_factory):
    """A server with configured principals (static tokens), JWTs (HS256), an audit file and
    a row ceiling of 500, serving MCP because `--mcp-listen` says so; yields (server, the
    audit file's path)."""
    folder = tmp_path_factory.mktemp("mcp-config")
    (folder / "sluice.toml").write_text(CONFIG)
    for server in start_server(dataset_dir, "--config", str(folder / "sluice.toml"),
                               "--mcp-listen", "127.0.0.1:0"):
        yield server, folder / "audit.jsonl"


def test_a_configured_server_serves_mcp_only_when_told(dataset_dir, tmp_path):
    """With principals in its configuration and no `--mcp-listen` nor `[mcp] listen`, the
    gateway serves no MCP (demo logins are what make the default serve it)."""
    (tmp_path / "sluice.toml").write_text(CONFIG)
    for server in start_server(dataset_dir, "--config", str(tmp_path / "sluice.toml")):
        assert "MCP:" not in server.banner, server.banner


def test_jwts_over_mcp(configured):
    """A valid JWT works through the SDK and is that JWT's listener (or analyst); an expired,
    a wrongly signed and an unsigned JWT are 401, the expired one saying so."""
    server, _ = configured
    url = mcp_url(server)
    assert "(Authorization" not in server.banner, "no demo logins to advertise"
    expired = jwt.encode(jwt_claims(exp=int(time.time()) - 60), HS_SECRET, algorithm="HS256")
    assert_unauthorized(post(url, {"Authorization": f"Bearer {expired}"}), "expired")
    foreign = jwt.encode(jwt_claims(), "another secret, also thirty-two bytes long",
                         algorithm="HS256")
    assert_unauthorized(post(url, {"Authorization": f"Bearer {foreign}"}))
    unsigned = jwt.encode(jwt_claims(), None, algorithm="none")
    assert_unauthorized(post(url, {"Authorization": f"Bearer {unsigned}"}))
    # The demo's tokens are not this server's.
    assert_unauthorized(post(url, {"Authorization": f"Bearer {ME}"}))

    listener = jwt.encode(jwt_claims(), HS_SECRET, algorithm="HS256")
    analyst = jwt.encode(jwt_claims(sub="agent-8", role="analyst", user_id=None), HS_SECRET,
                         algorithm="HS256")

    async def scenario():
        async with over_http(url, listener) as client:
            mine = await ok(client, "query", sql="SELECT DISTINCT user_id FROM streams")
            assert objects(mine.structured_content) == [{"user_id": "u0003"}]
        async with over_http(url, analyst) as client:
            n = await ok(client, "query", sql="SELECT count(DISTINCT user_id) AS n FROM streams")
            assert objects(n.structured_content) == [{"n": USERS}]

    run(scenario())


# --- the audit file ----------------------------------------------------------------------

def test_the_audit_file_names_the_principal_of_each_call(configured):
    """Each `query`, `describe_table` and `explain` call is one Flight SQL statement of the
    caller, audited once under its principal: static tokens over HTTP (a listener, the
    analyst), a JWT, and `sluice mcp` on stdio with the listener's token."""
    server, audit = configured
    url = mcp_url(server)
    token = jwt.encode(jwt_claims(sub="agent-9"), HS_SECRET, algorithm="HS256")

    async def scenario():
        async with over_http(url, "lena-token") as client:
            await ok(client, "query", sql="SELECT count(*) AS lena_http FROM streams")
            await ok(client, "describe_table", table="tracks")
            await ok(client, "explain", sql="SELECT count(*) AS lena_explained FROM streams")
            await refused(client, "query", sql="SELECT lena_nope FROM streams")
        async with over_http(url, "ana-token") as client:
            await ok(client, "query", sql="SELECT count(*) AS ana_http FROM streams")
        async with over_http(url, token) as client:
            await ok(client, "query", sql="SELECT count(*) AS jwt_http FROM streams")
        async with over_stdio(server, {"SLUICE_TOKEN": "lena-token"}) as client:
            await ok(client, "query", sql="SELECT count(*) AS lena_stdio FROM streams")

    run(scenario())
    expected = {
        "SELECT count(*) AS lena_http FROM streams": ("lena", "listener", "u0004", "ok"),
        'SELECT * FROM "tracks" LIMIT 3': ("lena", "listener", "u0004", "ok"),
        "EXPLAIN SELECT count(*) AS lena_explained FROM streams":
            ("lena", "listener", "u0004", "ok"),
        "SELECT lena_nope FROM streams": ("lena", "listener", "u0004", "refused"),
        "SELECT count(*) AS ana_http FROM streams": ("ana", "analyst", None, "ok"),
        "SELECT count(*) AS jwt_http FROM streams": ("agent-9", "listener", "u0003", "ok"),
        "SELECT count(*) AS lena_stdio FROM streams": ("lena", "listener", "u0004", "ok"),
    }

    def records():
        if not audit.exists():
            return []
        return [json.loads(line) for line in audit.read_text().splitlines()]

    assert wait_until(lambda: expected.keys() <= {r["sql"] for r in records()}), \
        [r["sql"] for r in records()]
    for sql, (principal, role, user_id, outcome) in expected.items():
        found = [r for r in records() if r["sql"] == sql]
        assert len(found) == 1, f"one record per call: {found}"
        [r] = found
        assert (r["principal"], r["role"], r["user_id"], r["outcome"]) == \
            (principal, role, user_id, outcome), r


# --- caps, memory, messages --------------------------------------------------------------

def test_a_million_rows_are_cut_at_the_cap_quickly_in_flat_memory(server):
    """As the analyst, a cross join of every play with every play (billions of rows) and
    five million rows of generate_series come back as exactly the default cap (200 rows),
    `truncated`, at once; twenty such calls leave the server's resident memory where the
    first left it, and the gateway stops computing them (the cut stream cancels the query)."""
    pid = server.proc.pid

    async def scenario():
        async with over_http(mcp_url(server), "analyst") as client:
            series = await ok(client, "query", sql="SELECT * FROM generate_series(1, 5000000)")
            answer = series.structured_content
            assert answer["row_count"] == len(answer["rows"]) == 200 and answer["truncated"]
            assert [r[0] for r in answer["rows"][:3]] == [1, 2, 3], answer["rows"][:3]
            timings = []
            rss = []
            for _ in range(21):
                started = time.monotonic()
                result = await ok(client, "query", sql=ENDLESS_ROWS)
                timings.append(time.monotonic() - started)
                rss.append(rss_mib(pid))
                answer = result.structured_content
                assert answer["truncated"] is True, answer["truncated_reason"]
                assert answer["row_count"] == len(answer["rows"]) == 200
                assert "more rows than the 200 returned" in answer["truncated_reason"]
                assert "(200 rows)" in text_of(result)
            return timings, rss

    timings, rss = run(scenario())
    growth = rss[-1] - rss[0]
    print(f"\ncapped cross join: first {timings[0] * 1000:.0f} ms, median "
          f"{statistics.median(timings) * 1000:.0f} ms, slowest {max(timings) * 1000:.0f} ms; "
          f"RSS after the first {rss[0]:.1f} MiB, after 21 {rss[-1]:.1f} MiB "
          f"(+{growth:.1f} MiB)")
    assert max(timings) < 5, timings
    assert statistics.median(timings) < 1, timings
    assert growth < 100, rss
    assert goes_idle(pid), f"the cut queries still compute ({busy_cores(pid):.2f} cores)"


def test_max_rows_is_clamped_to_the_ceiling(server, configured):
    """A `max_rows` above the ceiling (1000 by default, `[mcp] max_rows` when configured) is
    clamped, and the answer says so in `max_rows_note` and in its text; one within it is
    honoured."""

    async def ask(url, token, max_rows):
        async with over_http(url, token) as client:
            return await ok(client, "query", sql="SELECT * FROM generate_series(1, 100000)",
                            max_rows=max_rows)

    result = run(ask(mcp_url(server), "analyst", 5000))
    answer = result.structured_content
    assert answer["row_count"] == 1000 and answer["truncated"] is True
    assert answer["max_rows_note"] == \
        "max_rows 5000 is above this server's ceiling; returned at most 1000"
    assert answer["max_rows_note"] in text_of(result)
    assert "(1000 rows)" in text_of(result)

    answer = run(ask(mcp_url(server), "analyst", 7)).structured_content
    assert answer["row_count"] == 7 and answer["truncated"] and answer["max_rows_note"] is None

    answer = run(ask(mcp_url(configured[0]), "ana-token", 800)).structured_content
    assert answer["row_count"] == 500
    assert answer["max_rows_note"] == \
        "max_rows 800 is above this server's ceiling; returned at most 500"


def test_rows_are_cut_at_64_kib_of_json(server):
    """Wide rows stop at 64 KiB of JSON rows before the row cap, saying why."""

    async def scenario():
        async with over_http(mcp_url(server), "analyst") as client:
            return await ok(client, "query", max_rows=1000,
                            sql="SELECT value, repeat('x', 500) AS wide "
                                "FROM generate_series(1, 10000)")

    result = run(scenario())
    answer = result.structured_content
    assert answer["truncated"] is True and 0 < answer["row_count"] < 1000, answer["row_count"]
    assert "passed 65536 bytes" in answer["truncated_reason"], answer["truncated_reason"]
    size = sum(len(json.dumps(r, separators=(",", ":"))) for r in answer["rows"])
    assert size <= 65536, size
    assert answer["truncated_reason"] in text_of(result)


def test_errors_say_what_to_fix(server):
    """An unknown column's error lists the columns there are; a parse error gives the
    position; both come back as error results with the gateway's words and a hint."""

    async def scenario():
        async with over_http(mcp_url(server), ME) as client:
            column = await refused(client, "query", sql="SELECT plays FROM streams")
            parse = await refused(client, "query", sql="SELECT count(*) FROM streams WHERE")
            garbage = await refused(client, "query", sql="SELEC 1")
            return column, parse, garbage

    column, parse, garbage = run(scenario())
    assert "plays" in column, column
    for name in ("user_id", "track_uri", "ts", "ms_played"):
        assert name in column, f"the columns are listed: {column}"
    assert "describe_table" in column
    for message in (parse, garbage):
        assert re.search(r"Line: 1, Column: \d+", message), message
        assert "Fix the SQL" in message, message


def test_a_principals_limit_holds_through_mcp_and_says_which(configured):
    """A principal's own `max_rows` (50) applies to its MCP calls as to Flight SQL: a
    60-row answer is refused with the limit named and what to do, a 40-row one is whole."""
    server, _ = configured

    async def scenario():
        async with over_http(mcp_url(server), "tiny-token") as client:
            over = await refused(client, "query", sql="SELECT ts FROM streams ORDER BY ts LIMIT 60")
            under = await ok(client, "query", sql="SELECT ts FROM streams ORDER BY ts LIMIT 40")
            return over, under.structured_content

    over, under = run(scenario())
    assert "max_rows" in over and "50" in over and "tiny" in over, over
    assert "Ask for less" in over, over
    assert under["row_count"] == 40 and not under["truncated"], under


@pytest.fixture(scope="module")
def tls_server(dataset_dir, tmp_path_factory):
    """The embedded default with TLS: MCP is served over HTTPS with Flight SQL's certificate."""
    folder = tmp_path_factory.mktemp("mcp-tls")
    ca = self_signed(folder)
    for server in start_server(dataset_dir, "--tls-cert", str(folder / "tls.crt"),
                               "--tls-key", str(folder / "tls.key")):
        yield server, ca


def test_mcp_over_tls(tls_server):
    """With `[tls]` (here the flags), MCP is HTTPS with the same certificate: a client that
    trusts the CA gets answers, plain HTTP to the port gets none, and `sluice mcp` reaches a
    grpc+tls gateway with SLUICE_TLS_CA."""
    server, ca = tls_server
    url = mcp_url(server)
    assert url.startswith("https://127.0.0.1:"), url
    assert server.uri.startswith("grpc+tls://")

    async def over_https():
        trust = ssl.create_default_context(cafile=str(ca))
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {ME}"}, verify=trust,
                                      timeout=httpx2.Timeout(60)) as http:
            async with Client(streamable_http_client(url, http_client=http)) as client:
                return (await ok(client, "query", sql="SELECT DISTINCT user_id FROM streams")
                        ).structured_content

    assert run(over_https())["rows"] == [[ME]]
    with pytest.raises(httpx2.HTTPError):
        httpx2.post(url.replace("https://", "http://"), json=INITIALIZE, timeout=5,
                    headers={"Authorization": f"Bearer {ME}"})

    async def over_stdio_tls():
        async with over_stdio(server, {"SLUICE_TOKEN": ME, "SLUICE_TLS_CA": str(ca)}) as client:
            return (await ok(client, "query", sql="SELECT DISTINCT user_id FROM streams")
                    ).structured_content

    assert run(over_stdio_tls())["rows"] == [[ME]]
