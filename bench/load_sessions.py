"""200 signed-in customers watching their server pages: latency and errors of the live status poll.

    .venv/bin/python bench/load_sessions.py [--sessions 200] [--seconds 30] [--think 2.8]

Starts `corral demo` (its embedded PostgreSQL, demo fleet and in-process worker) on a throw-away
data directory and a free port, adds one customer, one signed-in session and one running server per
session straight into the database (signing 200 people in over HTTP from one address would only
measure the sign-in throttle), then has each session poll its server's
live block (`GET /servers/{id}/live` with the version it was drawn from, as the page's htmx
does) with `--think` seconds between polls. With 200 sessions and 2.8 s that is about 70
requests/s, the load of issue 11. Prints
p50/p99/max latency, errors and throughput beside the target (p99 under 500 ms, no errors). It
measures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg
from common import free_port, wait_for_health

from corral.auth.secrets import new_secret, secret_hash
from corral.db import embedded
from corral.users.passwords import hash_password

TARGET_P99_MS = 500.0
REPO = Path(__file__).resolve().parent.parent
PASSWORD = "bench-Password-2026"  # noqa: S105  # throw-away accounts in a throw-away database


def seed(conninfo: str, sessions: int) -> list[tuple[str, int]]:
    """One active customer with a session and one running server on the demo node per session;
    returns (session cookie value, server id) pairs."""
    password_hash = hash_password(PASSWORD)  # one hash for all: argon2 is slow on purpose
    run = secrets.token_hex(3)
    made: list[tuple[str, int]] = []
    with psycopg.connect(conninfo, autocommit=False) as conn:
        row = conn.execute("SELECT n.id, n.location_id FROM nodes n WHERE n.name = 'demo-node'").fetchone()
        if row is None:
            raise SystemExit("the demo node is missing")
        node_id, location_id = row
        for index in range(sessions):
            email = f"load-{run}-{index}@example.com"
            user = conn.execute(
                "INSERT INTO users (email, name, password_hash, role, status, email_verified_at)"
                " VALUES (%s, %s, %s, 'customer', 'active', now()) RETURNING id",
                (email, f"Load {index}", password_hash),
            ).fetchone()
            assert user is not None
            server = conn.execute(
                "INSERT INTO servers (user_id, location_id, node_id, name, hostname, vcpus, memory_mib,"
                " disk_gib, status, power_state) VALUES (%s, %s, %s, %s, %s, 1, 1024, 10, 'active',"
                " 'running') RETURNING id",
                (user[0], location_id, node_id, f"load-{index}", f"load-{index}.example.com"),
            ).fetchone()
            assert server is not None
            secret = new_secret()
            conn.execute(
                "INSERT INTO user_sessions (token_hash, user_id, expires_at, auth_method)"
                " VALUES (%s, %s, now() + interval '1 day', 'password')",
                (secret_hash(secret), user[0]),
            )
            made.append((secret, int(server[0])))
        conn.commit()
    return made


def signed_in(base: str, secret: str) -> httpx.AsyncClient:
    # The demo serves http on localhost, so its cookies carry no __Host- prefix.
    return httpx.AsyncClient(base_url=base, timeout=30, cookies={"corral_session": secret})


VERSION = re.compile(r'"version": "([0-9a-f]*)"')


async def watch(
    client: httpx.AsyncClient,
    server_id: int,
    think: float,
    until: float,
    latencies: list[float],
    errors: list[str],
    full: bool = False,
) -> None:
    """What an open server page does: load once, then poll the live block with the version it was
    drawn from (a 204 means nothing changed; a 200 brings the new block and its version)."""
    page = await client.get(f"/servers/{server_id}")
    found = VERSION.search(page.text)
    version = found.group(1) if found else ""
    # Spread the first polls over one think time, as real page loads would be.
    await asyncio.sleep(secrets.randbelow(1000) / 1000 * think)
    headers = {"HX-Request": "true"}
    while time.monotonic() < until:
        started = time.perf_counter()
        try:
            response = await client.get(
                f"/servers/{server_id}/live",
                params={"form": "0", "version": "" if full else version},
                headers=headers,
            )
            if response.status_code == 200:
                found = VERSION.search(response.text)
                version = found.group(1) if found else ""
            elif response.status_code != 204:
                errors.append(str(response.status_code))
        except httpx.HTTPError as error:
            errors.append(type(error).__name__)
        latencies.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(think)


async def load(
    base: str, targets: list[tuple[str, int]], seconds: float, think: float, *, full: bool = False
) -> None:
    clients = [signed_in(base, secret) for secret, _ in targets]
    first = await clients[0].get("/dashboard")
    if first.status_code != 200:
        raise SystemExit(f"a seeded session is not signed in: /dashboard answered {first.status_code}")
    latencies: list[float] = []
    errors: list[str] = []
    until = time.monotonic() + seconds
    started = time.monotonic()
    await asyncio.gather(
        *(
            watch(client, server_id, think, until, latencies, errors, full)
            for client, (_, server_id) in zip(clients, targets, strict=True)
        )
    )
    elapsed = time.monotonic() - started
    for client in clients:
        await client.aclose()
    ordered = sorted(latencies)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    verdict = "ok" if p99 < TARGET_P99_MS and not errors else "OVER"
    kind = "every poll redrawn" if full else "polls with the block's version"
    print(
        f"sessions {len(targets)}, think {think:.1f} s, {kind}: {len(latencies)} requests in {elapsed:.0f} s"
    )
    print(f"  throughput     {len(latencies) / elapsed:7.1f} requests/s")
    print(f"  latency p50    {p50:7.1f} ms")
    print(f"  latency p99    {p99:7.1f} ms   (target < {TARGET_P99_MS:.0f} ms: {verdict})")
    print(f"  latency max    {ordered[-1]:7.1f} ms")
    kinds = f": {', '.join(sorted(set(errors)))}" if errors else ""
    print(f"  errors         {len(errors):7d}      (target 0){kinds}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--think", type=float, default=2.8)
    parser.add_argument(
        "--full-polls", action="store_true", help="send no version: every poll redraws (for comparison)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="corral-load-") as folder:
        data = Path(folder)
        port = free_port()
        env = {key: value for key, value in os.environ.items() if not key.startswith("CORRAL_")}
        env.update(CORRAL_DATA_DIR=str(data), CORRAL_LOG__LEVEL="WARNING")
        demo = subprocess.Popen(
            [sys.executable, "-m", "corral", "demo", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://localhost:{port}"
            wait_for_health(f"{base}/health", 180)
            url = embedded.ensure_running(data)  # joins the demo's embedded server
            targets = seed(url, args.sessions)
            asyncio.run(load(base, targets, args.seconds, args.think, full=args.full_polls))
        finally:
            demo.send_signal(signal.SIGTERM)
            try:
                demo.wait(timeout=30)
            except subprocess.TimeoutExpired:
                demo.kill()


if __name__ == "__main__":
    main()
