"""Jobs of a dead worker process are sent again, without waiting for Redis's visibility timeout.

Every job a worker holds (received, waiting for a slot or running, in any pool) has a lease in
`rfleet:leases` (a deadline), which a thread of the worker's main process renews every quarter of
`WORKER_LEASE_S`; a claim leases the job too, and a retrying job is leased for its countdown plus
one lease, so a retry message lost with its worker is also found. The same thread then moves the
jobs whose lease ran out back to `queued` and sends their task again; the move is one script, so
one sweeper wins each job however many workers sweep.

The dead worker's own message is still in Redis's unacked set: after the visibility timeout it is
delivered again and dropped at the claim (the job is finished, or running under a live lease).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis
from celery import Celery
from redis.exceptions import RedisError

from worker import keys
from worker.celery_config import send_job
from worker.errors import StoreUnavailable
from worker.store import RENEW_SCRIPT, SOCKET_CONNECT_TIMEOUT_S, SOCKET_TIMEOUT_S, SWEEP_SCRIPT

logger = logging.getLogger(__name__)

SWEEP_BATCH = 200


class LeaseSweeper:
    """Every quarter lease: renew the leases of the jobs this worker holds (`held()` gives their
    ids), then resend the jobs whose lease ran out. `start()`/`stop()` from any thread."""

    def __init__(self, app: Celery, redis_url: str, lease_s: float, held: Callable[[], list[str]]) -> None:
        self._app = app
        self._lease_s = lease_s
        self._held = held
        self._client = redis.Redis.from_url(
            redis_url,
            decode_responses=True,
            socket_connect_timeout=SOCKET_CONNECT_TIMEOUT_S,
            socket_timeout=SOCKET_TIMEOUT_S,
        )
        self._sweep = self._client.register_script(SWEEP_SCRIPT)
        self._renew = self._client.register_script(RENEW_SCRIPT)
        self._interval_s = lease_s / 4
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._client.close()

    def renew(self, job_ids: list[str]) -> None:
        """Lease these jobs for one more lease from now (never shortening a longer lease)."""
        if job_ids:
            self._renew(keys=[keys.leases()], args=[time.time() + self._lease_s, keys.job(""), *job_ids])

    def sweep_once(self) -> list[str]:
        """Requeue and resend the jobs whose lease is over; returns their ids."""
        found = self._sweep(keys=[keys.leases()], args=[time.time(), SWEEP_BATCH, keys.job("")])
        resent: list[str] = []
        for job_id, spec_id in zip(found[::2], found[1::2], strict=True):
            try:
                send_job(self._app, job_id, spec_id)
            except StoreUnavailable:  # lease it again as due, so the next sweep sends it
                self._client.hset(keys.job(job_id), "state", "retrying")
                self._client.zadd(keys.leases(), {job_id: 0})
                raise
            logger.warning("job %s: its worker stopped renewing the lease (died?); sent again", job_id)
            resent.append(job_id)
        return resent

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.renew(self._held())
                self.sweep_once()
            except (RedisError, OSError, StoreUnavailable) as exc:
                logger.warning("lease sweep skipped, Redis unavailable: %s", exc)
