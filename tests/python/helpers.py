"""Turning results from Sluice (ADBC) and from DuckDB into plain comparable rows."""

import datetime as dt

import pyarrow as pa


def _plain(v):
    if isinstance(v, dt.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=dt.timezone.utc)
        return int(v.timestamp() * 1000)
    if isinstance(v, dt.date):
        return v.isoformat()
    return v


def table_rows(table: pa.Table):
    cols = [c.to_pylist() for c in table.columns]
    return [tuple(_plain(v) for v in row) for row in zip(*cols)]


def sluice_rows(conn, sql, params=None):
    with conn.cursor() as cur:
        if params is None:
            cur.execute(sql)
        else:
            cur.execute(sql, params)
        return table_rows(cur.fetch_arrow_table())


def duck_rows(duck, sql, params=None):
    return table_rows(duck.sql(sql, params=params).to_arrow_table())
