"""Issue 6, items 1 and 10: worker processes killed with SIGKILL mid-batch, and one task delivered
twice. Real worker processes, a private redis-server, both stand-ins over HTTP."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from producer.local_redis import LocalRedis
from producer.procs import Child
from tests.conftest import EXAMPLES, StandIn, writer_env
from tests.fleet_harness import Fleet, spec_dir, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

SPECS = sorted((EXAMPLES / "specs").glob("*.json"))
LEASE_S = 4


@pytest.fixture
def make_fleet(
    tmp_path: Path, redis_server: LocalRedis, mcp_server: StandIn, fake_llm: StandIn
) -> Iterator[Callable[..., Fleet]]:
    fleets: list[Fleet] = []

    def make(db: int, knobs: str, **env: str) -> Fleet:
        url = redis_server.url.rsplit("/", 1)[0] + f"/{db}"
        settings = writer_env(mcp_server, fake_llm, knobs=knobs, REDIS_URL=url, OPENAI_MAX_RETRIES="0",
                              WORKER_LEASE_S=str(LEASE_S), **env)  # fmt: skip
        fleet = Fleet(settings, url, tmp_path / f"logs-{db}")
        fleet.redis.flushdb()
        fleets.append(fleet)
        return fleet

    yield make
    for fleet in fleets:
        fleet.stop_all()


def worker_name(worker: Child) -> str:
    import socket

    return f"{socket.gethostname()}:{worker.process.pid}"


def running_on(fleet: Fleet, batch_id: str, worker: Child) -> int:
    name = worker_name(worker)
    return sum(job.get("state") == "running" and job.get("worker") == name for job in fleet.jobs(batch_id))


def test_sigkilled_workers_lose_no_job_and_write_each_file_once(
    make_fleet: Callable[..., Fleet], tmp_path: Path, report: Callable[..., None]
) -> None:
    fleet = make_fleet(10, "latency=0.25")
    first = fleet.start_worker("worker-a", "--pool", "threads", "--concurrency", "4")
    second = fleet.start_worker("worker-b", "--pool", "threads", "--concurrency", "4")
    out = tmp_path / "out"
    run = fleet.start("run-1", "run", str(EXAMPLES / "specs"), "--batch", "t-kill", "--output-dir", str(out))
    batch_id = fleet.latest_batch()
    wait_until(lambda: running_on(fleet, batch_id, first) >= 2, 60, "worker A runs jobs")
    lost = running_on(fleet, batch_id, first)
    first.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    assert run.process.wait(timeout=120) == 0, run.log_text()[-3000:]
    recovered_s = time.monotonic() - killed_at
    jobs = fleet.assert_written_once(batch_id, out, len(SPECS))
    requeued = sum(int(job.get("requeued", 0)) for job in jobs)
    assert requeued >= lost, "the killed worker's running jobs were sent again by the lease sweep"
    assert all(job["worker"] == worker_name(second) for job in jobs if int(job.get("requeued", 0)))

    # the only worker killed, then a new one started: the lease brings its jobs back
    out_2 = tmp_path / "out-2"
    subset = spec_dir(tmp_path, SPECS[:8])
    run_2 = fleet.start("run-2", "run", str(subset), "--batch", "t-only", "--output-dir", str(out_2))
    batch_2 = fleet.latest_batch(count=2)
    wait_until(lambda: running_on(fleet, batch_2, second) >= 2, 60, "worker B runs jobs")
    lost_2 = running_on(fleet, batch_2, second)
    second.signal(signal.SIGKILL)
    second.process.wait()
    restarted = fleet.start_worker("worker-c", "--pool", "threads", "--concurrency", "4")
    assert run_2.process.wait(timeout=120) == 0, run_2.log_text()[-3000:]
    jobs_2 = fleet.assert_written_once(batch_2, out_2, 8)
    requeued_2 = sum(int(job.get("requeued", 0)) for job in jobs_2)
    assert requeued_2 >= lost_2
    assert all(job["worker"] == worker_name(restarted) for job in jobs_2 if int(job.get("requeued", 0)))
    report(1, f"SIGKILL of 1 of 2 workers mid-batch ({len(SPECS)} specs), then of the only worker, restarted",
           jobs=len(SPECS) + 8, files_written_once=len(SPECS) + 8, partial_files=0,
           running_jobs_lost=lost + lost_2, resent_by_lease=requeued + requeued_2,
           batch_done_after_kill_s=round(recovered_s, 1), lease_s=LEASE_S)  # fmt: skip


def test_a_task_delivered_twice_yields_one_result_and_one_file(
    make_fleet: Callable[..., Fleet], tmp_path: Path, report: Callable[..., None]
) -> None:
    # a visibility timeout far below the job's run time: Redis itself delivers the running task again
    fleet = make_fleet(11, "latency=1.5", CELERY_VISIBILITY_TIMEOUT_S="1")
    workers = [fleet.start_worker(f"worker-{n}", "--pool", "threads", "--concurrency", "2") for n in range(2)]
    out = tmp_path / "out"
    specs = spec_dir(tmp_path, SPECS[:2])
    done = fleet.cli("run", str(specs), "--batch", "t-dup", "--output-dir", str(out), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    batch_id = fleet.batch_of(done.stdout)
    jobs = fleet.assert_written_once(batch_id, out, 2)
    # and once more by hand, after the job finished (a late redelivery)
    from worker.adapters.celery_config import create_app, send_job
    from worker.settings import Settings

    app = create_app(Settings(redis_url=fleet.env["REDIS_URL"]))
    send_job(app, jobs[0]["job_id"], jobs[0]["spec_id"])
    logs = lambda: "".join(worker.log_text() for worker in workers)  # noqa: E731
    wait_until(
        lambda: "already collected, duplicate delivery ignored" in logs(), 30, "late duplicate dropped"
    )
    dropped_running = logs().count("already running, duplicate delivery ignored")
    assert dropped_running >= 1, "Redis redelivered a running task at least once"
    assert all(job["attempt"] == "1" for job in fleet.jobs(batch_id))
    fleet.assert_written_once(batch_id, out, 2)
    report(10, "one task delivered twice: by Redis (visibility timeout 1 s < job) and again after it finished",
           jobs=2, deliveries_dropped=dropped_running + 1, attempts_per_job=1, results=2, files=2)  # fmt: skip


def test_a_worker_killed_between_delivery_and_receipt_costs_its_job_two_leases_at_most(
    make_fleet: Callable[..., Fleet], tmp_path: Path, report: Callable[..., None]
) -> None:
    # the failpoint kills the worker the moment Celery hands it the message, before it says so: the
    # message sits in Redis's unacked set until the visibility timeout (50 min by default)
    fleet = make_fleet(13, "")
    dying = fleet.start_worker("worker-dying", "--pool", "threads", "--concurrency", "1",
                               env={"ROBOT_FLEET_FAILPOINT": "worker.received"})  # fmt: skip
    specs = spec_dir(tmp_path, SPECS[:3])
    done = fleet.cli("enqueue", str(specs), "--batch", "t-receipt", "--output-dir", str(tmp_path / "out"))
    assert done.returncode == 0, done.stdout + done.stderr
    batch_id = done.stdout.strip().splitlines()[-1]
    assert dying.process.wait(timeout=30) != 0, "the worker died at its first receipt"
    killed_at = time.time()
    fleet.start_worker("worker-b", "--pool", "threads", "--concurrency", "4")
    jobs = fleet.wait_states(batch_id, {"succeeded"}, timeout=60)
    [lost] = [job for job in jobs if job.get("resent") == "1"]
    assert all(job.get("requeued", "0") == "0" for job in jobs), "the dead worker never leased it"
    waited_s = float(lost["finished_at"]) - killed_at - float(lost["duration_s"])
    assert waited_s <= 2 * LEASE_S, f"{lost['spec_id']} waited {waited_s:.1f}s to run again"
    assert all(job["attempt"] == "1" for job in jobs)
    report(11, "worker SIGKILLed between taking a job's message and receiving it (before its lease)",
           jobs=3, lost_in_delivery=1, resent=1, job_waited_s=round(waited_s, 1), lease_s=LEASE_S)  # fmt: skip


def test_a_broker_failure_between_recording_a_batch_and_sending_it_loses_no_job(
    make_fleet: Callable[..., Fleet], tmp_path: Path, report: Callable[..., None]
) -> None:
    fleet = make_fleet(14, "")
    fleet.start_worker("worker-a", "--pool", "threads", "--concurrency", "4")
    out = tmp_path / "out"
    specs = spec_dir(tmp_path, SPECS[:4])
    started = time.monotonic()
    # every message this `run` sends is refused by the broker, after the batch is recorded
    done = fleet.cli("run", str(specs), "--batch", "t-broker", "--output-dir", str(out), timeout=120,
                     env={"ROBOT_FLEET_FAILPOINT": "broker.send:raise"})  # fmt: skip
    took_s = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the broker refused 4 of their messages" in " ".join(done.stdout.split())
    jobs = fleet.assert_written_once(fleet.batch_of(done.stdout), out, 4)
    assert [job.get("resent") for job in jobs] == ["1"] * 4, "each sent by a worker's sweep, once"
    assert took_s <= 2 * LEASE_S + 15, took_s
    report(12, "broker refuses every message of a batch after it was recorded (enqueue's sends fail)",
           jobs=4, messages_refused=4, resent_by_sweep=4, collected=4, batch_s=round(took_s, 1),
           lease_s=LEASE_S)  # fmt: skip
