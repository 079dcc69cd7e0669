"""The Celery task: a thin synchronous shim around the job coroutine on the process's loop."""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any

from celery import Task

from worker.fleet.celery_app import TASK_NAME, app, settings
from worker.fleet.jobs import JobOutcome, WillRetry, execute_job, outcome_dict
from worker.fleet.logsink import Progress
from worker.fleet.runtime import get_runtime

PROGRESS_EVERY_S = 1.0


@app.task(name=TASK_NAME, bind=True, max_retries=None)  # the retry policy caps retries, not Celery
def generate(self: Task[Any, Any], job_id: str) -> dict[str, Any]:
    runtime = get_runtime(settings)
    progress = Progress()

    async def run() -> JobOutcome:
        return await execute_job(runtime.store, runtime.services, job_id, worker_name=runtime.worker_name,
                                 progress=progress, lease_s=settings.worker_lease_s)  # fmt: skip

    outcome: JobOutcome = _wait_reporting_progress(self, runtime.submit(run()), progress)
    if isinstance(outcome, WillRetry):  # Celery's retry: a new message, delivered after the countdown
        raise self.retry(exc=outcome.error, countdown=outcome.countdown)
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
