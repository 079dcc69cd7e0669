"""The per-process runtime of a worker: one asyncio loop in its own thread, and on it one MCP
session owner, one model client, one context cache and one store shared by the process's jobs.

Celery has no asyncio support: tasks (threads pool: many at once) submit their job's coroutine
here and wait. The loop is created lazily and re-created after fork (prefork pool children).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import socket
import threading
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from typing import Any, TypeVar

from worker.adapters.circuits import Circuits
from worker.adapters.services import Probe, Services, open_services
from worker.adapters.store import Store
from worker.fleet.breaker import FleetBreaker
from worker.records import Dependency
from worker.redact import redactor_for
from worker.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")


CLOSE_TIMEOUT_S = 5.0
"""Closing the process's connections at shutdown waits this long at most (the MCP session's DELETE
to a server that no longer answers must not hold a stopping worker)."""


class Stop:
    """A worker asked to stop. `draining`: nothing new starts (a job waiting on a pause, or not
    started yet, is handed back at once); `handing_back`: running attempts are handed back too."""

    def __init__(self) -> None:
        self.draining = asyncio.Event()
        self.handing_back = asyncio.Event()


class ProcessRuntime:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="robot-fleet-loop", daemon=True)
        self._thread.start()
        self._services: Services | None = None
        self._store: Store | None = None
        self._breaker: FleetBreaker | None = None
        self._services_lock: asyncio.Lock | None = None
        self._stack = AsyncExitStack()
        self.stop = Stop()

    @property
    def worker_name(self) -> str:
        return f"{socket.gethostname()}:{os.getpid()}"

    @property
    def store(self) -> Store:
        """The process's job store (no connection is made until it is used)."""
        if self._store is None:
            self._store = Store.from_url(self._settings.redis_url, redactor_for(self._settings))
        return self._store

    @property
    def breaker(self) -> FleetBreaker:
        """The process's side of the fleet's pause on outages (`worker.fleet.breaker`)."""
        if self._breaker is None:

            async def probes() -> dict[Dependency, Probe]:
                return dict((await self.services()).probes)

            self._breaker = FleetBreaker(Circuits(self.store), probes, threshold=self._settings.fleet_pause_after,
                                         holder=self.worker_name,
                                         probe_timeout_s=max(self._settings.tool_timeout_s, 30.0))  # fmt: skip
        return self._breaker

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def drain(self) -> None:
        """From any thread: nothing new starts; jobs waiting on a pause are handed back."""
        self._loop.call_soon_threadsafe(self.stop.draining.set)

    def hand_back(self) -> None:
        """From any thread: running attempts are handed back (they resume on another worker)."""
        self._loop.call_soon_threadsafe(self.stop.draining.set)
        self._loop.call_soon_threadsafe(self.stop.handing_back.set)

    async def services(self) -> Services:
        """The shared services, opened on first use and kept open until the process ends."""
        if self._services_lock is None:
            self._services_lock = asyncio.Lock()
        async with self._services_lock:
            if self._services is None:
                self._services = await self._stack.enter_async_context(open_services(self._settings))
            return self._services

    def close(self) -> None:
        async def shutdown() -> None:
            await self._stack.aclose()
            if self._store is not None:
                await self._store.close()

        try:
            self.submit(shutdown()).result(timeout=CLOSE_TIMEOUT_S)
        except Exception as exc:  # shutting down: report, never raise
            logger.warning("runtime shutdown: %s", exc)
        self._loop.call_soon_threadsafe(self._loop.stop)


_runtime: ProcessRuntime | None = None
_runtime_pid = 0
_runtime_lock = threading.Lock()


def get_runtime(settings: Settings) -> ProcessRuntime:
    """This process's runtime; a forked child builds its own (threads and loops do not survive fork)."""
    global _runtime, _runtime_pid
    with _runtime_lock:
        if _runtime is None or _runtime_pid != os.getpid():
            _runtime = ProcessRuntime(settings)
            _runtime_pid = os.getpid()
        return _runtime


def current_runtime() -> ProcessRuntime | None:
    """This process's runtime if it has one (a prefork worker's main process runs no job)."""
    with _runtime_lock:
        return _runtime if _runtime is not None and _runtime_pid == os.getpid() else None


def close_runtime() -> None:
    global _runtime
    with _runtime_lock:
        if _runtime is not None and _runtime_pid == os.getpid():
            _runtime.close()
        _runtime = None
