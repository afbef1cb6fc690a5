package sluice;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static sluice.Env.ME;
import static sluice.Env.rows;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.time.Instant;
import java.time.LocalDate;
import java.time.temporal.ChronoUnit;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The seed questions of tests/python/test_seed_questions.py, asked by listener u0002 through
 * Statement.executeQuery and PreparedStatement, answered the same as DuckDB's JDBC driver
 * computes them from the Parquet files with the listener's filter written out (Sluice adds it
 * itself).
 */
class SeedQuestionsTest {
  static Connection sluice;
  static Connection analyst;
  static Connection duck;
  static LocalDate end;
  static int year;

  @BeforeAll
  static void open() throws Exception {
    sluice = Env.listener();
    analyst = Env.analyst();
    duck = Env.duck();
    end = Env.end();
    year = end.getYear() - 5;
  }

  @AfterAll
  static void close() throws Exception {
    sluice.close();
    analyst.close();
    duck.close();
  }

  @Test
  void topArtistInAYear() throws Exception {
    List<List<Object>> got = rows(sluice, ""
        + "SELECT a.artist_uri, a.artist_name, count(*) AS plays\n"
        + "FROM streams s\n"
        + "JOIN tracks t ON s.track_uri = t.track_uri\n"
        + "JOIN artists a ON t.artist_uri = a.artist_uri\n"
        + "WHERE s.ts >= '" + year + "-01-01T00:00:00Z' AND s.ts < '" + (year + 1) + "-01-01T00:00:00Z'\n"
        + "GROUP BY a.artist_uri, a.artist_name\n"
        + "ORDER BY plays DESC, a.artist_uri\n"
        + "LIMIT 3");
    List<List<Object>> expected = rows(duck, ""
        + "SELECT a.artist_uri, a.artist_name, count(*) AS plays\n"
        + "FROM streams s JOIN tracks t USING (track_uri) JOIN artists a ON t.artist_uri = a.artist_uri\n"
        + "WHERE s.user_id = '" + ME + "'\n"
        + "  AND s.ts >= TIMESTAMPTZ '" + year + "-01-01 00:00:00+00'\n"
        + "  AND s.ts < TIMESTAMPTZ '" + (year + 1) + "-01-01 00:00:00+00'\n"
        + "GROUP BY ALL ORDER BY plays DESC, a.artist_uri LIMIT 3");
    assertEquals(3, expected.size());
    assertTrue((Long) expected.get(0).get(2) > 100);
    assertEquals(expected, got);
  }

  @Test
  void topTracksInADateRange() throws Exception {
    String from = (year + 2) + "-06-01";
    String to = (year + 2) + "-09-01";
    List<List<Object>> got = rows(sluice, ""
        + "SELECT t.track_name, s.track_uri, count(*) AS plays\n"
        + "FROM streams s JOIN tracks t ON s.track_uri = t.track_uri\n"
        + "WHERE s.ts BETWEEN '" + from + "T00:00:00Z' AND '" + to + "T00:00:00Z'\n"
        + "GROUP BY t.track_name, s.track_uri\n"
        + "ORDER BY plays DESC, s.track_uri LIMIT 10");
    List<List<Object>> expected = rows(duck, ""
        + "SELECT t.track_name, s.track_uri, count(*) AS plays\n"
        + "FROM streams s JOIN tracks t USING (track_uri)\n"
        + "WHERE s.user_id = '" + ME + "'\n"
        + "  AND s.ts BETWEEN TIMESTAMPTZ '" + from + " 00:00:00+00' AND TIMESTAMPTZ '" + to + " 00:00:00+00'\n"
        + "GROUP BY ALL ORDER BY plays DESC, s.track_uri LIMIT 10");
    assertEquals(10, expected.size());
    assertEquals(expected, got);
  }

  @Test
  void firstStreamEver() throws Exception {
    List<List<Object>> got = rows(sluice, "SELECT track_uri, ts, ms_played FROM streams ORDER BY ts LIMIT 1");
    List<List<Object>> expected = rows(duck,
        "SELECT track_uri, ts, ms_played FROM streams WHERE user_id = '" + ME + "' ORDER BY ts LIMIT 1");
    assertEquals(1, expected.size());
    assertEquals(expected, got);
  }

  @Test
  void firstAndLastPlayOfATrackWithABoundParameter() throws Exception {
    String track = (String) rows(duck, ""
        + "SELECT track_uri FROM streams WHERE user_id = '" + ME + "'\n"
        + "GROUP BY track_uri ORDER BY count(*) DESC, track_uri LIMIT 1").get(0).get(0);
    List<List<Object>> got;
    try (PreparedStatement ps = sluice.prepareStatement(
        "SELECT min(ts) AS first_play, max(ts) AS last_play, count(*) AS plays "
            + "FROM streams WHERE track_uri = ?")) {
      ps.setString(1, track);
      got = rows(ps);
    }
    List<List<Object>> expected = rows(duck, ""
        + "SELECT min(ts), max(ts), count(*) FROM streams\n"
        + "WHERE user_id = '" + ME + "' AND track_uri = '" + track + "'");
    assertEquals(expected, got);
    // The last play is recent: the answer spans the cold and the hot store.
    Instant last = (Instant) expected.get(0).get(1);
    assertTrue(last.isAfter(Instant.now().minus(60, ChronoUnit.DAYS)), last.toString());
  }

  @Test
  void monthlyPlaysPerGenre() throws Exception {
    List<List<Object>> got = rows(sluice, ""
        + "SELECT date_trunc('month', s.ts) AS month, a.genre, count(*) AS plays\n"
        + "FROM streams s\n"
        + "JOIN tracks t ON s.track_uri = t.track_uri\n"
        + "JOIN artists a ON t.artist_uri = a.artist_uri\n"
        + "WHERE s.ts >= '" + end.getYear() + "-01-01T00:00:00Z'\n"
        + "GROUP BY 1, 2 ORDER BY 1, 2");
    List<List<Object>> expected = rows(duck, ""
        + "SELECT date_trunc('month', s.ts::TIMESTAMP) AS month, a.genre, count(*) AS plays\n"
        + "FROM streams s JOIN tracks t USING (track_uri) JOIN artists a ON t.artist_uri = a.artist_uri\n"
        + "WHERE s.user_id = '" + ME + "' AND s.ts >= TIMESTAMPTZ '" + end.getYear() + "-01-01 00:00:00+00'\n"
        + "GROUP BY 1, 2 ORDER BY 1, 2");
    assertTrue(expected.size() > 10);
    assertEquals(expected, got);
  }

  @Test
  void tracksOfAFavouriteArtistNeverPlayed() throws Exception {
    String artist = (String) rows(duck, ""
        + "WITH mine AS (\n"
        + "    SELECT track_uri, count(*) AS n FROM streams WHERE user_id = '" + ME + "' GROUP BY 1),\n"
        + "per_artist AS (\n"
        + "    SELECT t.artist_uri, sum(coalesce(m.n, 0)) AS plays,\n"
        + "           count(*) FILTER (WHERE m.track_uri IS NULL) AS unplayed\n"
        + "    FROM tracks t LEFT JOIN mine m ON m.track_uri = t.track_uri GROUP BY 1)\n"
        + "SELECT artist_uri FROM per_artist WHERE unplayed > 0 AND plays > 0\n"
        + "ORDER BY plays DESC, artist_uri LIMIT 1").get(0).get(0);
    List<List<Object>> got;
    try (PreparedStatement ps = sluice.prepareStatement(""
        + "SELECT t.track_uri, t.track_name FROM tracks t\n"
        + "WHERE t.artist_uri = ?\n"
        + "  AND t.track_uri NOT IN (SELECT track_uri FROM streams)\n"
        + "ORDER BY t.track_uri")) {
      ps.setString(1, artist);
      got = rows(ps);
    }
    List<List<Object>> expected = rows(duck, ""
        + "SELECT t.track_uri, t.track_name FROM tracks t\n"
        + "WHERE t.artist_uri = '" + artist + "'\n"
        + "  AND t.track_uri NOT IN (SELECT track_uri FROM streams WHERE user_id = '" + ME + "')\n"
        + "ORDER BY t.track_uri");
    assertFalse(expected.isEmpty(), "the chosen artist has tracks the listener never played");
    assertEquals(expected, got);
  }

  @ParameterizedTest
  @ValueSource(ints = {3, 10, 30})
  void recentPlaysAcrossTheWatermark(int days) throws Exception {
    String since = end.minusDays(days).toString();
    List<List<Object>> got = rows(sluice, ""
        + "SELECT count(*), sum(ms_played), count(DISTINCT track_uri) FROM streams\n"
        + "WHERE ts >= '" + since + "T00:00:00Z'");
    List<List<Object>> expected = rows(duck, ""
        + "SELECT count(*), sum(ms_played), count(DISTINCT track_uri) FROM streams\n"
        + "WHERE user_id = '" + ME + "' AND ts >= TIMESTAMPTZ '" + since + " 00:00:00+00'");
    assertTrue((Long) expected.get(0).get(0) > 0);
    assertEquals(expected, got);
  }

  @Test
  void wholeHistoryCounts() throws Exception {
    assertEquals(rows(duck, "SELECT count(*) FROM streams WHERE user_id = '" + ME + "'"),
        rows(sluice, "SELECT count(*) FROM streams"));
    assertEquals(rows(duck, "SELECT user_id, count(*) FROM streams GROUP BY 1 ORDER BY 1"),
        rows(analyst, "SELECT user_id, count(*) FROM streams GROUP BY 1 ORDER BY 1"));
  }

  @Test
  void eventsExactlyAtTheWatermarkAreCountedOnce() throws Exception {
    String w = end.minusDays(7).toString();
    for (String op : List.of("<", ">=", "=")) {
      assertEquals(
          rows(duck, "SELECT count(*) FROM streams WHERE ts " + op + " TIMESTAMPTZ '" + w + " 00:00:00+00'"),
          rows(analyst, "SELECT count(*) FROM streams WHERE ts " + op + " '" + w + "T00:00:00Z'"),
          op);
    }
  }

  @Test
  void relativeTimeWithNow() throws Exception {
    long n = Env.count(sluice, "SELECT count(*) FROM streams WHERE ts >= now() - INTERVAL '7 days'");
    long week = Env.count(duck,
        "SELECT count(*) FROM streams WHERE user_id = '" + ME + "' AND ts >= now() - INTERVAL 8 DAY");
    assertTrue(0 < n && n <= week, n + " of " + week);
  }
}
