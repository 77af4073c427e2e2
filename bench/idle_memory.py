"""Idle memory of `corral demo`: the panel process (web + in-process worker) and, separately,
the embedded PostgreSQL. Target: the panel under 150 MB RSS.

    .venv/bin/python bench/idle_memory.py [--settle 20]

Starts the demo on a throw-away data directory and a free port, waits for /health, lets it idle,
then prints figures. It measures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
from common import free_port, wait_for_health

TARGET_MB = 150
REPO = Path(__file__).resolve().parent.parent


def rss_mb(processes: list[psutil.Process]) -> float:
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 1024 / 1024


def postgres_processes(pgdata: Path) -> list[psutil.Process]:
    """The embedded server's processes: the postmaster whose command line names our data dir,
    plus its children (backends, checkpointer, walwriter …)."""
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if any(str(pgdata) in part for part in cmdline) and "postgres" in " ".join(cmdline):
            return [process, *process.children(recursive=True)]
    return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--settle", type=float, default=20.0, help="seconds to idle before measuring")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="corral-bench-"))
    port = free_port()
    env = {**os.environ, "CORRAL_DATA_DIR": str(data_dir), "CORRAL_LOG__LEVEL": "WARNING"}
    env.pop("CORRAL_DATABASE_URL", None)
    corral = shutil.which("corral", path=str(REPO / ".venv" / "bin")) or "corral"
    started = time.monotonic()
    panel = subprocess.Popen(
        [corral, "demo", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_health(f"http://127.0.0.1:{port}/health", deadline_s=120)
        ready_s = time.monotonic() - started
        # A handful of requests, as a person opening the panel would make.
        for path in ("/", "/health", "/ready", "/static/css/corral.css"):
            httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
        time.sleep(args.settle)  # idling is the thing being measured, not a wait for a condition

        process = psutil.Process(panel.pid)
        own = [
            process,
            *[child for child in process.children(recursive=True) if "postgres" not in child.name()],
        ]
        panel_mb = rss_mb(own)
        pg_mb = rss_mb(postgres_processes(data_dir / "pgdata"))
        print(f"startup to /health     {ready_s:8.1f} s")
        verdict = "OK" if panel_mb < TARGET_MB else "OVER"
        print(f"panel RSS (web+worker) {panel_mb:8.1f} MB   target < {TARGET_MB} MB   {verdict}")
        print(f"embedded PostgreSQL    {pg_mb:8.1f} MB   (counted separately)")
    finally:
        panel.send_signal(signal.SIGTERM)
        try:
            panel.wait(timeout=30)
        except subprocess.TimeoutExpired:
            panel.kill()
        shutil.rmtree(data_dir, ignore_errors=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
