"""The fleet's pause on an outage: when the model provider or the MCP server fails for everyone, no
new attempt starts against it until it answers again, instead of every queued job burning its
retries in parallel. Beside the retry policy (`worker.fleet.retry`), which it tells when a failure
is the outage's rather than the job's.

The rule (one circuit per dependency, in Redis, so the whole fleet sees one pause):

    opens      when FLEET_PAUSE_AFTER (3) different jobs in a row fail on the dependency, retryable
               (ModelUnavailable, ToolServerUnavailable), with no job finishing between them and
               within ten minutes: one job failing on its own (its spec provokes a 500) never opens it
    while open a job about to start waits, held by its worker (leased, not lost; its attempt not
               started, so nothing is spent); an attempt that fails on the dependency is retried
               without counting against its job's budget (the one that opened it included)
    probes     one worker of the fleet at a time (a Redis lock) sends one cheap request (the model:
               a one-token completion; MCP: a one-entry tree listing, timed as a tool call), 1 s
               after it opened, then after 2, 3 and every 5 s
    closes     at the first probe answered: the waiting jobs start (a job finishing does not close
               it: with cached context and files a job may finish while MCP is down)

Shown: each worker process logs a pause once when it opens or first sees it, and once when it ends
(the prober logs each failed probe at INFO); `run`, `status` and the metrics read the circuits; a
waiting task's progress event says what it waits for (Flower's result column).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

from worker.adapters.circuits import Circuits, CircuitsView
from worker.adapters.services import Probe
from worker.errors import ModelUnavailable, RobotFleetError, StoreUnavailable, ToolServerUnavailable
from worker.records import CircuitRecord, Dependency, span

logger = logging.getLogger(__name__)


PROBE_INTERVALS_S = (1.0, 2.0, 3.0, 5.0)
"""Seconds before the first probe, then after each failed one (the last repeats): one request every
5 s, fleet-wide, costs a provider nothing, and the fleet resumes within 5 s of its coming back."""
PROBE_LOCK_MARGIN_S = 5.0
POLL_S = 1.0
"""How often a waiting job looks at the circuits (one read per process, however many jobs wait)."""


def dependency_of(error: RobotFleetError) -> Dependency | None:
    """The dependency a retryable failure is an outage of, if any."""
    if isinstance(error, ModelUnavailable):
        return Dependency.MODEL
    if isinstance(error, ToolServerUnavailable):
        return Dependency.MCP
    return None


def probe_interval(failed_probes: int) -> float:
    return PROBE_INTERVALS_S[min(failed_probes, len(PROBE_INTERVALS_S) - 1)]


class FleetBreaker:
    """One per worker process, on its event loop: the jobs of the process record their failures and
    successes here, and wait here while the fleet is paused."""

    def __init__(self, circuits: Circuits, probes: Callable[[], Awaitable[Mapping[Dependency, Probe]]], *,
                 threshold: int, holder: str, probe_timeout_s: float = 30.0) -> None:  # fmt: skip
        self._circuits = circuits
        self._probes = probes
        self._threshold = threshold
        self._holder = holder
        self._lock_ttl_s = probe_timeout_s + PROBE_LOCK_MARGIN_S
        self._view: CircuitsView | None = None
        self._read_at = 0.0
        self._reading = asyncio.Lock()
        self._seen: dict[Dependency, float] = {}
        """The pauses this process logged (their opened_at), so each is logged once."""

    @property
    def enabled(self) -> bool:
        return self._threshold > 0

    async def failed(self, job_id: str, error: RobotFleetError) -> bool:
        """Record a failed attempt; True when the fleet is paused on what failed (the outage is to
        blame: the retry does not spend the job's budget)."""
        dependency = dependency_of(error)
        if not self.enabled or dependency is None:
            return False
        try:
            answer = await self._circuits.failed(dependency, job_id, threshold=self._threshold,
                                                 first_probe_s=probe_interval(0), kind=error.kind,
                                                 message=error.message)  # fmt: skip
        except StoreUnavailable as exc:  # the job's own failure is recorded (or not) by the store
            logger.warning(
                "job %s: could not record the failure on %s (%s)", job_id, dependency.label, exc.message
            )
            return False
        if answer.opened:
            self._view = None
            self._seen[dependency] = answer.opened_at
            logger.warning(
                "fleet paused on %s: %d different jobs failed on it in a row (the last, %s: %s: %s); no "
                "attempt starts until it answers a probe, and the failures meanwhile spend no retry",
                dependency.label, self._threshold, job_id, error.kind, self._short(error.message),
            )  # fmt: skip
        return answer.open

    async def succeeded(self, answered: Sequence[Dependency]) -> None:
        """A job finished and these dependencies answered it: their failures before it are no longer
        in a row. (A job served from cached reads says nothing about the MCP server.)"""
        if self.enabled and answered:
            with contextlib.suppress(StoreUnavailable):
                await self._circuits.succeeded(answered)

    async def resumed_at(self) -> float:
        """When the fleet last resumed after a pause (epoch seconds; 0: never, or unknown): a job's
        retry window counts from then, so a long pause does not spend it."""
        if not self.enabled:
            return 0.0
        try:
            view = await self._current()
        except StoreUnavailable:
            return 0.0
        return max((circuit.closed_at for circuit in view.circuits), default=0.0)

    async def admit(self, stop: asyncio.Event | None, on_wait: Callable[[str], None]) -> bool:
        """Return once no circuit is open (True: the job may start), or when `stop` is set while it
        waits (False). While it waits, `on_wait` is told what for (and "" when it may start)."""
        if not self.enabled:
            return True
        told = ""
        while True:
            if stop is not None and stop.is_set():
                return False
            try:
                view = await self._current()
            except StoreUnavailable as exc:  # Redis away before any read: wait for it, as the claim will
                logger.warning("could not read the fleet's circuits (%s); waiting for Redis", exc.message)
                if await _stopped_within(stop, POLL_S):
                    return False
                continue
            self._note(view)
            paused = view.paused
            waiting_for = ", ".join(circuit.dependency.label for circuit in paused)
            if waiting_for != told:
                on_wait(f"waiting: fleet paused on {waiting_for}" if waiting_for else "")
                told = waiting_for
            if not paused:
                return True
            for circuit in paused:
                if view.now >= circuit.next_probe_at:
                    await self._probe(circuit)
            if await _stopped_within(stop, POLL_S):
                return False

    async def _current(self) -> CircuitsView:
        async with self._reading:
            if self._view is None or time.monotonic() - self._read_at >= POLL_S:
                try:
                    self._view = await self._circuits.read()
                except StoreUnavailable as exc:  # no pause can be read: nothing starts either
                    if self._view is None:
                        raise
                    logger.warning("could not read the fleet's circuits (%s); as they were", exc.message)
                self._read_at = time.monotonic()
            return self._view

    def _note(self, view: CircuitsView) -> None:
        """Log each pause once per process: when first seen, and when it ends."""
        for circuit in view.circuits:
            seen = self._seen.get(circuit.dependency)
            if circuit.paused and seen != circuit.opened_at:
                self._seen[circuit.dependency] = circuit.opened_at
                logger.warning("%s (%s); jobs wait", circuit.describe(view.now), circuit.reason)
            elif not circuit.paused and seen is not None:
                del self._seen[circuit.dependency]
                logger.warning("fleet resumed: %s answers again", circuit.dependency.label)

    def _short(self, message: str) -> str:
        """A message for the log: masked first, then cut (a secret cut in two would escape the mask)."""
        return self._circuits.redact(message)[:200]

    async def _probe(self, circuit: CircuitRecord) -> None:
        try:
            await self._probe_once(circuit)
        except StoreUnavailable as exc:  # the next poll tries again
            logger.warning(
                "could not probe %s: Redis unavailable (%s)", circuit.dependency.label, exc.message
            )

    async def _probe_once(self, circuit: CircuitRecord) -> None:
        dependency = circuit.dependency
        if not await self._circuits.lock_probe(dependency, self._holder, self._lock_ttl_s):
            return  # another worker probes
        try:
            try:
                await (await self._probes())[dependency]()
            except Exception as raised:  # still failing (or the services cannot open: the same)
                exc = raised if isinstance(raised, RobotFleetError) else _unexpected(raised)
                failed = await self._circuits.probed(dependency, next_in_s=probe_interval(circuit.probes + 1),
                                                     kind=exc.kind, message=exc.message)  # fmt: skip
                logger.info("%s still fails (probe %d: %s); next probe in %.0fs", dependency.label, failed,
                            self._short(exc.message), probe_interval(failed))  # fmt: skip
                return
            paused = await self._circuits.close(dependency)
            if paused is not None:
                logger.warning("fleet resumed: %s answered a probe after %s paused (%d probes failed)",
                               dependency.label, span(paused), circuit.probes)  # fmt: skip
                self._seen.pop(dependency, None)
        finally:
            self._view = None
            with contextlib.suppress(StoreUnavailable):
                await self._circuits.unlock_probe(dependency, self._holder)


def _unexpected(exc: Exception) -> RobotFleetError:
    logger.warning("probe raised %s: %s; counted as a failed probe", type(exc).__name__, exc)
    return RobotFleetError(f"{type(exc).__name__}: {exc}")


async def _stopped_within(stop: asyncio.Event | None, seconds: float) -> bool:
    if stop is None:
        await asyncio.sleep(seconds)
        return False
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()
