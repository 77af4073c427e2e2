"""Migration 0008 on real rows: old connection URIs become fields when nothing is lost; the others
(parameters, files) are not guessed at, and their nodes turn unhealthy with a message to enter the
connection again. Downgrading writes a URI back from the fields."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from sqlalchemy.engine import URL

from corral.db import migrate
from corral.db.url import libpq_conninfo

OLD_NODES = {
    "hv-test": "test:///default",
    "hv-ssh": "qemu+ssh://corral@hv1.example.net:2222/system",
    "hv-shell": "qemu+ssh://root@hv1.example.net/system?keyfile=/k;command=id",
    "hv-file": "test:///etc/passwd%00.xml",
}


def test_old_uris_become_fields_or_ask_to_be_entered_again(empty_database: Callable[[], URL]) -> None:
    url = empty_database()
    migrate.upgrade(url, "0007")
    with psycopg.connect(libpq_conninfo(url)) as conn:
        location = conn.execute(
            "INSERT INTO locations (slug, name, country_code) VALUES ('m1', 'M1', 'AU') RETURNING id"
        ).fetchone()
        assert location is not None
        for name, uri in OLD_NODES.items():
            conn.execute(
                "INSERT INTO nodes (name, location_id, driver, connection_uri, cpu_total, memory_total_mib,"
                " disk_total_gib, status) VALUES (%s, %s, 'libvirt', %s, 1, 1, 1, 'online')",
                (name, location[0], uri),
            )

    migrate.upgrade(url, "0008")

    with psycopg.connect(libpq_conninfo(url)) as conn:
        rows = conn.execute(
            "SELECT name, transport, host, port, ssh_user, status, last_error FROM nodes ORDER BY name"
        ).fetchall()
    found = {row[0]: row[1:] for row in rows}
    assert found["hv-test"][:5] == ("test", None, None, None, "online")
    assert found["hv-ssh"][:5] == ("ssh", "hv1.example.net", 2222, "corral", "online")
    for name in ("hv-shell", "hv-file"):
        transport, host, _port, _user, status, error = found[name]
        assert (transport, host, status) == (None, None, "unhealthy")
        assert error is not None
        assert error.startswith("The connection must be entered again")

    migrate.downgrade(url, "0007")
    with psycopg.connect(libpq_conninfo(url)) as conn:
        back = dict(conn.execute("SELECT name, connection_uri FROM nodes").fetchall())
    assert back["hv-test"] == "test:///default"
    assert back["hv-ssh"] == "qemu+ssh://corral@hv1.example.net:2222/system"
    assert back["hv-shell"] == "invalid:///re-enter-the-connection"
