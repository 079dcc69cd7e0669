"""One job on the worker: claim an attempt, run the writer with a live log, record the outcome.

Only the attempt that claimed the job may record its result (the store's scripts check it), so an
attempt overtaken by `retry` or by the lease sweep can run but cannot write; a duplicate delivery of
a finished job, or of one running under a live lease, is dropped at the claim. Whether a failed
attempt is retried is the retry policy's answer (`worker.fleet.retry`).

Around the attempt, the fleet: no attempt starts while the fleet is paused on an outage (the job
waits, held, before its claim: `worker.fleet.breaker`), and a worker stopping hands back the job it
has not started, at once, and the attempt it runs, at its shutdown bound (`Stop`): queued again,
not counted as a failure, resumed elsewhere from its last completed round.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from worker.adapters.journal import RedisJournal
from worker.adapters.services import Services
from worker.adapters.store import Store
from worker.agent.checks.verdict import verdict_of
from worker.agent.loop import WriterResult
from worker.errors import InternalError, RetryableError, RobotFleetError
from worker.fleet.breaker import FleetBreaker
from worker.fleet.logsink import Progress, RedisLogSink
from worker.fleet.retry import POLICY, GiveUp, RetryIn, RetryPolicy
from worker.fleet.runtime import Stop
from worker.records import Claimed, Dependency, JobRecord, Refused, Unknown
from worker.spec import parse_spec

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Finished:
    """The attempt ended with a suite; `written` is False when a newer attempt owned the job."""

    job_id: str
    attempt: int
    written: bool


@dataclass(frozen=True)
class WillRetry:
    """The attempt failed and the job is dispatched again: send its retry after `countdown` s."""

    job_id: str
    attempt: int
    error: RetryableError
    countdown: float


@dataclass(frozen=True)
class Dropped:
    """No attempt: a duplicate delivery (the job is `state`), or an unknown job."""

    job_id: str
    state: str


@dataclass(frozen=True)
class HandedBack:
    """The worker is stopping: the job is queued again (its message goes back to the broker);
    `attempt` is the one handed back (0: none had started)."""

    job_id: str
    attempt: int


JobOutcome = Finished | WillRetry | Dropped | HandedBack


class _Stopped(Exception):
    """The worker asked for its running attempts back."""


def outcome_dict(outcome: JobOutcome) -> dict[str, Any]:
    """What the Celery task returns (Flower shows it)."""
    match outcome:
        case Finished(job_id, attempt, written):
            return {"job_id": job_id, "state": "succeeded" if written else "superseded", "attempt": attempt}
        case WillRetry(job_id, attempt, error, _):
            return {"job_id": job_id, "state": "retrying", "attempt": attempt, "detail": error.kind}
        case Dropped(job_id, state):
            return {
                "job_id": job_id,
                "state": "duplicate" if state != "unknown" else "unknown",
                "detail": state,
            }
        case HandedBack(job_id, attempt):
            return {"job_id": job_id, "state": "handed_back", "attempt": attempt}


async def execute_job(
    store: Store,
    get_services: Callable[[], Awaitable[Services]],
    job_id: str,
    *,
    worker_name: str,
    progress: Progress,
    lease_s: float,
    policy: RetryPolicy = POLICY,
    breaker: FleetBreaker | None = None,
    stop: Stop | None = None,
) -> JobOutcome:
    """Run one attempt and record its outcome; a failure the policy gives up on raises the job's
    error (after it is recorded). The job is claimed first, so a failure while connecting the
    process's shared services (the MCP server down at start-up) is recorded against the attempt."""
    if not await _admitted(breaker, stop, progress):
        await store.release([job_id])
        logger.info("job %s: handed back before it started (worker stopping)", job_id)
        return HandedBack(job_id, 0)
    match await store.claim(job_id, worker_name, lease_s):
        case Unknown():
            logger.warning("job %s: unknown job, message dropped", job_id)
            return Dropped(job_id, "unknown")
        case Refused(state):
            logger.info("job %s: already %s, duplicate delivery ignored", job_id, state)
            return Dropped(job_id, str(state))
        case Claimed() as claim:
            logger.info("job %s: attempt %d started", job_id, claim.attempt)
    started = time.monotonic()
    age_s = _age(claim.job, await breaker.resumed_at() if breaker is not None else 0.0)
    retryable = policy.may_retry(attempt=_tried(claim), retries=claim.job.retries, age_s=age_s)
    try:
        result = await _unless_stopped(_attempt(store, get_services, claim, progress, retryable), stop)
    except _Stopped:
        handed = await store.hand_back(job_id, claim.attempt)
        logger.info("job %s: attempt %d handed back (worker stopping)%s", job_id, claim.attempt,
                    "" if handed else "; a newer attempt owned it already")  # fmt: skip
        return HandedBack(job_id, claim.attempt)
    except Exception as exc:
        return await _record_failure(store, claim, exc, policy, breaker)
    written = await store.finish(job_id, claim.job.batch_id, claim.attempt, _result_payload(result),
                                 _fields(result))  # fmt: skip
    if breaker is not None:
        mcp_answered = (await get_services()).session.answered_at >= started
        await breaker.succeeded([Dependency.MODEL, *([Dependency.MCP] if mcp_answered else [])])
    logger.info("job %s: attempt %d %s", job_id, claim.attempt, "succeeded" if written else "superseded")
    return Finished(job_id, claim.attempt, written)


async def _admitted(breaker: FleetBreaker | None, stop: Stop | None, progress: Progress) -> bool:
    """False when the worker is stopping before the job could start (it waited for a pause, or it
    was taken from the pool's queue while the worker stopped)."""
    if stop is not None and stop.draining.is_set():
        return False
    if breaker is None:
        return True
    return await breaker.admit(stop.draining if stop is not None else None, progress.wait)


async def _unless_stopped(coro: Coroutine[Any, Any, T], stop: Stop | None) -> T:
    """`coro`'s result; `_Stopped` when the worker asks for its attempts back first (the attempt is
    cancelled: the rounds it completed are journaled, the one in flight is lost)."""
    if stop is None:
        return await coro
    task = asyncio.ensure_future(coro)
    stopper = asyncio.ensure_future(stop.handing_back.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        stopper.cancel()
    if task.done():
        return task.result()
    task.cancel()
    try:
        return await task  # it may have ended while it was told
    except (asyncio.CancelledError, Exception):
        raise _Stopped() from None


async def _attempt(
    store: Store,
    get_services: Callable[[], Awaitable[Services]],
    claim: Claimed,
    progress: Progress,
    retryable: bool,
) -> WriterResult:
    """`retryable`: a failure of this attempt would be retried, so a review the provider cannot give
    now fails the attempt (retried, resuming at the review) rather than leaving the suite unreviewed."""
    job = claim.job
    async with RedisLogSink(store, job.job_id, claim.attempt, progress) as sink:
        services = await get_services()
        # the producer checked the file against the limit; its stored re-serialisation may be a
        # little longer (spaces after separators), so the worker only guards against abuse
        spec = parse_spec(claim.spec_json.encode(), source=job.source or job.job_id,
                          max_bytes=2 * services.spec_max_bytes)  # fmt: skip
        journal = RedisJournal(store, job.job_id, claim.attempt) if services.journal else None
        return await services.write(spec, sink, journal, review_outage_retryable=retryable)


async def _record_failure(
    store: Store, claim: Claimed, exc: Exception, policy: RetryPolicy, breaker: FleetBreaker | None
) -> WillRetry:
    """Record the failed attempt, retrying or failed as the policy answers; raise when failed."""
    job_id, attempt = claim.job.job_id, claim.attempt
    error = exc if isinstance(exc, RobotFleetError) else InternalError(f"{type(exc).__name__}: {exc}")
    if error is not exc:  # a bug, not a condition: record it (never leave the job `running`)
        logger.exception("job %s: attempt %d crashed", job_id, attempt)
    outage = breaker is not None and await breaker.failed(job_id, error)
    age_s = _age(claim.job, await breaker.resumed_at() if breaker is not None else 0.0)
    decision = policy.decide(error, attempt=_tried(claim), retries=claim.job.retries, age_s=age_s,
                             outage=outage)  # fmt: skip
    countdown = decision.countdown if isinstance(decision, RetryIn) else None
    recorded = await store.fail(job_id, attempt, retry_in_s=countdown, kind=error.kind, message=error.message,
                                fields={"diagnostics": error.diagnostics[-20:]}, counted=not outage)  # fmt: skip
    match decision:
        case RetryIn(countdown) if recorded and isinstance(error, RetryableError):
            logger.info("job %s: attempt %d will retry in %.1fs (%s%s)", job_id, attempt, countdown, error.kind,
                        "; the fleet is paused on it: not counted" if outage else "")  # fmt: skip
            return WillRetry(job_id, attempt, error, countdown)
        case GiveUp(why):
            logger.info("job %s: attempt %d failed (%s; %s)", job_id, attempt, error.kind, why)
        case _:  # not recorded: a newer attempt owns the job and retries on its own
            logger.info("job %s: attempt %d failed (%s), superseded", job_id, attempt, error.kind)
    if error is exc:
        raise exc
    raise error from exc


def _tried(claim: Claimed) -> int:
    """Attempts that count against MAX_ATTEMPTS: those a stopping worker handed back do not."""
    return max(1, claim.attempt - claim.job.handed_back)


def _age(job: JobRecord, resumed_at: float) -> float:
    """Seconds since the job's first attempt started, or since the fleet last resumed after a pause
    when that is later (its retry window does not run while the fleet waits on an outage)."""
    if not job.first_started_at:
        return 0.0
    return max(0.0, time.time() - max(job.first_started_at, resumed_at))


FIGURES = ("calls", "calls_resolved", "calls_unverified", "reuse_share", "calls_by_source", "placeholders",
           "rule_violations", "tests_run", "tests_passed", "tests_failed", "tests_skipped")  # fmt: skip
"""The verification figures a job record carries (absent when the stage did not produce them)."""


def _fields(result: WriterResult) -> dict[str, Any]:
    checks = result.checks
    figures = checks.figures() if checks is not None else {}
    first = result.first_checks.figures() if result.first_checks is not None else {}
    saved = result.saved_usage
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
        "attempt_s": round(result.duration_s, 3),
        "resumed_from_round": result.resumed_from,
        "resume_saved_tokens": saved.prompt_tokens + saved.completion_tokens,
    }


def _review_fields(result: WriterResult) -> dict[str, Any]:
    """Criteria covered, violations found (first review) and fixed since, the reviewer's tokens."""
    final = result.checks.figures() if result.checks else {}
    first = result.first_checks.figures() if result.first_checks else {}
    fields: dict[str, Any] = {
        "review_prompt_tokens": result.review_usage.prompt_tokens,
        "review_completion_tokens": result.review_usage.completion_tokens,
        "review_cached_tokens": result.review_usage.cached_tokens,
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
