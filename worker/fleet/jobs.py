"""One job on the worker: claim an attempt, run the writer with a live log, record the outcome.

Only the attempt that claimed the job may record its result (the store's scripts check it), so an
attempt overtaken by `retry` or by the lease sweep can run but cannot write; a duplicate delivery of
a finished job, or of one running under a live lease, is dropped at the claim.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from worker.adapters.store import Claim, Store
from worker.agent.checks.execute import SuiteRunner
from worker.agent.checks.verdict import verdict_of
from worker.agent.context import ContextCache
from worker.agent.loop import WriterResult
from worker.agent.model import ChatModel
from worker.agent.tools import Toolset, ToolSpec
from worker.agent.writer import WriterConfig, generate
from worker.errors import InternalError, RetryableError, RobotFleetError
from worker.fleet.logsink import Progress, RedisLogSink
from worker.spec import parse_spec

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 12
"""However an attempt came (Celery retry, lease sweep, duplicate), a job that has been tried this
often fails at its next retryable error instead of being retried again."""


@dataclass
class Services:
    """What every job of a worker process shares."""

    model: ChatModel
    toolset: Toolset
    listing: list[ToolSpec]
    cache: ContextCache
    config: WriterConfig
    spec_max_bytes: int
    runner: SuiteRunner | None = None
    reviewer: ChatModel | None = None


@dataclass(frozen=True)
class JobOutcome:
    job_id: str
    state: str
    attempt: int = 0
    detail: str = ""
    retry: RetryableError | None = None
    """Set when the attempt failed and will be retried: the error, to hand to Celery's retry."""
    countdown: float = 0.0
    """Seconds before the retry, honouring the error's Retry-After."""

    def as_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "state": self.state, "attempt": self.attempt, "detail": self.detail}


async def execute_job(
    store: Store,
    get_services: Callable[[], Awaitable[Services]],
    job_id: str,
    *,
    worker_name: str,
    last_try: bool,
    progress: Progress,
    lease_s: float,
    countdown: Callable[[RetryableError], float],
) -> JobOutcome:
    """Run one attempt and record its outcome. A retryable failure (not on the last try) returns an
    outcome carrying the error and its `countdown`; a final failure raises the job's error.

    The job is claimed first, so a failure while connecting the process's shared services (the
    MCP server down at start-up) is recorded against the attempt like any other."""
    claim = await store.claim(job_id, worker_name, lease_s)
    if claim is None:
        logger.warning("job %s: unknown job, message dropped", job_id)
        return JobOutcome(job_id, "unknown")
    if not isinstance(claim, Claim):
        logger.info("job %s: already %s, duplicate delivery ignored", job_id, claim)
        return JobOutcome(job_id, "duplicate", detail=claim)
    record = await store.job(job_id) or {}
    logger.info("job %s: attempt %d started", job_id, claim.attempt)
    try:
        async with RedisLogSink(store, job_id, claim.attempt, progress) as sink:
            services = await get_services()
            # the producer checked the file against the limit; its stored re-serialisation may be a
            # little longer (spaces after separators), so the worker only guards against abuse
            spec = parse_spec(
                claim.spec_json.encode(),
                source=record.get("source", job_id),
                max_bytes=2 * services.spec_max_bytes,
            )
            result = await generate(
                spec,
                services.config,
                model=services.model,
                toolset=services.toolset,
                listing=services.listing,
                cache=services.cache,
                sink=sink,
                runner=services.runner,
                reviewer_model=services.reviewer,
            )
    except Exception as exc:
        error = exc if isinstance(exc, RobotFleetError) else InternalError(f"{type(exc).__name__}: {exc}")
        if error is not exc:  # a bug, not a condition: record it (never leave the job `running`)
            logger.exception("job %s: attempt %d crashed", job_id, claim.attempt)
        final = last_try or claim.attempt >= MAX_ATTEMPTS or not isinstance(error, RetryableError)
        retry = None if final else error
        wait = countdown(retry) if isinstance(retry, RetryableError) else 0.0
        fields = _failure_fields(error) | ({"retry_in_s": round(wait, 1)} if retry else {})
        recorded = await store.fail(
            job_id, claim.attempt, final=final, kind=error.kind, message=error.message, fields=fields
        )
        if final or not recorded:  # not recorded: a newer attempt owns the job, it retries on its own
            logger.info("job %s: attempt %d failed (%s)", job_id, claim.attempt, error.kind)
            if error is exc:
                raise
            raise error from exc
        logger.info("job %s: attempt %d will retry in %.1fs (%s)", job_id, claim.attempt, wait, error.kind)
        return JobOutcome(job_id, "retrying", claim.attempt, error.kind, retry=retry, countdown=wait)
    written = await store.finish(
        job_id, record["batch_id"], claim.attempt, _result_payload(result), _fields(result)
    )
    state = "succeeded" if written else "superseded"
    logger.info("job %s: attempt %d %s", job_id, claim.attempt, state)
    return JobOutcome(job_id, state, claim.attempt)


FIGURES = ("calls", "calls_resolved", "calls_unverified", "reuse_share", "calls_by_source", "placeholders",
           "rule_violations", "tests_run", "tests_passed", "tests_failed", "tests_skipped")  # fmt: skip
"""The verification figures a job record carries (absent when the stage did not produce them)."""


def _fields(result: WriterResult) -> dict[str, Any]:
    checks = result.checks
    figures = checks.figures() if checks is not None else {}
    first = result.first_checks.figures() if result.first_checks is not None else {}
    return {
        "verdict": str(verdict_of(checks)),
        "stages": checks.outcomes() if checks is not None else {},
        "checks": checks.as_dict() if checks is not None else {},
        **{name: figures[name] for name in FIGURES if name in figures},
        "first_draft_placeholders": first.get("placeholders", ""),
        "first_draft_verdict": str(result.first_checks.verdict) if result.first_checks else "",
        **_review_fields(result),
        "degraded": len(result.degraded),
        "rounds": result.rounds,
        "repairs": result.repairs,
        "tool_calls": sum(result.tool_calls.values()),
        "prompt_tokens": result.usage.prompt_tokens,
        "completion_tokens": result.usage.completion_tokens,
        "cached_tokens": result.usage.cached_tokens,
        "duration_s": round(result.duration_s, 3),
    }


def _review_fields(result: WriterResult) -> dict[str, Any]:
    """Criteria covered, violations found (first review) and fixed since, the reviewer's tokens."""
    final = result.checks.figures() if result.checks else {}
    first = result.first_checks.figures() if result.first_checks else {}
    fields: dict[str, Any] = {
        "review_prompt_tokens": result.review_usage.prompt_tokens,
        "review_completion_tokens": result.review_usage.completion_tokens,
        "reviews": result.reviews,
    }
    if "criteria_total" in final:
        fields |= {"criteria_covered": final["criteria_covered"], "criteria_total": final["criteria_total"],
                   "criteria_derived": int(bool(final.get("criteria_derived")))}  # fmt: skip
    if "review_violations" in first or "review_violations" in final:
        found = first.get("review_violations", final.get("review_violations", 0))
        fields |= {"review_violations_found": found,
                   "review_violations_fixed": max(0, found - final.get("review_violations", found))}  # fmt: skip
    return fields


def _result_payload(result: WriterResult) -> dict[str, Any]:
    return {
        "robot_text": result.robot_text,
        "diagnostics": list(result.diagnostics),
        "degraded_calls": list(result.degraded),
        "tool_calls": result.tool_calls,
        **_fields(result),
    }


def _failure_fields(exc: RobotFleetError) -> dict[str, Any]:
    return {"diagnostics": exc.diagnostics[-20:]}
