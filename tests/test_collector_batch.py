"""The collector writes the entries of one step that share an output tree under one save of the
manifest (issue 13's profile: one read-modify-write of the whole manifest per file was quadratic in
the batch), and a file the filesystem refuses in the middle of such a group stops none of the
others: it alone stays pending, and is written when it is tried again. Real Store, real redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from producer import manifest
from producer.collector import Collected, Collector, WriteProblem
from producer.local_redis import LocalRedis
from producer.manifest import MANIFEST_NAME, load_entries
from worker import keys
from worker.adapters.store import Store
from worker.records import BatchRecord, Claimed, JobState, NewJob

pytestmark = pytest.mark.integration

COUNT = 5
REFUSED = 3  # the middle one of the group


@pytest.fixture
def store_url(redis_server: LocalRedis, redis_client: redis.Redis) -> Iterator[str]:
    yield redis_server.url


@pytest.fixture
def manifest_saves(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every atomic save of a manifest.json (the real write happens; each is recorded)."""
    saves: list[Path] = []
    real = manifest.atomic_write_text

    def counting(path: Path, text: str, *, crash_point: str = "") -> None:
        if path.name == MANIFEST_NAME:
            saves.append(path)
        real(path, text, crash_point=crash_point)

    monkeypatch.setattr(manifest, "atomic_write_text", counting)
    return saves


def suite(n: int) -> str:
    return f"*** Test Cases ***\nS-{n}\n    Log    {n}\n"


async def finished_batch(store: Store, out: Path) -> None:
    """A batch of COUNT jobs, each succeeded: COUNT entries waiting in its results stream."""
    jobs = [NewJob(f"b1:S-{n}", "b1", f"S-{n}", f"S-{n}.json", f"t/S-{n}.robot", "0" * 64, '{"id": "S"}')
            for n in range(1, COUNT + 1)]  # fmt: skip
    await store.create_batch(BatchRecord("b1", created_at=1.0, output_dir=str(out)), jobs)
    for n in range(1, COUNT + 1):
        claimed = await store.claim(f"b1:S-{n}", "w1", 60.0)
        assert isinstance(claimed, Claimed)
        done = await store.finish(f"b1:S-{n}", "b1", claimed.attempt, {"robot_text": suite(n)},
                                  {"rounds": 1, "verdict": "verified"})  # fmt: skip
        assert done


def test_one_manifest_save_per_step_and_a_refused_file_stops_none_of_the_others(
    store_url: str, redis_client: redis.Redis, tmp_path: Path, manifest_saves: list[Path]
) -> None:
    out = tmp_path / "out"
    # the filesystem refuses the middle file: its path is a directory (EISDIR, as root too)
    (out / "t" / f"S-{REFUSED}.robot").mkdir(parents=True)
    problems: list[WriteProblem] = []

    async def scenario() -> tuple[list[Collected], list[Collected]]:
        store = Store.from_url(store_url, lambda text: text)
        try:
            await finished_batch(store, out)
            collector = Collector(store, on_problem=problems.append)
            first = await collector.step(["b1"], block_ms=100)
            assert collector.retrying == 1
            (out / "t" / f"S-{REFUSED}.robot").rmdir()  # the operator fixes it
            deadline = time.monotonic() + 10
            second: list[Collected] = []
            while not second and time.monotonic() < deadline:  # due again after the 1 s backoff
                second = await collector.step(["b1"], block_ms=200)
            return first, second
        finally:
            await store.close()

    first, second = asyncio.run(scenario())

    written = [n for n in range(1, COUNT + 1) if n != REFUSED]
    assert [item.spec_id for item in first] == [f"S-{n}" for n in written], "the others went on, in order"
    assert [item.spec_id for item in second] == [f"S-{REFUSED}"]
    assert len(manifest_saves) == 2, "one manifest save per step, not one per file"
    for n in range(1, COUNT + 1):
        assert (out / "t" / f"S-{n}.robot").read_text(encoding="utf-8") == suite(n)
    assert set(load_entries(out)) == {f"t/S-{n}.robot" for n in range(1, COUNT + 1)}
    assert [(p.tries, p.retry_in_s is None) for p in problems] == [(1, False), (1, True)], problems
    assert "Is a directory" in problems[0].reason and problems[0].path.endswith(f"S-{REFUSED}.robot")
    states = [redis_client.hget(keys.job(f"b1:S-{n}"), "state") for n in range(1, COUNT + 1)]
    assert states == [JobState.COLLECTED.value] * COUNT
    assert redis_client.xpending(keys.batch_results("b1"), keys.COLLECTOR_GROUP)["pending"] == 0


def test_a_refused_manifest_refuses_every_entry_of_its_group(
    store_url: str, redis_client: redis.Redis, tmp_path: Path, manifest_saves: list[Path]
) -> None:
    out = tmp_path / "out"
    (out / ".robot-fleet" / MANIFEST_NAME).mkdir(parents=True)  # the manifest cannot be read
    problems: list[WriteProblem] = []

    async def scenario() -> list[Collected]:
        store = Store.from_url(store_url, lambda text: text)
        try:
            await finished_batch(store, out)
            collector = Collector(store, on_problem=problems.append)
            collected = await collector.step(["b1"], block_ms=100)
            assert collector.retrying == COUNT
            return collected
        finally:
            await store.close()

    assert asyncio.run(scenario()) == []
    assert manifest_saves == [] and len(problems) == COUNT
    assert all(f"(at {out / '.robot-fleet' / MANIFEST_NAME})" in p.reason for p in problems), problems
    assert redis_client.xpending(keys.batch_results("b1"), keys.COLLECTOR_GROUP)["pending"] == COUNT
