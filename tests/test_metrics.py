"""`robot-fleet metrics` scraped over HTTP while a real fleet runs a batch under a fleet-wide model
budget: jobs by state and verdict, tokens, rounds, tool calls, rate-limit waits and queue depth, with
a batch label only for the newest batches."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from producer.local_redis import LocalRedis, free_port
from producer.procs import robot_fleet_command, start_child
from tests.conftest import EXAMPLES, StandIn, writer_env
from tests.fleet_harness import Fleet, spec_dir
from worker import keys
from worker.adapters.store import Store
from worker.records import BatchRecord, NewJob

pytestmark = pytest.mark.integration

DB = 3
SPECS = sorted((EXAMPLES / "specs").glob("*.json"))[2:5]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, redis_server: LocalRedis, mcp_server: StandIn, fake_llm: StandIn
) -> Iterator[Fleet]:
    """Two job slots for three jobs (one waits in the queue), behind a fleet-wide model budget small
    enough that requests wait for it: 12 requests per 1 s window (stored as 2 s)."""
    url = redis_server.url.rsplit("/", 1)[0] + f"/{DB}"
    # the scripted writer reads with its tools (nothing taken from the prompt): tool calls to count
    env = writer_env(mcp_server, fake_llm, knobs="upfront=ignore&tool_calls=parallel", REDIS_URL=url,
                     OPENAI_MAX_RETRIES="0", FLEET_LLM_RPM="12", FLEET_RATE_WINDOW_S="1")  # fmt: skip
    fleet = Fleet(env, url, tmp_path_factory.mktemp("fleet-metrics"))
    fleet.redis.flushdb()
    fleet.start_worker("worker-metrics", "--pool", "threads", "--concurrency", "2")
    yield fleet
    fleet.stop_all()


def scrape(base: str) -> tuple[str, Samples]:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, tuple(sorted(labels.items()))]


def labelled(samples: Samples, name: str, label: str) -> set[str]:
    return {dict(key)[label] for metric, key in samples if metric == name}


async def record_old_batches(url: str, names: list[str]) -> None:
    """Older batches, recorded but never sent to a worker (the exporter only reads them)."""
    store = Store.from_url(url)
    try:
        for age, name in enumerate(names):
            job = NewJob(f"{name}:OLD-1", name, "OLD-1", "OLD-1.json", "t/OLD-1.robot", "0" * 64, "{}")
            await store.create_batch(BatchRecord(name, created_at=time.time() - 3600 + age), [job])
            # as if their messages waited on another fleet's queue: this fleet's sweep leaves them be
            await store.redis.zrem(keys.dispatched(), job.job_id)
    finally:
        await store.close()


def test_metrics_scraped_during_a_batch_count_its_jobs_tokens_waits_and_queue(
    fleet: Fleet, tmp_path: Path
) -> None:
    asyncio.run(record_old_batches(fleet.env["REDIS_URL"], ["t-old-1", "t-old-2"]))
    port = free_port()
    exporter = start_child("metrics", robot_fleet_command("metrics", "--port", str(port), "--batches", "2"),
                           fleet.log_dir, env=fleet.env, ready_port=("127.0.0.1", port))  # fmt: skip
    fleet.children.append(exporter)
    base = f"http://127.0.0.1:{port}"
    done = fleet.cli("enqueue", str(spec_dir(tmp_path, SPECS)), "--batch", "t-metrics",
                     "--output-dir", str(tmp_path / "out"))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    batch_id = done.stdout.strip().splitlines()[-1]

    # during the batch: a job waits in the broker queue while the two slots are busy
    seen_queued, seen_running = 0.0, 0.0
    deadline = time.monotonic() + 90
    while {job["state"] for job in fleet.jobs(batch_id)} != {"succeeded"}:
        _, samples = scrape(base)
        seen_queued = max(seen_queued, value(samples, "robot_fleet_queue_messages", queue="robot-fleet"))
        seen_running = max(seen_running, value(samples, "robot_fleet_jobs", batch=batch_id, state="running"))
        assert time.monotonic() < deadline, fleet.jobs(batch_id)
        time.sleep(0.3)
    assert seen_queued >= 1 and seen_running >= 1, (seen_queued, seen_running)
    assert fleet.cli("collect", "--batch", batch_id).returncode == 0

    text, samples = scrape(base)
    assert value(samples, "robot_fleet_store_up") == 1
    assert labelled(samples, "robot_fleet_jobs", "batch") == {batch_id, "t-old-2"}, "the two newest only"
    assert value(samples, "robot_fleet_jobs", batch=batch_id, state="collected") == len(SPECS)
    assert value(samples, "robot_fleet_jobs", batch="t-old-2", state="queued") == 1
    assert value(samples, "robot_fleet_suites", batch=batch_id, verdict="verified") == len(SPECS)
    jobs = fleet.jobs(batch_id)

    def total(field: str) -> int:
        return sum(int(job[field]) for job in jobs)

    for (role, kind), field in {("writer", "prompt"): "prompt_tokens", ("writer", "cached"): "cached_tokens",
                                ("writer", "completion"): "completion_tokens",
                                ("reviewer", "prompt"): "review_prompt_tokens"}.items():  # fmt: skip
        tokens = value(samples, "robot_fleet_tokens_total", batch=batch_id, role=role, kind=kind)
        assert tokens == total(field) > 0, (role, kind)
    assert value(samples, "robot_fleet_rounds_total", batch=batch_id) == total("rounds") > 0
    assert value(samples, "robot_fleet_tool_calls_total", batch=batch_id) == total("tool_calls") > 0
    assert value(samples, "robot_fleet_rate_limit_waits_total", budget="llm-requests") >= 1
    assert value(samples, "robot_fleet_rate_limit_wait_seconds_total", budget="llm-requests") > 0
    assert value(samples, "robot_fleet_rate_limit_waits_total", budget="mcp-requests") == 0
    assert value(samples, "robot_fleet_queue_messages", queue="robot-fleet") == 0
    assert value(samples, "robot_fleet_jobs_leased") == 0
    assert fleet.env["OPENAI_API_KEY"] not in text
    print(f"\nscrape excerpt:\n{excerpt(text, batch_id)}")


def excerpt(text: str, batch_id: str) -> str:
    wanted = ("robot_fleet_store_up", f'batch="{batch_id}",state="collected"', 'verdict="verified"',
              'role="writer"', "robot_fleet_rounds_total{", "robot_fleet_rate_limit_wait", "robot_fleet_queue")  # fmt: skip
    return "\n".join(
        line for line in text.splitlines() if not line.startswith("#") and any(w in line for w in wanted)
    )


def test_metrics_answer_store_down_when_redis_does_not(tmp_path: Path) -> None:
    port, dead = free_port(), free_port()
    exporter = start_child("metrics-down", robot_fleet_command("metrics", "--port", str(port)), tmp_path,
                           env={"REDIS_URL": f"redis://127.0.0.1:{dead}/0"}, ready_port=("127.0.0.1", port))  # fmt: skip
    try:
        started = time.monotonic()
        text, samples = scrape(f"http://127.0.0.1:{port}")
        assert value(samples, "robot_fleet_store_up") == 0
        assert "robot_fleet_jobs" not in text
        assert time.monotonic() - started < 10, "a scrape fails fast instead of riding over the outage"
    finally:
        exporter.stop()
