"""Replicas of the embedded default sharing one dataset folder, as pods sharing a volume: they
start together, each may build the derived rollup files at the same moment, and both serve
the same answers (checked against DuckDB over the same Parquet files)."""

import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from conftest import END, SEED, connect, duck_over, sluice_bin, start_server
from helpers import duck_rows, sluice_rows

# A year of one listener's plays by genre: read from the monthly rollup by genre.
SQL = """SELECT a.genre, count(*) AS plays FROM streams s
    JOIN tracks t ON s.track_uri = t.track_uri JOIN artists a ON t.artist_uri = a.artist_uri
    WHERE s.ts >= TIMESTAMP '{y}-01-01 00:00:00+00' AND s.ts < TIMESTAMP '{n}-01-01 00:00:00+00'
    GROUP BY a.genre ORDER BY plays DESC, a.genre"""


def start_together(dataset, count):
    """`count` servers on `dataset`, started at the same moment; returns them and their
    generators (to stop them)."""
    gens = [start_server(dataset) for _ in range(count)]
    servers = [None] * count
    errors = []

    def start(i):
        try:
            servers[i] = next(gens[i])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return servers, gens, errors


def test_replicas_sharing_a_dataset_folder_start_together_and_agree(tmp_path):
    data = tmp_path / "data"
    subprocess.run([sluice_bin(), "generate", "--users", "6", "--years", "8", "--seed", str(SEED),
                    "--artists", "300", "--end", END.isoformat(), "--out", str(data)],
                   check=True, capture_output=True)
    servers, gens, errors = start_together(data, 3)
    try:
        logs = [p.read_text() for p in sorted(tmp_path.glob("sluice-*.log"))]
        assert not errors, f"{errors}\n" + "\n".join(logs)
        built = sum(log.count("rollup built") for log in logs)
        assert built >= 4, "the rollups were built"
        # No replica is left holding a half-written file of another's.
        assert not list(data.glob("rollups/*/*.partial"))
        duck = duck_over(data)
        y = END.year - 1
        sql = SQL.format(y=y, n=y + 1)
        mine = duck_rows(duck, sql.replace("WHERE s.ts", "WHERE s.user_id = 'u0002' AND s.ts"))
        for server in servers:
            conn = connect(server, "u0002")
            try:
                assert sluice_rows(conn, sql) == mine
                with conn.cursor() as cur:
                    cur.execute("EXPLAIN " + sql)
                    plan = "\n".join(str(r) for r in cur.fetchall())
                assert "plays_monthly_genre" in plan, plan
            finally:
                conn.close()
    finally:
        for g in gens:
            g.close()


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def test_replicas_on_a_read_only_dataset_build_their_rollups_where_they_may_write(monkeypatch):
    """As pods mounting the dataset read-only: run as an unprivileged user (root ignores
    permissions), the dataset is not writable. Without `[embedded] rollups_dir` a replica
    refuses to start and says what to set; with it, two replicas share a writable folder."""
    base = Path(tempfile.mkdtemp(prefix="sluice-read-only-", dir="/tmp"))
    try:
        base.chmod(0o755)
        data = base / "data"
        subprocess.run([sluice_bin(), "generate", "--users", "4", "--years", "3", "--seed",
                        str(SEED), "--artists", "200", "--end", END.isoformat(), "--out",
                        str(data)], check=True, capture_output=True)
        for p in [data, *data.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        # The binary where that user may run it (the build folder is root's).
        binary = base / "sluice"
        shutil.copy(sluice_bin(), binary)
        binary.chmod(0o755)
        monkeypatch.setenv("SLUICE_BIN", str(binary))

        refused = subprocess.run(
            [*NOBODY, str(binary), "serve", "--data", str(data), "--listen", "127.0.0.1:0"],
            capture_output=True, text=True, timeout=120)
        assert refused.returncode != 0
        assert f"cannot write the rollup files into {data}/rollups" in refused.stderr, \
            refused.stderr
        assert "[embedded] rollups_dir" in refused.stderr
        assert not (data / "rollups").exists()

        rollups = base / "rollups"
        rollups.mkdir()
        os.chown(rollups, 65534, 65534)
        env = {"SLUICE_EMBEDDED__ROLLUPS_DIR": str(rollups)}
        gens = [start_server(data, env=env, prefix=NOBODY) for _ in range(2)]
        try:
            servers = [next(g) for g in gens]
            assert len(list(rollups.glob("w*/*.parquet"))) >= 4
            duck = duck_over(data)
            sql = SQL.format(y=END.year - 1, n=END.year)
            mine = duck_rows(duck, sql.replace("WHERE s.ts", "WHERE s.user_id = 'u0002' AND s.ts"))
            for server in servers:
                conn = connect(server, "u0002")
                try:
                    assert sluice_rows(conn, sql) == mine
                finally:
                    conn.close()
        finally:
            for g in gens:
                g.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)
