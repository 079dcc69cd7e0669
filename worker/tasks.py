"""The Celery task: a thin synchronous shim around the job coroutine on the process's loop."""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any

from celery import Task

from worker.celery_app import TASK_NAME, app, settings
from worker.errors import RetryableError
from worker.jobs import execute_job
from worker.logsink import Progress
from worker.runtime import get_runtime

MAX_RETRIES = 5
RETRY_BACKOFF_MAX_S = 300
PROGRESS_EVERY_S = 1.0


@app.task(
    name=TASK_NAME,
    bind=True,
    autoretry_for=(RetryableError,),
    retry_backoff=2,
    retry_backoff_max=RETRY_BACKOFF_MAX_S,
    retry_jitter=True,
    max_retries=MAX_RETRIES,
)
def generate(self: Task, job_id: str) -> dict[str, Any]:
    runtime = get_runtime(settings)
    progress = Progress()

    async def run() -> dict[str, Any]:
        last_try = self.request.retries >= (self.max_retries or 0)
        outcome = await execute_job(
            runtime.store,
            runtime.services,
            job_id,
            worker_name=runtime.worker_name,
            last_try=last_try,
            progress=progress,
        )
        return outcome.as_dict()

    future = runtime.submit(run())
    return _wait_reporting_progress(self, future, progress)


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
                                tokens=snapshot["tokens"], at=time.time())  # fmt: skip
