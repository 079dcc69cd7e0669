"""The Celery application of a worker process (`celery -A worker.fleet.celery_app`; `robot-fleet worker`).

Settings are read once, here, when the worker starts; see `worker.adapters.celery_config` for the options.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from celery import Task
from celery.exceptions import Reject
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    task_received,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)

from worker.adapters.celery_config import TASK_NAME, create_app
from worker.adapters.store import Store
from worker.failpoints import failpoint
from worker.redact import RedactingFilter, redacting_task_class, redactor_for
from worker.settings import Settings

if TYPE_CHECKING:
    from worker.fleet.leases import LeaseKeeper

__all__ = ["TASK_NAME", "app", "settings"]

settings = Settings()
# no secret in what Celery stores, shows or logs
app = create_app(settings, task_cls=redacting_task_class(Task, settings))


QUIET_LOGGERS = ("httpx", "httpx2", "mcp.client.streamable_http")
CANCEL_WARNING = "In Celery 5.1 we introduced an optional breaking change"
"""Celery warns at every lost broker connection that it may cancel running tasks by default one day;
the fleet sets worker_cancel_long_running_tasks_on_connection_loss itself (False: leases and the
claim handle a job whose ack was lost), so its six lines say nothing to an operator. Celery's log
setup turns every such warning on again ('always'), so it is dropped as a log record instead."""


class _NoCancelWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return CANCEL_WARNING not in record.getMessage()


logging.getLogger("py.warnings").addFilter(_NoCancelWarning())


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


HAND_BACK_SHARE = 0.6
"""Of WORKER_SHUTDOWN_S, the share running jobs get to finish before they are handed back; the rest
is for handing them back and closing the process's connections."""
HAND_BACK_SHARE_PREFORK = 0.5
"""The same share in a prefork worker, whose children must then exit and close their own connections
before the main process closes its: 1.5-4 s after the hand-back measured (threads: 1-2 s)."""
HAND_BACK_SIGNAL = signal.SIGUSR2
"""What a prefork worker's main process sends its children to have their attempts handed back
(Celery and billiard use SIGUSR1 and SIGTERM in the children, not this one)."""


class HandBackLogFilter(logging.Filter):
    """Celery logs a task's `Reject` as a warning with its traceback; a job handed back by a worker
    stopping is no error: one INFO line, no traceback (tasks.py rejects with requeue only for that)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, Reject) and getattr(exc, "requeue", False):  # the stubs lack it
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        return True


logging.getLogger("celery.app.trace").addFilter(HandBackLogFilter())


@worker_shutting_down.connect
def _bound_the_shutdown(how: str = "Warm", **_: object) -> None:
    """A worker asked to stop exits within WORKER_SHUTDOWN_S: at once nothing new starts and the jobs
    waiting on a pause are handed back; at HAND_BACK_SHARE of it the attempts still running are
    handed back (not failures: they resume on another worker from their last completed round).
    Threads pool: the jobs run in this process. Prefork: in the children, which Celery lets finish
    their tasks however long they take; at HAND_BACK_SHARE_PREFORK of the bound this (main) process
    asks them with HAND_BACK_SIGNAL for their attempts back (a job waiting on a pause in a child is
    handed back then too, not at once). SIGTERM must reach the main process only (as `docker stop`
    and Kubernetes send it): sent to the whole process group (systemd's default KillMode, `kill --
    -PGID`), it kills the prefork children at once (Celery resets SIGTERM in them), and their jobs
    come back only by the lease sweep, counted as `requeued`."""
    from worker.fleet.runtime import current_runtime

    runtime = current_runtime()
    hand_back = runtime.hand_back if runtime is not None else _children_hand_back
    if how != "Warm":  # cold: Celery cancels the tasks; give the jobs back first
        hand_back()
        return
    if runtime is not None:
        runtime.drain()
    share = HAND_BACK_SHARE if runtime is not None else HAND_BACK_SHARE_PREFORK
    timer = threading.Timer(settings.worker_shutdown_s * share, hand_back)
    timer.daemon = True
    timer.start()


def _children_hand_back() -> None:
    """In a prefork worker's main process: every pool child hands back the attempt it runs."""
    from billiard.process import active_children

    for child in active_children():
        if child.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, HAND_BACK_SIGNAL)


@worker_process_init.connect
def _hand_back_when_asked(**_: object) -> None:
    """In a prefork child: HAND_BACK_SIGNAL from the main process hands back the attempt it runs."""
    signal.signal(HAND_BACK_SIGNAL, _hand_back_here)


def _hand_back_here(signum: int, frame: object) -> None:
    from worker.fleet.runtime import current_runtime

    runtime = current_runtime()
    if runtime is not None:
        runtime.hand_back()


_keeper: LeaseKeeper | None = None
_waiting: dict[str, float] = {}
"""Jobs this process received with a countdown (Celery keeps them aside until due), by due time."""
_waiting_lock = threading.Lock()


@worker_ready.connect
def _start_lease_keeper(**_: object) -> None:
    """In the worker's main process: hold the jobs this worker holds; resend the fleet's lost ones."""
    global _keeper
    from worker.fleet.leases import LeaseKeeper

    _keeper = LeaseKeeper(app, lambda: Store.from_url(settings.redis_url, redactor_for(settings)),
                          settings.worker_lease_s, held=_held_jobs)  # fmt: skip
    _keeper.start()


@task_received.connect
def _lease_on_receipt(request: Any, **_: object) -> None:
    """Lease a job the moment this worker receives it, before it waits for a slot or a countdown."""
    failpoint("worker.received")
    # `type` is the task run; `name` is the job's shown name (`celery_config.shown_name`)
    if _keeper is None or request.type != TASK_NAME or not request.args:
        return
    job_id = str(request.args[0])
    if request.eta is not None:
        with _waiting_lock:
            _waiting[job_id] = request.eta.timestamp()
    try:
        _keeper.hold([job_id])
    except Exception as exc:  # the periodic renewal leases it within a quarter lease
        logging.getLogger(__name__).warning("could not lease job %s: %s", job_id, exc)


def _held_jobs() -> list[str]:
    """Job ids of the tasks this worker has received and not finished (both pools), and of those
    waiting for their countdown (Celery lists them only once due)."""
    from celery.worker import state

    for _ in range(5):  # a WeakSet the consumer and pool threads change: copy it, again if it moved
        try:
            requests = list(state.reserved_requests)
            break
        except RuntimeError:
            continue
    else:
        requests = []
    held = {str(request.args[0]) for request in requests if request.type == TASK_NAME and request.args}
    now = time.time()
    with _waiting_lock:
        for job_id, due in list(_waiting.items()):
            if due + settings.worker_lease_s < now:  # due a lease ago: reserved (or done) by now
                del _waiting[job_id]
        held |= set(_waiting)
    return sorted(held)


@worker_shutdown.connect
def _stop_lease_keeper(**_: object) -> None:
    """Give back what this worker received but never started, then stop renewing."""
    if _keeper is not None:
        _keeper.stop(release=_held_jobs())
