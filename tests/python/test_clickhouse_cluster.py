"""ClickHouse sharded by listener: two private 18.16 servers as the shards of one
`remote_servers` cluster (no replication, so no ZooKeeper), initialised and loaded by Sluice
as a user would (`cluster` and `shards` in `[clickhouse]`), served with Redis as the hot store.
The seed questions and the route corpus run against this stack too (the `gateway` fixtures);
here: where the rows went, which shards a query read (each server's own `system.query_log`),
one `W` for the cluster, the same answers as one server, and a layout Sluice refuses."""

import datetime as dt
import time

import pytest

from conftest import (CLICKHOUSE_DB, CLUSTER, END, ME, USERS, cluster_config_extra, connect,
                      sluice, write_clickhouse_config)
from helpers import duck_rows, sluice_rows

W = dt.datetime.combine(END - dt.timedelta(days=7), dt.time(), tzinfo=dt.timezone.utc)
W_MS = int(W.timestamp() * 1000)


@pytest.fixture(scope="module")
def stack(stacks):
    return stacks.cluster_stack()


@pytest.fixture(scope="module")
def single(stacks):
    """One 18.16 server with Redis, loaded from the same dataset."""
    return stacks.full_stack("18.16")


def rows(server, sql):
    out = server.query(f"{sql} FORMAT TabSeparated").strip()
    return [line.split("\t") for line in out.splitlines()] if out else []


def shard_of(server, user):
    """The shard (from zero) ClickHouse itself puts `user` on: the `Distributed` tables'
    key modulo the two equal weights."""
    return int(server.query(f"SELECT sipHash64('{user}') % 2").strip())


def test_each_listener_lives_on_the_shard_clickhouse_picks(stack, duck):
    shards = stack.shards
    users_on = []
    for i, shard in enumerate(shards):
        users = dict(rows(shard, f"SELECT user_id, count() FROM {CLICKHOUSE_DB}.streams_local "
                                 "GROUP BY user_id"))
        assert users, f"shard {i + 1} holds no events"
        assert all(shard_of(shard, u) == i for u in users), (i, users)
        users_on.append(users)
    assert not set(users_on[0]) & set(users_on[1])
    held = {u: int(n) for part in users_on for u, n in part.items()}
    expected = dict(duck_rows(duck, f"""
        SELECT user_id, count(*) FROM streams
        WHERE ts < TIMESTAMPTZ '{W.isoformat()}' GROUP BY user_id"""))
    assert held == expected and len(held) == USERS


def test_each_shard_keeps_the_rollups_of_its_listeners(stack):
    for shard in stack.shards:
        [[events]] = rows(shard, f"SELECT count() FROM {CLICKHOUSE_DB}.streams_local")
        [[daily]] = rows(shard, f"SELECT sum(plays) FROM {CLICKHOUSE_DB}.plays_daily_local")
        [[first_last]] = rows(shard, f"SELECT sum(plays) FROM {CLICKHOUSE_DB}.track_first_last_local")
        assert events == daily == first_last, shard.url
        # The catalog is whole on every shard: each joins its own events with it.
        [[tracks]] = rows(shard, f"SELECT count() FROM {CLICKHOUSE_DB}.tracks")
        assert int(tracks) > 0


def test_one_watermark_for_the_cluster(stack):
    first, second = stack.shards
    for shard in stack.shards:
        assert rows(shard, f"SELECT max(w_ms) FROM {CLICKHOUSE_DB}.sluice_watermark") == [[str(W_MS)]]
    # Recorded once, on the first shard.
    assert rows(first, f"SELECT count() FROM {CLICKHOUSE_DB}.sluice_watermark_local") == [["1"]]
    assert rows(second, f"SELECT count() FROM {CLICKHOUSE_DB}.sluice_watermark_local") == [["0"]]


def logged(shard, marker, since):
    """The queries `shard` ran since `since` whose text holds `marker`, as
    (is_initial_query, query) pairs."""
    shard.query("SYSTEM FLUSH LOGS")
    return [tuple(r) for r in rows(shard, f"""
        SELECT is_initial_query, query FROM system.query_log
        WHERE type = 2 AND event_time >= toDateTime({int(since)})
          AND query LIKE '%{marker}%' AND query NOT LIKE '%query_log%'""")]


def test_a_listeners_query_reads_only_its_shard(stack, mine):
    since = time.time() - 1
    conn = connect(stack, ME)
    try:
        with conn.cursor() as cur:
            cur.execute("SET sluice.freshness = 'cold'")
        # 12345: a marker to find the statement in each server's log.
        got = sluice_rows(conn, "SELECT count(*) FROM streams WHERE ms_played > 12345")
    finally:
        conn.close()
    assert got == duck_rows(mine, f"""SELECT count(*) FROM streams
        WHERE ms_played > 12345 AND ts < TIMESTAMPTZ '{W.isoformat()}'""")
    home = shard_of(stack.shards[0], ME)
    for i, shard in enumerate(stack.shards):
        seen = logged(shard, "12345", since)
        if i == home:
            assert len(seen) == 1 and seen[0][0] == "1", seen
            assert "streams_local" in seen[0][1] and ME in seen[0][1], seen
        else:
            assert seen == [], f"shard {i + 1} read for a listener of shard {home + 1}: {seen}"


def test_an_analysts_aggregate_runs_on_every_shard(stack, duck):
    since = time.time() - 1
    conn = connect(stack, "analyst")
    try:
        with conn.cursor() as cur:
            cur.execute("SET sluice.freshness = 'cold'")
        got = sluice_rows(conn, """SELECT user_id, count(*) AS n FROM streams
            WHERE ms_played > 12346 GROUP BY user_id ORDER BY user_id""")
    finally:
        conn.close()
    assert got == duck_rows(duck, f"""SELECT user_id, count(*) AS n FROM streams
        WHERE ms_played > 12346 AND ts < TIMESTAMPTZ '{W.isoformat()}'
        GROUP BY user_id ORDER BY user_id""")
    entry, other = (logged(s, "12346", since) for s in stack.shards)
    # Asked of the first shard, through the Distributed table; the second ran its part.
    assert [q for q in entry if q[0] == "1"] and [q for q in other if q[0] == "0"], (entry, other)
    assert not [q for q in other if q[0] == "1"], other


QUESTIONS = {
    ME: [
        "SELECT count(*), sum(ms_played) FROM streams",
        """SELECT a.artist_name, count(*) AS plays FROM streams s
           JOIN tracks t ON s.track_uri = t.track_uri JOIN artists a ON t.artist_uri = a.artist_uri
           GROUP BY a.artist_name ORDER BY plays DESC, a.artist_name LIMIT 5""",
        "SELECT track_uri, ts FROM streams ORDER BY ts, track_uri LIMIT 3",
    ],
    "analyst": [
        """SELECT a.genre, count(*) AS plays, count(DISTINCT s.user_id) AS listeners
           FROM streams s JOIN tracks t ON s.track_uri = t.track_uri
           JOIN artists a ON t.artist_uri = a.artist_uri
           GROUP BY a.genre ORDER BY plays DESC, a.genre LIMIT 5""",
        """SELECT user_id, min(ts) AS first FROM streams GROUP BY user_id ORDER BY user_id""",
        # A join of events with a rollup's question: both Distributed on the cluster.
        """SELECT count(*) FROM streams WHERE track_uri IN
           (SELECT track_uri FROM streams WHERE user_id = 'u0001')""",
    ],
}


@pytest.mark.parametrize("user,sql", [(u, q) for u, qs in QUESTIONS.items() for q in qs])
def test_the_same_answers_as_one_server(stack, single, user, sql):
    answers = []
    for gateway in (stack, single):
        conn = connect(gateway, user)
        try:
            answers.append(sluice_rows(conn, sql))
        finally:
            conn.close()
    assert answers[0] and answers[0] == answers[1]


def init_refusal(tmp_path, url, extra):
    path = write_clickhouse_config(tmp_path, url, extra=extra, database="sluice_refused")
    out = sluice("clickhouse", "init", "--config", path, check=False)
    assert out.returncode != 0, out.stdout
    return out.stderr


def test_a_layout_that_would_misplace_listeners_is_refused(stacks, tmp_path):
    first, second = stacks.cluster()
    assert "no server in `shards` for shard [2]" in init_refusal(
        tmp_path, first.url, f'cluster = "{CLUSTER}"\nshards = ["{first.url}"]\n')
    assert "are both shard 1" in init_refusal(
        tmp_path, first.url, f'cluster = "{CLUSTER}"\nshards = ["{first.url}", "{first.url}/"]\n')
    assert "no such cluster" in init_refusal(
        tmp_path, first.url, 'cluster = "nowhere"\n' + cluster_config_extra([first, second])
        .split("\n", 1)[1])
    assert "`shards` is set without `cluster`" in init_refusal(
        tmp_path, first.url, f'shards = ["{first.url}", "{second.url}"]\n')
    # Nothing was created by the refused attempts.
    for shard in (first, second):
        assert rows(shard, "SELECT count() FROM system.databases WHERE name = 'sluice_refused'") \
            == [["0"]]
