"""The Celery task: a thin synchronous shim around the job coroutine on the process's loop."""

from __future__ import annotations

import concurrent.futures
import random
import time
from typing import Any

from celery import Task

from worker.errors import RetryableError
from worker.fleet.celery_app import TASK_NAME, app, settings
from worker.fleet.jobs import JobOutcome, execute_job
from worker.fleet.logsink import Progress
from worker.fleet.runtime import get_runtime

MAX_RETRIES = 5
RETRY_BASE_S = 4.0
RETRY_BACKOFF_MAX_S = 300.0
RETRY_AFTER_MAX_S = 900.0
"""A server asking for a longer wait is waited this long (a retry held by a worker for hours would
outlive Redis's visibility timeout and be delivered twice)."""
PROGRESS_EVERY_S = 1.0


def retry_countdown(retries: int, retry_after: float | None) -> float:
    """Seconds before retry number `retries + 1`: exponential with "equal jitter" (half fixed, half
    random: 2-4 s, 4-8 s, ... 32-64 s, so five retries span at least a minute of outage), and never
    sooner than the server's Retry-After (up to 15 min)."""
    ceiling = min(RETRY_BACKOFF_MAX_S, RETRY_BASE_S * 2**retries)
    return max(ceiling / 2 + random.uniform(0, ceiling / 2), min(retry_after or 0.0, RETRY_AFTER_MAX_S))


@app.task(name=TASK_NAME, bind=True, max_retries=MAX_RETRIES)
def generate(self: Task, job_id: str) -> dict[str, Any]:
    runtime = get_runtime(settings)
    progress = Progress()
    retries = self.request.retries

    def countdown(error: RetryableError) -> float:
        return retry_countdown(retries, error.retry_after)

    async def run() -> JobOutcome:
        return await execute_job(
            runtime.store,
            runtime.services,
            job_id,
            worker_name=runtime.worker_name,
            last_try=retries >= (self.max_retries or 0),
            progress=progress,
            lease_s=settings.worker_lease_s,
            countdown=countdown,
        )

    outcome: JobOutcome = _wait_reporting_progress(self, runtime.submit(run()), progress)
    if outcome.retry is not None:  # Celery's retry: a new message, delivered after the countdown
        raise self.retry(exc=outcome.retry, countdown=outcome.countdown)
    return outcome.as_dict()


def _wait_reporting_progress(task: Task, future: concurrent.futures.Future[Any], progress: Progress) -> Any:
    """Block this Celery thread on the job, sending a throttled `task-progress` event to Flower."""
    sent_version = 0
    while True:
        try:
            return future.result(timeout=PROGRESS_EVERY_S)
        except concurrent.futures.TimeoutError:
            snapshot = progress.snapshot()
            if snapshot["version"] != sent_version:
                sent_version = int(snapshot["version"])
                task.send_event("task-progress", round=snapshot["round"], tool=snapshot["tool"],
                                tokens=snapshot["tokens"], at=time.time(),
                                result=progress_line(snapshot))  # fmt: skip


def progress_line(snapshot: dict[str, int | str]) -> str:
    """A running job as Flower shows it: `round 3 · get_file_contents · 41,200 tokens`.

    Flower draws only its own task fields; a custom event such as `task-progress` makes the task's
    state PROGRESS and merges its fields into the task, so `result` (a column of the tasks page and
    a line of the task page) carries the round reached until the task's return value replaces it;
    a failed task keeps the last one."""
    tool = f" · {snapshot['tool']}" if snapshot["tool"] else ""
    return f"round {snapshot['round']}{tool} · {int(snapshot['tokens']):,} tokens"
