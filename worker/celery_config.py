"""Celery configuration of the fleet, shared by the worker (`worker.celery_app`) and the producer.

Settings as DESIGN.md asks: late acks and reject on worker lost (a killed worker's jobs are
redelivered), prefetch 1, a Redis visibility timeout above the longest job, task events and
sent events on (Flower), JSON only.
"""

from __future__ import annotations

from celery import Celery

from worker.settings import Settings

TASK_NAME = "robot_fleet.generate"
QUEUE = "robot-fleet"
VISIBILITY_MARGIN_S = 1800
RESULT_EXPIRES_S = 7 * 24 * 3600


def visibility_timeout(settings: Settings) -> int:
    """Longer than the longest job, so Redis never redelivers a job that is still running."""
    return int(settings.writer_timeout_s * 2 + VISIBILITY_MARGIN_S)


def create_app(settings: Settings) -> Celery:
    app = Celery(
        "robot_fleet", broker=settings.redis_url, backend=settings.redis_url, include=["worker.tasks"]
    )
    transport = {"visibility_timeout": visibility_timeout(settings)}
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        event_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_track_started=True,
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_default_queue=QUEUE,
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        result_expires=RESULT_EXPIRES_S,
        broker_connection_retry_on_startup=True,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    return app
