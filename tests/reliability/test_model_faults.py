"""Issue 6, item 3: the model server answering 429 (with Retry-After) and 500 at random, and a 400.

A real fleet (private redis-server, db 7; a Celery worker process; the `run` CLI) against the
session's MCP server and this module's own scripted model with injected faults, so the faults never
reach the other tests. The openai client's own retries are on (OPENAI_MAX_RETRIES=3), as in
production; the model server records for every 429 whether the conversation's next request waited
out its Retry-After."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from producer.local_redis import LocalRedis
from tests.conftest import EXAMPLES, StandIn, start_stand_in, writer_env
from tests.fleet_harness import Fleet, fault_spec, spec_dir
from worker.agent.output import validate_suite

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

SPECS = sorted((EXAMPLES / "specs").glob("*.json"))[:12]
RATE_429, RATE_500, RETRY_AFTER_S = 0.3, 0.1, 1
OPENAI_MAX_RETRIES = 3
DB = 7
FAULTS = f"model: 429 (Retry-After {RETRY_AFTER_S} s) on {RATE_429:.0%} of calls, 500 on {RATE_500:.0%}"
INJECTED_400 = "Invalid request (injected by fake-llm)."  # offline/fake_llm/app.py FAULTS[400]


@pytest.fixture(scope="module")
def faulty_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    server = start_stand_in(
        "fake-llm-faults",
        ["fake-llm", "--rate-429", str(RATE_429), "--rate-500", str(RATE_500), "--retry-after",
         str(RETRY_AFTER_S), "--latency", "0.02", "--seed", "6", "--log-level", "warning"],
        tmp_path_factory.mktemp("llm-faults-logs"),
    )  # fmt: skip
    yield server
    server.child.stop()


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: LocalRedis,
    mcp_server: StandIn,
    faulty_llm: StandIn,
) -> Iterator[Fleet]:
    url = redis_server.url.rsplit("/", 1)[0] + f"/{DB}"
    env = writer_env(mcp_server, faulty_llm, REDIS_URL=url, OPENAI_MAX_RETRIES=str(OPENAI_MAX_RETRIES))
    fleet = Fleet(env, url, tmp_path_factory.mktemp("fleet-model-faults"))
    fleet.redis.flushdb()
    fleet.start_worker("worker-model-faults", "--pool", "threads", "--concurrency", "8")
    yield fleet
    fleet.stop_all()


def test_random_429_and_500_every_job_completes_and_retry_after_is_honoured(
    fleet: Fleet, faulty_llm: StandIn, tmp_path: Path, report: Callable[..., None]
) -> None:
    faulty_llm.reset()
    out = tmp_path / "out"
    specs = spec_dir(tmp_path, SPECS)
    done = fleet.cli("run", str(specs), "--batch", "t-model-faults", "--output-dir", str(out), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    jobs = fleet.jobs(fleet.batch_of(done.stdout))
    assert len(jobs) == len(SPECS) == 12
    assert {job["state"] for job in jobs} == {"collected"}, [(j["spec_id"], j["state"]) for j in jobs]
    for job in jobs:
        assert validate_suite((out / job["target_path"]).read_text(encoding="utf-8")).ok, job["target_path"]

    stats: dict[str, Any] = faulty_llm.stats()
    by_status = stats["by_status"]
    assert stats["faults_injected"] > 0 and by_status.get("429", 0) > 0 and by_status.get("500", 0) > 0
    assert stats["faults_injected"] == by_status["429"] + by_status["500"]
    retry_after = stats["retry_after"]
    assert retry_after["followed"] > 0, retry_after
    assert retry_after["violated"] == 0, retry_after
    assert retry_after["min_margin_s"] >= -0.05
    celery_retries = sum(int(job["attempt"]) - 1 for job in jobs)
    report(3, FAULTS, jobs=len(jobs), collected=len(jobs), requests=stats["requests"],
           http_429=by_status["429"], http_500=by_status["500"], celery_retries=celery_retries,
           retry_after_followed=retry_after["followed"], retry_after_violated=retry_after["violated"],
           min_margin_s=retry_after["min_margin_s"])  # fmt: skip


def test_a_400_fails_the_job_permanently_after_one_attempt_with_the_providers_message(
    fleet: Fleet, faulty_llm: StandIn, tmp_path: Path, report: Callable[..., None]
) -> None:
    faulty_llm.reset()
    directory = spec_dir(tmp_path, [], {"P-1.json": fault_spec("P-1", fail_first=9, fail_status=400)})
    done = fleet.cli("run", str(directory), "--batch", "t-model-400", "--output-dir", str(tmp_path / "out"))
    assert done.returncode == 1, done.stdout + done.stderr
    job = fleet.job(f"{fleet.batch_of(done.stdout)}:P-1")
    assert (job["state"], job["attempt"], job["error_kind"]) == ("failed", "1", "model_rejected")
    assert INJECTED_400 in job["error_message"] and "(400)" in job["error_message"], job["error_message"]
    assert "model_rejected" in done.stdout
    stats = faulty_llm.stats()
    [conversation] = [c for c in stats["conversations"].values() if c["spec_id"] == "P-1"]
    assert conversation["requests"] == 1, (
        "neither the openai client nor Celery sent the rejected request again"
    )
    assert stats["by_status"] == {"400": 1}
    report(3, "model: 400 on every call of one spec", jobs=1, attempts=1, model_requests=1,
           error_kind=job["error_kind"], error_message=json.dumps(job["error_message"]))  # fmt: skip
