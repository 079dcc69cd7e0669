"""`robot-fleet metrics`: the fleet's Prometheus metrics, read from the job store at scrape time.

Nothing is kept between scrapes: each scrape reads the `recent` newest batches (their records and a
few fields of each job, a pipelined round trip per batch), the broker queue's length, the leases and
the fleet-wide rate-limit counters the workers keep in Redis. Labels have bounded cardinality:
`batch` only for those `recent` batches (at most MAX_RECENT_BATCHES), every other label from a
fixed set. Per-batch figures are sums over the batch's jobs, so within a batch they only grow: they
are exported as counters (`rate()` works while a batch runs; the series ends when it leaves the
window). A scrape that cannot reach Redis answers `robot_fleet_store_up 0` and nothing else.

    robot_fleet_store_up                                     1 when Redis answered this scrape
    robot_fleet_jobs{batch,state}                            jobs by state
    robot_fleet_suites{batch,verdict}                        suites written, by verdict
    robot_fleet_batch_rejected_specs{batch}                  specs refused at enqueue
    robot_fleet_batch_created_timestamp_seconds{batch}
    robot_fleet_tokens_total{batch,role,kind}                writer/reviewer prompt, cached, completion
    robot_fleet_rounds_total{batch}, robot_fleet_tool_calls_total{batch}
    robot_fleet_job_seconds_total{batch}                     wall-clock time of the finished jobs
    robot_fleet_queue_messages{queue}                        messages waiting in the broker
    robot_fleet_jobs_leased                                  jobs held by a live worker, fleet-wide
    robot_fleet_rate_limit_waits_total{budget}               requests that waited for a budget
    robot_fleet_rate_limit_wait_seconds_total{budget}
    robot_fleet_paused{dependency}                           1 while the fleet is paused on an outage of
                                                             `model` or `mcp` (no attempt starts)
    robot_fleet_pauses_total{dependency}                     pauses so far
    robot_fleet_paused_seconds_total{dependency}             seconds paused so far (the current pause too)
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from worker.adapters.celery_config import QUEUE
from worker.adapters.circuits import Circuits, CircuitsView
from worker.adapters.ratelimit import LLM_REQUESTS, LLM_TOKENS, MCP_REQUESTS
from worker.adapters.store import Store
from worker.errors import StoreUnavailable
from worker.records import FleetCounts, JobRecord, JobState
from worker.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_PORT = 9808
DEFAULT_RECENT_BATCHES = 5
MAX_RECENT_BATCHES = 20
SCRAPE_TIMEOUT_S = 5.0
"""Below Prometheus's default scrape timeout (10 s): a Redis that does not answer is a 0, not a hang."""

VERDICTS = ("verified", "failing", "unverified", "unreviewed")
BUDGETS = (LLM_REQUESTS, LLM_TOKENS, MCP_REQUESTS)
TOKENS = {("writer", "prompt"): "prompt_tokens", ("writer", "cached"): "cached_tokens",
          ("writer", "completion"): "completion_tokens", ("reviewer", "prompt"): "review_prompt_tokens",
          ("reviewer", "cached"): "review_cached_tokens", ("reviewer", "completion"): "review_completion_tokens"}  # fmt: skip
"""(role, kind) -> job field. Cached tokens are the part of the prompt the provider served from its
cache (counted in `prompt` too, as providers report them)."""
JOB_FIELDS = ("verdict", "rounds", "tool_calls", "duration_s", *TOKENS.values())
"""What a scrape reads of each job."""


@dataclass
class BatchFigures:
    batch_id: str
    created_at: float = 0.0
    rejected: int = 0
    states: Counter[JobState] = field(default_factory=Counter)
    verdicts: Counter[str] = field(default_factory=Counter)
    tokens: Counter[tuple[str, str]] = field(default_factory=Counter)
    rounds: int = 0
    tool_calls: int = 0
    job_seconds: float = 0.0

    def add_job(self, job: JobRecord) -> None:
        self.states[job.state] += 1
        if job.state.has_suite:
            self.verdicts[job.shown_verdict] += 1
        for label, name in TOKENS.items():
            self.tokens[label] += _int(job.fields.get(name))
        self.rounds += job.rounds
        self.tool_calls += job.tool_calls
        self.job_seconds += job.duration_s


@dataclass
class FleetSnapshot:
    batches: list[BatchFigures]
    counts: FleetCounts
    fleet: CircuitsView


def _int(value: str | None) -> int:
    try:
        return int(float(value or 0))
    except ValueError:
        return 0


async def read_snapshot(store: Store, recent: int) -> FleetSnapshot:
    """One scrape's reads: the `recent` newest batches and the fleet-wide figures."""
    batch_ids = await store.batch_ids(limit=recent) if recent else []
    batches = []
    for record in await store.batches(batch_ids):
        figures = BatchFigures(record.batch_id, record.created_at, len(record.rejected))
        for job in await store.jobs(await store.job_ids(record.batch_id), only=JOB_FIELDS):
            figures.add_job(job)
        batches.append(figures)
    return FleetSnapshot(batches, await store.fleet_counts(QUEUE, BUDGETS), await Circuits(store).read())


def batch_families(batches: list[BatchFigures]) -> Iterator[Metric]:
    jobs = GaugeMetricFamily(
        "robot_fleet_jobs", "Jobs of a recent batch, by state.", labels=["batch", "state"]
    )
    suites = GaugeMetricFamily("robot_fleet_suites", "Suites a recent batch produced, by verdict.",
                               labels=["batch", "verdict"])  # fmt: skip
    rejected = GaugeMetricFamily("robot_fleet_batch_rejected_specs", "Specs refused when the batch was "
                                 "enqueued.", labels=["batch"])  # fmt: skip
    created = GaugeMetricFamily("robot_fleet_batch_created_timestamp_seconds", "When the batch was "
                                "enqueued (Unix time).", labels=["batch"])  # fmt: skip
    tokens = CounterMetricFamily("robot_fleet_tokens", "Model tokens of a batch's jobs.",
                                 labels=["batch", "role", "kind"])  # fmt: skip
    rounds = CounterMetricFamily("robot_fleet_rounds", "Model turns of a batch's jobs.", labels=["batch"])
    tools = CounterMetricFamily(
        "robot_fleet_tool_calls", "MCP tool calls of a batch's jobs.", labels=["batch"]
    )
    seconds = CounterMetricFamily("robot_fleet_job_seconds", "Wall-clock seconds of a batch's finished "
                                  "jobs, summed.", labels=["batch"])  # fmt: skip
    for batch in batches:
        name = batch.batch_id
        for state in JobState:
            jobs.add_metric([name, str(state)], batch.states[state])
        for verdict in VERDICTS:
            suites.add_metric([name, verdict], batch.verdicts[verdict])
        for role, kind in TOKENS:
            tokens.add_metric([name, role, kind], batch.tokens[role, kind])
        rejected.add_metric([name], batch.rejected)
        created.add_metric([name], batch.created_at)
        rounds.add_metric([name], batch.rounds)
        tools.add_metric([name], batch.tool_calls)
        seconds.add_metric([name], batch.job_seconds)
    yield from (jobs, suites, rejected, created, tokens, rounds, tools, seconds)


def fleet_families(snapshot: FleetSnapshot) -> Iterator[Metric]:
    queue = GaugeMetricFamily("robot_fleet_queue_messages", "Jobs waiting in the broker queue (not yet "
                              "received by a worker).", labels=["queue"])  # fmt: skip
    queue.add_metric([QUEUE], snapshot.counts.queue_messages)
    yield queue
    yield GaugeMetricFamily("robot_fleet_jobs_leased", "Jobs held by a live worker (running, or received "
                            "and waiting for a slot).", value=snapshot.counts.leased)  # fmt: skip
    waits = CounterMetricFamily("robot_fleet_rate_limit_waits", "Requests that waited for room in a "
                                "fleet-wide budget.", labels=["budget"])  # fmt: skip
    waited = CounterMetricFamily("robot_fleet_rate_limit_wait_seconds", "Seconds requests waited for a "
                                 "fleet-wide budget.", labels=["budget"])  # fmt: skip
    for budget in BUDGETS:
        waits.add_metric([budget], snapshot.counts.waits[budget])
        waited.add_metric([budget], snapshot.counts.waited_s[budget])
    yield from (waits, waited)
    yield from pause_families(snapshot.fleet)


def pause_families(fleet: CircuitsView) -> Iterator[Metric]:
    paused = GaugeMetricFamily("robot_fleet_paused", "1 while the fleet is paused on an outage of the "
                               "dependency: no attempt starts until it answers a probe.", labels=["dependency"])  # fmt: skip
    pauses = CounterMetricFamily("robot_fleet_pauses", "Times the fleet paused on an outage of the "
                                 "dependency.", labels=["dependency"])  # fmt: skip
    seconds = CounterMetricFamily("robot_fleet_paused_seconds", "Seconds the fleet was paused on the "
                                  "dependency (the current pause included).", labels=["dependency"])  # fmt: skip
    for circuit in fleet.circuits:
        name = str(circuit.dependency)
        now_paused = fleet.now - circuit.opened_at if circuit.paused else 0.0
        paused.add_metric([name], int(circuit.paused))
        pauses.add_metric([name], circuit.pauses)
        seconds.add_metric([name], circuit.paused_s + now_paused)
    yield from (paused, pauses, seconds)


class FleetCollector(Collector):
    """Reads the fleet at each scrape (prometheus_client calls `collect` on its server's thread)."""

    def __init__(self, redis_url: str, recent: int) -> None:
        self._redis_url = redis_url
        self._recent = max(0, min(recent, MAX_RECENT_BATCHES))

    def collect(self) -> Iterator[Metric]:
        try:
            snapshot = asyncio.run(self._read())
        except (StoreUnavailable, RedisError, OSError) as exc:
            logger.warning("metrics: Redis unavailable: %s", exc)
            yield GaugeMetricFamily("robot_fleet_store_up", "1 when this scrape could read Redis.", value=0)
            return
        yield GaugeMetricFamily("robot_fleet_store_up", "1 when this scrape could read Redis.", value=1)
        yield from batch_families(snapshot.batches)
        yield from fleet_families(snapshot)

    async def _read(self) -> FleetSnapshot:
        # a client of its own per scrape (each scrape has its own event loop), failing fast: the
        # store's usual half minute of riding over an outage would outlast the scrape
        client = aioredis.Redis.from_url(self._redis_url, decode_responses=True,
                                         socket_timeout=SCRAPE_TIMEOUT_S,
                                         socket_connect_timeout=SCRAPE_TIMEOUT_S)  # fmt: skip
        store = Store(client)
        try:
            return await read_snapshot(store, self._recent)
        finally:
            await store.close()


def serve(settings: Settings, *, port: int, address: str, recent: int) -> int:
    """Serve /metrics until interrupted."""
    from rich.console import Console

    registry = CollectorRegistry()
    registry.register(FleetCollector(settings.redis_url, recent))
    server, thread = start_http_server(port, addr=address, registry=registry)
    Console().print(f"fleet metrics on http://{address}:{port}/metrics", highlight=False)
    try:
        thread.join()
    except KeyboardInterrupt:
        server.shutdown()
    return 0
