"""Deadlines (issue 11, point 2). The per-node pools that blocking driver calls run on
(corral.drivers.executor): a node whose calls never return holds at most its own pool's threads,
its callers get ``DriverTimeout`` on time, and other nodes' calls go on as before. The settings the
deadlines come from, and the database's lock wait."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from corral.config import DatabasePoolSettings, Settings
from corral.drivers.base import DriverTimeout, DriverTimeouts, TransientDriverError
from corral.drivers.executor import call, executor_for, shutdown_executors
from corral.nodes.probe import timeouts_for


@pytest.fixture
def stuck() -> Iterator[threading.Event]:
    """Released at the end, so the threads blocked on it finish."""
    release = threading.Event()
    yield release
    release.set()
    shutdown_executors()


async def test_a_call_past_its_deadline_is_a_transient_driver_error(stuck: threading.Event) -> None:
    started = time.monotonic()
    with pytest.raises(DriverTimeout, match=r"did not answer within 0.2 s \(host info\)") as raised:
        await call("hung-a", stuck.wait, threads=1, timeout_s=0.2, what="host info")
    assert isinstance(raised.value, TransientDriverError)  # so the jobs retry it with backoff
    assert time.monotonic() - started < 1.0


async def test_a_hung_node_holds_only_its_own_threads(stuck: threading.Event) -> None:
    ran: list[str] = []

    def never_started() -> None:
        ran.append("late")

    hung = [call("hung-b", stuck.wait, threads=2, timeout_s=0.3, what="state") for _ in range(2)]
    queued = call("hung-b", never_started, threads=2, timeout_s=0.3, what="state")
    results = await asyncio.gather(*hung, queued, return_exceptions=True)
    assert all(isinstance(result, DriverTimeout) for result in results)
    assert executor_for("hung-b", 2).busy == 2  # the two stuck calls, no more threads than that

    # Another node answers at once, however many calls the hung one has stuck.
    assert await call("healthy", lambda: "ok", threads=2, timeout_s=0.5, what="state") == "ok"

    # The call that waited in the hung node's queue past its deadline is never run late.
    # (The queue is first in, first out: by the time this one has run, that one was skipped.)
    stuck.set()
    assert await call("hung-b", lambda: "answered", threads=2, timeout_s=1, what="state") == "answered"
    assert ran == []


async def test_errors_of_the_call_come_through_unchanged() -> None:
    def refuse() -> None:
        raise TransientDriverError("connection refused")

    with pytest.raises(TransientDriverError, match="connection refused"):
        await call("refusing", refuse, threads=1, timeout_s=1, what="state")
    shutdown_executors()


def test_deadlines_come_from_settings_with_per_kind_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_DRIVERS__CONNECT_TIMEOUT_S", "7")
    monkeypatch.setenv("CORRAL_DRIVERS__KINDS__LIBVIRT__BUILD_TIMEOUT_S", "3600")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert timeouts_for(settings, "libvirt") == DriverTimeouts(
        connect_s=7, operation_s=120, build_s=3600, threads=4
    )
    # Another kind keeps the defaults (with the changed connect deadline).
    assert timeouts_for(settings, "proxmox") == DriverTimeouts(connect_s=7, operation_s=120, build_s=1800)


def test_a_lock_wait_must_end_before_the_statement_timeout() -> None:
    # Otherwise the wait would end as a cancelled statement (a 500) rather than as "busy" (a 409).
    with pytest.raises(ValidationError, match="lock_timeout_ms must be shorter"):
        DatabasePoolSettings(statement_timeout_ms=1_000, lock_timeout_ms=1_000)
    assert DatabasePoolSettings().lock_timeout_ms < DatabasePoolSettings().statement_timeout_ms
