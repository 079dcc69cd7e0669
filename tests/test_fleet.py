"""The fleet end to end: a private redis-server, real Celery worker processes, the offline MCP
server and the scripted model over HTTP, the CLI as a user runs it."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from producer.local_redis import LocalRedis, free_port
from producer.manifest import load_entries
from producer.procs import robot_fleet_command, start_child
from tests.conftest import EXAMPLES, StandIn
from tests.fleet_harness import Fleet, fault_spec, spec_dir, start_fleet
from worker import keys
from worker.agent.output import validate_suite
from worker.spec import load_spec_file

pytestmark = pytest.mark.integration

SPECS = sorted((EXAMPLES / "specs").glob("*.json"))


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, redis_server: LocalRedis, mcp_server: StandIn, fake_llm: StandIn
) -> Iterator[Fleet]:
    yield from start_fleet(
        tmp_path_factory, redis_server, mcp_server, fake_llm, db=1, pool="threads", concurrency=8
    )


def test_sprint_batch_yields_every_file_with_the_threads_pool(fleet: Fleet, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = fleet.cli("run", str(EXAMPLES / "specs"), "--batch", "t-sprint", "--output-dir", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    specs = [load_spec_file(path, max_bytes=1 << 20) for path in SPECS]
    assert len(specs) >= 12
    for spec in specs:
        assert validate_suite((out / spec.target_path).read_text(encoding="utf-8")).ok, spec.target_path
    assert set(load_entries(out)) == {spec.target_path for spec in specs}
    batch_id = fleet.batch_of(done.stdout)
    status = json.loads(fleet.cli("status", batch_id, "--json").stdout)
    assert {job["state"] for job in status["jobs"]} == {"collected"}


def test_rejected_specs_are_reported_and_do_not_stop_the_batch(fleet: Fleet, tmp_path: Path) -> None:
    directory = spec_dir(tmp_path, SPECS[:3] + sorted((EXAMPLES / "specs-bad").glob("*.json")))
    (directory / "binary.json").write_bytes(bytes(range(256)))
    out = tmp_path / "out"
    done = fleet.cli("run", str(directory), "--batch", "t-rejects", "--output-dir", str(out))
    assert done.returncode == 1  # rejected specs make the run fail, after the valid ones are generated
    text = " ".join(done.stdout.split())
    for name, reason in [("broken.json", "invalid JSON"), ("not_an_object.json", "must be a JSON object"),
                         ("latin1.json", "not UTF-8"), ("binary.json", "binary"), ("dup_a.json", "also claimed by")]:  # fmt: skip
        assert f"{name}: " in text and reason in text, (name, text)
    for path in SPECS[:3]:
        assert (out / load_spec_file(path, max_bytes=1 << 20).target_path).is_file()


def test_retryable_failure_is_retried_and_succeeds(fleet: Fleet, tmp_path: Path) -> None:
    directory = spec_dir(tmp_path, [], {"R-1.json": fault_spec("R-1", fail_first=1, fail_status=500)})
    done = fleet.cli("run", str(directory), "--batch", "t-retryable", "--output-dir", str(tmp_path / "out"))
    assert done.returncode == 0, done.stdout
    job = fleet.job(f"{fleet.batch_of(done.stdout)}:R-1")
    assert job["state"] == "collected" and job["attempt"] == "2"


def test_permanent_failure_fails_once_with_its_kind(fleet: Fleet, tmp_path: Path) -> None:
    directory = spec_dir(tmp_path, [], {"P-1.json": fault_spec("P-1", fail_first=9, fail_status=400)})
    done = fleet.cli("run", str(directory), "--batch", "t-permanent", "--output-dir", str(tmp_path / "out"))
    assert done.returncode == 1
    job = fleet.job(f"{fleet.batch_of(done.stdout)}:P-1")
    assert (job["state"], job["attempt"], job["error_kind"]) == ("failed", "1", "model_rejected")
    assert "(400)" in job["error_message"]
    assert "model_rejected" in done.stdout


def test_retry_brings_a_failed_job_to_success(fleet: Fleet, tmp_path: Path) -> None:
    directory = spec_dir(tmp_path, [], {"F-1.json": fault_spec("F-1", fail_first=1, fail_status=400)})
    out = tmp_path / "out"
    done = fleet.cli("run", str(directory), "--batch", "t-retry", "--output-dir", str(out))
    batch_id = fleet.batch_of(done.stdout)
    assert fleet.job(f"{batch_id}:F-1")["state"] == "failed"
    retried = fleet.cli("retry", batch_id, "--kind", "permanent")
    assert "1 failed jobs" in retried.stdout, retried.stdout + retried.stderr
    fleet.wait_states(batch_id, {"succeeded"})
    assert fleet.cli("collect", "--batch", batch_id).returncode == 0
    job = fleet.job(f"{batch_id}:F-1")
    assert (job["state"], job["attempt"]) == ("collected", "2")
    assert (out / "tests/generated/F-1.robot").is_file()


def test_logs_follow_shows_a_running_jobs_tokens_as_they_come(fleet: Fleet, tmp_path: Path) -> None:
    # slow enough to outlast the follower's start (a warm worker answers this spec in one round)
    directory = spec_dir(tmp_path, [], {"L-1.json": fault_spec("L-1", latency=2.0, chunk_latency=0.05)})
    done = fleet.cli("enqueue", str(directory), "--batch", "t-logs", "--output-dir", str(tmp_path / "out"))
    job_id = f"{done.stdout.strip().splitlines()[-1]}:L-1"
    follower = subprocess.Popen([sys.executable, "-m", "producer.cli", "logs", job_id, "--follow"],
                                env={**os.environ, **fleet.env, "COLUMNS": "220"}, stdout=subprocess.PIPE, text=True)  # fmt: skip
    arrivals: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: arrivals.extend((time.time(), line) for line in follower.stdout))  # type: ignore[union-attr]
    reader.start()
    assert follower.wait(timeout=90) == 0
    reader.join()
    finished_at = float(fleet.job(job_id)["finished_at"])
    text_lines = [(at, line) for at, line in arrivals if line.startswith("*** Test Cases ***")]
    assert text_lines, "".join(line for _, line in arrivals)
    assert text_lines[0][0] < finished_at, "the answer's text was shown before the job finished"
    assert any("round 1" in line for _, line in arrivals)


def test_killed_collector_resumes_with_no_file_lost_or_partial(fleet: Fleet, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = fleet.cli("enqueue", str(EXAMPLES / "specs"), "--batch", "t-collector", "--output-dir", str(out))
    batch_id = done.stdout.strip().splitlines()[-1]
    fleet.wait_states(batch_id, {"succeeded"})
    stream = keys.batch_results(batch_id)
    # a collector that read three results and died before writing them
    fleet.redis.xreadgroup(keys.COLLECTOR_GROUP, "dead-collector", {stream: ">"}, count=3)
    collector = fleet.start(
        "collector-1", "collect", "--batch", batch_id, "--follow", "--reclaim-idle", "600"
    )
    deadline = time.monotonic() + 30
    while len(list(out.rglob("*.robot"))) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    collector.signal(signal.SIGKILL)
    collector.process.wait()
    time.sleep(1.0)  # its unacknowledged entries must sit idle past --reclaim-idle before another takes them
    resumed = fleet.cli("collect", "--batch", batch_id, "--reclaim-idle", "0.5", timeout=60)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    jobs = fleet.wait_states(batch_id, {"collected"}, timeout=30)
    assert len(jobs) == len(SPECS)
    for job in jobs:
        assert validate_suite((out / job["target_path"]).read_text(encoding="utf-8")).ok
    assert not list(out.rglob("*.tmp")), "an interrupted write's temp file was swept"
    assert not list(out.rglob("*.new")), "no file mistaken for a person's edit"
    assert len(load_entries(out)) == len(SPECS)
    assert fleet.redis.xpending(stream, keys.COLLECTOR_GROUP)["pending"] == 0


def test_skip_unchanged_force_and_edited_files_kept(fleet: Fleet, tmp_path: Path) -> None:
    directory = spec_dir(tmp_path, SPECS[:3])
    out = tmp_path / "out"
    assert fleet.cli("run", str(directory), "--batch", "t-skip", "--output-dir", str(out)).returncode == 0
    again = fleet.cli("run", str(directory), "--batch", "t-skip", "--output-dir", str(out))
    assert again.returncode == 0 and "0 to generate, 3 up to date" in again.stdout
    edited = out / load_spec_file(SPECS[0], max_bytes=1 << 20).target_path
    edited.write_text(edited.read_text() + "\n# reviewed by a person\n")
    forced = fleet.cli("run", str(directory), "--batch", "t-skip", "--output-dir", str(out), "--force")
    assert forced.returncode == 0 and "3 to generate" in forced.stdout
    assert "# reviewed by a person" in edited.read_text()
    assert edited.with_name(edited.name + ".new").is_file()
    assert "kept an edited file" in forced.stdout


def test_flower_lists_the_batch_tasks_with_spec_ids_and_states(fleet: Fleet, tmp_path: Path) -> None:
    port = free_port()
    flower = start_child("flower", robot_fleet_command("flower", "--port", str(port)), fleet.log_dir,
                         env={**fleet.env, "FLOWER_BASIC_AUTH": "qa:s3cret-flower"}, ready_port=("127.0.0.1", port))  # fmt: skip
    try:
        # Flower must be receiving events before the batch starts (task args come with task-received):
        # it is once it has seen the worker's heartbeat.
        deadline = time.monotonic() + 30
        while not httpx.get(
            f"http://127.0.0.1:{port}/api/workers", auth=("qa", "s3cret-flower"), timeout=5
        ).json():
            assert time.monotonic() < deadline, "Flower never saw the worker"
            time.sleep(0.5)
        directory = spec_dir(
            tmp_path, SPECS[:3], {"P-9.json": fault_spec("P-9", fail_first=9, fail_status=400)}
        )
        fleet.cli("run", str(directory), "--batch", "t-flower", "--output-dir", str(tmp_path / "out"))
        deadline = time.monotonic() + 20
        while True:
            tasks = httpx.get(
                f"http://127.0.0.1:{port}/api/tasks", auth=("qa", "s3cret-flower"), timeout=5
            ).json()
            seen = {
                task["args"]: task["state"]
                for task in tasks.values()
                if " @ t-flower-" in (task.get("name") or "")  # named SPEC @ BATCH once received
            }
            if len(seen) >= 4 and "PENDING" not in seen.values() and "STARTED" not in seen.values():
                break
            assert time.monotonic() < deadline, seen
            time.sleep(0.5)
        for path in SPECS[:3]:
            assert seen[repr(load_spec_file(path, max_bytes=1 << 20).spec_id)] == "SUCCESS"
        assert seen["'P-9'"] == "FAILURE"
        assert httpx.get(f"http://127.0.0.1:{port}/api/tasks", timeout=5).status_code == 401
    finally:
        flower.stop()


@pytest.fixture(scope="module")
def prefork_fleet(
    tmp_path_factory: pytest.TempPathFactory, redis_server: LocalRedis, mcp_server: StandIn, fake_llm: StandIn
) -> Iterator[Fleet]:
    yield from start_fleet(
        tmp_path_factory, redis_server, mcp_server, fake_llm, db=2, pool="prefork", concurrency=2
    )


def test_sprint_batch_yields_every_file_with_the_prefork_pool(prefork_fleet: Fleet, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = prefork_fleet.cli("run", str(EXAMPLES / "specs"), "--batch", "t-prefork", "--output-dir", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    jobs = prefork_fleet.wait_states(prefork_fleet.batch_of(done.stdout), {"collected"})
    assert len(jobs) == len(SPECS)
    assert len({job["worker"] for job in jobs}) == 2, "both prefork children ran jobs, each with its own loop"
    for job in jobs:
        assert validate_suite((out / job["target_path"]).read_text(encoding="utf-8")).ok


def test_workers_send_throttled_progress_events_with_round_and_tool(fleet: Fleet, tmp_path: Path) -> None:
    from worker.adapters.celery_config import create_app
    from worker.settings import Settings

    app = create_app(Settings(redis_url=fleet.env["REDIS_URL"]))
    events: list[dict] = []
    with app.connection() as connection:
        receiver = app.events.Receiver(connection, handlers={"task-progress": events.append})
        capture = threading.Thread(
            target=lambda: receiver.capture(limit=None, timeout=None, wakeup=False), daemon=True
        )
        capture.start()
        time.sleep(1.0)
        directory = spec_dir(
            tmp_path,
            [],
            {"E-1.json": fault_spec("E-1", chunk_latency=0.02, tool_calls="whole", upfront="ignore")},
        )
        done = fleet.cli("run", str(directory), "--batch", "t-events", "--output-dir", str(tmp_path / "out"))
        assert done.returncode == 0, done.stdout
        receiver.should_stop = True
        capture.join(timeout=10)
    assert events, "at least one task-progress event during a multi-second job"
    assert all({"round", "tool", "tokens"} <= set(event) for event in events)
    assert max(event["round"] for event in events) >= 1
    stamps = sorted(event["at"] for event in events)
    assert all(later - earlier >= 0.9 for earlier, later in itertools.pairwise(stamps)), "throttled to 1/s"
