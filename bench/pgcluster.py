"""A PostgreSQL 15 cluster of the benchmark's own, kept in bench/work/ between runs."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
from pathlib import Path

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))

# A production-like configuration for a 2-core, 24 GiB machine.
SERVER_SETTINGS = {
    "shared_buffers": "4GB",
    "effective_cache_size": "16GB",
    "work_mem": "64MB",
    "maintenance_work_mem": "1GB",
    "max_wal_size": "16GB",
    "checkpoint_timeout": "30min",
    # Import and archive batches write ~100 MB of WAL each; 16 MB (the automatic
    # maximum) makes them wait on WAL writes.
    "wal_buffers": "128MB",
    "random_page_cost": "1.1",
    # A query and its helpers should not want more cores than there are: PostgreSQL's
    # default of 2 helpers puts three processes on a 2-core machine (Q6, a reseller's
    # day sorted by cost, took 25.8 ms so and 21.9 ms with one helper).
    "max_parallel_workers_per_gather": str(max(1, (os.cpu_count() or 2) - 1)),
    "max_connections": "100",
    "listen_addresses": "127.0.0.1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PsqlError(subprocess.CalledProcessError):
    """A failed psql, with what it said."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n{self.stderr or ''}"


def _as_postgres(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, check=True, **kw)


class Cluster:
    def __init__(
        self, directory: Path, port: int | None = None, settings: dict[str, str] | None = None
    ) -> None:
        self.dir = directory
        self.data = directory / "data"
        self.port = port or free_port()
        self.settings = SERVER_SETTINGS if settings is None else settings

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def db_url(self, name: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            pg = pwd.getpwnam("postgres")
            shutil.chown(self.dir, pg.pw_uid, pg.pw_gid)
        if not (self.data / "PG_VERSION").exists():
            _as_postgres(
                [str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                 "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8"],
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
        opts = " ".join(f"-c {k}={v}" for k, v in self.settings.items())
        _as_postgres(
            [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "server.log"),
             "-w", "-t", "120", "-o", f"-p {self.port} -k {self.dir} {opts}", "start"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            _as_postgres(
                [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"],
                stdout=subprocess.DEVNULL,
            )

    def psql(self, db: str, sql: str, *, capture: bool = True) -> str:
        result = subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", "-h", "127.0.0.1", "-p", str(self.port),
             "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-c", sql],
            capture_output=capture, text=True,
        )  # fmt: skip
        if result.returncode:
            raise PsqlError(result.returncode, result.args, result.stdout, result.stderr)
        return result.stdout if capture else ""

    def create_database(self, name: str) -> None:
        self.psql("postgres", f"DROP DATABASE IF EXISTS {name}")
        self.psql("postgres", f"CREATE DATABASE {name}")

    def vacuum_analyze(self, name: str) -> None:
        self.psql(name, "VACUUM ANALYZE")

    def database_exists(self, name: str) -> bool:
        out = self.psql("postgres", f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
        return out.strip() == "1"

    def timed_psql(self, db: str, sql: str, runs: int) -> list[float]:
        """Milliseconds of each of `runs` executions of `sql` in one psql session.

        psql's own \\timing: the statement's time from sending it to having read all
        of its output (thrown away), without psql's start-up or connection.
        """
        script = "\\timing on\n" + f"{sql.rstrip().rstrip(';')};\n" * runs
        result = subprocess.run(
            ["psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
             "-d", db, "-v", "ON_ERROR_STOP=1", "-o", "/dev/null", "-f", "-"],
            check=True, input=script, capture_output=True, text=True,
        )  # fmt: skip
        return [float(ms) for ms in re.findall(r"Time: ([0-9.]+) ms", result.stdout)]
