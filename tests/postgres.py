"""A throw-away PostgreSQL server from the installed binaries (Debian's postgresql package), for
the integration tests and bench/dashboard.py alike: run as the postgres user because the server
refuses root, trust authentication on loopback only, removed on exit."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import free_port


def server_binaries() -> Path | None:
    """The newest installed server's bin directory, or None (no server, or no runuser)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found and shutil.which("runuser") else None


@contextlib.contextmanager
def throwaway_postgres(bindir: Path) -> Iterator[str]:
    """A server with one database, ``radflow``; yields its SQLAlchemy URL."""
    # not under pytest's tmp dirs: those are private to root, and the server runs as postgres
    data = Path(tempfile.mkdtemp(prefix="radflow-pg-"))
    shutil.chown(data, "postgres")
    os.chmod(data, 0o700)
    port = free_port()

    def as_postgres(*args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, cwd="/tmp")

    as_postgres(str(bindir / "initdb"), "-D", str(data / "db"), "--auth=trust", "-U", "postgres", "-E", "UTF8")
    as_postgres(str(bindir / "pg_ctl"), "-D", str(data / "db"), "-l", str(data / "log"), "-w", "-o",
                f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start")
    try:
        as_postgres(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "radflow")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/radflow"
    finally:
        as_postgres(str(bindir / "pg_ctl"), "-D", str(data / "db"), "-m", "fast", "-w", "stop")
        shutil.rmtree(data, ignore_errors=True)
