"""The Celery application of a worker process (`celery -A worker.celery_app`; `robot-fleet worker`).

Settings are read once, here, when the worker starts; see `worker.celery_config` for the options.
"""

from __future__ import annotations

import logging

from celery.signals import after_setup_logger, worker_process_shutdown

from worker.celery_config import TASK_NAME, create_app
from worker.redact import RedactingFilter
from worker.settings import Settings

__all__ = ["TASK_NAME", "app", "settings"]

settings = Settings()
app = create_app(settings)


QUIET_LOGGERS = ("httpx", "httpx2", "mcp.client.streamable_http")


@after_setup_logger.connect
def _mask_secrets_in_logs(logger: logging.Logger, **_: object) -> None:
    for handler in logger.handlers:
        handler.addFilter(RedactingFilter(settings))
    for name in QUIET_LOGGERS:  # one INFO line per HTTP request drowns the job lines
        logging.getLogger(name).setLevel(logging.WARNING)


@worker_process_shutdown.connect
def _close_runtime(**_: object) -> None:
    from worker.runtime import close_runtime

    close_runtime()
