"""One job end to end on given connections: tools listed and guarded, repository context from the
per-process cache, the writer loop; all inside the job's wall-clock budget.

Both entry points use it: `robot-fleet write` (one spec, one MCP session) and the Celery task (many
concurrent jobs sharing the process's session, model client and context cache).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from worker.agent.context import ContextCache
from worker.agent.events import Event, EventKind, EventSink
from worker.agent.grounding import Grounder
from worker.agent.loop import WriterLimits, WriterResult, write_suite
from worker.agent.model import ChatModel
from worker.agent.tools import GuardedTools, ToolPolicy, Toolset, ToolSpec
from worker.errors import ConfigError, JobTimeout
from worker.settings import Settings
from worker.spec import Spec


@dataclass(frozen=True)
class WriterConfig:
    policy: ToolPolicy
    limits: WriterLimits
    grounding: bool = True
    """Check keyword calls, argument counts and resources against the repository (issue: grounding)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> WriterConfig:
        if not settings.gitlab_project_id.strip():
            raise ConfigError("GITLAB_PROJECT_ID is not set: the writer must know which project to read")
        return cls(
            policy=ToolPolicy(
                project_id=settings.gitlab_project_id.strip(),
                ref=settings.gitlab_ref,
                max_result_chars=settings.tool_result_max_chars,
                timeout_s=settings.tool_timeout_s,
            ),
            limits=WriterLimits(
                max_rounds=settings.writer_max_rounds,
                max_repairs=settings.writer_max_repairs,
                timeout_s=settings.writer_timeout_s,
            ),
        )


async def generate(
    spec: Spec,
    config: WriterConfig,
    *,
    model: ChatModel,
    toolset: Toolset,
    listing: list[ToolSpec],
    cache: ContextCache,
    sink: EventSink,
) -> WriterResult:
    """Write the suite for `spec`; raise a `RobotFleetError` saying why when it cannot."""
    limits = config.limits
    try:
        async with asyncio.timeout(limits.timeout_s) as deadline:
            tools = GuardedTools(toolset, listing, config.policy)
            context, fetched = await cache.get(tools, config.policy.project_id, config.policy.ref)
            sink.emit(
                Event(
                    EventKind.INFO,
                    f"context: {len(context.paths)} paths, convention {len(context.convention)} chars"
                    + (f", fetched with {context.mcp_calls} MCP calls" if fetched else ", cached"),
                    {"paths": len(context.paths), "fetched": fetched, "tools": tools.names},
                )
            )
            grounder = Grounder(
                lambda path: cache.read_file(tools, config.policy.project_id, config.policy.ref, path)
            )
            check = (lambda text: grounder.check(text, spec.target_path)) if config.grounding else None
            return await write_suite(spec, context, model, tools, sink, limits, check)
    except TimeoutError as exc:
        if not deadline.expired():
            raise
        raise JobTimeout(f"{spec.spec_id}: no valid suite within {limits.timeout_s:g}s") from exc
