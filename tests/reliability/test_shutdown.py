"""Issue 16: a warm shutdown is bounded. A worker holding jobs stuck on an MCP server slower than the
bound gets SIGTERM (what `docker stop` and systemd send): it exits within WORKER_SHUTDOWN_S, the
jobs it held go back to the queue without being counted as failures, and a second worker (on a
server that answers) completes them: every file written once.

Real parts: a private redis-server db, real `robot-fleet worker` processes and a real signal to the
worker's main process, the offline MCP server slowed with --tool-latency, the CLI as a user runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from producer.local_redis import LocalRedis, free_port
from producer.procs import Child, robot_fleet_command, start_child
from tests.conftest import EXAMPLES, StandIn, writer_env
from tests.fleet_harness import Fleet, spec_dir, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

SHUTDOWN_S = 10.0
"""WORKER_SHUTDOWN_S of the stopped worker: low, so the test is short; the default is 30 s."""
EXIT_MARGIN_S = 2.0
"""What the process may take past the bound to exit (the interpreter's own teardown)."""
TOOL_LATENCY_S = 60.0
"""Every tool call of the slow server: far longer than the bound, so no job can finish in it."""
SPECS = sorted((EXAMPLES / "specs").glob("*.json"))[:4]
CONCURRENCY = 4


def start_slow_mcp(log_dir: Path) -> StandIn:
    port = free_port()
    command = robot_fleet_command("mcp-serve", "--repo", str(EXAMPLES / "framework"), "--project-id", "42",
                                  "--log-level", "WARNING", "--port", str(port),
                                  "--tool-latency", str(TOOL_LATENCY_S))  # fmt: skip
    return StandIn(start_child("mcp-slow", command, log_dir, ready_port=("127.0.0.1", port)), port)


@pytest.fixture
def slow_mcp(tmp_path: Path) -> Iterator[StandIn]:
    server = start_slow_mcp(tmp_path / "mcp")
    yield server
    server.child.stop()


@pytest.fixture
def fleet_of(redis_server: LocalRedis, tmp_path: Path) -> Iterator[Callable[..., Fleet]]:
    fleets: list[Fleet] = []

    def make(db: int, mcp: StandIn, llm: StandIn) -> Fleet:
        url = redis_server.url.rsplit("/", 1)[0] + f"/{db}"
        env = writer_env(mcp, llm, REDIS_URL=url, OPENAI_MAX_RETRIES="0", WORKER_SHUTDOWN_S=str(SHUTDOWN_S),
                         TOOL_TIMEOUT_S=str(TOOL_LATENCY_S * 2), WORKER_LEASE_S="6")  # fmt: skip
        fleet = Fleet(env, url, tmp_path / f"logs-{db}")
        fleet.redis.flushdb()
        fleets.append(fleet)
        return fleet

    yield make
    for fleet in fleets:
        fleet.stop_all()


def warm_stop(worker: Child) -> float:
    """SIGTERM to the worker's main process only (as `docker stop` sends it); seconds until it exited."""
    sent = time.monotonic()
    os.kill(worker.process.pid, signal.SIGTERM)
    try:
        worker.process.wait(timeout=SHUTDOWN_S + 60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker did not exit {SHUTDOWN_S + 60:.0f} s after SIGTERM")
    return time.monotonic() - sent


def stop_with_jobs_on_a_slow_server(
    tmp_path: Path, fleet: Fleet, pool: str, fast_mcp: StandIn, batch: str
) -> dict[str, object]:
    """Jobs running on the slow server; SIGTERM; a second worker on a fast server completes them."""
    first = fleet.start_worker(f"worker-{pool}-1", "--pool", pool, "--concurrency", str(CONCURRENCY))
    enqueued = fleet.cli("enqueue", str(spec_dir(tmp_path, SPECS)), "--batch", batch)
    assert enqueued.returncode == 0, enqueued.stdout + enqueued.stderr
    batch_id = fleet.batch_of(enqueued.stdout)
    running = lambda: sum(job.get("state") == "running" for job in fleet.jobs(batch_id))  # noqa: E731
    wait_until(lambda: running() == len(SPECS), 30, "every job running on the slow server")
    time.sleep(1.0)  # into their first tool calls
    exited_after_s = warm_stop(first)
    held = fleet.jobs(batch_id)
    assert all(job["state"] in ("queued", "retrying") for job in held), [
        (job["spec_id"], job["state"]) for job in held
    ]
    second = fleet.start_worker(f"worker-{pool}-2", "--pool", "threads", "--concurrency", str(CONCURRENCY),
                                env={"GITLAB_MCP_URL": f"{fast_mcp.base}/mcp"})  # fmt: skip
    resumed_at = time.monotonic()
    fleet.wait_states(batch_id, {"succeeded", "failed"}, timeout=60)
    done_after_s = time.monotonic() - resumed_at
    out = tmp_path / "out"
    collected = fleet.cli("collect", "--batch", batch_id, "--output-dir", str(out))
    assert collected.returncode == 0, collected.stdout + collected.stderr
    jobs = fleet.assert_written_once(batch_id, out, len(SPECS))
    for job in jobs:
        assert int(job.get("retries", 0)) == 0 and int(job.get("outage_retries", 0)) == 0, job
        assert not job.get("error_kind") and not job.get("last_error_kind"), job
        assert int(job["handed_back"]) == 1 and int(job["attempt"]) == 2, job
    first_log, second_log = first.log_text(), second.log_text()
    for log in (first_log, second_log):
        assert "Traceback" not in log and "raised unexpected" not in log, log[-4000:]
    assert first_log.count("handed back (worker stopping)") == len(SPECS), first_log[-4000:]
    assert "attempt 2 succeeded" in second_log
    return {"jobs": len(jobs), "held_at_sigterm": len(SPECS), "bound_s": SHUTDOWN_S,
            "exited_after_s": round(exited_after_s, 1), "handed_back": len(SPECS), "retries_counted": 0,
            "completed_elsewhere": len(jobs), "done_after_second_worker_s": round(done_after_s, 1)}  # fmt: skip


def test_a_warm_shutdown_with_jobs_on_a_slow_server_exits_within_the_bound_threads(
    tmp_path: Path, slow_mcp: StandIn, mcp_server: StandIn, fake_llm: StandIn,
    fleet_of: Callable[..., Fleet], report: Callable[..., None],
) -> None:  # fmt: skip
    fleet = fleet_of(10, slow_mcp, fake_llm)
    figures = stop_with_jobs_on_a_slow_server(tmp_path, fleet, "threads", mcp_server, "t-stop-threads")
    assert figures["exited_after_s"] <= SHUTDOWN_S + EXIT_MARGIN_S, figures  # type: ignore[operator]
    report(16, f"worker SIGTERM (threads, {CONCURRENCY} slots) with every job in a {TOOL_LATENCY_S:.0f} s tool call, "
           f"WORKER_SHUTDOWN_S={SHUTDOWN_S:.0f}", **figures)  # fmt: skip


def test_a_warm_shutdown_with_jobs_on_a_slow_server_exits_within_the_bound_prefork(
    tmp_path: Path, slow_mcp: StandIn, mcp_server: StandIn, fake_llm: StandIn,
    fleet_of: Callable[..., Fleet], report: Callable[..., None],
) -> None:  # fmt: skip
    fleet = fleet_of(11, slow_mcp, fake_llm)
    figures = stop_with_jobs_on_a_slow_server(tmp_path, fleet, "prefork", mcp_server, "t-stop-prefork")
    assert figures["exited_after_s"] <= SHUTDOWN_S + EXIT_MARGIN_S, figures  # type: ignore[operator]
    report(16, f"worker SIGTERM (prefork, {CONCURRENCY} children) with every job in a {TOOL_LATENCY_S:.0f} s tool "
           f"call, WORKER_SHUTDOWN_S={SHUTDOWN_S:.0f}", **figures)  # fmt: skip
