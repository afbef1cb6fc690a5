package sluice;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static sluice.Env.get;
import static sluice.Env.messages;
import static sluice.Env.rows;
import static sluice.Env.url;

import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.SQLException;
import java.util.List;
import java.util.Properties;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Connecting: user and password (Basic, then the bearer token Sluice hands back), a static
 * token and a JWT with {@code token=}, TLS with a trust store or a PEM root, {@code catalog=}
 * (SetSessionOptions at connect, CloseSession at close), and clear refusals.
 */
class ConnectTest {
  /** The servers with a configuration (principals, a static token, JWTs): plaintext and TLS. */
  static String configured;
  static String tls;
  static String ca;
  static Path trustStore;
  static final String TRUST_STORE_PASSWORD = "changeit";

  @BeforeAll
  static void trustStore() throws Exception {
    configured = get("configuredAddress");
    tls = get("tlsAddress");
    ca = get("ca");
    // A PKCS12 trust store holding the test CA, as keytool -importcert would make it.
    X509Certificate cert;
    try (FileInputStream in = new FileInputStream(ca)) {
      cert = (X509Certificate) CertificateFactory.getInstance("X.509").generateCertificate(in);
    }
    KeyStore store = KeyStore.getInstance("PKCS12");
    store.load(null, null);
    store.setCertificateEntry("sluice-test-ca", cert);
    trustStore = Files.createTempFile("sluice-truststore-", ".p12");
    try (FileOutputStream out = new FileOutputStream(trustStore.toFile())) {
      store.store(out, TRUST_STORE_PASSWORD.toCharArray());
    }
    trustStore.toFile().deleteOnExit();
  }

  static List<List<Object>> users(Connection con) throws SQLException {
    return rows(con, "SELECT DISTINCT user_id FROM streams ORDER BY 1");
  }

  @Test
  void userAndPassword() throws Exception {
    try (Connection con = DriverManager.getConnection(
        url(Env.address(), "useEncryption=false&user=u0002&password=u0002"))) {
      assertEquals(List.of(List.of("u0002")), users(con));
      assertTrue(con.isValid(5));
    }
  }

  @Test
  void userAndPasswordAsProperties() throws Exception {
    // As DBeaver and most tools pass them: the URL names the host, the rest are properties.
    Properties p = new Properties();
    p.setProperty("user", "analyst");
    p.setProperty("password", "analyst");
    p.setProperty("useEncryption", "false");
    try (Connection con = DriverManager.getConnection("jdbc:arrow-flight-sql://" + Env.address(), p)) {
      assertTrue(users(con).size() > 1, "an analyst sees every listener");
    }
  }

  @Test
  void staticToken() throws Exception {
    try (Connection con = DriverManager.getConnection(
        url(configured, "useEncryption=false&token=" + get("staticToken")))) {
      assertEquals(List.of(List.of("u0003")), users(con));
    }
  }

  @Test
  void jwt() throws Exception {
    try (Connection con = DriverManager.getConnection(
        url(configured, "useEncryption=false&token=" + get("jwt")))) {
      assertEquals(List.of(List.of("u0004")), users(con));
    }
  }

  @Test
  void tlsWithATrustStore() throws Exception {
    try (Connection con = DriverManager.getConnection(url(tls,
        "useEncryption=true&useSystemTrustStore=false&trustStore=" + trustStore
            + "&trustStorePassword=" + TRUST_STORE_PASSWORD + "&user=u0001&password=u0001"))) {
      assertEquals(List.of(List.of("u0001")), users(con));
    }
  }

  @Test
  void tlsWithAPemRoot() throws Exception {
    try (Connection con = DriverManager.getConnection(url(tls,
        "useEncryption=true&tlsRootCerts=" + ca + "&user=u0005&password=u0005"))) {
      assertEquals(List.of(List.of("u0005")), users(con));
    }
  }

  @Test
  void tlsWithATokenOverIt() throws Exception {
    try (Connection con = DriverManager.getConnection(url(tls,
        "useEncryption=true&tlsRootCerts=" + ca + "&token=" + get("staticToken")))) {
      assertEquals(List.of(List.of("u0003")), users(con));
    }
  }

  @Test
  void tlsRefusesAnUntrustedServerAndPlaintext() {
    // The system's roots do not hold the test CA.
    SQLException untrusted = assertThrows(SQLException.class, () -> DriverManager.getConnection(
        url(tls, "useEncryption=true&user=u0001&password=u0001")).close());
    assertTrue(messages(untrusted).toLowerCase().matches("(?s).*(certif|ssl|tls|handshake|pkix).*"),
        messages(untrusted));
    assertThrows(SQLException.class, () -> DriverManager.getConnection(
        url(tls, "useEncryption=false&user=u0001&password=u0001&connectTimeoutMs=3000")).close());
  }

  @Test
  void wrongPasswordIsAClearError() {
    SQLException e = assertThrows(SQLException.class, () -> DriverManager.getConnection(
        url(Env.address(), "useEncryption=false&user=u0002&password=wrong")).close());
    String m = messages(e);
    assertEquals("UNAUTHENTICATED", Env.grpcCode(e), m);
    assertTrue(m.contains("invalid user name or password"), m);
  }

  @Test
  void unknownTokenIsAClearError() {
    SQLException e = assertThrows(SQLException.class, () -> DriverManager.getConnection(
        url(configured, "useEncryption=false&token=not-a-token")).close());
    assertEquals("UNAUTHENTICATED", Env.grpcCode(e), messages(e));
  }

  @Test
  void noCredentialsAreRefused() {
    SQLException e = assertThrows(SQLException.class, () -> {
      try (Connection con = DriverManager.getConnection(url(Env.address(), "useEncryption=false"))) {
        rows(con, "SELECT 1");
      }
    });
    assertEquals("UNAUTHENTICATED", Env.grpcCode(e), messages(e));
    assertTrue(messages(e).contains("credentials"), messages(e));
  }

  @Test
  void catalogIsASessionOption() throws Exception {
    Connection con = DriverManager.getConnection(
        url(Env.address(), "useEncryption=false&user=u0002&password=u0002&catalog=sluice"));
    assertEquals(List.of(List.of("u0002")), users(con));
    // (getCatalog() stays null in driver 18.x whatever catalog= says: arrow-java GH-942.)
    // close() sends CloseSession. Driver 18.x closes its client twice and so sends it a second
    // time on a shut channel ("Channel shutdown invoked"; arrow-java GH-863, fixed in 19.0).
    try {
      con.close();
    } catch (SQLException e) {
      assertTrue(con.getMetaData().getDriverMajorVersion() < 19 && messages(e).contains("Channel shutdown"),
          messages(e));
    }
    SQLException e = assertThrows(SQLException.class, () -> DriverManager.getConnection(
        url(Env.address(), "useEncryption=false&user=u0002&password=u0002&catalog=elsewhere")).close());
    assertTrue(messages(e).contains("catalog"), messages(e));
  }

  @Test
  void manyConnectionsOneAfterAnother() throws Exception {
    // A pool or a tool opens and closes connections all the time: each logs in afresh.
    for (int i = 1; i <= 6; i++) {
      String user = String.format("u%04d", i);
      try (Connection con = Env.connect(user)) {
        assertEquals(List.of(List.of(user)), users(con));
      }
    }
  }
}
