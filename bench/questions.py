"""The seed questions, each written four ways: for Sluice (the listener's filter left out:
Sluice adds it), for DuckDB over the generated Parquet files, as the best single hand-written
ClickHouse query (on the `direct` database the benchmark builds: every event, hot ones too,
ordered by (user_id, timestamp_ms), and a first/last rollup over them), and, for the hot
window, as a direct Redis read.

Every form returns the same rows in the same order, so the benchmark checks that all paths
agree before it times them."""

import dataclasses
import datetime as dt
from typing import Callable, Optional

@dataclasses.dataclass
class Context:
    """What a question needs to know: the listener, the dates, and per-listener choices."""

    user: str
    end: dt.date  # the day after the last generated day
    w: dt.datetime  # the watermark: midnight UTC, hot_days before `end`
    track: str = ""  # the listener's most played track
    artist: str = ""  # the listener's most played artist with tracks never played

    @property
    def w_ms(self):
        return int(self.w.timestamp() * 1000)

    @property
    def year(self):
        """A full year five years back: a long-range question."""
        return self.end.year - 5

    @property
    def summer(self):
        """Last summer (June to August), before the hot window."""
        y = self.end.year if self.end.month > 9 else self.end.year - 1
        return dt.date(y, 6, 1), dt.date(y, 9, 1)


def ms(d: dt.date) -> int:
    return int(dt.datetime.combine(d, dt.time(), tzinfo=dt.timezone.utc).timestamp() * 1000)


def iso(d: dt.date) -> str:
    return f"{d.isoformat()}T00:00:00Z"


def duck_ts(d) -> str:
    return f"TIMESTAMPTZ '{d.isoformat()} 00:00:00+00'"


@dataclasses.dataclass
class Question:
    key: str
    title: str
    analyst: bool  # asked by the analyst across every listener, not by one listener
    long_range: bool  # a year or more: the rollups must pay off here
    hot: bool  # only the hot window
    sluice: Callable[[Context], str]
    duck: Callable[[Context], str]
    clickhouse: Callable[[Context], str]
    redis: Optional[Callable] = None  # (redis client, Context) -> rows


def _join_catalog_ch(inner: str, keep: str) -> str:
    """ClickHouse 18.16 takes one JOIN per SELECT: per-track counts, then artists, nested."""
    return (
        f"(SELECT artist_uri, {keep} FROM ({inner}) "
        "ANY INNER JOIN (SELECT track_uri, artist_uri FROM sluice.tracks) USING track_uri) "
        "ANY INNER JOIN (SELECT artist_uri, artist_name, genre FROM sluice.artists) USING artist_uri"
    )


def _redis_events(r, c: Context):
    """The listener's hot events as (ts_ms, track_uri, ms_played), oldest first."""
    out = []
    for m in r.zrangebyscore(f"sluice:{{{c.user}}}:events", c.w_ms, "+inf"):
        ts, track, played = m.decode().split("|")
        out.append((int(ts), track, int(played)))
    return out


def _redis_week_count(r, c):
    events = _redis_events(r, c)
    return [(len(events), sum(e[2] for e in events), len({e[1] for e in events}))]


QUESTIONS = [
    Question(
        "top_artist_year", "my top artist in a year", False, True, False,
        lambda c: f"""SELECT a.artist_name, count(*) AS plays
            FROM streams s JOIN tracks t ON s.track_uri = t.track_uri
            JOIN artists a ON t.artist_uri = a.artist_uri
            WHERE s.ts >= '{c.year}-01-01T00:00:00Z' AND s.ts < '{c.year + 1}-01-01T00:00:00Z'
            GROUP BY a.artist_name ORDER BY plays DESC, a.artist_name LIMIT 1""",
        lambda c: f"""SELECT a.artist_name, count(*) AS plays
            FROM streams s JOIN tracks t USING (track_uri) JOIN artists a USING (artist_uri)
            WHERE s.user_id = '{c.user}' AND s.ts >= {duck_ts(dt.date(c.year, 1, 1))}
              AND s.ts < {duck_ts(dt.date(c.year + 1, 1, 1))}
            GROUP BY 1 ORDER BY plays DESC, 1 LIMIT 1""",
        lambda c: "SELECT artist_name, sum(plays) AS n FROM " + _join_catalog_ch(
            f"SELECT track_uri, count() AS plays FROM direct.streams WHERE user_id = '{c.user}' "
            f"AND timestamp_ms >= {ms(dt.date(c.year, 1, 1))} "
            f"AND timestamp_ms < {ms(dt.date(c.year + 1, 1, 1))} GROUP BY track_uri", "plays")
        + " GROUP BY artist_name ORDER BY n DESC, artist_name LIMIT 1",
    ),
    Question(
        "top_tracks_summer", "my 10 most played tracks last summer", False, False, False,
        lambda c: f"""SELECT t.track_name, s.track_uri, count(*) AS plays
            FROM streams s JOIN tracks t ON s.track_uri = t.track_uri
            WHERE s.ts >= '{iso(c.summer[0])}' AND s.ts < '{iso(c.summer[1])}'
            GROUP BY t.track_name, s.track_uri ORDER BY plays DESC, s.track_uri LIMIT 10""",
        lambda c: f"""SELECT t.track_name, s.track_uri, count(*) AS plays
            FROM streams s JOIN tracks t USING (track_uri)
            WHERE s.user_id = '{c.user}' AND s.ts >= {duck_ts(c.summer[0])}
              AND s.ts < {duck_ts(c.summer[1])}
            GROUP BY ALL ORDER BY plays DESC, s.track_uri LIMIT 10""",
        lambda c: "SELECT track_name, track_uri, plays FROM ("
        f"SELECT track_uri, count() AS plays FROM direct.streams WHERE user_id = '{c.user}' "
        f"AND timestamp_ms >= {ms(c.summer[0])} AND timestamp_ms < {ms(c.summer[1])} "
        "GROUP BY track_uri ORDER BY plays DESC, track_uri LIMIT 10) "
        "ANY LEFT JOIN (SELECT track_uri, track_name FROM sluice.tracks) USING track_uri "
        "ORDER BY plays DESC, track_uri",
    ),
    Question(
        "first_stream", "my first stream ever", False, False, False,
        lambda c: "SELECT track_uri, ts, ms_played FROM streams ORDER BY ts, track_uri LIMIT 1",
        lambda c: f"""SELECT track_uri, ts, ms_played FROM streams WHERE user_id = '{c.user}'
            ORDER BY ts, track_uri LIMIT 1""",
        lambda c: "SELECT track_uri, timestamp_ms, ms_played FROM direct.streams "
        f"WHERE user_id = '{c.user}' ORDER BY timestamp_ms, track_uri LIMIT 1",
    ),
    Question(
        "track_first_last", "first and last play of my favourite track", False, True, False,
        lambda c: f"""SELECT min(ts), max(ts), count(*) FROM streams
            WHERE track_uri = '{c.track}'""",
        lambda c: f"""SELECT min(ts), max(ts), count(*) FROM streams
            WHERE user_id = '{c.user}' AND track_uri = '{c.track}'""",
        lambda c: "SELECT minMerge(first_ts), maxMerge(last_ts), countMerge(plays) "
        f"FROM direct.track_first_last_state WHERE user_id = '{c.user}' "
        f"AND track_uri = '{c.track}'",
    ),
    Question(
        "monthly_genre", "my plays per genre per month this year", False, False, False,
        lambda c: f"""SELECT date_trunc('month', s.ts) AS month, a.genre, count(*) AS plays
            FROM streams s JOIN tracks t ON s.track_uri = t.track_uri
            JOIN artists a ON t.artist_uri = a.artist_uri
            WHERE s.ts >= '{c.end.year}-01-01T00:00:00Z'
            GROUP BY 1, 2 ORDER BY 1, 2""",
        lambda c: f"""SELECT date_trunc('month', s.ts::TIMESTAMP) AS month, a.genre,
                count(*) AS plays
            FROM streams s JOIN tracks t USING (track_uri) JOIN artists a USING (artist_uri)
            WHERE s.user_id = '{c.user}' AND s.ts >= {duck_ts(dt.date(c.end.year, 1, 1))}
            GROUP BY 1, 2 ORDER BY 1, 2""",
        lambda c: "SELECT month, genre, sum(plays) AS n FROM " + _join_catalog_ch(
            "SELECT track_uri, toUInt64(toDateTime(toStartOfMonth(toDateTime("
            "intDiv(timestamp_ms, 1000), 'UTC')), 'UTC')) * 1000 AS month, count() AS plays "
            f"FROM direct.streams WHERE user_id = '{c.user}' "
            f"AND timestamp_ms >= {ms(dt.date(c.end.year, 1, 1))} GROUP BY track_uri, month",
            "month, plays")
        + " GROUP BY month, genre ORDER BY month, genre",
    ),
    Question(
        "never_played", "tracks of my favourite artist I never played", False, False, False,
        lambda c: f"""SELECT t.track_uri, t.track_name FROM tracks t
            WHERE t.artist_uri = '{c.artist}'
              AND t.track_uri NOT IN (SELECT track_uri FROM streams)
            ORDER BY t.track_uri""",
        lambda c: f"""SELECT t.track_uri, t.track_name FROM tracks t
            WHERE t.artist_uri = '{c.artist}' AND t.track_uri NOT IN
              (SELECT track_uri FROM streams WHERE user_id = '{c.user}')
            ORDER BY t.track_uri""",
        lambda c: "SELECT track_uri, track_name FROM sluice.tracks "
        f"WHERE artist_uri = '{c.artist}' AND track_uri NOT IN (SELECT track_uri "
        f"FROM direct.track_first_last_state WHERE user_id = '{c.user}') ORDER BY track_uri",
    ),
    Question(
        "week_summary", "my plays, time and tracks in the last 7 days", False, False, True,
        lambda c: f"""SELECT count(*), sum(ms_played), count(DISTINCT track_uri) FROM streams
            WHERE ts >= '{c.w.strftime('%Y-%m-%dT%H:%M:%SZ')}'""",
        lambda c: f"""SELECT count(*), sum(ms_played), count(DISTINCT track_uri) FROM streams
            WHERE user_id = '{c.user}' AND ts >= {duck_ts(c.w.date())}""",
        lambda c: "SELECT count(), sum(ms_played), uniqExact(track_uri) FROM direct.streams "
        f"WHERE user_id = '{c.user}' AND timestamp_ms >= {c.w_ms}",
        _redis_week_count,
    ),
    Question(
        "week_rows", "what I played in the last 7 days (rows)", False, False, True,
        lambda c: f"""SELECT ts, track_uri, ms_played FROM streams
            WHERE ts >= '{c.w.strftime('%Y-%m-%dT%H:%M:%SZ')}' ORDER BY ts, track_uri""",
        lambda c: f"""SELECT ts, track_uri, ms_played FROM streams
            WHERE user_id = '{c.user}' AND ts >= {duck_ts(c.w.date())} ORDER BY ts, track_uri""",
        lambda c: "SELECT timestamp_ms, track_uri, ms_played FROM direct.streams "
        f"WHERE user_id = '{c.user}' AND timestamp_ms >= {c.w_ms} ORDER BY timestamp_ms, track_uri",
        _redis_events,
    ),
    Question(
        "analyst_genres_year", "analyst: plays and listeners per genre in a year", True, True, False,
        lambda c: f"""SELECT a.genre, count(*) AS plays, count(DISTINCT s.user_id) AS listeners
            FROM streams s JOIN tracks t ON s.track_uri = t.track_uri
            JOIN artists a ON t.artist_uri = a.artist_uri
            WHERE s.ts >= '{c.year}-01-01T00:00:00Z' AND s.ts < '{c.year + 1}-01-01T00:00:00Z'
            GROUP BY a.genre ORDER BY a.genre""",
        lambda c: f"""SELECT a.genre, count(*) AS plays, count(DISTINCT s.user_id) AS listeners
            FROM streams s JOIN tracks t USING (track_uri) JOIN artists a USING (artist_uri)
            WHERE s.ts >= {duck_ts(dt.date(c.year, 1, 1))}
              AND s.ts < {duck_ts(dt.date(c.year + 1, 1, 1))}
            GROUP BY 1 ORDER BY 1""",
        lambda c: "SELECT genre, sum(plays) AS n, uniqExact(user_id) AS listeners FROM "
        + _join_catalog_ch(
            "SELECT user_id, track_uri, count() AS plays FROM direct.streams "
            f"WHERE timestamp_ms >= {ms(dt.date(c.year, 1, 1))} "
            f"AND timestamp_ms < {ms(dt.date(c.year + 1, 1, 1))} GROUP BY user_id, track_uri",
            "user_id, plays")
        + " GROUP BY genre ORDER BY genre",
    ),
]

LISTENER_QUESTIONS = [q for q in QUESTIONS if not q.analyst]


def plain(v):
    """One comparable value: times as epoch ms, floats rounded."""
    if isinstance(v, dt.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=dt.timezone.utc)
        return int(v.timestamp() * 1000)
    if isinstance(v, float):
        return round(v, 6)
    if isinstance(v, str) and v.isdigit():
        return int(v)
    return v


def arrow_rows(table):
    cols = [c.to_pylist() for c in table.columns]
    return [tuple(plain(v) for v in row) for row in zip(*cols)]


def rows_of(values):
    return [tuple(plain(v) for v in row) for row in values]


def pick_context(duck, user, end, w):
    """The listener's favourite track and the favourite artist with tracks never played."""
    [(track,)] = duck.sql(f"""
        SELECT track_uri FROM streams WHERE user_id = '{user}'
        GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1""").fetchall()
    rows = duck.sql(f"""
        WITH mine AS (SELECT track_uri, count(*) AS n FROM streams
                      WHERE user_id = '{user}' GROUP BY 1),
        per_artist AS (
            SELECT t.artist_uri, sum(coalesce(m.n, 0)) AS plays,
                   count(*) FILTER (WHERE m.track_uri IS NULL) AS unplayed
            FROM tracks t LEFT JOIN mine m USING (track_uri) GROUP BY 1)
        SELECT artist_uri FROM per_artist WHERE unplayed > 0 AND plays > 0
        ORDER BY plays DESC, artist_uri LIMIT 1""").fetchall()
    return Context(user=user, end=end, w=w, track=track, artist=rows[0][0] if rows else "")
