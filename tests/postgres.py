"""A real PostgreSQL for tests: Debian's binaries, a cluster in a temporary directory, a free
port, a socket directory of its own, a password login; never the machine's server on 5432.

``initdb`` refuses to run as root, so a root test run starts the cluster as the ``postgres``
system account (through ``runuser``), in a directory that account owns.
"""

from __future__ import annotations

import contextlib
import getpass
import itertools
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import psycopg

from tests.mosquitto import HOST, free_port

SYSTEM_POSTGRES_PORT = 5432
"""The machine's own PostgreSQL; tests never touch it."""
SUPERUSER = "medbadge"
WAIT_S = 30.0
_DEBIAN_BINARIES = Path("/usr/lib/postgresql")
_SYSTEM_ACCOUNT = "postgres"


def postgres_binaries() -> Path:
    """The newest Debian PostgreSQL's ``bin`` directory (``scripts/ensure-system-deps``)."""
    found = sorted(
        (path for path in _DEBIAN_BINARIES.glob("*/bin") if (path / "initdb").is_file()),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
    )
    if not found:
        raise RuntimeError(
            f"no PostgreSQL under {_DEBIAN_BINARIES}; run scripts/ensure-system-deps"
        )
    return found[-1]


class PostgresServer:
    """One PostgreSQL cluster of our own, started by ``start()`` and removed by ``stop()``."""

    def __init__(self) -> None:
        """Choose the account, the directory, the port and the superuser's password."""
        self.bin = postgres_binaries()
        self.account = _SYSTEM_ACCOUNT if os.geteuid() == 0 else getpass.getuser()
        self.password = secrets.token_urlsafe(24)
        self.port = 0
        self.root = Path(tempfile.mkdtemp(prefix="medbadge-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self._databases = itertools.count(1)

    @property
    def log_path(self) -> Path:
        """The server's log."""
        return self.root / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        """A ``postgresql://`` URL of ``database`` on this server, with the password."""
        return f"postgresql://{SUPERUSER}:{self.password}@{HOST}:{self.port}/{database}"

    def start(self) -> None:
        """Create the cluster (password logins only) and start it on a free port."""
        account = pwd.getpwnam(self.account)
        os.chown(self.root, account.pw_uid, account.pw_gid)
        os.chmod(self.root, 0o700)
        password_file = self.root / "password"
        password_file.write_text(self.password)
        os.chown(password_file, account.pw_uid, account.pw_gid)
        password_file.chmod(0o600)
        self._run(
            "initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=scram-sha-256",
            f"--pwfile={password_file}", "--no-sync", "-E", "UTF8", "--locale=C.UTF-8",
        )
        password_file.unlink()
        self._run("mkdir", "-m", "0700", str(self.sockets), binary=False)
        for _attempt in range(3):
            self.port = free_port(avoid=(SYSTEM_POSTGRES_PORT,))
            options = (
                f"-p {self.port} -k {self.sockets} -c listen_addresses={HOST}"
                " -c fsync=off -c full_page_writes=off"
                " -c max_connections=60 -c shared_buffers=32MB"
            )
            started = self._run(
                "pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-o", options,
                "-w", "-t", str(int(WAIT_S)), "start", check=False,
            )
            if started.returncode == 0:
                self._wait_ready()
                return
            if "already in use" not in self.log_text():
                break
        raise RuntimeError(f"PostgreSQL did not start:\n{self.log_text()}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def create_database(self) -> str:
        """A new, empty database on this server; its URL.

        Each is a schema of its own in one database, which its URL puts first on the search
        path: a schema costs milliseconds, a ``CREATE DATABASE`` a checkpoint.
        """
        name = f"test_{next(self._databases)}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE SCHEMA "{name}"')
        return f"{self.url()}?options=-csearch_path%3D{name}"

    def stop(self) -> None:
        """Stop the server immediately and remove its directory."""
        if self.data.is_dir():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def log_text(self) -> str:
        """What the server has logged so far."""
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    def _run(
        self, command: str, *arguments: str, binary: bool = True, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        program = str(self.bin / command) if binary else shutil.which(command) or command
        argv: Sequence[str] = (program, *arguments)
        if self.account != getpass.getuser():
            argv = ("runuser", "-u", self.account, "--", *argv)
        done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=self.root)
        if check and done.returncode != 0:
            raise RuntimeError(f"{command} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        return done


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A started PostgreSQL, stopped and removed afterwards."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()
