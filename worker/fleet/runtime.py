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
from typing import Any, TypeVar

from worker.adapters.llm import build_client, writer_and_reviewer
from worker.adapters.mcp_tools import McpSession
from worker.adapters.ratelimit import FleetLimiter
from worker.adapters.store import Store
from worker.agent.checks.execute import SuiteRunner
from worker.agent.context import ContextCache
from worker.agent.writer import WriterConfig
from worker.fleet.jobs import Services
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
        self._session: McpSession | None = None
        self._listed_at_connect = -1
        self._limiter: FleetLimiter | None = None

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
        """The shared services, built on first use; the tool listing is refreshed after a reconnect."""
        if self._services_lock is None:
            self._services_lock = asyncio.Lock()
        async with self._services_lock:
            if self._services is None:
                self._services = await self._build()
            assert self._session is not None
            if self._session.listing_epoch != self._listed_at_connect:  # reconnected, or list_changed
                self._services.listing = await self._session.list_tools()
                self._listed_at_connect = self._session.listing_epoch
            return self._services

    async def _build(self) -> Services:
        settings = self._settings
        config = WriterConfig.from_settings(settings)
        limiter = self._limiter = FleetLimiter.from_settings(settings)  # None: no fleet-wide limit set
        hooks = limiter.mcp_hooks() if limiter is not None else []
        session = McpSession(settings.gitlab_mcp_url, settings.mcp_headers(), request_hooks=hooks)
        await session.__aenter__()
        self._session = session
        client = build_client(settings, limiter)
        writer, reviewer = writer_and_reviewer(settings, client)
        return Services(
            model=writer,
            reviewer=reviewer,
            toolset=session,
            listing=[],
            cache=ContextCache(),
            config=config,
            spec_max_bytes=settings.spec_max_bytes,
            runner=SuiteRunner(config.run) if config.checks.execute else None,
        )

    def close(self) -> None:
        async def shutdown() -> None:
            if self._session is not None:
                await self._session.__aexit__(None, None, None)
            if self._store is not None:
                await self._store.close()
            if self._limiter is not None:
                await self._limiter.aclose()

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
