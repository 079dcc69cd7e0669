"""Issue 6, item 5: the collector killed in the middle of writing a file, and between writing a file
and acknowledging its result. Crash points (`worker.failpoints`) kill the real collector process
with SIGKILL's status at the exact line; the next collector reclaims what it left."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from producer.local_redis import LocalRedis
from producer.manifest import load_entries
from producer.procs import robot_fleet_command, start_child
from tests.conftest import EXAMPLES, StandIn
from tests.fleet_harness import Fleet, start_fleet
from worker import keys
from worker.agent.output import validate_suite

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

SPECS = sorted((EXAMPLES / "specs").glob("*.json"))


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, redis_server: LocalRedis, mcp_server: StandIn, fake_llm: StandIn
) -> Iterator[Fleet]:
    yield from start_fleet(tmp_path_factory, redis_server, mcp_server, fake_llm, db=12, pool="threads",
                           concurrency=8)  # fmt: skip


def collect_until_crash(fleet: Fleet, batch_id: str, failpoint: str) -> int:
    collector = start_child(
        f"collector-{failpoint}",
        [*robot_fleet_command(), "collect", "--batch", batch_id, "--reclaim-idle", "0.3"],
        fleet.log_dir,
        env={**fleet.env, "ROBOT_FLEET_FAILPOINT": failpoint},
    )
    return collector.process.wait(timeout=60)


def test_collector_killed_mid_write_and_before_ack_loses_and_duplicates_nothing(
    fleet: Fleet, tmp_path: Path, report: object
) -> None:
    out = tmp_path / "out"
    done = fleet.cli("enqueue", str(EXAMPLES / "specs"), "--batch", "t-crash", "--output-dir", str(out))
    batch_id = done.stdout.strip().splitlines()[-1]
    fleet.wait_states(batch_id, {"succeeded"})
    results = {
        job["target_path"]: json.loads(fleet.redis.get(keys.job_result(job["job_id"])))["robot_text"]
        for job in fleet.wait_states(batch_id, {"succeeded"})
    }

    # 1. killed in the middle of its third file: two files whole, half of the third in a temp file only
    assert collect_until_crash(fleet, batch_id, "collector.mid_write:3") == -9
    written = {str(path.relative_to(out)) for path in out.rglob("*.robot")}
    temps = list(out.rglob(".*.tmp"))
    assert len(written) == 2 and len(temps) == 1
    partial = temps[0].read_text(encoding="utf-8")
    crashed = next(
        target for target, text in results.items() if target not in written and text.startswith(partial)
    )
    assert not (out / crashed).exists(), "the file being written never appeared, not even in part"
    assert all((out / target).read_text(encoding="utf-8") == results[target] for target in written)

    # 2. killed after its step's files and manifest (one save for the step's group), having marked
    # and acknowledged the first job only: the second is neither marked collected nor acknowledged
    time.sleep(0.4)  # the dead collector's entries must be idle past --reclaim-idle
    assert collect_until_crash(fleet, batch_id, "collector.after_write:2") == -9
    before = {path: path.stat().st_mtime_ns for path in out.rglob("*.robot")}
    assert len(before) == len(SPECS) and not list(out.rglob(".*.tmp")), "the partial temp file was swept"
    assert set(load_entries(out)) == set(results), "the manifest was saved before any job was marked"
    unacked = fleet.redis.xpending(keys.batch_results(batch_id), keys.COLLECTOR_GROUP)["pending"]
    assert unacked == len(SPECS) - 1

    # 3. a collector that lives: everything lands once, nothing written again
    time.sleep(0.4)
    resumed = fleet.cli("collect", "--batch", batch_id, "--reclaim-idle", "0.3", timeout=60)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    jobs = fleet.wait_states(batch_id, {"collected"}, timeout=30)
    assert len(jobs) == len(SPECS)
    for target, text in results.items():
        assert (out / target).read_text(encoding="utf-8") == text and validate_suite(text).ok
    rewritten = [path for path, mtime in before.items() if path.stat().st_mtime_ns != mtime]
    assert rewritten == [], "files already written whole were not written again"
    assert not list(out.rglob(".*.tmp")) and not list(out.rglob("*.new"))
    assert set(load_entries(out)) == set(results)
    assert fleet.redis.xpending(keys.batch_results(batch_id), keys.COLLECTOR_GROUP)["pending"] == 0
    report(5, "collector SIGKILLed mid-write (3rd file), then after its files and manifest before its 2nd ack",
           files=len(results), complete=len(results), partial=0, temp_files_left=0,
           rewritten_after_restart=len(rewritten), differing_content=0)  # fmt: skip
