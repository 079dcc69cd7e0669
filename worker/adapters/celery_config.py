"""Celery configuration of the fleet, shared by the worker (`worker.fleet.celery_app`) and the producer.

Settings as DESIGN.md asks: late acks and reject on worker lost (a killed worker's jobs are
redelivered), prefetch 1, a Redis visibility timeout above the longest job, task events and
sent events on (Flower), JSON only; and a consumer that reconnects within a couple of seconds of
the broker coming back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from celery import Celery, Task
from celery.worker.consumer import Consumer
from kombu import Connection
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from worker.errors import StoreUnavailable
from worker.failpoints import injected
from worker.settings import Settings

logger = logging.getLogger(__name__)

TASK_NAME = "robot_fleet.generate"
QUEUE = "robot-fleet"
VISIBILITY_MARGIN_S = 1800
SHORT_VISIBILITY_S = 600
RESULT_EXPIRES_S = 7 * 24 * 3600


RECONNECT_START_S = 1
RECONNECT_STEP_S = 1
RECONNECT_MAX_S = 2
"""The worker's consumer tries to reconnect to a lost broker after 1 s, then every 2 s: kombu's
default (2 s more a try, up to 30 s) left workers idle ~15 s after a minute-long Redis outage."""
BROKER_RECONNECT_TRIES: int | None = None
"""How often the consumer tries to reconnect before the worker gives up and exits: never (Celery's
default, 100 tries, is 200 s at a try every 2 s: a Redis outage of 3 min 20 s killed every worker
with `Unrecoverable error: OperationalError`). A worker waits for its broker as the fleet waits."""


RECONNECT_LOG_EVERY_S = 30.0
"""While the broker stays away, one log line this often (Celery's: an ERROR at every try, 2 s apart)."""


class PromptReconnectConsumer(Consumer):
    """Celery's consumer with a short reconnection backoff (Celery passes none of its own), and a log
    that says the broker is away once, then every RECONNECT_LOG_EVERY_S, instead of at every try."""

    def ensure_connected(self, conn: Connection) -> Connection:
        ensure = conn.ensure_connection

        def prompt(errback: Callable[..., Any] | None = None, max_retries: int | None = None,
                   **options: Any) -> Connection:  # fmt: skip
            options["max_retries"] = max_retries  # None: for ever (kombu's stubs allow an int only)
            return ensure(_now_and_then(errback), interval_start=RECONNECT_START_S,
                          interval_step=RECONNECT_STEP_S, interval_max=RECONNECT_MAX_S, **options)  # fmt: skip

        setattr(conn, "ensure_connection", prompt)  # noqa: B010  # an instance's own, for Celery to call
        return super().ensure_connected(conn)

    def on_connection_error_after_connected(self, exc: Exception) -> None:
        """Celery 5.7 closes the lost connection after `collect()` took its transport apart; with
        messages unacknowledged (running jobs), closing the channel restores them through a client
        the transport no longer has, and kombu raises AttributeError: Celery takes that for an
        unrecoverable error and the worker exits (seen once in a loaded CI run, Redis stopped under
        4 running jobs). The messages stay in Redis's unacked set (the leases send their jobs again
        if need be): go on reconnecting."""
        try:
            super().on_connection_error_after_connected(exc)
        except AttributeError as error:
            logger.info(
                "consumer: the lost broker connection was already taken apart (%s); reconnecting", error
            )


def _now_and_then(errback: Callable[..., Any] | None) -> Callable[..., Any] | None:
    """Celery's line for the first failed try; then a warning every RECONNECT_LOG_EVERY_S."""
    if errback is None:
        return None
    started, tries, logged = time.monotonic(), 0, time.monotonic()

    def report(exc: Exception, interval: float) -> None:
        nonlocal tries, logged
        tries += 1
        if tries == 1:
            errback(exc, interval)
        elif time.monotonic() - logged >= RECONNECT_LOG_EVERY_S:
            logged = time.monotonic()
            logger.warning("consumer: the broker is still away after %.0f s (%d tries; %s); trying again "
                           "every %d s", logged - started, tries, exc, RECONNECT_MAX_S)  # fmt: skip

    return report


def visibility_timeout(settings: Settings) -> int:
    """Longer than the longest job, so Redis never redelivers a job that is still running."""
    if settings.celery_visibility_timeout_s is not None:
        return settings.celery_visibility_timeout_s
    return int(settings.writer_timeout_s * 2 + VISIBILITY_MARGIN_S)


def create_app(settings: Settings, task_cls: type[Task[Any, Any]] | None = None) -> Celery:
    """The fleet's app; `task_cls`: the base class of its tasks (the worker's masks secrets)."""
    app = Celery("robot_fleet", broker=settings.redis_url, backend=settings.redis_url,
                 include=["worker.fleet.tasks"], task_cls=task_cls or Task)  # fmt: skip
    timeout = visibility_timeout(settings)
    transport: dict[str, int] = {"visibility_timeout": timeout}
    if timeout < SHORT_VISIBILITY_S:  # kombu looks for overdue messages every ~100 s by default
        transport |= {"unacked_restore_interval": max(1, timeout // 4), "unacked_restore_throttle": 1}
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        event_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_track_started=True,
        task_ignore_result=True,  # the job store holds results; Flower follows the task events
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_default_queue=QUEUE,
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        result_expires=RESULT_EXPIRES_S,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=BROKER_RECONNECT_TRIES,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_consumer=f"{__name__}:PromptReconnectConsumer",
    )
    return app


def send_task_event(task: Task[Any, Any], kind: str, **fields: Any) -> str:
    """Send a task event (Flower's progress) without retrying; "" when sent, else why not (the
    broker away: an event is best effort, never a reason to fail the job)."""
    try:
        task.send_event(kind, retry=False, **fields)
    except (OperationalError, RedisError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


FLOWER_TASK_COLUMNS = ("name", "state", "retries", "received", "runtime", "worker", "result")
"""The columns of Flower's tasks page: the name says spec and batch, `result` the round reached."""
FLOWER_PURGE_OFFLINE_S = 600
"""Workers gone this long leave Flower's list (scaled-down or restarted containers pile up there)."""


def shown_name(job_id: str, spec_id: str) -> str:
    """The name a job's task goes by in Flower and in the worker's log lines: `SPEC_ID @ BATCH`.

    Celery's `shadow` name: the worker still runs TASK_NAME (a request's `type`), but its events
    (`task-received` onwards) and log lines carry this name."""
    batch_id = job_id.removesuffix(f":{spec_id}")
    return f"{spec_id} @ {batch_id}"


def flower_argv(port: int, address: str) -> list[str]:
    """`celery flower` arguments for the fleet (Flower 2.2's own option names)."""
    return [
        "flower",
        f"--port={port}",
        f"--address={address}",
        f"--tasks_columns={','.join(FLOWER_TASK_COLUMNS)}",
        f"--purge_offline_workers={FLOWER_PURGE_OFFLINE_S}",
    ]


def send_job(app: Celery, job_id: str, spec_id: str, countdown: float = 0.0) -> str:
    """One task for one job; its arguments show the spec id only (in Flower), never the spec, and its
    name shows the spec id and the batch (`shown_name`). Raises `StoreUnavailable` when the broker
    refuses it: the job was dispatched first, so the lease sweep sends it again."""
    try:
        if injected("broker.send"):
            raise OperationalError("broker unavailable (injected by ROBOT_FLEET_FAILPOINT)")
        result = app.send_task(TASK_NAME, args=[job_id], queue=QUEUE, argsrepr=repr(spec_id), kwargsrepr="{}",
                               shadow=shown_name(job_id, spec_id), countdown=countdown or None)  # fmt: skip
    except OperationalError as exc:
        raise StoreUnavailable(f"could not queue job {job_id}: {exc}") from exc
    return str(result.id)
