package sluice;

import static org.junit.jupiter.api.Assertions.assertNotNull;

import java.math.BigDecimal;
import java.math.BigInteger;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Timestamp;
import java.sql.Types;
import java.time.Duration;
import java.time.Instant;
import java.time.LocalDate;
import java.time.LocalDateTime;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.List;
import java.util.function.BooleanSupplier;

/**
 * What tests/python/test_client_jdbc.py tells the tests (system properties {@code sluice.*},
 * or environment variables {@code SLUICE_JDBC_*}), connections to Sluice through the Flight SQL
 * JDBC driver, DuckDB over the same Parquet files, and rows made comparable.
 */
final class Env {
  private Env() {}

  /** The listener the listener-side tests act as (tests/python/conftest.py's ME). */
  static final String ME = "u0002";

  static String get(String name) {
    String value = System.getProperty("sluice." + name);
    if (value == null || value.isEmpty()) {
      value = System.getenv("SLUICE_JDBC_" + name.toUpperCase());
    }
    assertNotNull(value, "sluice." + name + " is not set: run through tests/python/test_client_jdbc.py");
    return value;
  }

  /** host:port of the plaintext server with the demo logins (password = name). */
  static String address() {
    return get("address");
  }

  /** The dataset folder both Sluice and DuckDB read. */
  static String data() {
    return get("data");
  }

  /** The dataset's last day (its hot window ends there), as conftest.END. */
  static LocalDate end() {
    return LocalDate.parse(get("end"));
  }

  static String url(String address, String query) {
    return "jdbc:arrow-flight-sql://" + address + "?" + query;
  }

  /** A plaintext connection to the demo-login server as {@code user} (password = name). */
  static Connection connect(String user) throws SQLException {
    return DriverManager.getConnection(
        url(address(), "useEncryption=false&user=" + user + "&password=" + user));
  }

  static Connection listener() throws SQLException {
    return connect(ME);
  }

  static Connection analyst() throws SQLException {
    return connect("analyst");
  }

  /** DuckDB with `streams`, `tracks`, `artists` and `albums` as views over the dataset. */
  static Connection duck() throws SQLException {
    Connection con = DriverManager.getConnection("jdbc:duckdb:");
    try (Statement s = con.createStatement()) {
      s.execute("SET TimeZone = 'UTC'");
      String d = data();
      s.execute("CREATE VIEW streams AS SELECT * FROM read_parquet('" + d + "/streams/*.parquet')");
      for (String t : List.of("tracks", "artists", "albums")) {
        s.execute("CREATE VIEW " + t + " AS SELECT * FROM read_parquet('" + d + "/" + t + ".parquet')");
      }
    }
    return con;
  }

  /** Every row of {@code sql} on {@code con}, values made comparable (see {@link #plain}). */
  static List<List<Object>> rows(Connection con, String sql) throws SQLException {
    try (Statement s = con.createStatement(); ResultSet rs = s.executeQuery(sql)) {
      return rows(rs);
    }
  }

  static List<List<Object>> rows(PreparedStatement ps) throws SQLException {
    try (ResultSet rs = ps.executeQuery()) {
      return rows(rs);
    }
  }

  static List<List<Object>> rows(ResultSet rs) throws SQLException {
    ResultSetMetaData md = rs.getMetaData();
    int n = md.getColumnCount();
    List<List<Object>> out = new ArrayList<>();
    while (rs.next()) {
      List<Object> row = new ArrayList<>(n);
      for (int i = 1; i <= n; i++) {
        int type = md.getColumnType(i);
        // getObject on a TIMESTAMP WITH TIME ZONE column is "not implemented" in the Flight SQL
        // driver before 19.0 (arrow-java GH-839); getTimestamp works in both drivers.
        boolean timestamp = type == Types.TIMESTAMP || type == Types.TIMESTAMP_WITH_TIMEZONE;
        row.add(plain(timestamp ? rs.getTimestamp(i) : rs.getObject(i)));
      }
      out.add(row);
    }
    return out;
  }

  /**
   * A value both drivers agree on: integers as Long, instants as Instant (a zone-less timestamp
   * is taken as UTC, as the JVM runs with user.timezone=UTC), dates as LocalDate.
   */
  static Object plain(Object v) {
    if (v == null) {
      return null;
    }
    if (v instanceof Byte || v instanceof Short || v instanceof Integer || v instanceof Long) {
      return ((Number) v).longValue();
    }
    if (v instanceof BigInteger) {
      return ((BigInteger) v).longValueExact();
    }
    if (v instanceof BigDecimal) {
      BigDecimal d = (BigDecimal) v;
      return d.stripTrailingZeros().scale() <= 0 ? (Object) d.longValueExact() : (Object) d.doubleValue();
    }
    if (v instanceof Float) {
      return ((Float) v).doubleValue();
    }
    if (v instanceof Timestamp) {
      return ((Timestamp) v).toInstant();
    }
    if (v instanceof OffsetDateTime) {
      return ((OffsetDateTime) v).toInstant();
    }
    if (v instanceof LocalDateTime) {
      return ((LocalDateTime) v).toInstant(ZoneOffset.UTC);
    }
    if (v instanceof java.sql.Date) {
      return ((java.sql.Date) v).toLocalDate();
    }
    if (v.getClass().getName().endsWith(".util.Text")) { // Arrow's Text, should a getter return it
      return v.toString();
    }
    return v;
  }

  static long count(Connection con, String sql) throws SQLException {
    List<List<Object>> rows = rows(con, sql);
    return (Long) rows.get(0).get(0);
  }

  /** The value of a Prometheus sample without labels, e.g. sluice_active_queries. */
  static double metric(String metricsUrl, String name) throws Exception {
    HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
    String body = http.send(HttpRequest.newBuilder(URI.create(metricsUrl)).timeout(Duration.ofSeconds(5)).build(),
        HttpResponse.BodyHandlers.ofString()).body();
    for (String line : body.split("\n")) {
      if (line.startsWith(name + " ")) {
        return Double.parseDouble(line.substring(name.length() + 1).trim());
      }
    }
    return 0;
  }

  static boolean waitUntil(BooleanSupplier predicate, Duration timeout) throws InterruptedException {
    Instant deadline = Instant.now().plus(timeout);
    while (Instant.now().isBefore(deadline)) {
      if (predicate.getAsBoolean()) {
        return true;
      }
      Thread.sleep(50);
    }
    return predicate.getAsBoolean();
  }

  /**
   * The gRPC status code a driver exception carries (FlightRuntimeException.status().code(),
   * read by reflection: the driver shades Arrow Flight), e.g. "UNAUTHENTICATED"; null if none.
   */
  static String grpcCode(Throwable t) {
    for (Throwable c = t; c != null; c = c.getCause()) {
      if (c.getClass().getSimpleName().equals("FlightRuntimeException")) {
        try {
          Object status = c.getClass().getMethod("status").invoke(c);
          return String.valueOf(status.getClass().getMethod("code").invoke(status));
        } catch (ReflectiveOperationException e) {
          return null;
        }
      }
      if (c.getCause() == c) {
        break;
      }
    }
    return null;
  }

  /** CPU seconds (user + system) a local process has used, from /proc. */
  static double cpuSeconds(long pid) {
    try {
      String stat = java.nio.file.Files.readString(java.nio.file.Path.of("/proc/" + pid + "/stat"));
      String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
      // Fields 14 and 15 of stat (utime, stime), in clock ticks of 1/100 s on Linux.
      return (Long.parseLong(f[11]) + Long.parseLong(f[12])) / 100.0;
    } catch (java.io.IOException e) {
      throw new java.io.UncheckedIOException(e);
    }
  }

  /**
   * Whether the process goes idle within {@code timeout}: less than 0.2 s of CPU over 2 s. A
   * query stopped in Sluice stops using CPU; one still computing keeps a core busy.
   */
  static boolean goesIdle(long pid, Duration timeout) throws InterruptedException {
    Instant deadline = Instant.now().plus(timeout);
    while (Instant.now().isBefore(deadline)) {
      double before = cpuSeconds(pid);
      Thread.sleep(2000);
      if (cpuSeconds(pid) - before < 0.2) {
        return true;
      }
    }
    return false;
  }

  /** The messages of an exception and its causes, one line. */
  static String messages(Throwable t) {
    StringBuilder b = new StringBuilder();
    for (Throwable c = t; c != null; c = c.getCause()) {
      if (b.length() > 0) {
        b.append(" <- ");
      }
      b.append(c.getClass().getSimpleName()).append(": ").append(c.getMessage());
      if (c.getCause() == c) {
        break;
      }
    }
    return b.toString();
  }
}
