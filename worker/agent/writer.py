"""One job end to end on given connections: tools listed and guarded, repository context from the
per-process cache, the writer loop with its verification; all inside the job's wall-clock budget.

Both entry points use it: `robot-fleet write` (one spec, one MCP session) and the Celery task (many
concurrent jobs sharing the process's session, model client, context cache and suite runner).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field, replace

from worker.agent.catalog import suggest
from worker.agent.checks.execute import RunSettings, SuiteRunner
from worker.agent.checks.pipeline import LAYOUT_RULES, SpecFacts, Verifier, VerifyConfig
from worker.agent.checks.robocop import RobocopConfig
from worker.agent.context import ContextCache, RepoContext
from worker.agent.events import Event, EventKind, EventSink
from worker.agent.journal import Journal
from worker.agent.loop import Given, SuiteCheck, WriterLimits, WriterResult, write_suite
from worker.agent.model import ChatModel
from worker.agent.prompt import shown_spec
from worker.agent.review import Reviewer, ReviewTally
from worker.agent.tools import GuardedTools, ToolPolicy, Toolset, ToolSpec
from worker.agent.upfront import upfront_files
from worker.errors import ConfigError, JobTimeout
from worker.settings import Settings
from worker.spec import Spec

SECRET_ENV = frozenset({"OPENAI_API_KEY", "GITLAB_MCP_TOKEN", "REDIS_URL", "REDIS_PASSWORD"})
"""Never passed to a suite run, whatever WRITER_EXECUTE_ENV says (REDIS_URL may hold a password)."""


@dataclass(frozen=True)
class WriterConfig:
    policy: ToolPolicy
    limits: WriterLimits
    verify: bool = True
    """Run the verification stages (WRITER_VERIFY); off: any suite that parses is accepted."""
    review: bool = True
    """Have the reviewer judge suites that pass the static and rules stages (WRITER_REVIEW)."""
    review_mode: str = "auto"
    checks: VerifyConfig = field(default_factory=VerifyConfig)
    run: RunSettings = field(default_factory=RunSettings)

    @classmethod
    def from_settings(cls, settings: Settings) -> WriterConfig:
        if not settings.gitlab_project_id.strip():
            raise ConfigError("GITLAB_PROJECT_ID is not set: the writer must know which project to read")
        ignore = tuple(rule.strip() for rule in settings.robocop_ignore.split(",") if rule.strip())
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
            verify=settings.writer_verify,
            review=settings.writer_review,
            review_mode=settings.reviewer_format,
            checks=VerifyConfig(
                format_output=settings.writer_format,
                lint=RobocopConfig(
                    threshold=settings.robocop_threshold.upper(), ignore=LAYOUT_RULES + ignore
                ),
                execute=settings.writer_execute,
            ),
            run=RunSettings(
                timeout_s=settings.writer_execute_timeout_s,
                extra_options=tuple(settings.execute_options()),
                env_names=tuple(settings.execute_env_names()),
                secret_names=SECRET_ENV,
                concurrency=settings.writer_execute_concurrency or RunSettings.concurrency,
            ),
        )


def spec_facts(spec: Spec) -> SpecFacts:
    area = spec.data.get("area")
    return SpecFacts(
        spec_id=spec.spec_id,
        target_path=spec.target_path,
        tags=spec.tags,
        area=str(area) if isinstance(area, str | int) and str(area).strip() else None,
        text=json.dumps(spec.data, ensure_ascii=False),
    )


def build_verifier(
    spec: Spec, config: WriterConfig, context: RepoContext, tools: GuardedTools, cache: ContextCache,
    runner: SuiteRunner | None, reviewer: Reviewer | None = None,
) -> SuiteCheck | None:  # fmt: skip
    if not config.verify:
        return None

    async def read_file(path: str) -> str | None:
        return await cache.read_file(tools, path)

    async def suggestions(text: str) -> list[str]:
        return suggest(await cache.catalog(tools, context), text)

    verifier = Verifier(
        spec_facts(spec), config.checks, rules=context.rules, repo_lint=context.robocop,
        lint_problem=context.robocop_problem, read_file=read_file, tree=context.paths,
        suggest=suggestions, runner=runner, review=reviewer,
    )  # fmt: skip
    return verifier.verify


async def _given(
    spec: Spec, context: RepoContext, tools: GuardedTools, cache: ContextCache, sink: EventSink
) -> Given:
    """The keyword catalog (once per process per ref) and the files most like this spec's suite."""

    async def read_file(path: str) -> str | None:
        return await cache.read_file(tools, path)

    catalog = await cache.catalog(tools, context)
    files = await upfront_files(read_file, context.paths, spec.target_path, spec_facts(spec).text)
    shown = ", ".join(given.path for given in files) or "none"
    sink.emit(Event(EventKind.INFO, f"given up front: {len(catalog)} keywords; files {shown}",
                    {"catalog": len(catalog), "files": [given.path for given in files]}))  # fmt: skip
    return Given(tuple(catalog), tuple(files))


async def generate(
    spec: Spec,
    config: WriterConfig,
    *,
    model: ChatModel,
    toolset: Toolset,
    listing: list[ToolSpec],
    cache: ContextCache,
    sink: EventSink,
    runner: SuiteRunner | None = None,
    reviewer_model: ChatModel | None = None,
    journal: Journal | None = None,
    review_outage_retryable: bool = False,
) -> WriterResult:
    """Write the suite for `spec`; raise a `RobotFleetError` saying why when it cannot. The reviewer
    model (None: the writer's) judges suites in a conversation of its own. With a `journal`, the
    rounds a previous attempt completed are replayed instead of being asked again.
    `review_outage_retryable`: a reviewer still unavailable fails the attempt (it will be retried)
    instead of leaving the suite unreviewed."""
    limits = config.limits
    try:
        async with asyncio.timeout(limits.timeout_s) as deadline:
            tools = GuardedTools(toolset, listing, config.policy, cache.memo)
            context, fetched = await cache.get(tools, config.policy.project_id, config.policy.ref)
            sink.emit(
                Event(
                    EventKind.INFO,
                    f"context: {len(context.paths)} paths, convention {len(context.convention)} chars, "
                    f"rules {context.rules.source or 'none'}"
                    + (f", fetched with {context.mcp_calls} MCP calls" if fetched else ", cached"),
                    {"paths": len(context.paths), "fetched": fetched, "tools": tools.names},
                )
            )
            tally = ReviewTally()
            reviewer = None
            if config.review:
                reviewer = Reviewer(reviewer_model or model, context.convention, shown_spec(spec), sink, tally,
                                    config.review_mode, outage_retryable=review_outage_retryable)  # fmt: skip
            check = build_verifier(spec, config, context, tools, cache, runner, reviewer)
            given = await _given(spec, context, tools, cache, sink)
            result = await write_suite(spec, context, model, tools, sink, limits, check, given,
                                       journal=journal, tally=tally)  # fmt: skip
            return replace(result, review_usage=tally.usage, reviews=tally.reviews)
    except TimeoutError as exc:
        if not deadline.expired():
            raise
        raise JobTimeout(f"{spec.spec_id}: no valid suite within {limits.timeout_s:g}s") from exc
