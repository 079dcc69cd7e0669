"""Jobs of a dead worker process are sent again, without waiting for Redis's visibility timeout.

Every job a worker holds (received, waiting for a slot or running, in any pool) has a lease in
`rfleet:leases` (a deadline on the Redis server's clock), set when the task is received and at the
claim, and renewed by a thread of the worker's main process every quarter of `WORKER_LEASE_S`. The
same thread moves the jobs whose lease ran out back to `queued` and sends their task again; the
move is one script, so one sweeper wins each job however many workers sweep. A job whose workers
died `MAX_REQUEUES` times is failed (`worker_lost`) instead: it may be what kills them.

A retry waiting for its countdown, or in the queue behind other jobs, holds no lease (a backlog is
not a dead worker); the worker that holds it when it is due leases it. After an outage of Redis a
worker renews for one whole lease before it sweeps again, so jobs whose renewals the outage missed
are not taken for dead ones.

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
from worker.adapters.celery_config import send_job
from worker.adapters.store import RENEW_SCRIPT, SOCKET_CONNECT_TIMEOUT_S, SOCKET_TIMEOUT_S, SWEEP_SCRIPT
from worker.errors import StoreUnavailable

logger = logging.getLogger(__name__)

SWEEP_BATCH = 200
MAX_REQUEUES = 3


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
            self._renew(keys=[keys.leases()], args=[self._lease_s, keys.job(""), *job_ids])

    def sweep_once(self) -> list[str]:
        """Requeue and resend the jobs whose lease is over; returns their ids. A job whose workers
        died `MAX_REQUEUES` times is failed instead (`worker_lost`): it may be what kills them."""
        found = self._sweep(keys=[keys.leases()], args=[SWEEP_BATCH, keys.job(""), MAX_REQUEUES])
        pairs = list(zip(found[::2], found[1::2], strict=True))
        resent: list[str] = []
        for position, (job_id, spec_id) in enumerate(pairs):
            try:
                send_job(self._app, job_id, spec_id)
            except StoreUnavailable:  # lease the unsent ones again as due: the next sweep sends them
                self._client.zadd(keys.leases(), {unsent: 0 for unsent, _ in pairs[position:]})
                raise
            logger.warning("job %s: its worker stopped renewing the lease (died?); sent again", job_id)
            resent.append(job_id)
        return resent

    def _run(self) -> None:
        hold_until = 0.0
        while not self._stop.wait(self._interval_s):
            try:
                self.renew(self._held())
                if time.monotonic() >= hold_until:
                    self.sweep_once()
            except (RedisError, OSError, StoreUnavailable) as exc:
                # after an outage, every worker renews for a whole lease before anyone sweeps, so
                # running jobs whose renewals the outage missed are not taken for dead ones
                hold_until = time.monotonic() + self._lease_s
                logger.warning("lease renewal and sweep skipped, Redis unavailable: %s", exc)
            except Exception:  # never let the thread die: without it this worker's jobs look dead
                logger.exception("lease renewal or sweep failed; trying again in %.0fs", self._interval_s)
