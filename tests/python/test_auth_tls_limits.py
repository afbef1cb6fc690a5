"""Authentication (hashed passwords, JWTs), TLS, per-principal limits and the audit file,
each against a `sluice serve` started with its own configuration."""

import datetime as dt
import json
import os
import subprocess
import threading
import time

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import jwt
import pyarrow as pa
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from conftest import connect, run_in_thread, sluice_bin, start_server, wait_until
from helpers import sluice_rows

HS_SECRET = "a shared secret of more than thirty-two bytes"
AUTH_HEADER = adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value
TLS_ROOTS = adbc_driver_flightsql.DatabaseOptions.TLS_ROOT_CERTS.value


def pem_private(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def pem_public(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def bearer(server, token):
    return flight_sql.connect(server.uri, db_kwargs={AUTH_HEADER: f"Bearer {token}"},
                              autocommit=True)


def refusal(conn_factory, sql="SELECT 1"):
    with pytest.raises(adbc_driver_manager.Error) as e:
        conn = conn_factory()
        try:
            sluice_rows(conn, sql)
        finally:
            conn.close()
    return str(e.value)


def has_code(error, code):
    """Whether an ADBC error carries the gRPC `code`: as the error's own code, or, for an
    error in the middle of a result stream, named after it (the Go driver reports those as
    INTERNAL with the server's code in parentheses)."""
    camel = "".join(w.capitalize() for w in code.split("_"))
    return code in error or f"({camel};" in error


def hash_password(password):
    out = subprocess.run([sluice_bin(), "hash-password"], input=password + "\n",
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


# --- passwords ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hashed(dataset_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hashed")
    (folder / "sluice.toml").write_text(f"""
[[principal]]
name = "carol"
password_hash = "{hash_password('correct horse battery staple')}"
role = "listener"
user_id = "u0004"
""")
    yield from start_server(dataset_dir, "--config", str(folder / "sluice.toml"))


def test_hash_password_prints_an_argon2id_hash():
    assert hash_password("x").startswith("$argon2id$v=19$")
    assert hash_password("x") != hash_password("x"), "salted"


def test_a_hashed_password_logs_in(hashed):
    conn = connect(hashed, "carol", "correct horse battery staple")
    try:
        assert sluice_rows(conn, "SELECT DISTINCT user_id FROM streams") == [("u0004",)]
    finally:
        conn.close()
    error = refusal(lambda: connect(hashed, "carol", "correct horse"))
    assert "UNAUTHENTICATED" in error and "invalid user name or password" in error


# --- JWTs --------------------------------------------------------------------------------

def claims(**extra):
    now = int(time.time())
    c = {"sub": "agent-7", "role": "listener", "user_id": "u0003", "exp": now + 600}
    c.update(extra)
    return c


@pytest.fixture(scope="module", params=["HS256", "RS256", "ES256"])
def jwt_server(request, dataset_dir, tmp_path_factory):
    """A server accepting JWTs of one algorithm; yields (server, signing key, a foreign key)."""
    alg = request.param
    folder = tmp_path_factory.mktemp(f"jwt-{alg}")
    if alg == "HS256":
        key, foreign = HS_SECRET, "another secret, also thirty-two bytes long"
        section = f'secret = "{HS_SECRET}"'
    else:
        make = (lambda: rsa.generate_private_key(65537, 2048)) if alg == "RS256" \
            else (lambda: ec.generate_private_key(ec.SECP256R1()))
        private, other = make(), make()
        (folder / "issuer.pem").write_bytes(pem_public(private))
        key, foreign = pem_private(private), pem_private(other)
        section = 'public_key_file = "issuer.pem"'
    (folder / "sluice.toml").write_text(f"""
[auth.jwt]
algorithm = "{alg}"
{section}
issuer = "https://idp.example"
leeway_secs = 0

[[principal]]
name = "nobody"
token = "unused-static-token"
role = "analyst"
""")
    for server in start_server(dataset_dir, "--config", str(folder / "sluice.toml")):
        yield alg, server, key, foreign


def test_a_jwt_gives_the_listener_its_own_rows(jwt_server):
    alg, server, key, _ = jwt_server
    token = jwt.encode(claims(iss="https://idp.example"), key, algorithm=alg)
    conn = bearer(server, token)
    try:
        assert sluice_rows(conn, "SELECT DISTINCT user_id FROM streams") == [("u0003",)]
    finally:
        conn.close()
    analyst_claims = claims(iss="https://idp.example", role="analyst")
    del analyst_claims["user_id"]
    analyst = jwt.encode(analyst_claims, key, algorithm=alg)
    conn = bearer(server, analyst)
    try:
        assert sluice_rows(conn, "SELECT count(DISTINCT user_id) FROM streams")[0][0] > 1
    finally:
        conn.close()


@pytest.mark.parametrize("case", ["expired", "not yet valid", "wrongly signed", "wrong issuer",
                                  "no issuer", "key confusion", "unsigned", "listener without user"])
def test_bad_jwts_are_refused(jwt_server, case):
    alg, server, key, foreign = jwt_server
    now = int(time.time())
    good = claims(iss="https://idp.example")
    token = {
        "expired": lambda: jwt.encode(good | {"exp": now - 60}, key, algorithm=alg),
        "not yet valid": lambda: jwt.encode(good | {"nbf": now + 600}, key, algorithm=alg),
        "wrongly signed": lambda: jwt.encode(good, foreign, algorithm=alg),
        "wrong issuer": lambda: jwt.encode(good | {"iss": "https://evil.example"}, key,
                                           algorithm=alg),
        "no issuer": lambda: jwt.encode(claims(), key, algorithm=alg),
        # Another algorithm than the configured one: for RS/ES256, HS256 keyed with the
        # public key (the classic confusion); for HS256, HS384 with the right secret.
        "key confusion": lambda: jwt.encode(good, key + "-padding", algorithm="HS384")
        if alg == "HS256"
        else hmac_token(good, key),
        "unsigned": lambda: jwt.encode(good, None, algorithm="none"),
        "listener without user": lambda: jwt.encode(good | {"user_id": None}, key, algorithm=alg),
    }[case]()
    error = refusal(lambda: bearer(server, token))
    assert "UNAUTHENTICATED" in error, error
    expected = {"expired": "expired (exp)", "not yet valid": "not valid yet (nbf)",
                "wrongly signed": "signature does not verify", "wrong issuer": "wrong issuer",
                "no issuer": "claim `iss` is missing", "listener without user": "user_id"}
    if case in expected:
        assert expected[case] in error, error


def hmac_token(payload, private_pem):
    """An HS256 token keyed with the public key's PEM, for a server expecting RS/ES256."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    public = pem_public(load_pem_private_key(private_pem, None))
    import base64
    import hmac as _hmac

    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=")
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(payload).encode())
    sig = b64(_hmac.new(public, head + b"." + body, "sha256").digest())
    return (head + b"." + body + b"." + sig).decode()


def test_the_handshake_session_ends_with_the_jwt(jwt_server):
    alg, server, key, _ = jwt_server
    token = jwt.encode(claims(iss="https://idp.example", exp=int(time.time()) + 3), key,
                       algorithm=alg)
    conn = bearer(server, token)
    try:
        assert sluice_rows(conn, "SELECT 1") == [(1,)]
        time.sleep(4)
        with pytest.raises(adbc_driver_manager.Error) as e:
            sluice_rows(conn, "SELECT 1")
        assert "UNAUTHENTICATED" in str(e.value)
    finally:
        conn.close()


# --- TLS ---------------------------------------------------------------------------------

def self_signed(folder):
    """A CA and a server certificate for 127.0.0.1 signed by it."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Sluice test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
            .sign(ca_key, hashes.SHA256()))
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "tls.key").write_bytes(pem_private(key))
    return folder / "ca.pem"


@pytest.fixture(scope="module")
def tls_server(dataset_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    ca = self_signed(folder)
    for server in start_server(dataset_dir, "--tls-cert", str(folder / "tls.crt"),
                               "--tls-key", str(folder / "tls.key")):
        yield server, ca.read_text()


def test_adbc_over_tls(tls_server):
    server, ca = tls_server
    assert server.uri.startswith("grpc+tls://")
    conn = flight_sql.connect(server.uri, db_kwargs={"username": "u0001", "password": "u0001",
                                                     TLS_ROOTS: ca}, autocommit=True)
    try:
        assert sluice_rows(conn, "SELECT DISTINCT user_id FROM streams") == [("u0001",)]
    finally:
        conn.close()


def test_tls_refuses_plaintext_and_untrusted_clients(tls_server):
    server, _ = tls_server
    plain = server.uri.replace("grpc+tls://", "grpc://")
    refusal(lambda: flight_sql.connect(plain, db_kwargs={"username": "u0001", "password": "u0001"},
                                       autocommit=True))
    # The system's roots do not include the test CA.
    refusal(lambda: flight_sql.connect(server.uri, db_kwargs={"username": "u0001",
                                                              "password": "u0001"},
                                       autocommit=True))


def test_plaintext_off_loopback_needs_tls_configured_off(dataset_dir, tmp_path):
    result = subprocess.run(
        [sluice_bin(), "serve", "--data", str(dataset_dir), "--listen", "0.0.0.0:0"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "without TLS" in result.stderr and "enabled = false" in result.stderr


# --- limits and audit --------------------------------------------------------------------

SLOW = "SELECT count(*) FROM streams a, streams b WHERE a.ms_played + b.ms_played = 1"
# Groups every listener's events into arrays: megabytes of operator memory.
MEMORY_HEAVY = ("SELECT user_id, track_uri, array_agg(ts) FROM streams "
                "GROUP BY 1, 2 ORDER BY 1, 2")


@pytest.fixture(scope="module")
def limited(dataset_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("limits")
    (folder / "sluice.toml").write_text("""
[limits]
query_timeout_secs = 2

[audit]
file = "audit.jsonl"

[[principal]]
name = "dave"
password = "dave"
role = "listener"
user_id = "u0005"
limits = { max_rows = 100, max_concurrent_queries = 1 }

[[principal]]
name = "erin"
password = "erin"
role = "analyst"
limits = { query_memory_mb = 1, query_timeout_secs = 0 }
""")
    for server in start_server(dataset_dir, "--config", str(folder / "sluice.toml")):
        yield server, folder / "audit.jsonl"


def test_max_rows(limited):
    server, _ = limited
    conn = connect(server, "dave", "dave")
    try:
        assert len(sluice_rows(conn, "SELECT * FROM streams LIMIT 100")) == 100
        with pytest.raises(adbc_driver_manager.Error) as e:
            sluice_rows(conn, "SELECT * FROM streams")
        assert has_code(str(e.value), "RESOURCE_EXHAUSTED") and "max_rows" in str(e.value)
        assert sluice_rows(conn, "SELECT 1") == [(1,)]
    finally:
        conn.close()


def test_timeout_and_concurrency_free_their_slot(limited):
    server, _ = limited
    worker, errors = run_in_thread(server, "dave", SLOW)
    time.sleep(0.8)
    conn = connect(server, "dave", "dave")
    try:
        with pytest.raises(adbc_driver_manager.Error) as e:
            sluice_rows(conn, "SELECT 1")
        assert "max_concurrent_queries" in str(e.value)
        assert has_code(str(e.value), "RESOURCE_EXHAUSTED")
        worker.join(30)
        assert "query_timeout_secs" in errors["error"], errors
        assert has_code(errors["error"], "DEADLINE_EXCEEDED"), errors["error"]
        # The timed-out query gave its slot back and stopped computing: the next query is
        # answered at once.
        assert goes_idle(server.proc.pid), "the timed-out join still computes"
        assert sluice_rows(conn, "SELECT 1") == [(1,)]
    finally:
        conn.close()


def busy_cores(pid, seconds=1.0):
    """The cores process `pid` kept busy over the next `seconds`."""
    def cpu():
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    before = cpu()
    time.sleep(seconds)
    return (cpu() - before) / seconds


def goes_idle(pid, within=10):
    """Whether process `pid` goes idle (under a fifth of a core for a second) within `within`."""
    return wait_until(lambda: busy_cores(pid) < 0.2, timeout=within)


# Queries that compute for hours without a yield between batches: joins whose filter no pair
# passes (nested loop, cross, hash), a join's pairs pulled by a count or a sort, a recursive
# query that never ends, a correlated EXISTS.
ENDLESS = [
    SLOW,
    "SELECT count(*) FROM streams a, streams b",
    "SELECT count(*) FROM streams a JOIN streams b ON a.user_id = b.user_id "
    "WHERE a.ms_played + b.ms_played = 1",
    "SELECT count(*) FROM streams a JOIN streams b ON a.user_id = b.user_id",
    "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) SELECT count(*) FROM t",
    "SELECT a.ms_played FROM streams a, streams b ORDER BY a.ms_played + b.ms_played DESC LIMIT 1",
    "SELECT count(*) FROM streams a WHERE EXISTS "
    "(SELECT 1 FROM streams b WHERE b.ms_played > a.ms_played + 100000000)",
]


@pytest.mark.parametrize("sql", ENDLESS)
def test_a_cancelled_query_stops_computing(server, sql):
    """A client's cancel (ADBC's, which cancels the DoGet as JDBC's Statement.cancel does)
    stops the query inside its operators, not at its time limit: the process goes idle and
    answers the next query at once, though the query runtime's threads are its cores."""
    assert goes_idle(server.proc.pid), "busy before the query"
    conn = connect(server, "analyst")
    try:
        cur = conn.cursor()
        outcome = {}

        def work():
            try:
                cur.execute(sql)
                outcome["rows"] = cur.fetchall()
            except adbc_driver_manager.Error as e:
                outcome["error"] = str(e)

        worker = threading.Thread(target=work)
        worker.start()
        # Half a core at least: a recursive CTE computes on one thread, and the window
        # includes its planning (0.75 was seen for it on a loaded machine).
        assert busy_cores(server.proc.pid, 2.0) > 0.5, "the query is not computing"
        assert not outcome, outcome
        cur.adbc_cancel()
        worker.join(10)
        assert not worker.is_alive() and "CANCELLED" in outcome.get("error", ""), outcome
        assert goes_idle(server.proc.pid), "the cancelled query still computes"
        started = time.monotonic()
        with connect(server, "analyst") as fresh:
            assert sluice_rows(fresh, "SELECT 1") == [(1,)]
        assert time.monotonic() - started < 2
        cur.close()
    finally:
        conn.close()


def test_query_memory(limited):
    server, _ = limited
    conn = connect(server, "erin", "erin")
    try:
        with pytest.raises(adbc_driver_manager.Error) as e:
            sluice_rows(conn, MEMORY_HEAVY)
        assert has_code(str(e.value), "RESOURCE_EXHAUSTED") and "query_memory_mb" in str(e.value)
        assert sluice_rows(conn, "SELECT count(*) > 0 FROM streams") == [(True,)]
    finally:
        conn.close()


def test_every_query_is_audited(limited):
    server, audit = limited
    conn = connect(server, "dave", "dave")
    try:
        sluice_rows(conn, "SELECT track_uri FROM streams LIMIT 3")
        with pytest.raises(adbc_driver_manager.Error):
            sluice_rows(conn, "SELECT nope FROM streams")
    finally:
        conn.close()
    time.sleep(0.2)
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    ok = [r for r in records if r["sql"] == "SELECT track_uri FROM streams LIMIT 3"][-1]
    assert ok["principal"] == "dave" and ok["role"] == "listener" and ok["user_id"] == "u0005"
    assert ok["outcome"] == "ok" and ok["rows"] == 3 and ok["elapsed_ms"] >= 0
    assert ok["sources"] == ["parquet", "memory"] and "listener u0005" in ok["route"]
    refused = [r for r in records if r["sql"] == "SELECT nope FROM streams"][-1]
    assert refused["outcome"] == "refused" and "nope" in refused["error"]
    outcomes = {r["outcome"] for r in records}
    assert {"ok", "refused"} <= outcomes


def test_a_query_started_at_prepare_is_claimed_or_ends_unused(limited):
    """CreatePreparedStatement starts a query without parameters, for its GetFlightInfo to
    claim. One never asked for does not keep the slot of a query that is (dave runs one
    query at a time), and is audited as `unused`."""
    server, audit = limited
    conn = connect(server, "dave", "dave")
    try:
        waiting = conn.cursor()
        waiting.adbc_prepare("SELECT count(*) AS prepared_only FROM streams")
        assert sluice_rows(conn, "SELECT 2") == [(2,)]
        # Asked for after all: it runs again, and answers.
        waiting.execute("SELECT count(*) AS prepared_only FROM streams")
        assert waiting.fetchall()[0][0] > 0
        waiting.close()
        closed = conn.cursor()
        closed.adbc_prepare("SELECT count(*) AS closed_unasked FROM streams")
        closed.close()
        assert sluice_rows(conn, "SELECT 3") == [(3,)]
    finally:
        conn.close()

    def outcomes(sql):
        records = [json.loads(line) for line in audit.read_text().splitlines()]
        return [r["outcome"] for r in records if r["sql"] == sql]

    assert wait_until(lambda: outcomes("SELECT count(*) AS closed_unasked FROM streams")
                      == ["unused"])
    assert outcomes("SELECT count(*) AS prepared_only FROM streams") == ["unused", "ok"]
    assert outcomes("SELECT 2") == ["ok"]


def test_every_rpc_refuses_expired_and_wrongly_signed_jwts(jwt_server):
    """Each Flight RPC, called with a bad JWT, answers UNAUTHENTICATED (pyarrow.flight, which
    has no PollFlightInfo; tests/e2e walks that one, without credentials)."""
    from pyarrow import flight
    alg, server, key, foreign = jwt_server
    good = claims(iss="https://idp.example")
    tokens = {"expired": jwt.encode(good | {"exp": int(time.time()) - 60}, key, algorithm=alg),
              "wrongly signed": jwt.encode(good, foreign, algorithm=alg)}
    client = flight.FlightClient(server.uri)
    descriptor = flight.FlightDescriptor.for_command(b"x")
    rpcs = {
        "ListFlights": lambda o: list(client.list_flights(options=o)),
        "GetFlightInfo": lambda o: client.get_flight_info(descriptor, options=o),
        "GetSchema": lambda o: client.get_schema(descriptor, options=o),
        "DoGet": lambda o: client.do_get(flight.Ticket(b"x"), options=o).read_all(),
        "DoPut": lambda o: client.do_put(descriptor, pa.schema([("a", pa.int64())]),
                                         options=o)[0].close(),
        "DoExchange": lambda o: client.do_exchange(descriptor, options=o)[0].close(),
        "DoAction": lambda o: list(client.do_action(flight.Action("CloseSession", b""),
                                                    options=o)),
        "ListActions": lambda o: list(client.list_actions(options=o)),
    }
    try:
        for case, token in tokens.items():
            options = flight.FlightCallOptions(
                headers=[(b"authorization", f"Bearer {token}".encode())])
            for rpc, call in rpcs.items():
                # Streaming calls (DoPut, DoExchange) report it as an OSError on close.
                with pytest.raises((flight.FlightUnauthenticatedError, OSError)) as e:
                    call(options)
                message = str(e.value)
                assert "unauthenticated" in message.lower(), f"{case} {rpc}: {message}"
                assert "JWT refused" in message, f"{case} {rpc}: {message}"
            # The handshake too.
            with pytest.raises(flight.FlightUnauthenticatedError):
                client.authenticate_basic_token(b"", b"", options=options)
    finally:
        client.close()
