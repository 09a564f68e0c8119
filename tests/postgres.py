"""
A throwaway PostgreSQL for tests: Debian's server binaries, ``initdb`` into a temporary
directory, ``pg_ctl start`` on a free 127.0.0.1 port with trust authentication, stopped
at the end. Run as the ``postgres`` user when the tests run as root (the server refuses
root). Never assumes a server is already running.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.servers import free_port, missing

_HINT = "install Debian's postgresql package (scripts/setup.sh does)"


def server_bindir() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with initdb; fails under CI if none."""
    found = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").is_file()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found:
        missing("PostgreSQL's initdb", _HINT)
    return found[-1]


@dataclass
class LocalPostgres:
    """One server: its data directory, port, and the user it runs as."""

    bindir: Path
    root: Path
    port: int
    user: str | None  # the OS user to run as; None: the current one

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        """A ``postgresql://`` URL for *database*, as drd's ``[state] url`` takes it."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bindir / argv[0]), *argv[1:]],
            user=self.user,
            cwd=self.root,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def init(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "-N"
        )

    def start(self) -> None:
        """Start (or start again) and wait until it accepts connections."""
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories=''"
            " -c fsync=off -c full_page_writes=off -c max_connections=200"
        )
        result = self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-o", options,
            "-w", "-t", "60", "start", check=False,
        )  # fmt: skip
        if result.returncode != 0:
            log = (self.root / "log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"PostgreSQL did not start: {result.stderr}\n{log}")

    def stop(self) -> None:
        """Stop now (fast shutdown: connections are cut, as when the server goes away)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)

    def create_database(self, prefix: str = "t") -> str:
        """A fresh, empty database; return its name."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self._run(
            "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "postgres",
            "-v", "ON_ERROR_STOP=1", "-c", f'CREATE DATABASE "{name}"',
        )  # fmt: skip
        return name

    def sql(self, database: str, statement: str) -> str:
        """Run one statement with psql; its unaligned output."""
        return self._run(
            "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
            "-v", "ON_ERROR_STOP=1", "-At", "-c", statement,
        ).stdout  # fmt: skip


def _server_user() -> str | None:
    """``postgres`` when running as root (the server will not), else the current user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        missing("the postgres user", _HINT)
    return "postgres"


@contextlib.contextmanager
def local_postgres() -> Iterator[LocalPostgres]:
    """A started throwaway server, stopped and removed afterwards."""
    bindir = server_bindir()
    user = _server_user()
    # Not under pytest's basetemp: its folders are private to root, the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="drd-pg-"))
    if user is not None:
        shutil.chown(root, user)
    server = LocalPostgres(bindir=bindir, root=root, port=free_port(), user=user)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
