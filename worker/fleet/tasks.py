"""The Celery task: a thin synchronous shim around the job coroutine on the process's loop."""

from __future__ import annotations

import concurrent.futures
import logging
import time
from typing import Any

from celery import Task
from celery.exceptions import Reject

from worker.adapters.celery_config import send_task_event
from worker.fleet.celery_app import TASK_NAME, app, settings
from worker.fleet.jobs import HandedBack, JobOutcome, WillRetry, execute_job, outcome_dict
from worker.fleet.logsink import Progress
from worker.fleet.retry import RetryPolicy
from worker.fleet.runtime import get_runtime

logger = logging.getLogger(__name__)

PROGRESS_EVERY_S = 1.0
UNSENT_LOG_EVERY_S = 60.0
POLICY = RetryPolicy.from_settings(settings)
_unsent_logged_at = 0.0


@app.task(name=TASK_NAME, bind=True, max_retries=None)  # the retry policy caps retries, not Celery
def generate(self: Task[Any, Any], job_id: str) -> dict[str, Any]:
    runtime = get_runtime(settings)
    progress = Progress()

    async def run() -> JobOutcome:
        return await execute_job(runtime.store, runtime.services, job_id, worker_name=runtime.worker_name,
                                 progress=progress, lease_s=settings.worker_lease_s, policy=POLICY,
                                 breaker=runtime.breaker, stop=runtime.stop)  # fmt: skip

    outcome: JobOutcome = _wait_reporting_progress(self, runtime.submit(run()), progress)
    if isinstance(outcome, WillRetry):  # Celery's retry: a new message, delivered after the countdown
        raise self.retry(exc=outcome.error, countdown=outcome.countdown)
    if isinstance(outcome, HandedBack):  # its message back to the broker, for another worker
        raise Reject("handed back: this worker is stopping", requeue=True)
    return outcome_dict(outcome)


def _wait_reporting_progress(
    task: Task[Any, Any], future: concurrent.futures.Future[Any], progress: Progress
) -> Any:
    """Block this Celery thread on the job, sending a throttled `task-progress` event to Flower."""
    sent_version = 0
    while True:
        try:
            return future.result(timeout=PROGRESS_EVERY_S)
        except concurrent.futures.TimeoutError:
            snapshot = progress.snapshot()
            if snapshot["version"] != sent_version:
                sent_version = int(snapshot["version"])
                _send_progress(task, snapshot)


def _send_progress(task: Task[Any, Any], snapshot: dict[str, int | str]) -> None:
    """An event is best effort: the broker briefly away costs Flower a line, never the job (and one
    warning a minute at most, no traceback)."""
    global _unsent_logged_at
    problem = send_task_event(task, "task-progress", round=snapshot["round"], tool=snapshot["tool"],
                              tokens=snapshot["tokens"], waiting=snapshot["waiting"], at=time.time(),
                              result=progress_line(snapshot))  # fmt: skip
    if problem and time.monotonic() - _unsent_logged_at >= UNSENT_LOG_EVERY_S:
        _unsent_logged_at = time.monotonic()
        logger.warning("progress events not sent to Flower (%s); the jobs go on", problem)


def progress_line(snapshot: dict[str, int | str]) -> str:
    """A running job as Flower shows it: `round 3 · get_file_contents · 41,200 tokens`, or what a job
    not started waits for: `waiting: fleet paused on the model provider`.

    Flower draws only its own task fields; a custom event such as `task-progress` makes the task's
    state PROGRESS and merges its fields into the task, so `result` (a column of the tasks page and
    a line of the task page) carries the round reached until the task's return value replaces it;
    a failed task keeps the last one."""
    if snapshot["waiting"]:
        return str(snapshot["waiting"])
    tool = f" · {snapshot['tool']}" if snapshot["tool"] else ""
    return f"round {snapshot['round']}{tool} · {int(snapshot['tokens']):,} tokens"
