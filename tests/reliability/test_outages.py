"""Issue 6, items 2 and 4: the MCP server down for 20 s mid-batch, and Redis restarted mid-batch
(AOF on, as in the compose file); issue 16, item 5: Redis away for a long outage (a minute with
RELIABILITY_LONG=1) under `run`. Real worker, `run` as a user runs it, both stand-ins over HTTP."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from producer.local_redis import LocalRedis, free_port
from producer.procs import Child, port_open, robot_fleet_command, start_child
from tests.conftest import EXAMPLES, StandIn, writer_env
from tests.fleet_harness import Fleet, wait_until
from tests.reliability.lengths import LONG, REDIS_OUTAGE_S
from worker.adapters.celery_config import RECONNECT_LOG_EVERY_S, RECONNECT_MAX_S, create_app
from worker.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

SPECS = sorted((EXAMPLES / "specs").glob("*.json"))
MCP_DOWN_S = 20.0


def start_mcp(port: int, log_dir: Path) -> Child:
    command = robot_fleet_command("mcp-serve", "--repo", str(EXAMPLES / "framework"), "--project-id", "42",
                                  "--log-level", "WARNING", "--port", str(port))  # fmt: skip
    return start_child(f"mcp-{time.monotonic_ns()}", command, log_dir, ready_port=("127.0.0.1", port))


def count_state(fleet: Fleet, batch_id: str, state: str) -> int:
    return sum(job.get("state") == state for job in fleet.jobs(batch_id))


def test_mcp_server_down_for_20_s_mid_batch(
    tmp_path: Path, redis_server: LocalRedis, fake_llm: StandIn, report: Callable[..., None]
) -> None:
    port = free_port()
    mcp = start_mcp(port, tmp_path)
    url = redis_server.url.rsplit("/", 1)[0] + "/13"
    env = writer_env(StandIn(mcp, port), fake_llm, knobs="latency=0.2", REDIS_URL=url, OPENAI_MAX_RETRIES="0")
    fleet = Fleet(env, url, tmp_path / "logs")
    fleet.redis.flushdb()
    try:
        worker = fleet.start_worker("worker", "--pool", "threads", "--concurrency", "4")
        out = tmp_path / "out"
        run = fleet.start(
            "run", "run", str(EXAMPLES / "specs"), "--batch", "t-mcp-down", "--output-dir", str(out)
        )
        batch_id = fleet.latest_batch()
        wait_until(lambda: count_state(fleet, batch_id, "collected") >= 3, 60, "first files collected")
        mcp.stop()
        down_at = time.monotonic()
        time.sleep(MCP_DOWN_S)
        assert not port_open("127.0.0.1", port)
        mcp = start_mcp(port, tmp_path)
        assert run.process.wait(timeout=180) == 0, run.log_text()[-3000:]
        back_after_s = time.monotonic() - down_at - MCP_DOWN_S
        jobs = fleet.assert_written_once(batch_id, out, len(SPECS))
        retried = sum(int(job["attempt"]) - 1 for job in jobs)
        worker_log = worker.log_text()
        assert "MCP session to" in worker_log and "reconnecting" in worker_log, "the session saw the outage"
        assert "failed (" not in worker_log, "no attempt failed permanently"
        report(2, f"MCP server down {MCP_DOWN_S:.0f} s mid-batch ({len(SPECS)} specs), then back",
               jobs=len(jobs), collected=len(jobs), failed=0, attempts_retried=retried,
               batch_done_after_mcp_back_s=round(back_after_s, 1))  # fmt: skip
    finally:
        fleet.stop_all()
        mcp.stop()


def test_redis_restarted_mid_batch_with_aof(
    tmp_path: Path, mcp_server: StandIn, fake_llm: StandIn, report: Callable[..., None]
) -> None:
    server = LocalRedis(directory=tmp_path / "redis-aof", appendonly=True).start()
    env = writer_env(mcp_server, fake_llm, knobs="latency=0.2", REDIS_URL=server.url, OPENAI_MAX_RETRIES="0",
                     WORKER_LEASE_S="6")  # fmt: skip
    fleet = Fleet(env, server.url, tmp_path / "logs")
    try:
        fleet.start_worker("worker", "--pool", "threads", "--concurrency", "4")
        out = tmp_path / "out"
        run = fleet.start(
            "run", "run", str(EXAMPLES / "specs"), "--batch", "t-redis", "--output-dir", str(out)
        )
        batch_id = fleet.latest_batch()
        wait_until(lambda: count_state(fleet, batch_id, "collected") >= 3, 60, "first files collected")
        running = count_state(fleet, batch_id, "running")
        server.stop()  # SIGTERM: Redis writes its AOF and exits, as `docker compose restart redis` does
        time.sleep(3.0)
        server.start()
        restarted_at = time.monotonic()
        assert run.process.wait(timeout=180) == 0, run.log_text()[-3000:]
        done_after_s = time.monotonic() - restarted_at
        jobs = fleet.assert_written_once(batch_id, out, len(SPECS))
        files = sorted(out.rglob("*.robot"))
        assert len(files) == len(SPECS), "nothing duplicated: one file per spec"
        report(4, f"Redis (AOF) stopped for 3 s and restarted mid-batch ({len(SPECS)} specs, {running} running)",
               jobs=len(jobs), collected=len(jobs), lost=0, duplicated=0,
               attempts_retried=sum(int(job["attempt"]) - 1 for job in jobs),
               resent_by_lease=sum(int(job.get("requeued", 0)) for job in jobs),
               batch_done_after_restart_s=round(done_after_s, 1))  # fmt: skip
    finally:
        fleet.stop_all()
        server.stop()
        shutil.rmtree(tmp_path / "redis-aof", ignore_errors=True)


RESUME_BOUND_S = 8.0
"""After Redis is back, a worker claims its next job within this (kombu's default backoff left the
workers idle ~15 s after a minute's outage)."""


def test_redis_down_for_a_long_outage_under_run(
    tmp_path: Path, mcp_server: StandIn, fake_llm: StandIn, report: Callable[..., None]
) -> None:
    server = LocalRedis(directory=tmp_path / "redis-long", appendonly=True).start()
    env = writer_env(mcp_server, fake_llm, knobs="latency=0.5", REDIS_URL=server.url, OPENAI_MAX_RETRIES="0",
                     WORKER_LEASE_S="6")  # fmt: skip
    fleet = Fleet(env, server.url, tmp_path / "logs")
    try:
        worker = fleet.start_worker("worker", "--pool", "threads", "--concurrency", "4")
        out = tmp_path / "out"
        run = fleet.start(
            "run", "run", str(EXAMPLES / "specs"), "--batch", "t-redis-long", "--output-dir", str(out)
        )
        batch_id = fleet.latest_batch()
        wait_until(lambda: count_state(fleet, batch_id, "collected") >= 3, 60, "first files collected")
        before = fleet.jobs(batch_id)
        running = sum(job.get("state") == "running" for job in before)
        waiting = sum(job.get("state") in ("queued", "retrying") for job in before)
        assert waiting >= 1, "jobs left to claim once Redis is back"
        run_log_at_stop = len(run.log_text())
        server.stop()  # SIGTERM: Redis writes its AOF and exits
        down_wall = time.time()
        time.sleep(REDIS_OUTAGE_S)
        assert run.alive(), f"run died {REDIS_OUTAGE_S:.0f} s into the outage: {run.log_text()[-2000:]}"
        printed_in_outage = run.log_text()[run_log_at_stop:]
        server.start()
        up_wall, up_at = time.time(), time.monotonic()
        assert run.process.wait(timeout=240) == 0, run.log_text()[-3000:]
        done_after_s = time.monotonic() - up_at
        jobs = fleet.assert_written_once(batch_id, out, len(SPECS))
        assert len(sorted(out.rglob("*.robot"))) == len(SPECS), "nothing duplicated: one file per spec"
        claims_after = [
            float(job["started_at"]) - up_wall for job in jobs if float(job["started_at"]) > up_wall
        ]
        assert claims_after, "some job was claimed after Redis came back"
        first_claim_s = min(claims_after)
        assert first_claim_s < RESUME_BOUND_S, f"first claim {first_claim_s:.1f} s after Redis came back"
        spanned = []
        for job in jobs:  # the job's own clock: first claim to finish, the outage included
            first, finished = float(job["first_started_at"]), float(job["finished_at"])
            assert abs(float(job["duration_s"]) - (finished - first)) < 1.0, job
            in_outage = min(finished, up_wall) - max(first, down_wall)
            if in_outage > 0:
                spanned.append((float(job["duration_s"]), in_outage))
                assert float(job["duration_s"]) >= in_outage, (job["spec_id"], job["duration_s"], in_outage)
        assert spanned, "some job ran across the outage"
        log = worker.log_text()
        assert "Traceback" not in log and "raised unexpected" not in log, log[-4000:]
        assert "CPendingDeprecationWarning" not in log, (
            "no six-line warning of Celery's at the connection loss"
        )
        away_lines = log.count("consumer: Cannot connect") + log.count("the broker is still away")
        assert away_lines <= 2 + REDIS_OUTAGE_S / RECONNECT_LOG_EVERY_S, (
            f"{away_lines} lines: once, then every 30 s"
        )
        run_log = run.log_text()
        assert "Traceback" not in run_log and "error (" not in run_log, run_log[-3000:]
        said = " ".join(printed_in_outage.split())
        assert said.count("Redis has not answered for 5s: waiting for it") == 1, said
        assert " ".join(run_log.split()).count("Redis answers again (silent") == 1, run_log[-3000:]
        report(16, f"Redis (AOF) down {REDIS_OUTAGE_S:.0f} s under `run` ({len(SPECS)} specs, {running} running, "
               f"{waiting} waiting)", jobs=len(jobs), collected=len(jobs), lost=0, duplicated=0,
               run_exit=0, run_lines_in_outage=len(printed_in_outage.strip().splitlines()),
               first_claim_after_back_s=round(first_claim_s, 1),
               jobs_across_outage=len(spanned), longest_across_s=round(max(d for d, _ in spanned), 1),
               attempts_retried=sum(int(job["attempt"]) - 1 for job in jobs),
               resent_by_lease=sum(int(job.get("requeued", 0)) for job in jobs),
               retries_counted=sum(int(job.get("retries", 0)) for job in jobs),
               batch_done_after_back_s=round(done_after_s, 1), worker_tracebacks=0,
               worker_lines_broker_away=away_lines)  # fmt: skip
    finally:
        fleet.stop_all()
        server.stop()
        shutil.rmtree(tmp_path / "redis-long", ignore_errors=True)


CELERY_RECONNECT_TRIES = 100
"""Celery's default broker_connection_max_retries: at a try every RECONNECT_MAX_S, a worker gave up on
its broker (and exited) 200 s into a Redis outage."""
WORKER_OUTAGE_S = CELERY_RECONNECT_TRIES * RECONNECT_MAX_S + 40.0


def test_the_worker_never_stops_trying_to_reconnect_to_its_broker() -> None:
    """The quick pin of what the long test below shows for real (it runs with RELIABILITY_LONG=1)."""
    assert create_app(Settings()).conf.broker_connection_max_retries is None


@pytest.mark.skipif(
    not LONG, reason=f"Redis down {WORKER_OUTAGE_S:.0f} s: RELIABILITY_LONG=1 (make reliability)"
)
@pytest.mark.timeout(WORKER_OUTAGE_S + 180)
def test_a_worker_outlives_a_redis_outage_longer_than_celerys_reconnection_budget(
    tmp_path: Path, mcp_server: StandIn, fake_llm: StandIn, report: Callable[..., None]
) -> None:
    server = LocalRedis(directory=tmp_path / "redis-worker", appendonly=True).start()
    env = writer_env(mcp_server, fake_llm, REDIS_URL=server.url, OPENAI_MAX_RETRIES="0")
    fleet = Fleet(env, server.url, tmp_path / "logs")
    try:
        worker = fleet.start_worker("worker", "--pool", "threads", "--concurrency", "4")
        server.stop()
        down_at = time.monotonic()
        while time.monotonic() - down_at < WORKER_OUTAGE_S:
            assert worker.alive(), f"the worker exited {time.monotonic() - down_at:.0f} s into the outage"
            time.sleep(1.0)
        server.start()
        up_at = time.monotonic()
        out = tmp_path / "out"
        specs = sorted((EXAMPLES / "specs").glob("*.json"))[:2]
        spec_dir = tmp_path / "specs"
        spec_dir.mkdir()
        for spec in specs:
            shutil.copy(spec, spec_dir / spec.name)
        ran = fleet.cli(
            "run", str(spec_dir), "--batch", "t-after-outage", "--output-dir", str(out), timeout=120
        )
        assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
        done_after_s = time.monotonic() - up_at
        jobs = fleet.assert_written_once(fleet.batch_of(ran.stdout), out, len(specs))
        log = worker.log_text()
        assert worker.alive() and "Unrecoverable error" not in log and "Traceback" not in log, log[-3000:]
        report(16, f"Redis down {WORKER_OUTAGE_S:.0f} s under an idle worker (Celery's default gave up at "
               f"{CELERY_RECONNECT_TRIES * RECONNECT_MAX_S:.0f} s)", worker_alive=1, jobs_after=len(jobs),
               batch_done_after_back_s=round(done_after_s, 1))  # fmt: skip
    finally:
        fleet.stop_all()
        server.stop()
        shutil.rmtree(tmp_path / "redis-worker", ignore_errors=True)
