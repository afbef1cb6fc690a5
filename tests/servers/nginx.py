"""A private nginx balancing gRPC calls over Sluice replicas, as a Kubernetes ingress-nginx or
any L7 balancer does: `grpc_pass` to an upstream of the replicas, round robin, each call (each
HTTP/2 stream) sent on its own, with an access log naming the replica that served it.

    python3 tests/servers/nginx.py DIR HOST:PORT [HOST:PORT ...]   # prints its address

nginx is Debian's binary, unpacked (tests/run.sh does it) rather than installed: installing the
package would start a system nginx on port 80. Every path lives under DIR; it is stopped by
process id.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

UNPACKED = Path.home() / ".cache" / "sluice" / "nginx" / "usr" / "sbin" / "nginx"


def nginx_bin():
    path = os.environ.get("SLUICE_NGINX") or shutil.which("nginx")
    if path:
        return path
    assert UNPACKED.exists(), f"nginx is not unpacked at {UNPACKED} (tests/run.sh does it)"
    return str(UNPACKED)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GrpcBalancer:
    """One running nginx in front of `replicas` ("host:port" each).

    `tls`: (cert, key) files for TLS at the balancer. `upstream_ca`: the CA of replicas that
    serve TLS themselves (nginx then connects with grpcs:// and checks them against it)."""

    def __init__(self, root, replicas, tls=None, upstream_ca=None):
        self.root = Path(root)
        self.replicas = list(replicas)
        self.tls = tls
        self.upstream_ca = upstream_ca
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.uri = f"grpc+tls://{self.address}" if tls else f"grpc://{self.address}"
        self.access_log = self.root / "access.log"
        self.proc = None

    def config(self):
        servers = "\n".join(f"        server {r};" for r in self.replicas)
        listen = f"listen 127.0.0.1:{self.port} ssl http2;" if self.tls else \
            f"listen 127.0.0.1:{self.port} http2;"
        tls = ""
        if self.tls:
            cert, key = self.tls
            tls = f"ssl_certificate {cert};\n        ssl_certificate_key {key};"
        scheme = "grpc"
        upstream_tls = ""
        if self.upstream_ca:
            scheme = "grpcs"
            upstream_tls = (f"grpc_ssl_verify on;\n            grpc_ssl_trusted_certificate "
                            f"{self.upstream_ca};\n            grpc_ssl_name localhost;")
        r = self.root
        return f"""
daemon off;
master_process off;
worker_processes 1;
pid {r}/nginx.pid;
error_log {r}/error.log info;
events {{ worker_connections 256; }}
http {{
    client_body_temp_path {r}/body;
    proxy_temp_path {r}/proxy;
    fastcgi_temp_path {r}/fastcgi;
    uwsgi_temp_path {r}/uwsgi;
    scgi_temp_path {r}/scgi;
    log_format calls '$upstream_addr $status $request_uri';
    access_log {self.access_log} calls;
    upstream sluice {{
{servers}
    }}
    server {{
        {listen}
        {tls}
        client_max_body_size 0;
        location / {{
            grpc_pass {scheme}://sluice;
            {upstream_tls}
            grpc_read_timeout 300s;
            grpc_send_timeout 300s;
            grpc_next_upstream off;
        }}
    }}
}}
"""

    def start(self):
        self.root.mkdir(parents=True, exist_ok=True)
        conf = self.root / "nginx.conf"
        conf.write_text(self.config())
        self.proc = subprocess.Popen(
            [nginx_bin(), "-p", str(self.root), "-e", str(self.root / "error.log"),
             "-c", str(conf)],
            stdout=subprocess.DEVNULL, stderr=open(self.root / "stderr.log", "w"))
        for _ in range(100):
            if self.proc.poll() is not None:
                raise RuntimeError("nginx exited: " + (self.root / "stderr.log").read_text()
                                   + (self.root / "error.log").read_text())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not listen")

    def served_by(self):
        """The replica ("host:port") of each call logged so far, in order."""
        if not self.access_log.exists():
            return []
        return [line.split()[0] for line in self.access_log.read_text().splitlines() if line]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


if __name__ == "__main__":
    balancer = GrpcBalancer(sys.argv[1], sys.argv[2:]).start()
    print(balancer.uri, flush=True)
    try:
        balancer.proc.wait()
    except KeyboardInterrupt:
        balancer.stop()
