"""Running the real `corral` command in a subprocess, and waiting on conditions with deadlines."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

CORRAL = [sys.executable, "-m", "corral"]


def clean_env(**overrides: str) -> dict[str, str]:
    """The environment minus any CORRAL_ settings of the developer's, plus ``overrides``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CORRAL_")}
    env.update(overrides)
    return env


def run_corral(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CORRAL, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(condition: Callable[[], bool], *, deadline_s: float, what: str) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {deadline_s:.0f}s waiting for {what}")


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
