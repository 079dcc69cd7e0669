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

from worker.adapters.services import Services, open_services
from worker.adapters.store import Store
from worker.redact import redactor_for
from worker.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")


class ProcessRuntime:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="robot-fleet-loop", daemon=True)
        self._thread.start()
        self._services: Services | None = None
        self._store: Store | None = None
        self._services_lock: asyncio.Lock | None = None
        self._stack = AsyncExitStack()

    @property
    def worker_name(self) -> str:
        return f"{socket.gethostname()}:{os.getpid()}"

    @property
    def store(self) -> Store:
        """The process's job store (no connection is made until it is used)."""
        if self._store is None:
            self._store = Store.from_url(self._settings.redis_url, redactor_for(self._settings))
        return self._store

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

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
            self.submit(shutdown()).result(timeout=10)
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


def close_runtime() -> None:
    global _runtime
    with _runtime_lock:
        if _runtime is not None and _runtime_pid == os.getpid():
            _runtime.close()
        _runtime = None
