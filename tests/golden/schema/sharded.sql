CREATE DATABASE IF NOT EXISTS "sluice";

CREATE TABLE IF NOT EXISTS "sluice".streams_local (user_id String, track_uri String, timestamp_ms UInt64, ms_played UInt32) ENGINE = MergeTree() ORDER BY (user_id, timestamp_ms);

CREATE TABLE IF NOT EXISTS "sluice".tracks (track_uri String, track_name String, artist_uri String, album_uri String, duration_ms Int64) ENGINE = MergeTree() ORDER BY track_uri;

CREATE TABLE IF NOT EXISTS "sluice".artists (artist_uri String, artist_name String, genre String) ENGINE = MergeTree() ORDER BY artist_uri;

CREATE TABLE IF NOT EXISTS "sluice".albums (album_uri String, album_name String, artist_uri String, release_date Int32) ENGINE = MergeTree() ORDER BY album_uri;

CREATE TABLE IF NOT EXISTS "sluice".sluice_watermark_local (w_ms Int64, published DateTime) ENGINE = MergeTree() ORDER BY w_ms;

CREATE TABLE IF NOT EXISTS "sluice".streams (user_id String, track_uri String, timestamp_ms UInt64, ms_played UInt32) ENGINE = Distributed('sluice_shards', 'sluice', 'streams_local', sipHash64(user_id));

CREATE TABLE IF NOT EXISTS "sluice".sluice_watermark (w_ms Int64, published DateTime) ENGINE = Distributed('sluice_shards', 'sluice', 'sluice_watermark_local');

CREATE TABLE IF NOT EXISTS "sluice".track_first_last_state (user_id String, track_uri String, first_ts AggregateFunction(min, UInt64), last_ts AggregateFunction(max, UInt64), plays AggregateFunction(count)) ENGINE = AggregatingMergeTree() ORDER BY (user_id, track_uri);

CREATE MATERIALIZED VIEW IF NOT EXISTS "sluice".track_first_last_mv TO "sluice".track_first_last_state AS SELECT user_id, track_uri, minState(timestamp_ms) AS first_ts, maxState(timestamp_ms) AS last_ts, countState() AS plays FROM "sluice".streams_local GROUP BY user_id, track_uri;

CREATE VIEW IF NOT EXISTS "sluice".track_first_last_local AS SELECT user_id, track_uri, minMerge(first_ts) AS first_ts, maxMerge(last_ts) AS last_ts, countMerge(plays) AS plays FROM "sluice".track_first_last_state GROUP BY user_id, track_uri;

CREATE TABLE IF NOT EXISTS "sluice".track_first_last (user_id String, track_uri String, first_ts UInt64, last_ts UInt64, plays UInt64) ENGINE = Distributed('sluice_shards', 'sluice', 'track_first_last_local', sipHash64(user_id));

CREATE TABLE IF NOT EXISTS "sluice".plays_monthly_genre_state (user_id String, month UInt64, genre String, plays UInt64, ms_played UInt64) ENGINE = SummingMergeTree() ORDER BY (user_id, month, genre);

CREATE MATERIALIZED VIEW IF NOT EXISTS "sluice".plays_monthly_genre_mv TO "sluice".plays_monthly_genre_state AS SELECT user_id, toUInt64(toDateTime(toStartOfMonth(toDateTime(intDiv(timestamp_ms, 1000), 'UTC')), 'UTC')) * 1000 AS month, genre, count() AS plays, sum(ms_played) AS ms_played FROM "sluice".streams_local ALL INNER JOIN (SELECT track_uri, genre FROM "sluice".tracks ALL INNER JOIN (SELECT artist_uri, genre FROM "sluice".artists) AS catalog_artists USING (artist_uri)) AS catalog_tracks USING (track_uri) GROUP BY user_id, month, genre;

CREATE VIEW IF NOT EXISTS "sluice".plays_monthly_genre_local AS SELECT user_id, month, genre, sum(plays) AS plays, sum(ms_played) AS ms_played FROM "sluice".plays_monthly_genre_state GROUP BY user_id, month, genre;

CREATE TABLE IF NOT EXISTS "sluice".plays_monthly_genre (user_id String, month UInt64, genre String, plays UInt64, ms_played UInt64) ENGINE = Distributed('sluice_shards', 'sluice', 'plays_monthly_genre_local', sipHash64(user_id));

CREATE TABLE IF NOT EXISTS "sluice".plays_monthly_artist_state (user_id String, month UInt64, artist_uri String, artist_name String, genre String, plays UInt64, ms_played UInt64) ENGINE = SummingMergeTree() ORDER BY (user_id, month, artist_uri, artist_name, genre);

CREATE MATERIALIZED VIEW IF NOT EXISTS "sluice".plays_monthly_artist_mv TO "sluice".plays_monthly_artist_state AS SELECT user_id, toUInt64(toDateTime(toStartOfMonth(toDateTime(intDiv(timestamp_ms, 1000), 'UTC')), 'UTC')) * 1000 AS month, artist_uri, artist_name, genre, count() AS plays, sum(ms_played) AS ms_played FROM "sluice".streams_local ALL INNER JOIN (SELECT track_uri, artist_uri, artist_name, genre FROM "sluice".tracks ALL INNER JOIN (SELECT artist_uri, artist_name, genre FROM "sluice".artists) AS catalog_artists USING (artist_uri)) AS catalog_tracks USING (track_uri) GROUP BY user_id, month, artist_uri, artist_name, genre;

CREATE VIEW IF NOT EXISTS "sluice".plays_monthly_artist_local AS SELECT user_id, month, artist_uri, artist_name, genre, sum(plays) AS plays, sum(ms_played) AS ms_played FROM "sluice".plays_monthly_artist_state GROUP BY user_id, month, artist_uri, artist_name, genre;

CREATE TABLE IF NOT EXISTS "sluice".plays_monthly_artist (user_id String, month UInt64, artist_uri String, artist_name String, genre String, plays UInt64, ms_played UInt64) ENGINE = Distributed('sluice_shards', 'sluice', 'plays_monthly_artist_local', sipHash64(user_id));

CREATE TABLE IF NOT EXISTS "sluice".plays_daily_state (user_id String, day UInt64, track_uri String, plays UInt64, ms_played UInt64) ENGINE = SummingMergeTree() ORDER BY (user_id, day, track_uri);

CREATE MATERIALIZED VIEW IF NOT EXISTS "sluice".plays_daily_mv TO "sluice".plays_daily_state AS SELECT user_id, intDiv(timestamp_ms, 86400000) * 86400000 AS day, track_uri, count() AS plays, sum(ms_played) AS ms_played FROM "sluice".streams_local GROUP BY user_id, day, track_uri;

CREATE VIEW IF NOT EXISTS "sluice".plays_daily_local AS SELECT user_id, day, track_uri, sum(plays) AS plays, sum(ms_played) AS ms_played FROM "sluice".plays_daily_state GROUP BY user_id, day, track_uri;

CREATE TABLE IF NOT EXISTS "sluice".plays_daily (user_id String, day UInt64, track_uri String, plays UInt64, ms_played UInt64) ENGINE = Distributed('sluice_shards', 'sluice', 'plays_daily_local', sipHash64(user_id));

-- backfill track_first_last_state
INSERT INTO "sluice".track_first_last_state SELECT user_id, track_uri, minState(timestamp_ms) AS first_ts, maxState(timestamp_ms) AS last_ts, countState() AS plays FROM "sluice".streams_local GROUP BY user_id, track_uri;

-- backfill plays_monthly_genre_state
INSERT INTO "sluice".plays_monthly_genre_state SELECT user_id, toUInt64(toDateTime(toStartOfMonth(toDateTime(intDiv(timestamp_ms, 1000), 'UTC')), 'UTC')) * 1000 AS month, genre, count() AS plays, sum(ms_played) AS ms_played FROM "sluice".streams_local ALL INNER JOIN (SELECT track_uri, genre FROM "sluice".tracks ALL INNER JOIN (SELECT artist_uri, genre FROM "sluice".artists) AS catalog_artists USING (artist_uri)) AS catalog_tracks USING (track_uri) GROUP BY user_id, month, genre;

-- backfill plays_monthly_artist_state
INSERT INTO "sluice".plays_monthly_artist_state SELECT user_id, toUInt64(toDateTime(toStartOfMonth(toDateTime(intDiv(timestamp_ms, 1000), 'UTC')), 'UTC')) * 1000 AS month, artist_uri, artist_name, genre, count() AS plays, sum(ms_played) AS ms_played FROM "sluice".streams_local ALL INNER JOIN (SELECT track_uri, artist_uri, artist_name, genre FROM "sluice".tracks ALL INNER JOIN (SELECT artist_uri, artist_name, genre FROM "sluice".artists) AS catalog_artists USING (artist_uri)) AS catalog_tracks USING (track_uri) GROUP BY user_id, month, artist_uri, artist_name, genre;

-- backfill plays_daily_state
INSERT INTO "sluice".plays_daily_state SELECT user_id, intDiv(timestamp_ms, 86400000) * 86400000 AS day, track_uri, count() AS plays, sum(ms_played) AS ms_played FROM "sluice".streams_local GROUP BY user_id, day, track_uri;

