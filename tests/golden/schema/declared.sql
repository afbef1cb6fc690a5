CREATE DATABASE IF NOT EXISTS "sluice";

CREATE TABLE IF NOT EXISTS "sluice".streams (user_id String, track_uri String, timestamp_ms UInt64, ms_played UInt32) ENGINE = MergeTree() ORDER BY (user_id, timestamp_ms);

CREATE TABLE IF NOT EXISTS "sluice".tracks (track_uri String, track_name String, artist_uri String, album_uri String, duration_ms Int64) ENGINE = MergeTree() ORDER BY track_uri;

CREATE TABLE IF NOT EXISTS "sluice".artists (artist_uri String, artist_name String, genre String) ENGINE = MergeTree() ORDER BY artist_uri;

CREATE TABLE IF NOT EXISTS "sluice".albums (album_uri String, album_name String, artist_uri String, release_date Int32) ENGINE = MergeTree() ORDER BY album_uri;

CREATE TABLE IF NOT EXISTS "sluice".sluice_watermark (w_ms Int64, published DateTime) ENGINE = MergeTree() ORDER BY w_ms;

CREATE TABLE IF NOT EXISTS "sluice".album_artist_first_last_state (user_id String, track_uri String, album_name String, genre String, first_ts AggregateFunction(min, UInt64), last_ts AggregateFunction(max, UInt64), plays AggregateFunction(count), ms_played AggregateFunction(sum, UInt32)) ENGINE = AggregatingMergeTree() ORDER BY (user_id, track_uri, album_name, genre);

CREATE MATERIALIZED VIEW IF NOT EXISTS "sluice".album_artist_first_last_mv TO "sluice".album_artist_first_last_state AS SELECT user_id, track_uri, album_name, genre, minState(timestamp_ms) AS first_ts, maxState(timestamp_ms) AS last_ts, countState() AS plays, sumState(ms_played) AS ms_played FROM "sluice".streams ALL INNER JOIN (SELECT track_uri, genre, album_name FROM (SELECT track_uri, genre, album_uri FROM "sluice".tracks ALL INNER JOIN (SELECT artist_uri, genre FROM "sluice".artists) AS catalog_artists USING (artist_uri)) AS catalog_tracks_0 ALL INNER JOIN (SELECT album_uri, album_name FROM "sluice".albums) AS catalog_albums USING (album_uri)) AS catalog_tracks USING (track_uri) GROUP BY user_id, track_uri, album_name, genre;

CREATE VIEW IF NOT EXISTS "sluice".album_artist_first_last AS SELECT user_id, track_uri, album_name, genre, minMerge(first_ts) AS first_ts, maxMerge(last_ts) AS last_ts, countMerge(plays) AS plays, sumMerge(ms_played) AS ms_played FROM "sluice".album_artist_first_last_state GROUP BY user_id, track_uri, album_name, genre;

-- backfill album_artist_first_last_state
INSERT INTO "sluice".album_artist_first_last_state SELECT user_id, track_uri, album_name, genre, minState(timestamp_ms) AS first_ts, maxState(timestamp_ms) AS last_ts, countState() AS plays, sumState(ms_played) AS ms_played FROM "sluice".streams ALL INNER JOIN (SELECT track_uri, genre, album_name FROM (SELECT track_uri, genre, album_uri FROM "sluice".tracks ALL INNER JOIN (SELECT artist_uri, genre FROM "sluice".artists) AS catalog_artists USING (artist_uri)) AS catalog_tracks_0 ALL INNER JOIN (SELECT album_uri, album_name FROM "sluice".albums) AS catalog_albums USING (album_uri)) AS catalog_tracks USING (track_uri) GROUP BY user_id, track_uri, album_name, genre;

