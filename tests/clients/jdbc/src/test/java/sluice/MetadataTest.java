package sluice;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Types;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * DatabaseMetaData as DBeaver walks it: the product, catalogs, schemas, tables, columns (with
 * Sluice's descriptions as REMARKS), keys, types and the many info calls answered from
 * GetSqlInfo.
 */
class MetadataTest {
  static Connection con;
  static DatabaseMetaData md;

  static final Set<String> PUBLIC_TABLES = Set.of("streams", "tracks", "artists", "albums",
      "plays_daily", "plays_monthly_artist", "plays_monthly_genre", "track_first_last");

  @BeforeAll
  static void open() throws Exception {
    con = Env.listener();
    md = con.getMetaData();
  }

  @AfterAll
  static void close() throws Exception {
    con.close();
  }

  /** Rows of a metadata result as {column label: value} maps. */
  static List<Map<String, Object>> maps(ResultSet rs) throws SQLException {
    try (rs) {
      List<Map<String, Object>> out = new ArrayList<>();
      int n = rs.getMetaData().getColumnCount();
      while (rs.next()) {
        Map<String, Object> row = new LinkedHashMap<>();
        for (int i = 1; i <= n; i++) {
          row.put(rs.getMetaData().getColumnLabel(i), Env.plain(rs.getObject(i)));
        }
        out.add(row);
      }
      return out;
    }
  }

  static List<Object> column(List<Map<String, Object>> rows, String name) {
    List<Object> out = new ArrayList<>();
    for (Map<String, Object> r : rows) {
      out.add(r.get(name));
    }
    return out;
  }

  @Test
  void productAndDriver() throws Exception {
    assertEquals("Sluice", md.getDatabaseProductName());
    assertTrue(md.getDatabaseProductVersion().matches("\\d+\\.\\d+\\.\\d+.*"), md.getDatabaseProductVersion());
    assertTrue(md.getDriverName().contains("Arrow Flight"), md.getDriverName());
    assertFalse(md.getDriverVersion().isEmpty());
    assertTrue(md.getDriverMajorVersion() >= 18, md.getDriverVersion());
    assertTrue(md.getURL().startsWith("jdbc:arrow-flight-sql://"), md.getURL());
    assertEquals("u0002", md.getUserName());
    assertTrue(md.isReadOnly());
    assertEquals("\"", md.getIdentifierQuoteString());
    assertTrue(md.getSQLKeywords().contains("EXPLAIN"), md.getSQLKeywords());
    assertTrue(md.getNumericFunctions().contains("abs"));
    assertTrue(md.getStringFunctions().contains("lower"));
    assertTrue(md.getTimeDateFunctions().contains("date_trunc"));
    assertEquals("\\", md.getSearchStringEscape());
    assertEquals("schema", md.getSchemaTerm());
    assertEquals("catalog", md.getCatalogTerm());
    assertTrue(md.isCatalogAtStart());
    assertFalse(md.supportsTransactions());
    assertTrue(md.supportsColumnAliasing());
    // storesLower/UpperCaseIdentifiers are Avatica's defaults (upper): the driver does not map
    // SqlInfo SQL_IDENTIFIER_CASE to them.
    assertEquals(1, md.getMaxStatements());
  }

  @Test
  void catalogsAndSchemas() throws Exception {
    assertEquals(List.of("sluice"), column(maps(md.getCatalogs()), "TABLE_CAT"));
    List<Map<String, Object>> schemas = maps(md.getSchemas());
    assertEquals(Set.of("public", "information_schema"), Set.copyOf(column(schemas, "TABLE_SCHEM")));
    assertEquals(Set.of("sluice"), Set.copyOf(column(schemas, "TABLE_CATALOG")));
    assertEquals(List.of("public"), column(maps(md.getSchemas("sluice", "pub%")), "TABLE_SCHEM"));
  }

  @Test
  void tables() throws Exception {
    // DBeaver: every table of a schema, any type.
    List<Map<String, Object>> tables = maps(md.getTables("sluice", "public", null, null));
    assertEquals(PUBLIC_TABLES, Set.copyOf(column(tables, "TABLE_NAME")));
    for (Map<String, Object> t : tables) {
      assertEquals("sluice", t.get("TABLE_CAT"));
      assertEquals("public", t.get("TABLE_SCHEM"));
      assertTrue(Set.of("BASE TABLE", "VIEW").contains(t.get("TABLE_TYPE")), t.toString());
    }
    assertEquals(List.of("streams"), column(maps(md.getTables(null, null, "stream%", null)), "TABLE_NAME"));
    Set<Object> all = Set.copyOf(column(maps(md.getTables(null, null, "%", null)), "TABLE_NAME"));
    assertTrue(all.containsAll(PUBLIC_TABLES), all.toString());
    // Filtered by type: every table listed is of a type asked for.
    for (String type : List.of("BASE TABLE", "VIEW")) {
      for (Map<String, Object> t : maps(md.getTables("sluice", "public", "%", new String[] {type}))) {
        assertEquals(type, t.get("TABLE_TYPE"), t.toString());
      }
    }
    assertTrue(column(maps(md.getTables("sluice", "public", "%", new String[] {"BASE TABLE"})), "TABLE_NAME")
        .contains("streams"));
    // The driver asks GetTables without schemas for getTables and so always leaves REMARKS
    // null (arrow-java's ArrowDatabaseMetadata.getTables adds it as an empty column):
    // table descriptions are in information_schema.tables, column ones in getColumns.
  }

  @Test
  void tableTypes() throws Exception {
    assertEquals(List.of("BASE TABLE", "VIEW"), column(maps(md.getTableTypes()), "TABLE_TYPE"));
  }

  @Test
  void columnsCarryTypesAndDescriptions() throws Exception {
    List<Map<String, Object>> cols = maps(md.getColumns("sluice", "public", "streams", null));
    assertEquals(List.of("user_id", "track_uri", "ts", "ms_played"), column(cols, "COLUMN_NAME"));
    assertEquals(List.of(1L, 2L, 3L, 4L), column(cols, "ORDINAL_POSITION"));
    Map<String, Object> ts = cols.get(2);
    Map<String, Object> msPlayed = cols.get(3);
    assertTrue(List.of((long) Types.TIMESTAMP, (long) Types.TIMESTAMP_WITH_TIMEZONE).contains(ts.get("DATA_TYPE")),
        ts.toString());
    assertEquals((long) Types.BIGINT, msPlayed.get("DATA_TYPE"), msPlayed.toString());
    assertEquals((long) Types.VARCHAR, cols.get(0).get("DATA_TYPE"), cols.get(0).toString());
    for (Map<String, Object> c : cols) {
      assertEquals("sluice", c.get("TABLE_CAT"));
      assertEquals("public", c.get("TABLE_SCHEM"));
      assertEquals("streams", c.get("TABLE_NAME"));
      assertNotNull(c.get("TYPE_NAME"), c.toString());
      Object remarks = c.get("REMARKS");
      assertNotNull(remarks, "REMARKS of " + c.get("COLUMN_NAME"));
      assertTrue(((String) remarks).length() > 5, c.toString());
    }
    assertTrue(((String) ts.get("REMARKS")).contains("UTC"), ts.toString());
    assertTrue(((String) msPlayed.get("REMARKS")).contains("skipped"), msPlayed.toString());
    // A column pattern, over every table.
    List<Map<String, Object>> tsCols = maps(md.getColumns(null, null, "%", "ts"));
    assertTrue(column(tsCols, "TABLE_NAME").contains("streams"), tsCols.toString());
    for (Map<String, Object> c : tsCols) {
      assertEquals("ts", c.get("COLUMN_NAME"));
    }
    // Every public table has columns, each described.
    for (String table : PUBLIC_TABLES) {
      List<Map<String, Object>> tc = maps(md.getColumns("sluice", "public", table, "%"));
      assertFalse(tc.isEmpty(), table);
      for (Map<String, Object> c : tc) {
        assertNotNull(c.get("REMARKS"), table + "." + c.get("COLUMN_NAME"));
      }
    }
  }

  @Test
  void keys() throws Exception {
    List<Map<String, Object>> pk = maps(md.getPrimaryKeys("sluice", "public", "tracks"));
    assertEquals(1, pk.size(), pk.toString());
    assertEquals("track_uri", pk.get(0).get("COLUMN_NAME"));
    assertEquals(1L, pk.get(0).get("KEY_SEQ"));
    assertEquals("tracks", pk.get(0).get("TABLE_NAME"));
    assertTrue(maps(md.getPrimaryKeys("sluice", "public", "streams")).isEmpty());

    List<Map<String, Object>> imported = maps(md.getImportedKeys("sluice", "public", "tracks"));
    Set<String> refs = new TreeSet<>();
    for (Map<String, Object> k : imported) {
      assertEquals("tracks", k.get("FKTABLE_NAME"));
      refs.add(k.get("FKCOLUMN_NAME") + "->" + k.get("PKTABLE_NAME") + "." + k.get("PKCOLUMN_NAME"));
    }
    assertEquals(Set.of("album_uri->albums.album_uri", "artist_uri->artists.artist_uri"), refs);

    List<Map<String, Object>> exported = maps(md.getExportedKeys("sluice", "public", "artists"));
    Set<Object> from = Set.copyOf(column(exported, "FKTABLE_NAME"));
    assertTrue(from.containsAll(Set.of("tracks", "albums")), exported.toString());
    for (Map<String, Object> k : exported) {
      assertEquals("artists", k.get("PKTABLE_NAME"));
    }

    List<Map<String, Object>> cross = maps(md.getCrossReference(
        "sluice", "public", "tracks", "sluice", "public", "streams"));
    assertEquals(1, cross.size(), cross.toString());
    assertEquals("track_uri", cross.get(0).get("FKCOLUMN_NAME"));
  }

  @Test
  void typeInfoAndOtherListsAnswer() throws Exception {
    // The driver does not call GetXdbcTypeInfo: getTypeInfo is Avatica's (empty) answer. It
    // must still be a result set, as DBeaver reads it at connect.
    maps(md.getTypeInfo());
    maps(md.getIndexInfo("sluice", "public", "tracks", false, true));
    maps(md.getProcedures(null, null, "%"));
    maps(md.getFunctions(null, null, "%"));
  }

  /**
   * Every DatabaseMetaData info call DBeaver and other tools make at connect (supportsX,
   * getMaxX, ...). The driver answers them from one GetSqlInfo (all ids) and unboxes the
   * value, so an id Sluice does not report is a NullPointerException in the tool (driver
   * 18.x; 19.0 answers a default, arrow-java GH-994), and a value of another type a
   * ClassCastException. A SQLException, or Avatica's "todo: implement this method" for the
   * few calls the driver itself leaves out (insertsAreDetected, ownUpdatesAreVisible, ...),
   * is not Sluice's.
   *
   * <p>SLUICE FINDING while this fails: GetSqlInfo lacks the ids behind the calls named.
   */
  @Test
  void everyInfoCallAnswers() throws Exception {
    List<String> broken = new ArrayList<>();
    Method[] methods = DatabaseMetaData.class.getMethods();
    Arrays.sort(methods, Comparator.comparing(Method::getName));
    for (Method m : methods) {
      Class<?> r = m.getReturnType();
      boolean info = r == boolean.class || r == int.class || r == String.class;
      if (!info || Modifier.isStatic(m.getModifiers())) {
        continue;
      }
      Object[] args;
      Class<?>[] p = m.getParameterTypes();
      if (p.length == 0) {
        args = new Object[0];
      } else if (m.getName().equals("supportsConvert") && p.length == 2) {
        args = new Object[] {Types.INTEGER, Types.BIGINT};
      } else if (m.getName().equals("supportsResultSetType") || m.getName().endsWith("AreDetected")
          || m.getName().startsWith("own") || m.getName().startsWith("others")) {
        args = new Object[] {ResultSet.TYPE_FORWARD_ONLY};
      } else if (m.getName().equals("supportsTransactionIsolationLevel")) {
        args = new Object[] {Connection.TRANSACTION_NONE};
      } else if (m.getName().equals("supportsResultSetConcurrency")) {
        args = new Object[] {ResultSet.TYPE_FORWARD_ONLY, ResultSet.CONCUR_READ_ONLY};
      } else if (m.getName().equals("supportsResultSetHoldability")) {
        args = new Object[] {ResultSet.CLOSE_CURSORS_AT_COMMIT};
      } else {
        continue;
      }
      try {
        m.invoke(md, args);
      } catch (InvocationTargetException e) {
        Throwable cause = e.getCause();
        boolean driverGap = cause instanceof RuntimeException
            && "todo: implement this method".equals(cause.getMessage());
        if (!(cause instanceof SQLException) && !driverGap) {
          String name = m.getName() + (p.length == 0 ? "()" : "(" + Arrays.toString(args) + ")");
          broken.add(name + " " + cause.getClass().getSimpleName());
        }
      }
    }
    assertEquals(List.of(), broken,
        broken.size() + " DatabaseMetaData calls fail: SqlInfo ids missing from GetSqlInfo");
  }
}
