"""The Celery application of a worker process (`celery -A worker.fleet.celery_app`; `robot-fleet worker`).

Settings are read once, here, when the worker starts; see `worker.adapters.celery_config` for the options.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    task_received,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)
from redis.exceptions import RedisError

from worker.adapters.celery_config import TASK_NAME, create_app
from worker.redact import RedactingFilter, redacting_task_class
from worker.settings import Settings

if TYPE_CHECKING:
    from worker.fleet.leases import LeaseSweeper

__all__ = ["TASK_NAME", "app", "settings"]

settings = Settings()
app = create_app(settings)
app.Task = redacting_task_class(app.Task, settings)  # no secret in what Celery stores, shows or logs


QUIET_LOGGERS = ("httpx", "httpx2", "mcp.client.streamable_http")


@after_setup_logger.connect
@after_setup_task_logger.connect  # the task logger has handlers of its own
def _mask_secrets_in_logs(logger: logging.Logger, **_: object) -> None:
    for handler in logger.handlers:
        if not any(isinstance(existing, RedactingFilter) for existing in handler.filters):
            handler.addFilter(RedactingFilter(settings))
    for name in QUIET_LOGGERS:  # one INFO line per HTTP request drowns the job lines
        logging.getLogger(name).setLevel(logging.WARNING)


@worker_process_shutdown.connect
@worker_shutdown.connect  # the threads pool never sends worker_process_shutdown
def _close_runtime(**_: object) -> None:
    """Close this process's MCP session (HTTP DELETE: the real server holds at most 1000)."""
    from worker.fleet.runtime import close_runtime

    close_runtime()


_sweeper: LeaseSweeper | None = None


@worker_ready.connect
def _start_lease_sweeper(**_: object) -> None:
    """In the worker's main process: resend the jobs of worker processes that died."""
    global _sweeper
    from worker.fleet.leases import LeaseSweeper

    _sweeper = LeaseSweeper(app, settings.redis_url, settings.worker_lease_s, held=_held_jobs)
    _sweeper.start()


@task_received.connect
def _lease_on_receipt(request: Any, **_: object) -> None:
    """Lease a job the moment this worker receives it, before it waits for a slot."""
    # a retry waiting for its countdown (eta) is leased when it becomes due and is held for real
    # `type` is the task run; `name` is the job's shown name (`celery_config.shown_name`)
    if _sweeper is not None and request.type == TASK_NAME and request.args and not request.eta:
        try:
            _sweeper.renew([str(request.args[0])])
        except (RedisError, OSError) as exc:  # the periodic renewal will lease it
            logging.getLogger(__name__).warning("could not lease job %s: %s", request.args[0], exc)


def _held_jobs() -> list[str]:
    """Job ids of the tasks this worker has received and not finished (both pools)."""
    from celery.worker import state

    for _ in range(5):  # a WeakSet the consumer and pool threads change: copy it, again if it moved
        try:
            requests = list(state.reserved_requests)
            break
        except RuntimeError:
            continue
    else:
        return []
    return [str(request.args[0]) for request in requests if request.type == TASK_NAME and request.args]


@worker_shutdown.connect
def _stop_lease_sweeper(**_: object) -> None:
    if _sweeper is not None:
        _sweeper.stop()
