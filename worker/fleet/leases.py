"""No job waits for Redis's visibility timeout: the worker's main process holds leases on the jobs it
holds, and sweeps the fleet's lost jobs (`Store.hold`, `Store.sweep`).

Every job a worker holds (received, waiting for a slot or for a retry's countdown, running, in
either pool) is leased in `rfleet:leases`: at receipt, at the claim, and every quarter of
`WORKER_LEASE_S` by a thread of the main process. The same thread then sweeps: jobs whose lease
ran out (their worker died) and jobs whose message was lost before any worker received it (the
broker refused it; a worker died between taking it from the queue and receiving it) are put back
on their way and their task sent again. Each move is one script, so one sweeper wins each job
however many workers sweep; the caps are the retry policy's.

After an outage of Redis a worker renews for one whole lease before it sweeps again, so jobs whose
renewals the outage missed are not taken for dead ones. A worker shutting down gives back the jobs
it received but never started. The dead worker's own message is still in Redis's unacked set:
after the visibility timeout it is delivered again and dropped at the claim.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable

from celery import Celery

from worker.adapters.celery_config import QUEUE, send_job
from worker.adapters.store import Store
from worker.errors import StoreUnavailable
from worker.fleet.retry import POLICY, RetryPolicy
from worker.records import Swept

logger = logging.getLogger(__name__)

HOLD_TIMEOUT_S = 5.0
"""A receipt waits this long for its lease at most (the periodic renewal leases it otherwise)."""


class LeaseKeeper:
    """Every quarter lease: hold the jobs this worker holds (`held()` gives their ids), then sweep.
    Runs its own asyncio loop in a thread; `start()`, `hold()`, `stop()` from any thread."""

    def __init__(self, app: Celery, store: Callable[[], Store], lease_s: float,
                 held: Callable[[], list[str]], policy: RetryPolicy = POLICY) -> None:  # fmt: skip
        self._app = app
        self._make_store = store
        self._lease_s = lease_s
        self._held = held
        self._policy = policy
        self._interval_s = lease_s / 4
        self._loop = asyncio.new_event_loop()
        self._store: Store | None = None
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._loop.run_forever, name="lease-keeper", daemon=True)
        self._task: concurrent.futures.Future[None] | None = None

    def start(self) -> None:
        self._thread.start()
        self._task = asyncio.run_coroutine_threadsafe(self._run(), self._loop)

    def stop(self, release: list[str] | None = None) -> None:
        """Stop renewing; first give back `release` (jobs received but never started)."""
        if not self._thread.is_alive():
            return
        if release:
            try:
                asyncio.run_coroutine_threadsafe(self.store.release(release), self._loop).result(
                    HOLD_TIMEOUT_S
                )
            except Exception as exc:  # their leases run out instead: the sweep sends them again
                logger.warning("could not give back %d jobs at shutdown: %s", len(release), exc)
        self._loop.call_soon_threadsafe(self._stop.set)
        if self._task is not None:
            try:
                self._task.result(timeout=5)
            except Exception as exc:
                logger.warning("lease keeper stopped: %s", exc)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = self._make_store()
        return self._store

    def hold(self, job_ids: list[str]) -> None:
        """Lease these jobs now (a receipt), from a thread that is not the keeper's."""
        asyncio.run_coroutine_threadsafe(self.store.hold(job_ids, self._lease_s), self._loop).result(
            HOLD_TIMEOUT_S
        )

    async def sweep_once(self) -> Swept:
        """Put back on their way the jobs whose holder died or whose message was lost, and send them."""
        policy = self._policy
        swept = await self.store.sweep(queue=QUEUE, grace_s=self._lease_s, max_requeues=policy.max_requeues,
                                       max_resends=policy.max_resends)  # fmt: skip
        for job_id in swept.failed:
            logger.warning("job %s: failed as worker_lost (it reached a cap of the retry policy)", job_id)
        for position, resend in enumerate(swept.resend):
            try:
                send_job(self._app, resend.job_id, resend.spec_id, resend.countdown)
            except StoreUnavailable:  # the next sweep takes the unsent ones again
                await self.store.unsent(swept.resend[position:])
                raise
            why = "its worker stopped renewing the lease (died?)" if resend.why == "requeued" else \
                "its message never reached a worker (lost in delivery, or refused by the broker)"  # fmt: skip
            logger.warning("job %s: %s; sent again", resend.job_id, why)
        return swept

    async def _run(self) -> None:
        hold_until = 0.0
        try:
            while not self._stop.is_set():
                try:
                    await asyncio.wait_for(self._stop.wait(), timeout=self._interval_s)
                    break
                except TimeoutError:
                    pass
                try:
                    await self.store.hold(self._held(), self._lease_s)
                    if time.monotonic() >= hold_until:
                        await self.sweep_once()
                except StoreUnavailable as exc:
                    # after an outage, every worker renews for a whole lease before anyone sweeps, so
                    # running jobs whose renewals the outage missed are not taken for dead ones
                    hold_until = time.monotonic() + self._lease_s
                    logger.warning("lease renewal and sweep skipped, Redis unavailable: %s", exc.message)
                except Exception:  # never let the loop die: without it this worker's jobs look dead
                    logger.exception("lease renewal or sweep failed; trying again in %.0fs", self._interval_s)
        finally:
            if self._store is not None:
                await self._store.close()
