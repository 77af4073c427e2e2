"""Blocking driver calls, run on a small pool of threads per node and waited for with a deadline.

Why not ``asyncio.to_thread``: the event loop's default pool is shared by everything in the
process. A node that accepts connections and then never answers keeps each call's thread blocked
inside the hypervisor library, and a thread stuck in C code cannot be killed; a few jobs against
such a node used to fill the shared pool, and builds and health checks of every healthy node
queued behind them. Here each node (keyed by its endpoint) has its own pool of at most
``threads`` threads, created on first use, so a hung node can only use up its own threads; a call
that finds them all busy waits in that node's queue, within its own deadline, and is dropped from
the queue when the deadline passes.

The threads are daemon threads (unlike ``ThreadPoolExecutor``'s, which the interpreter joins at
exit): a thread stuck on a dead node must not keep ``corral worker`` from stopping.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

from corral.drivers.base import DriverTimeout

T = TypeVar("T")

_Work = tuple[Future[object], Callable[[], object]]


class NodeExecutor:
    """At most ``max_workers`` daemon threads taking calls from one queue (threads start lazily)."""

    def __init__(self, name: str, max_workers: int) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.name = name
        self.max_workers = max_workers
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._running = 0
        self._shutdown = False

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError(f"the executor for {self.name} is shut down")
            self._queue.put((future, fn))  # type: ignore[arg-type]  # Future is invariant
            if self._idle == 0 and len(self._threads) < self.max_workers:
                thread = threading.Thread(
                    target=self._work, name=f"corral-node-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            else:
                self._idle = max(0, self._idle - 1)
        return future

    @property
    def busy(self) -> int:
        """Threads running a call now (stuck ones included)."""
        with self._lock:
            return self._running

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn = item
            # A call whose caller gave up (deadline passed) while it waited is never started.
            if future.set_running_or_notify_cancel():
                with self._lock:
                    self._running += 1
                try:
                    result = fn()
                except BaseException as error:
                    future.set_exception(error)
                else:
                    future.set_result(result)
                finally:
                    with self._lock:
                        self._running -= 1
            del item, future, fn
            with self._lock:
                self._idle += 1

    def shutdown(self) -> None:
        """Stop taking calls; idle threads end, a thread stuck in a call ends when (if) it returns."""
        with self._lock:
            self._shutdown = True
            threads = len(self._threads)
        for _ in range(threads):
            self._queue.put(None)


_executors: dict[str, NodeExecutor] = {}
_registry_lock = threading.Lock()


def executor_for(node: str, max_workers: int) -> NodeExecutor:
    """The pool of ``node`` (an endpoint's description), made on first use."""
    with _registry_lock:
        executor = _executors.get(node)
        if executor is None or executor.max_workers != max_workers:
            if executor is not None:
                executor.shutdown()  # settings changed: the new size applies from now on
            executor = _executors[node] = NodeExecutor(node, max_workers)
        return executor


def shutdown_executors() -> None:
    """End every node's pool (at process shutdown); the next call makes a fresh one."""
    with _registry_lock:
        executors = list(_executors.values())
        _executors.clear()
    for executor in executors:
        executor.shutdown()


async def call(node: str, fn: Callable[[], T], *, threads: int, timeout_s: float, what: str) -> T:
    """Run ``fn`` on ``node``'s pool; ``DriverTimeout`` if it has not returned within ``timeout_s``.

    The deadline covers the wait for a free thread too: a caller behind calls stuck on a dead node
    gets its answer in time, and its call is removed from the queue, never run late.
    """
    future = executor_for(node, threads).submit(fn)
    try:
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout_s)
    except TimeoutError:
        future.cancel()
        raise DriverTimeout(f"the node did not answer within {timeout_s:g} s ({what})") from None
