"""Latency of the seed questions through MCP's `query` tool against the same questions through
Flight SQL (ADBC), on a running gateway: what an agent pays for MCP (JSON-RPC over HTTP, rows
as JSON and a text table, the manifest) over a Flight SQL client asking directly.

Starts nothing itself: point it at a gateway that serves both, e.g. the embedded default
(`sluice serve` prints both addresses; its demo logins' MCP token is the login name):

    sluice serve --listen 127.0.0.1:32010            # MCP on 127.0.0.1:32011/mcp
    python bench/mcp_latency.py --flight grpc://127.0.0.1:32010 \\
        --mcp http://127.0.0.1:32011/mcp --user u0002 [--runs 50] [--json out.json]

`--user` logs in to Flight SQL with `--password` (default: the user name) and sends
`Authorization: Bearer <--token>` (default: the user name) to MCP. Each question (from
bench/questions.py, the listener's by default; `--questions` picks others by key) is first
asked once on both paths and their answers compared (timestamps as instants), then asked
`--runs` times on each path, interleaved, after `--warmup` untimed rounds: ADBC on one open
connection (execute and fetch the whole Arrow result), MCP on one open client session of the
official MCP Python SDK (`tools/call` of `query` to its answer). Prints p50 and p95 per path
per question, and MCP's extra time at the median.

Needs the test environment's packages (tests/python/requirements.txt) and `mcp`."""

import argparse
import asyncio
import datetime as dt
import json
import re
import sys
import time
from pathlib import Path

import adbc_driver_flightsql.dbapi as flight_sql
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

sys.path.insert(0, str(Path(__file__).resolve().parent))
import questions as Q  # noqa: E402

DEFAULT_QUESTIONS = ["top_artist_year", "top_tracks_summer", "first_stream",
                     "track_first_last", "monthly_genre", "week_summary"]


def percentile(values, p):
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def epoch_ms(text):
    """A timestamp as the MCP answer writes it (RFC 3339) as epoch milliseconds."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?", text)
    if not m:
        return text
    offset = m.group(3) or "Z"
    stamp = m.group(1).replace(" ", "T") + ("+00:00" if offset == "Z" else offset)
    fraction = (m.group(2) or "0")[:6].ljust(6, "0")
    return int(dt.datetime.fromisoformat(stamp).timestamp()) * 1000 + int(fraction) // 1000


def mcp_rows(answer):
    """`query`'s rows (arrays in column order) as tuples, timestamps as epoch ms."""
    times = [c["type"].startswith("Timestamp") for c in answer["columns"]]
    return [tuple(Q.plain(epoch_ms(v) if t and v is not None else v)
                  for t, v in zip(times, r)) for r in answer["rows"]]


def adbc_rows(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        return Q.arrow_rows(cur.fetch_arrow_table())


async def mcp_answer(client, sql):
    result = await client.call_tool("query", {"sql": sql, "max_rows": 1000})
    if result.is_error:
        raise SystemExit(f"MCP query failed: {result.content[0].text}\n{sql}")
    return result.structured_content


async def context(conn, client, user):
    """The questions' context from the gateway itself, as the user: the watermark (from an
    MCP answer's manifest), the end of the data, the favourite track, the favourite artist
    with tracks never played."""
    answer = await mcp_answer(client, "SELECT max(ts) AS last FROM streams")
    w = dt.datetime.fromisoformat(answer["manifest"]["watermark"].replace("Z", "+00:00"))
    [(last,)] = adbc_rows(conn, "SELECT max(ts) FROM streams")
    end = (dt.datetime.fromtimestamp(last / 1000, dt.timezone.utc) + dt.timedelta(days=1)).date()
    [(track,)] = adbc_rows(conn, "SELECT track_uri FROM streams GROUP BY 1 "
                                 "ORDER BY count(*) DESC, 1 LIMIT 1")
    artists = adbc_rows(conn, """
        WITH mine AS (SELECT track_uri, count(*) AS n FROM streams GROUP BY 1),
        per_artist AS (
            SELECT t.artist_uri, sum(coalesce(m.n, 0)) AS plays,
                   sum(CASE WHEN m.track_uri IS NULL THEN 1 ELSE 0 END) AS unplayed
            FROM tracks t LEFT JOIN mine m ON m.track_uri = t.track_uri GROUP BY 1)
        SELECT artist_uri FROM per_artist WHERE unplayed > 0 AND plays > 0
        ORDER BY plays DESC, artist_uri LIMIT 1""")
    return Q.Context(user=user, end=end, w=w, track=track,
                     artist=artists[0][0] if artists else "")


async def bench(args):
    chosen = [q for key in args.questions for q in Q.QUESTIONS if q.key == key]
    unknown = set(args.questions) - {q.key for q in chosen}
    if unknown:
        raise SystemExit(f"unknown questions {sorted(unknown)}; there are "
                         f"{[q.key for q in Q.QUESTIONS]}")
    conn = flight_sql.connect(args.flight, autocommit=True, db_kwargs={
        "username": args.user, "password": args.password or args.user})
    headers = {"Authorization": f"Bearer {args.token or args.user}"}
    try:
        async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(120)) as http:
            async with Client(streamable_http_client(args.mcp, http_client=http)) as client:
                c = await context(conn, client, args.user)
                sqls = {q.key: q.sluice(c) for q in chosen}
                for key, sql in sqls.items():
                    direct = adbc_rows(conn, sql)
                    answer = await mcp_answer(client, sql)
                    if answer["truncated"] or mcp_rows(answer) != direct:
                        raise SystemExit(f"{key}: the paths disagree (MCP truncated: "
                                         f"{answer['truncated']})\nADBC {direct[:5]}\n"
                                         f"MCP  {mcp_rows(answer)[:5]}")
                timings = {key: {"adbc": [], "mcp": []} for key in sqls}
                for i in range(args.warmup + args.runs):
                    for key, sql in sqls.items():
                        started = time.perf_counter()
                        adbc_rows(conn, sql)
                        adbc = time.perf_counter() - started
                        started = time.perf_counter()
                        await mcp_answer(client, sql)
                        mcp = time.perf_counter() - started
                        if i >= args.warmup:
                            timings[key]["adbc"].append(adbc * 1000)
                            timings[key]["mcp"].append(mcp * 1000)
    finally:
        conn.close()
    return c, timings


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--flight", required=True, help="grpc://host:port of the gateway")
    p.add_argument("--mcp", required=True, help="http://host:port/mcp of the same gateway")
    p.add_argument("--user", required=True, help="the login (a listener, e.g. u0002)")
    p.add_argument("--password", help="Flight SQL password (default: the user name)")
    p.add_argument("--token", help="MCP bearer token (default: the user name)")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--questions", nargs="+", default=DEFAULT_QUESTIONS,
                   help="question keys of bench/questions.py")
    p.add_argument("--json", type=Path, help="also write the timings here")
    args = p.parse_args()
    if args.runs < 1:
        p.error("--runs must be at least 1")
    c, timings = asyncio.run(bench(args))
    print(f"{args.runs} runs per path per question, user {args.user}, W = {c.w:%Y-%m-%dT%H:%M:%SZ}")
    print(f"{'question':<20} {'ADBC p50':>9} {'ADBC p95':>9} {'MCP p50':>9} {'MCP p95':>9} "
          f"{'MCP extra p50':>14}  (ms)")
    summary = {}
    for key, t in timings.items():
        row = {path: {"p50": percentile(v, 50), "p95": percentile(v, 95)} for path, v in t.items()}
        summary[key] = row
        print(f"{key:<20} {row['adbc']['p50']:9.2f} {row['adbc']['p95']:9.2f} "
              f"{row['mcp']['p50']:9.2f} {row['mcp']['p95']:9.2f} "
              f"{row['mcp']['p50'] - row['adbc']['p50']:14.2f}")
    if args.json:
        args.json.write_text(json.dumps({"user": args.user, "runs": args.runs,
                                         "summary": summary, "timings_ms": timings}, indent=2))


if __name__ == "__main__":
    main()
