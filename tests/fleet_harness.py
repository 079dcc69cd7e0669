"""The fleet as the tests drive it: a worker's environment against the stand-ins, the CLI as a user
runs it, real worker processes, and readers of the job records in Redis."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from producer.local_redis import LocalRedis
from producer.manifest import load_entries
from producer.procs import Child, robot_fleet_command, start_child
from tests.conftest import EXAMPLES, StandIn, start_stand_in, writer_env
from worker import keys
from worker.agent.output import validate_suite


class Fleet:
    def __init__(self, env: dict[str, str], redis_url: str, log_dir: Path) -> None:
        self.env = env
        self.redis = redis.Redis.from_url(redis_url, decode_responses=True)
        self.log_dir = log_dir
        self.children: list[Child] = []

    def cli(
        self, *args: str, timeout: float = 180, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "producer.cli", *args],
            env={**os.environ, **self.env, "COLUMNS": "220", **(env or {})},
            capture_output=True, text=True, timeout=timeout, cwd=cwd,
        )  # fmt: skip

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> Child:
        child = start_child(
            name, robot_fleet_command(*args), self.log_dir, env={**self.env, "COLUMNS": "220", **(env or {})}
        )
        self.children.append(child)
        return child

    def stop_all(self) -> None:
        for child in self.children:
            child.stop()
        self.redis.close()

    def start_worker(
        self, name: str, *args: str, ready_timeout: float = 30, env: dict[str, str] | None = None
    ) -> Child:
        """A `robot-fleet worker` child, returned once it logged that it is ready."""
        worker = self.start(name, "worker", *args, "--without-mingle", "--without-gossip", env=env)
        deadline = time.monotonic() + ready_timeout
        while "ready" not in worker.log_text():
            assert worker.alive() and time.monotonic() < deadline, worker.log_text()[-3000:]
            time.sleep(0.1)
        return worker

    def job(self, job_id: str) -> dict[str, str]:
        return self.redis.hgetall(keys.job(job_id))

    def batch_of(self, output: str) -> str:
        return next(word for word in output.split() if word.startswith(("t-", "batch-"))).rstrip(":")

    def jobs(self, batch_id: str) -> list[dict[str, str]]:
        return [self.job(job_id) for job_id in self.redis.zrange(keys.batch_jobs(batch_id), 0, -1)]

    def latest_batch(self, count: int = 1, timeout: float = 30) -> str:
        """The newest batch id, once at least `count` batches are recorded (a `run` started in the
        background records its batch a moment later)."""
        wait_until(lambda: self.redis.zcard(keys.batches()) >= count, timeout, f"{count} batches recorded")
        return str(self.redis.zrevrange(keys.batches(), 0, 0)[0])

    def wait_states(self, batch_id: str, states: set[str], timeout: float = 90) -> list[dict[str, str]]:
        deadline = time.monotonic() + timeout
        while True:
            jobs = self.jobs(batch_id)
            if jobs and all(job.get("state") in states for job in jobs):
                return jobs
            assert time.monotonic() < deadline, [(j.get("spec_id"), j.get("state")) for j in jobs]
            time.sleep(0.2)

    def assert_written_once(self, batch_id: str, out: Path, count: int) -> list[dict[str, str]]:
        """Every job collected once from one finished attempt; its file whole and equal to that result."""
        jobs = self.jobs(batch_id)
        assert len(jobs) == count and {job["state"] for job in jobs} == {"collected"}
        stream = keys.batch_results(batch_id)
        finished = [fields["job_id"] for _, fields in self.redis.xrange(stream)]
        assert sorted(finished) == sorted(job["job_id"] for job in jobs), "one finished attempt per job"
        assert self.redis.xpending(stream, keys.COLLECTOR_GROUP)["pending"] == 0
        for job in jobs:
            text = (out / job["target_path"]).read_text(encoding="utf-8")
            assert validate_suite(text).ok, job["target_path"]
            result = json.loads(self.redis.get(keys.job_result(job["job_id"])))
            assert result["attempt"] == int(job["attempt"]) and result["robot_text"] == text
        assert len(load_entries(out)) == count
        assert not list(out.rglob("*.tmp")) and not list(out.rglob("*.new"))
        return jobs


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def spec_dir(tmp_path: Path, specs: list[Path], extra: dict[str, dict] | None = None) -> Path:
    directory = tmp_path / "specs"
    directory.mkdir(exist_ok=True)
    for path in specs:
        shutil.copy(path, directory / path.name)
    for name, data in (extra or {}).items():
        (directory / name).write_text(json.dumps(data), encoding="utf-8")
    return directory


def fault_spec(spec_id: str, **knobs: object) -> dict:
    return {"id": spec_id, "title": f"Login works for {spec_id}", "area": "auth", "fake_llm": knobs,
            "scenarios": [{"name": "Login", "steps": ['Log in as "alice" with password "Secret123!"']}]}  # fmt: skip


def start_fleet(tmp_path_factory: pytest.TempPathFactory, redis_server: LocalRedis, mcp: StandIn, llm: StandIn,
                db: int, pool: str, concurrency: int) -> Iterator[Fleet]:  # fmt: skip
    url = redis_server.url.rsplit("/", 1)[0] + f"/{db}"
    env = writer_env(mcp, llm, REDIS_URL=url, OPENAI_MAX_RETRIES="0")
    fleet = Fleet(env, url, tmp_path_factory.mktemp(f"fleet-{pool}"))
    fleet.redis.flushdb()
    worker = fleet.start_worker(f"worker-{pool}", "--pool", pool, "--concurrency", str(concurrency))
    yield fleet
    worker.stop()
    fleet.redis.close()


def fleet_on_db(tmp_path_factory: pytest.TempPathFactory, redis_server: LocalRedis, mcp: StandIn, llm: StandIn,
                db: int, name: str, concurrency: int = 4, **env: str) -> Iterator[Fleet]:  # fmt: skip
    """A threads-pool worker on a db of its own of the session's Redis, with extra settings."""
    url = redis_server.url.rsplit("/", 1)[0] + f"/{db}"
    fleet = Fleet(writer_env(mcp, llm, REDIS_URL=url, OPENAI_MAX_RETRIES="0", **env), url,
                  tmp_path_factory.mktemp(f"fleet-{name}"))  # fmt: skip
    fleet.redis.flushdb()
    worker = fleet.start_worker(f"worker-{name}", "--pool", "threads", "--concurrency", str(concurrency))
    yield fleet
    worker.stop()
    fleet.redis.close()


def repository_variant(
    tmp_path_factory: pytest.TempPathFactory, name: str, edit: Callable[[Path], None]
) -> Iterator[StandIn]:
    """The offline MCP server on a copy of examples/framework that `edit` changed first."""
    repo = tmp_path_factory.mktemp(name) / "repo"
    shutil.copytree(EXAMPLES / "framework", repo)
    edit(repo)
    server = start_stand_in(f"mcp-{name}", ["mcp-serve", "--repo", str(repo), "--project-id", "42",
                                            "--log-level", "WARNING"], repo.parent)  # fmt: skip
    yield server
    server.child.stop()
