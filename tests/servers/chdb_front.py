"""ClickHouse 26.9 for tests: chDB (PyPI `chdb-core`, ClickHouse's own engine in-process) behind a
small HTTP front that speaks the part of ClickHouse's HTTP interface Sluice's client (the
`clickhouse` crate) uses. chDB cannot listen on a port itself.

    python3 tests/servers/chdb_front.py DIR     # starts one, prints its HTTP URL, waits for ^C

What is real: ClickHouse 26.9's engine, parser, analyzer, functions, table engines and formats
(`Native` in and out), its settings and its error messages. Data lives in DIR/data.

What is a stand-in: the transport, a subset of the HTTP interface.
  * The query is the URL's `query` and/or the body, by ClickHouse's rule (`query` + "\\n" + body;
    an `INSERT ... FORMAT X` takes what follows as its data, which chDB reads through
    `INSERT ... FROM INFILE`). Multipart bodies (the crate's form for `param_*`) are read too.
  * `database` is a `USE` before the query; `default_format` is the output format
    (TabSeparated when absent); every other URL parameter is a setting, `SET` before the query
    and reset after. `query_id` is echoed but not used; `user`, `password`, `session_id`,
    `role`, `compress`, `enable_http_compression`, `wait_end_of_query` are ignored.
  * Errors are HTTP 500 with chDB's own `Code: N. DB::Exception: ...` text and
    `X-ClickHouse-Exception-Code: N` (ClickHouse itself answers some codes with 400 or 404).
  * No compression (responses are plain; a compressed request body, `decompress=1`, is
    refused), one query at a time, no `KILL QUERY` (answered at once, nothing else can be
    running), no authentication (any user and password are accepted), no sessions (a `SET` in
    a query's own text stays on the one chDB connection), no query log, and chDB accepts
    several statements in one request where ClickHouse refuses them.

The class `ChdbClickHouse` has the interface of `clickhouse.ClickHouse`. The front runs as a
child process of a Python that has chdb (the `python` argument, else `SLUICE_CHDB_PYTHON`,
else this one) and is stopped by its process id.
"""

import http.server
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

# URL parameters that are not settings: read by the front, or ignored (and logged).
OWN = {"query", "database", "default_format", "query_id"}
IGNORED = {"user", "password", "compress", "decompress", "enable_http_compression",
           "session_id", "role", "wait_end_of_query"}

# An INSERT whose data follows its text: the head keeps the table and column list, SETTINGS
# must move after FROM INFILE. Matched on bytes: the data may be binary (Native).
INSERT_DATA = re.compile(
    rb"\s*(INSERT\s+INTO\s+(?:TABLE\s+)?(?:`[^`]*`|\"[^\"]*\"|[\w.])+(?:\s*\([^()]*\))?)"
    rb"(\s+SETTINGS\s+.*?)?\s+FORMAT\s+(\w+)", re.I | re.S)
OUTPUT_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.I)
KILL = re.compile(r"\s*KILL\s+QUERY\b", re.I)
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

log = logging.getLogger("chdb_front")


class FrontError(Exception):
    """A request the front cannot serve, answered like a ClickHouse error."""

    def __init__(self, code, message):
        super().__init__(f"Code: {code}. DB::Exception: chdb_front: {message}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sql_string(value):
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def sql_value(value):
    """A setting's value as SQL: numbers as they are, anything else a string literal."""
    return value if re.fullmatch(r"-?\d+(\.\d+)?", value) else sql_string(value)


def quote(name):
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def multipart_fields(body, content_type):
    """The fields of a multipart/form-data body (the crate sends `query` and `param_*` so)."""
    boundary = re.search(r'boundary="?([^";]+)"?', content_type)
    if not boundary:
        raise FrontError(1001, "multipart body without a boundary")
    fields = {}
    for part in body.split(b"--" + boundary.group(1).encode())[1:]:
        if part.startswith(b"--"):
            break
        head, _, value = part.partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]*)"', head)
        if name:
            fields[name.group(1).decode()] = value.removesuffix(b"\r\n").decode()
    return fields


def split_request(query, body):
    """(sql, insert data or None) by ClickHouse's rule: the text is `query` + "\\n" + body, and
    an INSERT's data starts after FORMAT X, its blanks and one line break."""
    text = (query + "\n").encode() + body if query else body
    m = INSERT_DATA.match(text)
    if not m:
        try:
            return text.decode(), None
        except UnicodeDecodeError as e:
            raise FrontError(1001, f"the query is not UTF-8 ({e})")
    start = m.end()
    while start < len(text) and text[start] in b" \t\f":
        start += 1
    for byte in b"\r\n":
        if start < len(text) and text[start] == byte:
            start += 1
    head, settings, fmt = (g.decode() if g else "" for g in m.groups())
    return (head, settings, fmt), text[start:]


class Engine:
    """One chDB connection, one query at a time (a chDB connection runs one)."""

    def __init__(self, root: Path):
        import chdb  # only the front's process has it
        self.chdb = chdb
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.conn = chdb.connect(str(root / "data"))
        self.lock = threading.Lock()

    def run(self, sql, fmt="TabSeparated", params=None):
        return self.conn.query(sql, fmt, params=params or None)

    def execute(self, sql, data, database, fmt, settings, params):
        """chDB's result, or raises chDB's error. `sql` is text, or (head, settings, format) of
        an INSERT whose `data` are bytes."""
        with self.lock:
            # A request without `database` runs in `default`, whatever ran before it.
            self.run(f"USE {quote(database)}")
            applied = []
            path = None
            try:
                for name, value in settings.items():
                    self.run(f"SET {name} = {sql_value(value)}")
                    applied.append(name)
                if data is None:
                    return self.run(sql, fmt, params)
                head, insert_settings, data_format = sql
                with tempfile.NamedTemporaryFile(dir=self.tmp, delete=False) as f:
                    f.write(data)
                    path = f.name
                return self.run(f"{head} FROM INFILE {sql_string(path)}{insert_settings}"
                                f" FORMAT {data_format}", fmt, params)
            finally:
                for name in applied:
                    self.run(f"SET {name} = DEFAULT")
                if path:
                    os.unlink(path)


class ClientGone(Exception):
    """The request body ended early: the client aborted (the crate aborts an INSERT so)."""


class Front(http.server.BaseHTTPRequestHandler):
    # Kept-alive connections: the crate pools them. Idle ones are dropped after a minute, well
    # after the client's pool lets them go (2 s in Sluice, below ClickHouse's own 3 s).
    protocol_version = "HTTP/1.1"
    timeout = 60
    engine: Engine = None

    def log_message(self, fmt, *args):
        log.info("%s " + fmt, self.address_string(), *args)

    def log_request(self, code="-", size="-"):
        pass  # each query logs its own line

    def read_body(self):
        # The crate streams INSERT bodies with `Transfer-Encoding: chunked` (no length).
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                line = self.rfile.readline()
                if not line:
                    raise ClientGone()
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return bytes(out)
                chunk = self.rfile.read(size)
                if len(chunk) < size:
                    raise ClientGone()
                out += chunk
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if len(body) < length:
            raise ClientGone()
        return body

    def reply(self, status, payload, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        params = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        if url.path == "/ping" or "query" not in params:
            return self.reply(200, b"Ok.\n", [("Content-Type", "text/plain; charset=UTF-8")])
        self.answer(params, b"")

    def do_POST(self):
        params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query,
                                             keep_blank_values=True))
        try:
            body = self.read_body()
        except (ClientGone, ValueError, OSError) as e:
            log.info("POST body not read (%r): closing, nothing run", e)
            self.close_connection = True
            return
        self.answer(params, body)

    def answer(self, params, body):
        started = time.monotonic()
        query_id = params.get("query_id") or str(uuid.uuid4())
        fmt = params.get("default_format", "TabSeparated")
        sql, data, settings, ignored, res = "", None, {}, {}, None
        try:
            content_type = self.headers.get("Content-Type", "")
            if content_type.startswith("multipart/form-data"):
                params.update(multipart_fields(body, content_type))
                body = b""
            query_params = {k[len("param_"):]: v for k, v in params.items()
                            if k.startswith("param_")}
            ignored = {k: v for k, v in params.items() if k in IGNORED}
            settings = {k: v for k, v in params.items()
                        if k not in OWN and k not in IGNORED and not k.startswith("param_")}
            for name in settings:
                if not NAME.fullmatch(name):
                    raise FrontError(115, f"Unknown setting {name!r}. (UNKNOWN_SETTING)")
            if ignored.get("decompress", "0") not in ("", "0"):
                raise FrontError(48, "compressed request bodies (decompress=1) are not "
                                     "supported. (NOT_IMPLEMENTED)")
            sql, data = split_request(params.get("query", ""), body)
            if data is None and not sql.strip():
                raise FrontError(62, "Empty query. (SYNTAX_ERROR)")
            if data is None and KILL.match(sql):
                # Nothing else can be running: the query it names has finished already.
                result = b""
            else:
                if data is None and OUTPUT_FORMAT.search(sql):
                    fmt = OUTPUT_FORMAT.search(sql).group(1)  # the query's own FORMAT wins
                res = self.engine.execute(sql, data, params.get("database", "default"), fmt,
                                          settings, query_params)
                result = res.bytes() if res is not None else b""
        except Exception as e:
            message = str(e).strip()
            if not isinstance(e, (self.engine.chdb.ChdbError, FrontError)):
                log.exception("unexpected error")
                message = f"Code: 1001. DB::Exception: chdb_front: {type(e).__name__}: {message}"
            code = re.search(r"Code: (\d+)", message)
            status, result = 500, (message + "\n").encode()
            headers = [("Content-Type", "text/plain; charset=UTF-8"),
                       ("X-ClickHouse-Exception-Code", code.group(1) if code else "1001")]
        else:
            status = 200
            summary = {"read_rows": "0", "read_bytes": "0", "written_rows": "0",
                       "written_bytes": "0", "total_rows_to_read": "0", "result_rows": "0",
                       "result_bytes": str(len(result))}
            if res is not None:
                summary.update(read_rows=str(res.storage_rows_read()),
                               read_bytes=str(res.storage_bytes_read()),
                               written_rows=str(res.rows_written()),
                               written_bytes=str(res.bytes_written()),
                               result_rows=str(res.rows_read()))
            headers = [("Content-Type", "application/octet-stream"),
                       ("X-ClickHouse-Format", fmt),
                       ("X-ClickHouse-Summary", json.dumps(summary, separators=(",", ":")))]
        headers.append(("X-ClickHouse-Query-Id", query_id))
        text = sql if data is None else f"{sql[0]}{sql[1]} FORMAT {sql[2]} <{len(data)} bytes>"
        log.info("%s %d %.1f ms db=%s fmt=%s settings=%s ignored=%s query_id=%s | %s",
                 self.command, status, 1000 * (time.monotonic() - started),
                 params.get("database", "default"), fmt, settings, sorted(ignored), query_id,
                 " ".join(text.split())[:200])
        try:
            self.reply(status, result, headers)
        except OSError:
            self.close_connection = True  # the client left (a dropped result stream)


def serve(root: Path, port: int):
    logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                        format="%(asctime)s %(threadName)s %(message)s")
    Front.engine = Engine(root)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Front)
    server.daemon_threads = True  # kept-alive connections do not hold up the exit

    def terminate(*_):
        raise SystemExit(0)  # raised in the main thread, out of serve_forever

    signal.signal(signal.SIGTERM, terminate)
    log.info("chDB %s listening on http://127.0.0.1:%d, data in %s",
             Front.engine.chdb.__version__, port, root / "data")
    try:
        server.serve_forever()
    finally:
        server.server_close()
        with Front.engine.lock:  # after the query that runs, if one does
            Front.engine.conn.close()
        log.info("stopped")


def default_python():
    return os.environ.get("SLUICE_CHDB_PYTHON") or sys.executable


class ChdbClickHouse:
    """One running front (with the interface of `clickhouse.ClickHouse`)."""

    def __init__(self, root: Path, python=None):
        self.root = Path(root)
        self.python = python or default_python()
        self.http_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.proc = None

    def start(self, timeout=120):
        for d in ("data", "tmp", "log"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        log_file = open(self.root / "log" / "front.log", "a")
        self.proc = subprocess.Popen(
            [self.python, os.path.abspath(__file__), "--serve", str(self.root.resolve()),
             str(self.http_port)],
            cwd=self.root, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log_file.close()  # the child has its own descriptor
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the chDB front exited; see {self.root}/log/front.log")
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as r:
                    if r.read() == b"Ok.\n":
                        return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the chDB front did not answer on {self.url} in {timeout} s")

    def query(self, sql: str) -> str:
        req = urllib.request.Request(self.url + "/", data=sql.encode())
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.read().decode()
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"the 26.9 engine refused {sql!r}: {e.read().decode()}") from None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def available(python=None) -> bool:
    """Whether `python` (default: `SLUICE_CHDB_PYTHON`, else this one) can import chdb."""
    try:
        return subprocess.run([python or default_python(), "-c", "import chdb"],
                              stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(Path(sys.argv[2]), int(sys.argv[3]))
        sys.exit(0)
    # Stopped by SIGTERM (a test harness) or ^C: either way the front goes with it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    front = ChdbClickHouse(Path(sys.argv[1]).resolve()).start()
    print(front.url, flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        front.stop()
