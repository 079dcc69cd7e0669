"""Issue 14, durable rounds: a worker SIGKILLed while its jobs are at round 3 to 5 of 6. With the
journal, the next attempt replays the completed rounds and asks the model again only for the round
in flight; without it, every round is paid again. Requests and tokens are counted at the scripted
model (its own instance, reset between runs); the files equal those of an uninterrupted run."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from producer.local_redis import LocalRedis
from tests.conftest import EXAMPLES, StandIn, start_stand_in, writer_env
from tests.fleet_harness import Fleet, spec_dir
from worker import keys

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

# the scripted writer reads the repository with tools (nothing taken from the prompt), several files
# a turn: these four example specs take 6 rounds each, then one review; 0.4 s a model answer
SPECS = [EXAMPLES / "specs" / f"SHOP-{n}_spec.json" for n in (137, 138, 139, 140)]
KNOBS = "upfront=ignore&tool_calls=parallel&latency=0.4"
ROUNDS = 6
LEASE_S = 4


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    server = start_stand_in("fake-llm-resume", ["fake-llm", "--log-level", "warning"],
                            tmp_path_factory.mktemp("llm-resume"))  # fmt: skip
    yield server
    server.child.stop()


def spent(model: StandIn) -> dict[str, int]:
    stats = model.stats()
    return {"requests": stats["requests"], "tokens": stats["prompt_tokens"] + stats["completion_tokens"]}


def in_flight(client: redis.Redis, job_id: str) -> int:
    """The round the job's first attempt is in (its log's round events so far)."""
    return sum(1 for _, entry in client.xrange(keys.job_log(job_id)) if entry.get("k") == "round")


def batch_run(fleet: Fleet, model: StandIn, tmp_path: Path, name: str, kill_at: tuple[int, int] | None) -> tuple[dict[str, int], Path, list[dict[str, str]]]:  # fmt: skip
    """One batch of the four specs on a fresh worker; with `kill_at` (lo, hi), the worker is killed
    once every job's round in flight is between lo and hi, and a new one started."""
    model.reset()
    out = tmp_path / f"out-{name}"
    worker = fleet.start_worker(f"worker-{name}", "--pool", "threads", "--concurrency", "4")
    before = int(fleet.redis.zcard(keys.batches()))
    run = fleet.start(f"run-{name}", "run", str(spec_dir(tmp_path, SPECS)), "--batch", f"t-{name}",
                      "--output-dir", str(out))  # fmt: skip
    batch_id = fleet.latest_batch(count=before + 1)
    if kill_at is not None:
        low, high = kill_at
        job_ids = [f"{batch_id}:{path.name.removesuffix('_spec.json')}" for path in SPECS]

        seen: list[object] = []

        def in_flight_between() -> bool:
            rounds = [in_flight(fleet.redis, job_id) for job_id in job_ids]
            states = [fleet.job(job_id).get("state") for job_id in job_ids]
            seen[:] = [rounds, states]
            return all(low <= r <= high for r in rounds) and states == ["running"] * len(job_ids)

        deadline = time.monotonic() + 60
        while not in_flight_between():
            assert time.monotonic() < deadline, f"every job at round {low}-{high}: {seen}"
            time.sleep(0.05)
        worker.signal(signal.SIGKILL)
        worker.process.wait()
        worker = fleet.start_worker(f"worker-{name}-2", "--pool", "threads", "--concurrency", "4")
    assert run.process.wait(timeout=120) == 0, run.log_text()[-3000:]
    jobs = fleet.jobs(batch_id)
    worker.stop()
    return spent(model), out, jobs


def files(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): p.read_text(encoding="utf-8") for p in out.rglob("*.robot")}


@pytest.fixture
def fleet_on(redis_server: LocalRedis, mcp_server: StandIn, model: StandIn, tmp_path: Path) -> Iterator[Callable[..., Fleet]]:  # fmt: skip
    fleets: list[Fleet] = []

    def make(**env: str) -> Fleet:
        url = redis_server.url.rsplit("/", 1)[0] + "/12"
        fleet = Fleet(writer_env(mcp_server, model, knobs=KNOBS, REDIS_URL=url, OPENAI_MAX_RETRIES="0",
                                 WORKER_LEASE_S=str(LEASE_S), **env), url, tmp_path / f"logs-{len(fleets)}")  # fmt: skip
        fleets.append(fleet)
        return fleet

    yield make
    for fleet in fleets:
        fleet.stop_all()


def test_a_worker_killed_at_round_3_to_5_of_6_costs_one_round_per_job_with_the_journal(
    fleet_on: Callable[..., Fleet], model: StandIn, tmp_path: Path, report: Callable[..., None]
) -> None:
    fleet = fleet_on()
    fleet.redis.flushdb()
    clean, clean_out, clean_jobs = batch_run(fleet, model, tmp_path, "clean", None)
    assert {job["rounds"] for job in clean_jobs} == {str(ROUNDS)}, [job["rounds"] for job in clean_jobs]
    assert clean["requests"] == len(SPECS) * (ROUNDS + 1), clean  # six rounds and one review each

    journal, journal_out, jobs = batch_run(fleet, model, tmp_path, "journal", (3, 5))
    respent = journal["requests"] - clean["requests"]
    assert 0 <= respent <= len(SPECS), f"{respent} requests re-spent: at most the round in flight per job"
    assert files(journal_out) == files(clean_out), "the files of an uninterrupted run"
    assert all(int(job["resumed_from_round"]) >= 2 for job in jobs), [
        job["resumed_from_round"] for job in jobs
    ]
    assert all(int(job["resume_saved_tokens"]) > 0 and job["attempt"] == "2" for job in jobs)
    status = fleet.cli("status", jobs[0]["batch_id"], "--json")
    assert '"resumed_from_round"' in status.stdout and '"resume_saved_tokens"' in status.stdout
    logs = fleet.cli("logs", jobs[0]["job_id"])
    assert "(replayed from the journal)" in logs.stdout and "resumed after round" in logs.stdout
    assert not any(fleet.redis.exists(keys.job_journal(job["job_id"])) for job in jobs), "dropped at the end"

    fleet_off = fleet_on(WRITER_JOURNAL="false")
    without, without_out, _ = batch_run(fleet_off, model, tmp_path, "no-journal", (3, 5))
    respent_without = without["requests"] - clean["requests"]
    assert respent_without >= 2 * len(SPECS), "without the journal every completed round is paid again"
    assert files(without_out) == files(clean_out)
    report(14, f"worker SIGKILLed with its {len(SPECS)} jobs at round 3-5 of {ROUNDS}, then restarted",
           requests_uninterrupted=clean["requests"], requests_respent_with_journal=respent,
           requests_respent_without=respent_without, tokens_uninterrupted=clean["tokens"],
           tokens_respent_with_journal=journal["tokens"] - clean["tokens"],
           tokens_respent_without=without["tokens"] - clean["tokens"], files_equal=1)  # fmt: skip
