"""A private ClickHouse server for tests and benchmarks: Debian's `clickhouse-server` package,
its own config with loopback ports and every path in a temporary folder, stopped by process id.

    python3 tests/servers/clickhouse.py DIR     # starts one, prints its HTTP URL, waits for ^C

The package's /etc/clickhouse-server/config.xml and users.xml are copied and changed: ports
(http, tcp, interserver) are free loopback ports, paths (data, tmp, user files, logs, format
schemas) live under DIR, and the default profile logs queries (`system.query_log`) so tests can
see exactly what Sluice asked.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PACKAGE_CONFIG = Path("/etc/clickhouse-server")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _set(xml, tag, value):
    new, n = re.subn(rf"<{tag}>[^<]*</{tag}>", f"<{tag}>{value}</{tag}>", xml, count=1)
    if n == 0:
        # Not in the package file (or commented out): add it at the top level.
        new = xml.replace("</yandex>", f"    <{tag}>{value}</{tag}>\n</yandex>", 1)
    return new


class ClickHouse:
    """One running private server. `remote_servers` (XML: the clusters it knows, see
    `cluster_xml`) replaces the package's test clusters."""

    def __init__(self, root: Path, remote_servers: str = ""):
        self.root = Path(root)
        self.http_port = free_port()
        self.tcp_port = free_port()
        self.interserver_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.remote_servers = remote_servers
        self.proc = None

    def write_config(self):
        for d in ("data", "tmp", "user_files", "log", "format_schemas"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        config = (PACKAGE_CONFIG / "config.xml").read_text()
        # Only loopback; no TLS ports (the package's are commented out).
        config = re.sub(r"\s*<listen_host>[^<]*</listen_host>", "", config)
        config = config.replace("</yandex>", "    <listen_host>127.0.0.1</listen_host>\n</yandex>", 1)
        for tag, value in {
            "http_port": self.http_port,
            "tcp_port": self.tcp_port,
            "interserver_http_port": self.interserver_port,
            "path": f"{self.root}/data/",
            "tmp_path": f"{self.root}/tmp/",
            "user_files_path": f"{self.root}/user_files/",
            "format_schema_path": f"{self.root}/format_schemas/",
            "log": f"{self.root}/log/clickhouse-server.log",
            "errorlog": f"{self.root}/log/clickhouse-server.err.log",
            "users_config": f"{self.root}/users.xml",
            # The package sizes caches for a dedicated machine.
            "mark_cache_size": 268435456,
            "uncompressed_cache_size": 268435456,
        }.items():
            config = _set(config, tag, value)
        # Distributed DDL needs ZooKeeper, which a private server has not.
        config = re.sub(r"<distributed_ddl>.*?</distributed_ddl>", "", config, flags=re.S)
        config = re.sub(r"<remote_servers[^>]*>.*?</remote_servers>",
                        f"<remote_servers>{self.remote_servers}</remote_servers>", config,
                        flags=re.S)
        (self.root / "config.xml").write_text(config)
        users = (PACKAGE_CONFIG / "users.xml").read_text()
        users = users.replace(
            "<load_balancing>random</load_balancing>",
            "<load_balancing>random</load_balancing>\n            <log_queries>1</log_queries>",
            1,
        )
        (self.root / "users.xml").write_text(users)

    def start(self, timeout=60):
        self.write_config()
        log = open(self.root / "log" / "stdout.log", "w")
        self.proc = subprocess.Popen(
            ["clickhouse-server", f"--config-file={self.root}/config.xml"],
            cwd=self.root, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"clickhouse-server exited; see {self.root}/log")
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as r:
                    if r.read().strip() == b"Ok.":
                        return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"clickhouse-server did not answer on {self.url} in {timeout} s")

    def query(self, sql: str) -> str:
        req = urllib.request.Request(self.url + "/", data=sql.encode())
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.read().decode()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def cluster_xml(name: str, shards: list) -> str:
    """A `remote_servers` cluster `name` of one replica per shard, over the servers' native
    ports, without replication (so without ZooKeeper)."""
    parts = "".join(
        f"<shard><replica><host>127.0.0.1</host><port>{s.tcp_port}</port></replica></shard>"
        for s in shards)
    return f"<{name}>{parts}</{name}>"


def start_cluster(root: Path, name: str, count: int) -> list:
    """`count` private servers, each a shard of cluster `name` (every one knows it)."""
    servers = [ClickHouse(Path(root) / f"shard{i + 1}") for i in range(count)]
    xml = cluster_xml(name, servers)
    started = []
    try:
        for server in servers:
            server.remote_servers = xml
            started.append(server.start())
    except BaseException:
        for server in started:
            server.stop()
        raise
    return servers


def available() -> bool:
    return (PACKAGE_CONFIG / "config.xml").exists() and any(
        (Path(p) / "clickhouse-server").exists() for p in os.environ.get("PATH", "").split(":")
    )


if __name__ == "__main__":
    # Stopped by SIGTERM (a test harness) or ^C: either way the server goes with it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = ClickHouse(Path(sys.argv[1]).resolve()).start()
    print(server.url, flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
