"""The example agent (examples/agent) against a real `sluice serve` over MCP: its loop driven by
scripted models that make the calls a model would make for the seed questions (read the
guide, describe a table, query with the vetted SQL), their final answers built from the
query's structured rows, and checked against DuckDB over the same Parquet files (with the
listener's filter written out: Sluice adds it itself). Then: a model that sends a wrong
column, reads the error naming the columns and corrects itself; what the loop sends to a
model (the tools' schemas, the schema notes); the step limit; and the CLI with the
OpenAI-compatible model against a stand-in chat-completions endpoint."""

import asyncio
import datetime as dt
import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import END, REPO, start_server
from helpers import duck_rows

AGENT = REPO / "examples" / "agent"
sys.path.insert(0, str(AGENT))
from models import Answer, Call, ScriptedModel, wire  # noqa: E402
from sluice_agent import connect, run_agent  # noqa: E402

ME = "u0002"
YEAR = END.year - 5
UTC = dt.timezone.utc
# The embedded default's W: midnight UTC seven days before the end of the data.
W = dt.datetime.combine(END - dt.timedelta(days=7), dt.time(), tzinfo=UTC)
SEEDS = "sluice://guide/seed-questions"
NOTES = (REPO / "gateway" / "mcp" / "src" / "guide" / "schema_notes.md").read_text()


@pytest.fixture(scope="module")
def demo(dataset_dir):
    """`sluice serve` with the demo logins: MCP on a free loopback port beside Flight SQL."""
    yield from start_server(dataset_dir)


@pytest.fixture(scope="module")
def mcp_url(demo):
    m = re.search(r"^MCP: (http://\S+/mcp) \(Authorization: Bearer <login name>\)$",
                  demo.banner, re.M)
    assert m, f"no MCP line in the banner:\n{demo.banner}"
    assert demo.banner.index("MCP:") < demo.banner.index("Flight SQL:")
    return m.group(1)


def ask(mcp_url, question, steps, *, token=ME, max_steps=10):
    model = ScriptedModel(steps)
    run = asyncio.run(run_agent(question, model, url=mcp_url, token=token, max_steps=max_steps))
    return run, model


# --- what a scripted model reads from a result, and how answers are worded ---------------

def ms(value):
    """A UTC time (an ISO text from Sluice, a datetime from DuckDB) in epoch milliseconds,
    the way helpers.duck_rows turns DuckDB's."""
    t = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1000)


def plain_rows(result):
    """A query result's structured rows as tuples in column order, times in epoch ms: the
    shape helpers.duck_rows gives DuckDB's rows."""
    assert not result.is_error, result.text
    s = result.structured
    assert not s["truncated"], s
    assert s["row_count"] == len(s["rows"])
    kinds = [c["type"] for c in s["columns"]]
    return [
        tuple(ms(v) if v is not None and kind.startswith("Timestamp") else v
              for kind, v in zip(kinds, row))
        for row in s["rows"]
    ]


def objects(structured):
    """A query result's rows (arrays in column order) as {column: value}."""
    names = [c["name"] for c in structured["columns"]]
    return [dict(zip(names, row)) for row in structured["rows"]]


def when(epoch_ms):
    return dt.datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def as_of(result):
    """The manifest's watermark, as an answer says it."""
    return f"As of {when(ms(result.structured['manifest']['watermark']))}."


def last_query(results):
    return [r for r in results if r.name == "query"][-1]


def answer_from(say):
    """A final answer `say(rows)` from the last query's rows, with its watermark."""
    def text(results):
        q = last_query(results)
        return f"{say(plain_rows(q))} {as_of(q)}"
    return Answer(text)


def expected_answer(say, rows):
    return f"{say(rows)} As of {when(ms(W))}."


def check(run, say, expected):
    """The agent's answer and the rows it saw are DuckDB's."""
    assert run.answer is not None, run.messages
    assert plain_rows(last_query(run.results)) == expected
    assert run.answer == expected_answer(say, expected)
    assert not any(r.is_error for r in run.results), [r.text for r in run.results if r.is_error]


# --- the seed questions ---------------------------------------------------------------------

TOP_ARTIST = f"""
    SELECT a.artist_uri, a.artist_name, count(*) AS plays
    FROM streams s
    JOIN tracks t ON s.track_uri = t.track_uri
    JOIN artists a ON t.artist_uri = a.artist_uri
    WHERE s.ts >= '{YEAR}-01-01T00:00:00Z' AND s.ts < '{YEAR + 1}-01-01T00:00:00Z'
    GROUP BY a.artist_uri, a.artist_name
    ORDER BY plays DESC, a.artist_uri
    LIMIT 3"""


def say_top_artist(rows):
    return f"Your top artist in {YEAR} was {rows[0][1]}, with {rows[0][2]} plays."


def test_my_top_artist_in_a_year(mcp_url, duck):
    run, _ = ask(mcp_url, f"What is my top artist in {YEAR}?", [
        Call("read_resource", {"uri": SEEDS}),
        Call("describe_table", {"table": "artists"}),
        Call("query", {"sql": TOP_ARTIST}),
        answer_from(say_top_artist),
    ])
    expected = duck_rows(duck, f"""
        SELECT a.artist_uri, a.artist_name, count(*) AS plays
        FROM streams s JOIN tracks t USING (track_uri) JOIN artists a ON t.artist_uri = a.artist_uri
        WHERE s.user_id = '{ME}'
          AND s.ts >= TIMESTAMPTZ '{YEAR}-01-01 00:00:00+00'
          AND s.ts < TIMESTAMPTZ '{YEAR + 1}-01-01 00:00:00+00'
        GROUP BY ALL ORDER BY plays DESC, a.artist_uri LIMIT 3""")
    assert len(expected) == 3 and expected[0][2] > 100
    check(run, say_top_artist, expected)
    guide, described = run.results[0], run.results[1]
    assert "## My top artist in a year" in guide.text
    assert "artist_name" in described.text
    assert [c["name"] for c in described.structured["columns"]][:2] == ["artist_uri", "artist_name"]
    manifest = last_query(run.results).structured["manifest"]
    assert manifest["sources"] and manifest["text"].startswith("as of W = ")


def last_summer():
    year = END.year if END >= dt.date(END.year, 9, 1) else END.year - 1
    return f"{year}-06-01", f"{year}-09-01"


def say_top_tracks(rows):
    return "Your 10 most played tracks last summer: " + "; ".join(
        f"{i}. {name} ({plays} plays)" for i, (name, _, plays) in enumerate(rows, 1)) + "."


def test_my_ten_most_played_tracks_last_summer(mcp_url, duck):
    start, end = last_summer()
    sql = f"""
        SELECT t.track_name, s.track_uri, count(*) AS plays
        FROM streams s JOIN tracks t ON s.track_uri = t.track_uri
        WHERE s.ts BETWEEN '{start}T00:00:00Z' AND '{end}T00:00:00Z'
        GROUP BY t.track_name, s.track_uri
        ORDER BY plays DESC, s.track_uri LIMIT 10"""
    run, _ = ask(mcp_url, "What were my 10 most played tracks last summer?", [
        Call("read_resource", {"uri": SEEDS}),
        Call("describe_table", {"table": "tracks"}),
        Call("query", {"sql": sql}),
        answer_from(say_top_tracks),
    ])
    expected = duck_rows(duck, f"""
        SELECT t.track_name, s.track_uri, count(*) AS plays
        FROM streams s JOIN tracks t USING (track_uri)
        WHERE s.user_id = '{ME}'
          AND s.ts BETWEEN TIMESTAMPTZ '{start} 00:00:00+00' AND TIMESTAMPTZ '{end} 00:00:00+00'
        GROUP BY ALL ORDER BY plays DESC, s.track_uri LIMIT 10""")
    assert len(expected) == 10
    check(run, say_top_tracks, expected)


def say_first_stream(rows):
    [(track, ts, played)] = rows
    return f"Your first stream was {track} on {when(ts)}, played for {played} ms."


def test_my_first_stream(mcp_url, duck):
    run, _ = ask(mcp_url, "What was my first stream ever?", [
        Call("describe_table", {"table": "streams"}),
        Call("query", {"sql": "SELECT track_uri, ts, ms_played FROM streams ORDER BY ts LIMIT 1"}),
        answer_from(say_first_stream),
    ])
    expected = duck_rows(duck, f"""
        SELECT track_uri, ts, ms_played FROM streams WHERE user_id = '{ME}' ORDER BY ts LIMIT 1""")
    check(run, say_first_stream, expected)


FAVOURITE = """
    SELECT track_uri, count(*) AS plays FROM streams
    GROUP BY track_uri ORDER BY plays DESC, track_uri LIMIT 1"""


def first_and_last(results):
    """The second query, written from the first one's answer (the favourite track)."""
    [row] = objects(last_query(results).structured)
    return {"sql": "SELECT min(ts) AS first_play, max(ts) AS last_play, count(*) AS plays "
                   f"FROM streams WHERE track_uri = '{row['track_uri']}'"}


def say_first_and_last(rows):
    [(first, last, plays)] = rows
    return f"You first played it on {when(first)} and last on {when(last)}, {plays} plays in all."


def test_first_and_last_play_of_my_favourite_track(mcp_url, duck):
    run, _ = ask(mcp_url, "When did I first and last play my favourite track?", [
        Call("read_resource", {"uri": SEEDS}),
        Call("query", {"sql": FAVOURITE}),
        Call("query", first_and_last),
        answer_from(say_first_and_last),
    ])
    [(track, _)] = duck_rows(duck, f"""
        SELECT track_uri, count(*) AS plays FROM streams WHERE user_id = '{ME}'
        GROUP BY track_uri ORDER BY plays DESC, track_uri LIMIT 1""")
    assert plain_rows(run.results[1])[0][0] == track
    expected = duck_rows(duck, f"""
        SELECT min(ts), max(ts), count(*) FROM streams
        WHERE user_id = '{ME}' AND track_uri = '{track}'""")
    check(run, say_first_and_last, expected)
    # The last play is recent: the answer spans the cold and the hot store.
    assert expected[0][1] > ms(dt.datetime.now(UTC) - dt.timedelta(days=60))


# The listener's most played artist that still has tracks the listener never played.
ARTIST_WITH_UNPLAYED = """
    WITH mine AS (SELECT track_uri, count(*) AS n FROM streams GROUP BY 1),
    per_artist AS (
        SELECT t.artist_uri, sum(coalesce(m.n, 0)) AS plays,
               count(*) FILTER (WHERE m.track_uri IS NULL) AS unplayed
        FROM tracks t LEFT JOIN mine m ON m.track_uri = t.track_uri GROUP BY 1)
    SELECT artist_uri, plays, unplayed FROM per_artist WHERE unplayed > 0 AND plays > 0
    ORDER BY plays DESC, artist_uri LIMIT 1"""


def never_played(results):
    [row] = objects(last_query(results).structured)
    return {"sql": f"""
        SELECT t.track_uri, t.track_name FROM tracks t
        WHERE t.artist_uri = '{row['artist_uri']}'
          AND t.track_uri NOT IN (SELECT track_uri FROM streams)
        ORDER BY t.track_uri"""}


def say_never_played(rows):
    return "Tracks of your favourite artist you have never played: " + ", ".join(
        name for _, name in rows) + "."


def test_tracks_of_an_artist_i_never_played(mcp_url, duck):
    run, _ = ask(mcp_url, "Which tracks of my favourite artist have I never played?", [
        Call("read_resource", {"uri": SEEDS}),
        [Call("describe_table", {"table": "tracks"}), Call("describe_table", {"table": "streams"})],
        Call("query", {"sql": ARTIST_WITH_UNPLAYED}),
        Call("query", never_played),
        answer_from(say_never_played),
    ])
    [(artist, plays, unplayed)] = duck_rows(duck, f"""
        WITH mine AS (
            SELECT track_uri, count(*) AS n FROM streams WHERE user_id = '{ME}' GROUP BY 1),
        per_artist AS (
            SELECT t.artist_uri, sum(coalesce(m.n, 0)) AS plays,
                   count(*) FILTER (WHERE m.track_uri IS NULL) AS unplayed
            FROM tracks t LEFT JOIN mine m ON m.track_uri = t.track_uri GROUP BY 1)
        SELECT artist_uri, plays, unplayed FROM per_artist WHERE unplayed > 0 AND plays > 0
        ORDER BY plays DESC, artist_uri LIMIT 1""")
    assert plain_rows(run.results[3]) == [(artist, plays, unplayed)]
    expected = duck_rows(duck, f"""
        SELECT t.track_uri, t.track_name FROM tracks t
        WHERE t.artist_uri = '{artist}'
          AND t.track_uri NOT IN (SELECT track_uri FROM streams WHERE user_id = '{ME}')
        ORDER BY t.track_uri""")
    assert len(expected) == unplayed > 0
    check(run, say_never_played, expected)


# --- a model that gets a column wrong, and corrects itself -----------------------------------

WRONG = TOP_ARTIST.replace("a.artist_name", "a.name")


def corrected(results):
    """What a model does with the error: take the artists' name column it lists."""
    error = results[-1]
    assert error.is_error, error.text
    m = re.search(r"\ba\.\"?(\w*name\w*)", error.text.replace("a.name", ""))
    assert m, f"the error names no name column of a: {error.text}"
    return {"sql": WRONG.replace("a.name", f"a.{m.group(1)}")}


def test_a_wrong_column_is_an_error_naming_the_columns_and_the_model_corrects_itself(
        mcp_url, duck):
    run, model = ask(mcp_url, f"Who was my top artist in {YEAR}?", [
        Call("query", {"sql": WRONG}),
        Call("query", corrected),
        answer_from(say_top_artist),
    ])
    wrong, right = run.results
    assert wrong.is_error and wrong.structured is None
    # The text names what is there, and what to do.
    assert "name" in wrong.text and "a.artist_name" in wrong.text, wrong.text
    assert "describe_table" in wrong.text, wrong.text
    # The model was told the call failed: the tool message says so.
    tool_message = model.seen[1][0][-1]
    assert tool_message["role"] == "tool" and tool_message["content"] == f"error: {wrong.text}"
    assert right.arguments["sql"] == TOP_ARTIST
    expected = duck_rows(duck, f"""
        SELECT a.artist_uri, a.artist_name, count(*) AS plays
        FROM streams s JOIN tracks t USING (track_uri) JOIN artists a ON t.artist_uri = a.artist_uri
        WHERE s.user_id = '{ME}'
          AND s.ts >= TIMESTAMPTZ '{YEAR}-01-01 00:00:00+00'
          AND s.ts < TIMESTAMPTZ '{YEAR + 1}-01-01 00:00:00+00'
        GROUP BY ALL ORDER BY plays DESC, a.artist_uri LIMIT 3""")
    assert plain_rows(right) == expected
    assert run.answer == expected_answer(say_top_artist, expected)


def test_an_unknown_table_and_bad_arguments_come_back_to_the_model(mcp_url):
    run, model = ask(mcp_url, "What tables are there?", [
        [Call("describe_table", {"table": "plays"}), Call("describe_table", {})],
        Answer(lambda results: "\n\n".join(r.text for r in results)),
    ])
    unknown, missing = run.results
    assert unknown.is_error and "no table named 'plays'" in unknown.text, unknown.text
    for table in ("streams", "tracks", "artists", "albums"):
        assert table in unknown.text
    assert missing.is_error and "table" in missing.text, missing.text
    assert model.seen[1][0][-2]["content"].startswith("error: ")


# --- what the loop gives a model ------------------------------------------------------------

async def listed(mcp_url):
    async with connect(mcp_url, ME) as client:
        tools = (await client.list_tools()).tools
        return {t.name: t for t in tools}, client.instructions


def test_the_model_gets_the_tools_schemas_and_the_schema_notes(mcp_url):
    run, model = ask(mcp_url, "What can I ask?", [
        Call("list_tables"),
        Answer(lambda results: results[-1].text),
    ])
    messages, tools = model.seen[0]
    system, user = messages
    assert system["role"] == "system" and NOTES.strip() in system["content"]
    assert user == {"role": "user", "content": "What can I ask?"}
    server_tools, instructions = asyncio.run(listed(mcp_url))
    assert instructions and instructions in system["content"]
    assert set(server_tools) == {"list_tables", "describe_table", "query", "explain"}
    by_name = {t["function"]["name"]: t for t in tools}
    assert set(by_name) == set(server_tools) | {"read_resource"}
    for name, tool in server_tools.items():
        assert by_name[name]["type"] == "function"
        assert by_name[name]["function"]["parameters"] == tool.input_schema
        assert by_name[name]["function"]["description"] == tool.description
    query = by_name["query"]["function"]["parameters"]
    assert query["required"] == ["sql"] and {"sql", "max_rows"} <= set(query["properties"])
    assert by_name["describe_table"]["function"]["parameters"]["required"] == ["table"]
    resources = by_name["read_resource"]["function"]["parameters"]["properties"]["uri"]["enum"]
    assert sorted(resources) == ["sluice://guide/schema-notes", SEEDS]
    # The second turn: the call, and the tool's text under its id.
    call, result = model.seen[1][0][-2:]
    assert call["tool_calls"][0]["function"]["name"] == "list_tables"
    assert result["tool_call_id"] == call["tool_calls"][0]["id"]
    assert "streams [per listener]" in result["content"]
    assert run.answer == result["content"]
    # What goes over the wire to a model endpoint is JSON, without the loop's own notes.
    sent = json.loads(json.dumps(wire(run.messages)))
    assert all(not k.startswith("_") for m in sent for k in m)


def test_the_loop_stops_at_the_step_limit(mcp_url):
    run, model = ask(mcp_url, "Loop forever", [Call("list_tables")] * 5, max_steps=3)
    assert run.answer is None and run.steps == 3 and len(model.seen) == 3
    assert len(run.results) == 3


def test_another_listener_token_is_another_listener(mcp_url, duck):
    sql = "SELECT count(*) AS plays FROM streams"
    for user in ("u0001", ME):
        run, _ = ask(mcp_url, "How many plays do I have?", [
            Call("query", {"sql": sql}),
            answer_from(lambda rows: f"{rows[0][0]} plays."),
        ], token=user)
        expected = duck_rows(duck, f"SELECT count(*) FROM streams WHERE user_id = '{user}'")
        check(run, lambda rows: f"{rows[0][0]} plays.", expected)


# --- the CLI, with the OpenAI-compatible model against a stand-in endpoint --------------------

class ChatCompletions(BaseHTTPRequestHandler):
    """A stand-in chat-completions endpoint: first asks for a count of plays, then answers
    with the number it read in the tool's text table."""

    requests = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append((self.path, dict(self.headers), body))
        tool = [m for m in body["messages"] if m["role"] == "tool"]
        if not tool:
            message = {"role": "assistant", "content": None, "tool_calls": [{
                "id": "call_1", "type": "function", "function": {
                    "name": "query",
                    "arguments": json.dumps({"sql": "SELECT count(*) AS plays FROM streams"})}}]}
        else:
            header, count = tool[-1]["content"].splitlines()[:2]
            message = {"role": "assistant", "content": f"You have {count} plays ({header})."}
        answer = json.dumps({"id": "x", "object": "chat.completion", "choices": [
            {"index": 0, "message": message, "finish_reason": "stop"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def chat_endpoint():
    ChatCompletions.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), ChatCompletions)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_the_cli_with_an_openai_compatible_endpoint(mcp_url, chat_endpoint, duck):
    env = {**os.environ, "SLUICE_MCP_URL": mcp_url, "SLUICE_TOKEN": ME,
           "OPENAI_BASE_URL": chat_endpoint, "OPENAI_API_KEY": "test-key",
           "SLUICE_AGENT_MODEL": "stub-model", "NO_PROXY": "127.0.0.1,localhost"}
    out = subprocess.run([sys.executable, str(AGENT / "sluice_agent.py"), "How many plays?"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    [(count,)] = duck_rows(duck, f"SELECT count(*) FROM streams WHERE user_id = '{ME}'")
    assert out.stdout == f"You have {count} plays (plays).\n"
    assert '-> query {"sql": "SELECT count(*) AS plays FROM streams"}' in out.stderr
    first, second = ChatCompletions.requests
    for path, headers, body in (first, second):
        assert path == "/v1/chat/completions"
        assert headers["Authorization"] == "Bearer test-key"
        assert body["model"] == "stub-model"
        assert NOTES.strip() in body["messages"][0]["content"]
        names = {t["function"]["name"] for t in body["tools"]}
        assert names == {"list_tables", "describe_table", "query", "explain", "read_resource"}
    *_, call, result = second[2]["messages"]
    assert call["tool_calls"][0]["id"] == result["tool_call_id"] == "call_1"
    assert set(result) == {"role", "tool_call_id", "content"}
    assert result["content"].startswith(f"plays\n{count}\n")


def test_the_cli_says_why_without_a_token(mcp_url):
    env = {k: v for k, v in os.environ.items() if k != "SLUICE_TOKEN"}
    out = subprocess.run([sys.executable, str(AGENT / "sluice_agent.py"), "--url", mcp_url, "hi"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "SLUICE_TOKEN" in out.stderr


def test_a_refused_token_ends_the_run_with_the_reason(mcp_url, chat_endpoint):
    env = {**os.environ, "SLUICE_MCP_URL": mcp_url, "SLUICE_TOKEN": "not-a-token",
           "OPENAI_BASE_URL": chat_endpoint, "NO_PROXY": "127.0.0.1,localhost"}
    out = subprocess.run([sys.executable, str(AGENT / "sluice_agent.py"), "hi"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.startswith("sluice_agent: "), out.stderr
    assert ChatCompletions.requests == []
