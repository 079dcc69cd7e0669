"""One job end to end on given connections: tools listed and guarded, repository context from the
per-process cache, the writer loop; all inside the job's wall-clock budget.

Both entry points use it: `robot-fleet write` (one spec, one MCP session) and the Celery task (many
concurrent jobs sharing the process's session, model client and context cache).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from worker.agent.context import ContextCache, RepoContext
from worker.agent.conventions import check_conventions, rules_from
from worker.agent.events import Event, EventKind, EventSink
from worker.agent.grounding import Grounder, Grounding, ReadFile
from worker.agent.loop import SuiteCheck, WriterLimits, WriterResult, write_suite
from worker.agent.model import ChatModel
from worker.agent.robocop_check import diagnostics as lint_diagnostics
from worker.agent.robocop_check import format_suite, lint_suite
from worker.agent.tools import GuardedTools, ToolPolicy, Toolset, ToolSpec
from worker.errors import ConfigError, JobTimeout
from worker.settings import Settings
from worker.spec import Spec

LAYOUT_RULES = ("SPC14", "SPC16", "SPC17", "SPC19", "SPC20", "SPC21", "SPC22")
"""Robocop's whitespace and alignment rules: the formatter fixes those, no repair turn needed."""


@dataclass(frozen=True)
class WriterConfig:
    policy: ToolPolicy
    limits: WriterLimits
    grounding: bool = True
    """Check calls, argument counts, resources, Robocop errors and the convention's rules."""
    format_output: bool = True
    lint_threshold: str = "E"
    lint_ignore: tuple[str, ...] = LAYOUT_RULES

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
            grounding=settings.writer_grounding,
            format_output=settings.writer_format,
            lint_threshold=settings.robocop_threshold.upper(),
            lint_ignore=LAYOUT_RULES
            + tuple(rule.strip() for rule in settings.robocop_ignore.split(",") if rule.strip()),
        )


def _suite_check(
    spec: Spec, config: WriterConfig, context: RepoContext, read_file: ReadFile
) -> SuiteCheck | None:
    """Grounding, Robocop's errors and the convention's recognised rules, as one check."""
    if not config.grounding:
        return None
    grounder = Grounder(read_file)
    rules = rules_from(context.convention)

    async def check(text: str) -> Grounding:
        grounding = await grounder.check(text, spec.target_path)
        issues = await asyncio.to_thread(
            lint_suite, text, threshold=config.lint_threshold, ignore=config.lint_ignore
        )
        extra = [*lint_diagnostics(issues), *check_conventions(text, rules, spec.spec_id)]
        return replace(grounding, diagnostics=grounding.diagnostics + tuple(extra))

    return check


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
            tools = GuardedTools(toolset, listing, config.policy, cache.memo)
            context, fetched = await cache.get(tools, config.policy.project_id, config.policy.ref)
            sink.emit(
                Event(
                    EventKind.INFO,
                    f"context: {len(context.paths)} paths, convention {len(context.convention)} chars"
                    + (f", fetched with {context.mcp_calls} MCP calls" if fetched else ", cached"),
                    {"paths": len(context.paths), "fetched": fetched, "tools": tools.names},
                )
            )
            check = _suite_check(spec, config, context, lambda path: cache.read_file(tools, path))
            result = await write_suite(spec, context, model, tools, sink, limits, check)
            if config.format_output:
                result = replace(result, robot_text=await asyncio.to_thread(format_suite, result.robot_text))
            return result
    except TimeoutError as exc:
        if not deadline.expired():
            raise
        raise JobTimeout(f"{spec.spec_id}: no valid suite within {limits.timeout_s:g}s") from exc
