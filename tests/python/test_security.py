"""A listener never sees another listener's events: adversarial attempts by listener u0002,
on the embedded default and on ClickHouse (cold) + Redis (hot).

Every attempt either returns exactly what the same SQL returns over u0002's own events
(DuckDB over the generated Parquet files, restricted to u0002), or only u0002's rows, or is
refused with a clear message; and neither a result nor an error ever names another
listener or a track only other listeners played."""

import re

import adbc_driver_manager
import pyarrow as pa
import pytest

from conftest import ME, USERS, connect
from helpers import duck_rows

OTHERS = [f"u{i:04d}" for i in range(1, USERS + 1) if f"u{i:04d}" != ME]
OTHER_ID = re.compile("|".join(OTHERS))

# (name, setup statements, sql, parameters, expectation)
# expectation: "same" (equals DuckDB over u0002's events), "mine" (every user_id in the
# result is u0002, and the result is not empty), "refused" (an error), or a list of rows.
ATTEMPTS = [
    ("plain count", [], "SELECT count(*) FROM streams", None, "same"),
    ("another listener by name", [], "SELECT count(*) FROM streams WHERE user_id = 'u0003'", None, [(0,)]),
    ("everyone but me", [], "SELECT count(*) FROM streams WHERE user_id <> 'u0002'", None, [(0,)]),
    ("tautology", [], "SELECT count(*) FROM streams WHERE user_id = 'u0002' OR 1 = 1", None, "same"),
    ("or another listener", [], "SELECT user_id, count(*) FROM streams WHERE user_id = 'u0002' OR user_id = 'u0003' GROUP BY 1", None, "same"),
    ("in a list of listeners", [], "SELECT count(*) FROM streams WHERE user_id IN ('u0001', 'u0003', 'u0004')", None, [(0,)]),
    ("range over ids", [], "SELECT count(*) FROM streams WHERE user_id > 'u0002' OR user_id < 'u0002'", None, [(0,)]),
    ("like any", [], "SELECT count(*) FROM streams WHERE user_id LIKE '%'", None, "same"),
    ("distinct listeners", [], "SELECT DISTINCT user_id FROM streams", None, [(ME,)]),
    ("min and max listener", [], "SELECT min(user_id), max(user_id), count(DISTINCT user_id) FROM streams", None, [(ME, ME, 1)]),
    ("subquery in from", [], "SELECT count(*) FROM (SELECT * FROM streams) s WHERE s.user_id = 'u0003'", None, [(0,)]),
    ("subquery in where", [], "SELECT count(*) FROM streams WHERE user_id IN (SELECT user_id FROM streams WHERE user_id <> 'u0002')", None, [(0,)]),
    ("scalar subquery", [], "SELECT (SELECT count(*) FROM streams o WHERE o.user_id = 'u0003') AS n", None, [(0,)]),
    ("correlated exists", [], "SELECT count(*) FROM streams s WHERE EXISTS (SELECT 1 FROM streams o WHERE o.user_id = 'u0005' AND o.track_uri = s.track_uri)", None, [(0,)]),
    ("cte", [], "WITH others AS (SELECT * FROM streams WHERE user_id = 'u0003') SELECT count(*) FROM others", None, [(0,)]),
    ("recursive-looking cte", [], "WITH a AS (SELECT user_id FROM streams), b AS (SELECT * FROM a WHERE user_id <> 'u0002') SELECT count(*) FROM b", None, [(0,)]),
    ("union with another listener", [], "SELECT user_id, count(*) FROM streams GROUP BY 1 UNION ALL SELECT user_id, count(*) FROM streams WHERE user_id = 'u0004' GROUP BY 1", None, "same"),
    ("union distinct of everything", [], "SELECT user_id FROM streams UNION SELECT user_id FROM streams WHERE user_id <> 'u0002'", None, [(ME,)]),
    ("self-join on track", [], "SELECT count(*) FROM streams a JOIN streams b ON a.track_uri = b.track_uri AND a.user_id <> b.user_id", None, [(0,)]),
    ("self-join listeners", [], "SELECT DISTINCT b.user_id FROM streams a JOIN streams b ON a.track_uri = b.track_uri", None, [(ME,)]),
    ("join through the catalog", [], "SELECT count(*) FROM tracks t JOIN streams s ON s.track_uri = t.track_uri WHERE s.user_id = 'u0003'", None, [(0,)]),
    ("catalog exists another listener", [], "SELECT count(*) FROM tracks t WHERE EXISTS (SELECT 1 FROM streams s WHERE s.track_uri = t.track_uri AND s.user_id = 'u0006')", None, [(0,)]),
    ("artists others play", [], "SELECT a.artist_name, count(*) AS n FROM streams s JOIN tracks t ON t.track_uri = s.track_uri JOIN artists a ON a.artist_uri = t.artist_uri GROUP BY 1 ORDER BY n DESC, 1 LIMIT 5", None, "same"),
    ("values join", [], "SELECT count(*) FROM (VALUES ('u0003'), ('u0004')) v(u) JOIN streams s ON s.user_id = v.u", None, [(0,)]),
    ("unnest join", [], "SELECT count(*) FROM unnest(['u0003', 'u0005']) AS t(u) JOIN streams s ON s.user_id = t.u", None, [(0,)]),
    ("aggregate without user_id", [], "SELECT track_uri, count(*) AS n FROM streams GROUP BY 1 ORDER BY n DESC, 1 LIMIT 20", None, "same"),
    ("global sum without user_id", [], "SELECT sum(ms_played), count(DISTINCT track_uri) FROM streams", None, "same"),
    ("window over everything", [], "SELECT DISTINCT count(*) OVER () FROM streams", None, "same"),
    ("window partitioned by listener", [], "SELECT DISTINCT user_id, count(*) OVER (PARTITION BY user_id) FROM streams", None, "same"),
    ("rollup plays_daily by name", [], "SELECT DISTINCT user_id FROM plays_daily", None, [(ME,)]),
    ("rollup plays_daily of another listener", [], "SELECT count(*), sum(plays) FROM plays_daily WHERE user_id = 'u0003'", None, [(0, None)]),
    ("rollup track_first_last by name", [], "SELECT DISTINCT user_id FROM track_first_last", None, [(ME,)]),
    ("rollup track_first_last of others", [], "SELECT count(*) FROM track_first_last WHERE user_id <> 'u0002'", None, [(0,)]),
    ("rollup joined with the catalog", [], "SELECT count(*) FROM plays_daily p JOIN tracks t ON t.track_uri = p.track_uri WHERE p.user_id IN ('u0001', 'u0003')", None, [(0,)]),
    ("quoted identifiers", [], 'SELECT count(*) FROM "streams" WHERE "user_id" = \'u0003\'', None, [(0,)]),
    ("upper-case identifiers", [], "SELECT COUNT(*) FROM STREAMS WHERE USER_ID <> 'u0002'", None, [(0,)]),
    ("fully qualified name", [], "SELECT count(*) FROM sluice.public.streams WHERE user_id = 'u0003'", None, [(0,)]),
    ("differently cased quoted name", [], 'SELECT count(*) FROM "Streams"', None, "refused"),
    ("line comment hides the rest", [], "SELECT count(*) FROM streams -- WHERE user_id = 'u0002'\n", None, "same"),
    ("block comments", [], "SELECT count(*) FROM streams /* scope? */ WHERE user_id /**/ = 'u0003'", None, [(0,)]),
    ("multiple statements", [], "SELECT 1; SELECT * FROM streams WHERE user_id = 'u0003'", None, "refused"),
    ("prepared with another listener", [], "SELECT count(*) FROM streams WHERE user_id = ?", ("u0003",), [(0,)]),
    ("prepared with an injection", [], "SELECT count(*) FROM streams WHERE user_id = ?", ("u0002' OR '1'='1",), [(0,)]),
    ("prepared tautology", [], "SELECT count(*) FROM streams WHERE user_id = ? OR ?", ("nobody", True), "same"),
    ("prepared list", [], "SELECT count(*) FROM streams WHERE user_id IN (?, ?)", ("u0001", "u0003"), [(0,)]),
    ("set a listener", ["SET sluice.user_id = 'u0003'"], "SELECT 1", None, "refused"),
    ("no optimizer passes", ["SET datafusion.optimizer.max_passes = 0"], "SELECT DISTINCT user_id FROM streams", None, "refused"),
    ("skip failed rules", ["SET datafusion.optimizer.skip_failed_rules = true"], "SELECT count(*) FROM streams WHERE user_id <> 'u0002'", None, "refused"),
    ("prefer other joins", ["SET datafusion.optimizer.prefer_hash_join = false", "SET datafusion.optimizer.repartition_joins = false"], "SELECT count(*) FROM streams a JOIN streams b ON a.track_uri = b.track_uri WHERE b.user_id = 'u0004'", None, [(0,)]),
    ("no filter pushdown", ["SET datafusion.optimizer.filter_null_join_keys = true", "SET datafusion.execution.parquet.pushdown_filters = false"], "SELECT DISTINCT user_id FROM streams", None, [(ME,)]),
    ("raw route", ["SET sluice.route = 'raw'"], "SELECT DISTINCT user_id FROM streams", None, [(ME,)]),
    ("cold only", ["SET sluice.freshness = 'cold'"], "SELECT count(*) FROM streams WHERE user_id = 'u0003'", None, [(0,)]),
    ("turn on the file catalog", ["SET datafusion.catalog.information_schema = true"], "SELECT 1", None, "refused"),
    ("a parquet file by path", [], "SELECT count(*) FROM '{data}/streams/*.parquet'", None, "refused"),
    ("external table", [], "CREATE EXTERNAL TABLE leak STORED AS PARQUET LOCATION '{data}/streams/'", None, "refused"),
    ("copy out", [], "COPY (SELECT * FROM streams) TO '/tmp/sluice-leak.csv'", None, "refused"),
    ("information_schema tables", [], "SELECT * FROM information_schema.tables", None, "no_data"),
    ("information_schema columns", [], "SELECT * FROM information_schema.columns", None, "no_data"),
    ("describe", [], "DESCRIBE streams", None, "no_data"),
    # Source metrics (rows read, selectivity) and statistics (min/max user_id) span listeners.
    ("explain analyze", [], "EXPLAIN ANALYZE SELECT track_uri, count(*) FROM streams GROUP BY 1", None, "refused"),
    ("explain verbose", [], "EXPLAIN VERBOSE SELECT count(*) FROM streams", None, "refused"),
    ("explain with statistics", ["SET datafusion.explain.show_statistics = true"], "EXPLAIN SELECT * FROM streams", None, "refused"),
    ("error echoing a value", [], "SELECT CAST(user_id AS INT) FROM streams", None, "refused"),
    ("error echoing another listener's track", [], "SELECT count(*) FROM streams WHERE CAST(track_uri || user_id AS INT) = 1", None, "refused"),
    # The same over a rollup read by name, and a cast ClickHouse could run itself.
    ("error echoing a rollup's other listener", [], "SELECT count(*) FROM plays_daily WHERE CAST(track_uri || user_id AS INT) = 1", None, "refused"),
    ("error echoing first and last plays of others", [], "SELECT count(*) FROM track_first_last WHERE CAST(track_uri || user_id AS INT) = 1", None, "refused"),
    ("error parsing tracks before a year", [], "SELECT count(*) FROM streams WHERE ts < '2022-01-01T00:00:00Z' AND CAST(track_uri AS INT) = 1", None, "refused"),
    ("error in a filter on others", [], "SELECT count(*) FROM streams WHERE user_id = 'u0003' AND CAST(track_uri AS INT) = 1", None, "any"),
]


def test_there_are_at_least_forty_attempts():
    assert len(ATTEMPTS) >= 40


@pytest.fixture(scope="module")
def secrets(duck):
    """Values only other listeners' events hold: their ids and the tracks only they played."""
    tracks = duck.sql(
        f"SELECT DISTINCT track_uri FROM streams WHERE user_id <> '{ME}' "
        f"EXCEPT SELECT track_uri FROM streams WHERE user_id = '{ME}'").fetchall()
    return {t for (t,) in tracks}


def assert_no_secret(text, secrets, catalog_ok=False):
    leaked = OTHER_ID.findall(text)
    assert not leaked, f"another listener's id in: {text[:500]}"
    if not catalog_ok:
        tracks = set(re.findall(r"spotify:track:\w+", text)) & secrets
        assert not tracks, f"another listener's track in: {text[:500]}"


def cells(table: pa.Table) -> str:
    return " ".join(str(v) for col in table.columns for v in col.to_pylist())


@pytest.mark.parametrize("name,setup,sql,params,expect", ATTEMPTS, ids=[a[0] for a in ATTEMPTS])
def test_attempt(gateway, dataset_dir, mine, secrets, name, setup, sql, params, expect):
    sql = sql.replace("{data}", str(dataset_dir))
    # Literals the attacker wrote may come back (EXPLAIN, a refusal quoting the SQL).
    written = "".join(setup) + sql + str(params or "")
    conn = connect(gateway, ME)
    try:
        error = None
        with conn.cursor() as cur:
            try:
                for statement in setup:
                    cur.execute(statement)
                cur.execute(sql, params) if params is not None else cur.execute(sql)
                table = cur.fetch_arrow_table()
            except adbc_driver_manager.Error as e:
                error = str(e)
        if error is not None:
            assert expect in ("refused", "any"), f"{name}: refused unexpectedly: {error}"
            assert "INTERNAL" not in error, f"{name}: a refusal must be clear: {error}"
            assert_no_secret(error.replace(written, ""), secrets)
            return
        assert expect != "refused", f"{name}: ran, but must be refused"
        text = cells(table)
        reads_catalog = any(t in sql for t in ("tracks", "artists", "information_schema", "DESCRIBE"))
        # Ids the attacker wrote in the SQL may be echoed back as literals (UNION arms).
        assert_no_secret(re.sub("|".join(re.findall(r"u00\d\d", written)) or "^$", "", text)
                         if expect != "mine" else text, secrets, catalog_ok=reads_catalog)
        rows = [tuple(r.values()) for r in table.to_pylist()]
        if expect == "same":
            assert sorted(rows, key=repr) == sorted(
                duck_rows(mine, sql, list(params) if params else None), key=repr), name
        elif expect == "mine":
            assert rows and {r["user_id"] for r in table.to_pylist()} == {ME}
        elif isinstance(expect, list):
            assert rows == expect, f"{name}: {rows}"
    finally:
        conn.close()


def test_explain_shows_the_scope_and_no_data(gateway, secrets):
    conn = connect(gateway, ME)
    try:
        def explain(sql):
            with conn.cursor() as cur:
                cur.execute(sql)
                return cells(cur.fetch_arrow_table())
        for sql in ("EXPLAIN SELECT * FROM streams WHERE track_uri <> 'x'",
                    "EXPLAIN SELECT track_uri, count(*) FROM streams GROUP BY 1",
                    "EXPLAIN SELECT * FROM plays_daily"):
            text = explain(sql)
            assert f'user_id = Utf8("{ME}")' in text or f"user_id = '{ME}'" in text, \
                f"the listener's scope is not in the plan of {sql}: {text[:2000]}"
            assert "all listeners" not in text
            assert_no_secret(text, secrets)
        # Another listener's events: the scope and the filter leave nothing to read.
        text = explain("EXPLAIN SELECT * FROM streams WHERE user_id = 'u0003'")
        assert "EmptyRelation" in text and "all listeners" not in text, text
        assert_no_secret(text.replace("u0003", ""), secrets)
    finally:
        conn.close()


def test_a_listener_cannot_ingest(gateway):
    conn = connect(gateway, ME)
    try:
        batch = pa.table({"user_id": ["u0003"], "track_uri": ["spotify:track:x"],
                          "ts": pa.array([0], pa.timestamp("ms", tz="UTC")),
                          "ms_played": [1]})
        with conn.cursor() as cur, pytest.raises(adbc_driver_manager.Error) as e:
            cur.adbc_ingest("streams", batch, mode="append")
        assert "only admins ingest" in str(e.value)
    finally:
        conn.close()
