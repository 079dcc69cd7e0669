"""Issue 16: the model provider down, and the MCP server down, for longer than any in-place retry
rides over (2 minutes in `make reliability`, shorter in CI: `lengths.py`). The fleet pauses instead
of burning every queued job's retries, shows the pause (`run`, `status`, metrics, the worker log
once), probes, and finishes the batch: every job collected, none failed.

Real parts: a private redis-server db, a real threads-pool worker, `run` as a user runs it, and the
stand-in that goes down killed for real and started again on its port."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from producer.local_redis import LocalRedis, free_port
from producer.procs import Child, port_open, robot_fleet_command, start_child
from tests.conftest import EXAMPLES, StandIn, writer_env
from tests.fleet_harness import Fleet, spec_dir, wait_until
from tests.reliability.lengths import MCP_OUTAGE_S, MODEL_LATENCY, MODEL_OUTAGE_S, SPECS
from worker import keys

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

DB = 14


def start_llm(port: int, log_dir: Path) -> Child:
    command = robot_fleet_command("fake-llm", "--log-level", "warning", "--port", str(port))
    return start_child(f"llm-{time.monotonic_ns()}", command, log_dir, ready_port=("127.0.0.1", port))


def start_mcp(port: int, log_dir: Path, *extra: str) -> Child:
    command = robot_fleet_command("mcp-serve", "--repo", str(EXAMPLES / "framework"), "--project-id", "42",
                                  "--log-level", "WARNING", "--port", str(port), *extra)  # fmt: skip
    return start_child(f"mcp-{time.monotonic_ns()}", command, log_dir, ready_port=("127.0.0.1", port))


def count(fleet: Fleet, batch_id: str, state: str) -> int:
    return sum(job.get("state") == state for job in fleet.jobs(batch_id))


def circuit(fleet: Fleet, dependency: str) -> dict[str, str]:
    return fleet.redis.hgetall(keys.circuit(dependency))


def metrics_line(base: str, dependency: str) -> str:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    return next(
        line
        for line in text.splitlines()
        if line.startswith(f'robot_fleet_paused{{dependency="{dependency}"}}')
    )


def seen_while_paused(
    fleet: Fleet, batch_id: str, dependency: str, label: str, metrics: str
) -> dict[str, object]:
    """What `status`, `status --json` and the metrics say while the fleet is paused."""
    shown = fleet.cli("status", batch_id)
    as_json = json.loads(fleet.cli("status", batch_id, "--json").stdout)
    text = " ".join(shown.stdout.split())
    assert f"fleet paused on {label}" in text, text
    assert "waiting: fleet paused on" in text, "the waiting jobs' rows say what they wait for"
    assert as_json["fleet"][dependency]["paused"] is True, as_json["fleet"]
    assert metrics_line(metrics, dependency).endswith(" 1.0")
    return {"status": text, "json": as_json["fleet"][dependency]}


def run_through_an_outage(
    tmp_path: Path, fleet: Fleet, *, dependency: str, label: str, down: Callable[[], None],
    up: Callable[[], None], outage_s: float, start_when: Callable[[str], bool],
) -> dict[str, object]:  # fmt: skip
    """`run` a batch; take the dependency down once `start_when(batch)`, for `outage_s`; bring it back;
    check what the fleet shows meanwhile and that the batch ends whole."""
    worker = fleet.start_worker("worker", "--pool", "threads", "--concurrency", "4")
    port = free_port()
    metrics = start_child("metrics", robot_fleet_command("metrics", "--port", str(port)), fleet.log_dir,
                          env=fleet.env, ready_port=("127.0.0.1", port))  # fmt: skip
    fleet.children.append(metrics)
    out = tmp_path / "out"
    run = fleet.start("run", "run", str(spec_dir(tmp_path, SPECS)), "--batch", f"t-{dependency}-out",
                      "--output-dir", str(out))  # fmt: skip
    batch_id = fleet.latest_batch()
    wait_until(lambda: start_when(batch_id), 90, "the batch under way")
    down()
    down_at = time.monotonic()
    wait_until(lambda: circuit(fleet, dependency).get("circuit") == "open", outage_s, "the fleet paused")
    paused_after_s = time.monotonic() - down_at
    # a job that starts before the pause (it takes FLEET_PAUSE_AFTER failures) may spend a retry
    not_started = {job["job_id"] for job in fleet.jobs(batch_id) if job.get("attempt") == "0"}
    seen = seen_while_paused(fleet, batch_id, dependency, label, f"http://127.0.0.1:{port}")
    time.sleep(max(0.0, outage_s - (time.monotonic() - down_at)))
    up()
    back_at = time.monotonic()
    assert run.process.wait(timeout=300) == 0, run.log_text()[-4000:]
    jobs = fleet.assert_written_once(batch_id, out, len(SPECS))
    state = circuit(fleet, dependency)
    assert state["circuit"] == "closed" and float(state["closed_at"]) >= float(state["opened_at"])
    run_text = " ".join(run.log_text().split())
    assert f"fleet paused on {label}" in run_text and f"fleet resumed: {label} answers again" in run_text
    assert "Traceback" not in run_text
    log = worker.log_text()
    assert log.count(f"fleet paused on {label}") == 1, "the worker logs the pause once, not per job"
    assert log.count(f"fleet resumed: {label} answered a probe") == 1
    retries = {job["job_id"]: int(job.get("retries", 0)) for job in jobs}
    assert sum(retries.values()) <= 2, f"at most the failures before the pause counted: {retries}"
    assert all(retries[job_id] == 0 for job_id in not_started), (
        "jobs not started at the pause kept their budget"
    )
    assert all(job.get("error_kind", "") == "" for job in jobs)
    return {"jobs": len(jobs), "collected": len(jobs), "failed": 0, "not_started_at_pause": len(not_started),
            "not_started_retries": 0, "retries_counted": sum(retries.values()),
            "attempts_charged_to_outage": sum(int(job.get("outage_retries", 0)) for job in jobs),
            "outage_s": outage_s, "paused_after_s": round(paused_after_s, 1),
            "probes_failed": int(state.get("probes", 0)),
            "batch_done_after_back_s": round(time.monotonic() - back_at, 1),
            "status_while_paused": seen["json"]["paused"]}  # fmt: skip


@pytest.fixture
def fleet_env(redis_server: LocalRedis) -> Callable[..., Fleet]:
    fleets: list[Fleet] = []

    def make(mcp: StandIn, llm: StandIn, tmp_path: Path) -> Fleet:
        url = redis_server.url.rsplit("/", 1)[0] + f"/{DB}"
        fleet = Fleet(writer_env(mcp, llm, knobs=MODEL_LATENCY, REDIS_URL=url, OPENAI_MAX_RETRIES="1"), url,
                      tmp_path / "logs")  # fmt: skip
        fleet.redis.flushdb()
        fleets.append(fleet)
        return fleet

    yield make
    for fleet in fleets:
        fleet.stop_all()


def test_a_long_model_outage_pauses_the_fleet_and_every_job_completes(
    tmp_path: Path, mcp_server: StandIn, fleet_env: Callable[..., Fleet], report: Callable[..., None]
) -> None:
    port = free_port()
    llm = [start_llm(port, tmp_path)]
    fleet = fleet_env(mcp_server, StandIn(llm[0], port), tmp_path)

    def down() -> None:
        llm[0].stop()
        assert not port_open("127.0.0.1", port)

    try:
        figures = run_through_an_outage(
            tmp_path, fleet, dependency="model", label="the model provider", down=down,
            up=lambda: llm.append(start_llm(port, tmp_path)), outage_s=MODEL_OUTAGE_S,
            start_when=lambda batch: count(fleet, batch, "collected") >= 2,
        )  # fmt: skip
    finally:
        llm[-1].stop()
    report(16, f"model server down {MODEL_OUTAGE_S:.0f} s mid-batch ({len(SPECS)} specs, 4 slots)", **figures)


def test_a_long_mcp_outage_pauses_the_fleet_and_every_job_completes(
    tmp_path: Path, fake_llm: StandIn, fleet_env: Callable[..., Fleet], report: Callable[..., None]
) -> None:
    # a warm worker reads every file of this small repository from its memo: the outage starts while
    # the first job reads the repository (each tool call 0.2 s), so the jobs need the server
    port = free_port()
    mcp = [start_mcp(port, tmp_path, "--tool-latency", "0.2")]
    fleet = fleet_env(StandIn(mcp[0], port), fake_llm, tmp_path)

    def down() -> None:
        mcp[0].stop()
        assert not port_open("127.0.0.1", port)

    def reading(batch: str) -> bool:
        return count(fleet, batch, "running") >= 1

    try:
        figures = run_through_an_outage(
            tmp_path, fleet, dependency="mcp", label="the MCP server", down=down,
            up=lambda: mcp.append(start_mcp(port, tmp_path, "--tool-latency", "0.2")), outage_s=MCP_OUTAGE_S,
            start_when=reading,
        )  # fmt: skip
    finally:
        mcp[-1].stop()
    report(16, f"MCP server down {MCP_OUTAGE_S:.0f} s from the batch's first job ({len(SPECS)} specs, 4 slots)",
           **figures)  # fmt: skip
