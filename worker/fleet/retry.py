"""The one place that decides job retries: given the error, the attempt and the retries so far, it
answers "retry in N s" or "give up", with every cap beside it.

Transport retries stay in the adapters (the openai client's own, redis-py's `Retry`, the MCP
session's reconnection); this is about running a job's attempt again. A job is run again when:

    a retryable error ended its attempt      at most MAX_RETRIES times, within JOB_RETRY_WINDOW_S
                                             (30 min) of its first attempt, and never past
                                             MAX_ATTEMPTS attempts
    ... while the fleet is paused on it      retried without spending the job's budget: the
                                             outage is to blame (`worker.fleet.breaker`), only
                                             MAX_ATTEMPTS applies
    the worker holding it died (lease)       at most MAX_REQUEUES times: it may be what kills them
    its message was lost before receipt      at most MAX_RESENDS times
    a worker stopping handed it back         always: not a failure
A permanent error is never retried.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from worker.errors import RetryableError, RobotFleetError
from worker.settings import DEFAULT_RETRY_WINDOW_S, Settings

MAX_RETRIES = 5
"""Retryable failures retried per job (five retries span at least a minute of outage)."""
MAX_ATTEMPTS = 12
"""However attempts came (retries, dead workers, duplicates, `robot-fleet retry`), a job tried this
often fails at its next retryable error."""
RETRY_WINDOW_S = DEFAULT_RETRY_WINDOW_S
"""A job whose first attempt started longer ago than this fails at its next retryable error: the
retry budget is bounded by time as well as count (JOB_RETRY_WINDOW_S sets it)."""
MAX_REQUEUES = 3
"""Deaths of a worker holding the job before the job is failed as `worker_lost`."""
MAX_RESENDS = 10
"""Lost messages (a worker died between taking the job from the queue and receiving it, the broker
refused it) before the job is failed as `worker_lost`."""
RETRY_BASE_S = 4.0
RETRY_BACKOFF_MAX_S = 300.0
RETRY_AFTER_MAX_S = 900.0
"""A server asking for a longer wait is waited this long (a retry held by a worker for hours would
outlive Redis's visibility timeout and be delivered twice)."""


@dataclass(frozen=True)
class RetryIn:
    countdown: float


@dataclass(frozen=True)
class GiveUp:
    why: str


Decision = RetryIn | GiveUp


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = MAX_RETRIES
    max_attempts: int = MAX_ATTEMPTS
    window_s: float = RETRY_WINDOW_S
    max_requeues: int = MAX_REQUEUES
    max_resends: int = MAX_RESENDS
    base_s: float = RETRY_BASE_S
    backoff_max_s: float = RETRY_BACKOFF_MAX_S
    retry_after_max_s: float = RETRY_AFTER_MAX_S

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(window_s=settings.job_retry_window_s)

    def decide(
        self, error: RobotFleetError, *, attempt: int, retries: int, age_s: float, outage: bool = False
    ) -> Decision:
        """After attempt `attempt` failed with `error`, `retries` retries done, the first attempt
        `age_s` ago; `outage`: the fleet is paused on what failed (the retry is not the job's)."""
        if not isinstance(error, RetryableError):
            return GiveUp("permanent")
        if attempt >= self.max_attempts:
            return GiveUp(f"{attempt} attempts already")
        if outage:
            return RetryIn(self.countdown(0, error.retry_after))
        if retries >= self.max_retries:
            return GiveUp(f"retried {retries} times already")
        if age_s > self.window_s:
            return GiveUp(f"first tried {age_s / 60:.0f} min ago")
        return RetryIn(self.countdown(retries, error.retry_after))

    def may_retry(self, *, attempt: int, retries: int, age_s: float) -> bool:
        """Whether a retryable failure of attempt `attempt` would be retried (outside a pause): a stage
        that could settle for less (the review) raises instead while it would."""
        return attempt < self.max_attempts and retries < self.max_retries and age_s <= self.window_s

    def countdown(self, retries: int, retry_after: float | None) -> float:
        """Seconds before retry number `retries + 1`: exponential with "equal jitter" (half fixed, half
        random: 2-4 s, 4-8 s, ... 32-64 s), and never sooner than the server's Retry-After (capped)."""
        ceiling = min(self.backoff_max_s, self.base_s * 2.0**retries)
        backoff = ceiling / 2 + random.uniform(0, ceiling / 2)
        return max(backoff, min(retry_after or 0.0, self.retry_after_max_s))


POLICY = RetryPolicy()
