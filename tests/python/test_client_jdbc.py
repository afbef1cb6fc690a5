"""The Flight SQL JDBC driver (arrow-java's `flight-sql-jdbc-driver`, from Maven Central)
against Sluice: the JUnit tests of tests/clients/jdbc, run with Maven against the servers
started here, their answers checked against DuckDB's JDBC driver over the same Parquet files.

Three servers: the session's demo-login server, and one with a configuration (principals, a
static token, HS256 JWTs, a query timeout so that a long query left running ends anyway) in
plaintext and over TLS with a test CA. Maven runs every JUnit class once; each class is one
test here, failing with its JUnit failures, the Maven output and the servers' last log lines.
Needs `mvn` and a JDK 17 (skipped without them); Maven keeps its downloads in ~/.m2."""

import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET

import jwt
import pytest

from conftest import END, REPO, principals_toml, start_server
from test_auth_tls_limits import self_signed

JDBC = REPO / "tests" / "clients" / "jdbc"
STATIC_TOKEN = "a-static-token-for-the-jdbc-tests"
JWT_SECRET = "the jdbc tests' shared secret, longer than thirty-two bytes"
ISSUER = "https://idp.example"

pytestmark = pytest.mark.skipif(not (shutil.which("mvn") and shutil.which("java")),
                                reason="Maven and a JDK are needed for the JDBC driver tests")


def write_config(folder):
    path = folder / "sluice.toml"
    path.write_text(f"""
[limits]
query_timeout_secs = 60

[auth.jwt]
algorithm = "HS256"
secret = "{JWT_SECRET}"
issuer = "{ISSUER}"

[[principal]]
name = "agent"
token = "{STATIC_TOKEN}"
role = "listener"
user_id = "u0003"
{principals_toml()}""")
    return path


@pytest.fixture(scope="module")
def configured(dataset_dir, tmp_path_factory):
    config = write_config(tmp_path_factory.mktemp("jdbc"))
    yield from start_server(dataset_dir, "--config", str(config))


@pytest.fixture(scope="module")
def tls(dataset_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("jdbc-tls")
    ca = self_signed(folder)
    for server in start_server(dataset_dir, "--config", str(write_config(folder)),
                               "--tls-cert", str(folder / "tls.crt"),
                               "--tls-key", str(folder / "tls.key")):
        server.ca = ca
        yield server


def versions():
    pom = (JDBC / "pom.xml").read_text()
    return {name: re.search(f"<{name}.version>([^<]+)<", pom).group(1)
            for name in ("flight.jdbc", "duckdb")}


# One pytest test per JUnit class; Maven runs them all once (the `junit` fixture).
CLASSES = sorted(p.stem for p in (JDBC / "src" / "test" / "java" / "sluice").glob("*Test.java"))


class Suite:
    """One JUnit class's surefire report: counts and the failed tests with their messages."""

    def __init__(self, report):
        root = ET.parse(report).getroot()
        self.tests, self.failures, self.errors, self.skipped = (
            int(root.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
        self.failed = []
        for case in root.iter("testcase"):
            for problem in list(case.findall("failure")) + list(case.findall("error")):
                message = (problem.get("message") or "").strip()
                trace = (problem.text or "").strip()
                self.failed.append(f"{case.get('name')}: {message[:3000]}\n{trace[:3000]}")


class JUnitRun:
    def __init__(self, run, took, servers):
        self.run, self.took, self.servers = run, took, servers
        reports = JDBC / "target" / "surefire-reports"
        self.suites = {r.stem.removeprefix("TEST-sluice."): Suite(r)
                       for r in reports.glob("TEST-sluice.*.xml")}

    def output(self):
        out = f"mvn exited {self.run.returncode}\n--- mvn output ---\n{self.run.stdout[-15000:]}" \
              f"\n{self.run.stderr[-5000:]}"
        for name, server in self.servers.items():
            with open(server.log_path) as f:
                out += f"\n--- sluice log ({name}), last lines ---\n" + "".join(f.readlines()[-30:])
        return out


@pytest.fixture(scope="module")
def junit(request, server, configured, tls, dataset_dir):
    """Runs `mvn test` in tests/clients/jdbc once against the three servers."""
    now = int(time.time())
    token = jwt.encode({"sub": "jdbc-agent", "role": "listener", "user_id": "u0004",
                        "iss": ISSUER, "exp": now + 3600}, JWT_SECRET, algorithm="HS256")
    properties = {
        "address": server.address,
        "data": str(dataset_dir),
        "end": END.isoformat(),
        "configuredAddress": configured.address,
        "configuredMetrics": configured.metrics_url,
        "configuredPid": configured.proc.pid,
        "tlsAddress": tls.address,
        "ca": str(tls.ca),
        "staticToken": STATIC_TOKEN,
        "jwt": token,
    }
    shutil.rmtree(JDBC / "target" / "surefire-reports", ignore_errors=True)
    started = time.time()
    run = subprocess.run(
        ["mvn", "-B", "-q", "test", *(f"-Dsluice.{k}={v}" for k, v in properties.items())],
        cwd=JDBC, capture_output=True, text=True, timeout=1800)
    result = JUnitRun(run, time.time() - started,
                      {"demo logins": server, "configured": configured, "TLS": tls})
    suites = result.suites.values()
    tests = sum(s.tests for s in suites)
    failed = sum(s.failures + s.errors for s in suites)
    skipped = sum(s.skipped for s in suites)
    v = versions()
    # Shown whatever pytest captures.
    with request.config.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
        print(f"\njdbc: {tests} JUnit tests in {result.took:.0f} s: {tests - failed - skipped} "
              f"passed, {failed} failed, {skipped} skipped (flight-sql-jdbc-driver "
              f"{v['flight.jdbc']}, duckdb_jdbc {v['duckdb']})")
    return result


@pytest.mark.parametrize("suite", CLASSES)
def test_jdbc(junit, suite):
    result = junit.suites.get(suite)
    if result is None:
        pytest.fail(f"no surefire report for {suite}\n{junit.output()}", pytrace=False)
    assert result.tests > 0
    if result.failed:
        pytest.fail(f"{len(result.failed)} of {result.tests} JUnit tests of {suite} failed:\n\n"
                    + "\n\n".join(result.failed) + "\n\n" + junit.output(), pytrace=False)


def test_maven_run_succeeds(junit):
    assert set(junit.suites) == set(CLASSES), junit.output()
    if junit.run.returncode != 0 and not any(s.failed for s in junit.suites.values()):
        pytest.fail(junit.output(), pytrace=False)
