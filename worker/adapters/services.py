"""The one way to open what a process's jobs share: fleet-wide limiter, MCP session, model clients,
context cache, suite runner. The worker runtime keeps them open for the life of the process (its
jobs share them); `robot-fleet write` opens them for its one spec.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from worker.adapters.llm import build_client, writer_and_reviewer
from worker.adapters.mcp_tools import DEFAULT_CONNECT_WAIT_S, McpSession
from worker.adapters.ratelimit import FleetLimiter
from worker.agent.checks.execute import SuiteRunner
from worker.agent.context import ContextCache
from worker.agent.events import EventSink
from worker.agent.journal import Journal
from worker.agent.loop import WriterResult
from worker.agent.model import ChatModel
from worker.agent.tools import ToolSpec
from worker.agent.writer import WriterConfig, generate
from worker.records import Dependency
from worker.settings import Settings
from worker.spec import Spec

Probe = Callable[[], Awaitable[None]]
MODEL_PROBE_TIMEOUT_S = 30.0
"""A one-token completion answered later than this is no answer (the provider is overloaded)."""


@dataclass
class Services:
    """What every job of a process shares."""

    model: ChatModel
    session: McpSession
    cache: ContextCache
    config: WriterConfig
    spec_max_bytes: int
    journal: bool = True
    """Journal the writer's rounds (WRITER_JOURNAL)."""
    runner: SuiteRunner | None = None
    reviewer: ChatModel | None = None
    probes: Mapping[Dependency, Probe] = field(default_factory=dict)
    """One cheap request to each dependency: returns when it answers, raises `RetryableError` when
    it does not (the fleet's pause probes with these)."""
    _listing: list[ToolSpec] = field(default_factory=list)
    _listed_epoch: int = -1
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def listing(self) -> list[ToolSpec]:
        """The server's tools, listed again after a reconnection or a `tools/list_changed`."""
        async with self._lock:
            if self.session.listing_epoch != self._listed_epoch:
                epoch = self.session.listing_epoch
                self._listing = await self.session.list_tools()
                self._listed_epoch = epoch
            return self._listing

    async def write(
        self,
        spec: Spec,
        sink: EventSink,
        journal: Journal | None = None,
        *,
        review_outage_retryable: bool = False,
    ) -> WriterResult:
        """The writer on `spec`, with this process's connections."""
        return await generate(
            spec, self.config, model=self.model, toolset=self.session, listing=await self.listing(),
            cache=self.cache, sink=sink, runner=self.runner, reviewer_model=self.reviewer, journal=journal,
            review_outage_retryable=review_outage_retryable,
        )  # fmt: skip


@asynccontextmanager
async def open_services(
    settings: Settings, *, connect_wait_s: float = DEFAULT_CONNECT_WAIT_S
) -> AsyncIterator[Services]:
    """Open the services in order (limiter, MCP session, model client) and close them in reverse.

    Raises `ConfigError` for settings the writer cannot work with, before connecting anything."""
    config = WriterConfig.from_settings(settings)
    async with AsyncExitStack() as stack:
        limiter = FleetLimiter.from_settings(settings)  # None: no fleet-wide budget is set
        if limiter is not None:
            stack.push_async_callback(limiter.aclose)
        hooks = limiter.mcp_hooks() if limiter is not None else []
        session = McpSession(settings.gitlab_mcp_url, settings.mcp_headers(), connect_wait_s=connect_wait_s,
                             request_hooks=hooks)  # fmt: skip
        await stack.enter_async_context(session)
        client = build_client(settings, limiter)
        stack.push_async_callback(client.close)
        writer, reviewer = writer_and_reviewer(settings, client, limiter)
        tree: dict[str, Any] = {"project_id": settings.gitlab_project_id, "path": "", "per_page": 1}
        if settings.gitlab_ref:
            tree["ref"] = settings.gitlab_ref
        model_timeout = min(settings.openai_timeout_s, MODEL_PROBE_TIMEOUT_S)
        probes: dict[Dependency, Probe] = {
            Dependency.MODEL: lambda: writer.probe(model_timeout),
            # a tiny read, timed as a tool call is: a server slower than that is no better than down
            Dependency.MCP: lambda: session.probe("get_repository_tree", tree, settings.tool_timeout_s),
        }
        yield Services(
            model=writer, reviewer=reviewer, session=session, cache=ContextCache(), config=config,
            spec_max_bytes=settings.spec_max_bytes, journal=settings.writer_journal,
            runner=SuiteRunner(config.run) if config.checks.execute else None, probes=probes,
        )  # fmt: skip
