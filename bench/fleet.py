"""Bring-up and tear-down of the real pipeline for the benchmark, and one timed batch on it.

One `Stack` per bench run: a private redis-server, the offline MCP server on examples/framework
and the scripted model, all on loopback. Worker processes are started per scenario (their model
latency rides in the model name, `fake-writer?latency=S`, so one model server serves every
scenario). A batch is enqueued and collected in this process with the product's own code
(`plan_batch`, `enqueue`, `Collector`), and timed from the first enqueue to the last file written.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from rich.console import Console

from producer.collector import Collector
from producer.enqueue import plan_batch
from producer.fleet_cmds import enqueue
from producer.local_redis import LocalRedis, free_port
from producer.procs import Child, robot_fleet_command, start_child
from worker import keys
from worker.adapters.store import Store
from worker.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = PROJECT_ROOT / "examples"
PROJECT_ID = "42"
HOST = "127.0.0.1"
WORKER_READY_TIMEOUT_S = 60.0
COLLECT_BLOCK_MS = 100
STATE_POLL_S = 5.0
"""After this long without a new file, the bench reads every job's state (failed jobs write no
file). Only then: its Redis commands would otherwise be counted with the fleet's."""
FINAL_STATES = ("collected", "failed")


def model_name(latency: float) -> str:
    """The scripted model, with its per-response latency (seconds before the first chunk)."""
    return f"fake-writer?latency={latency:g}" if latency > 0 else "fake-writer"


def make_specs(directory: Path, count: int, start: int = 0, *, spread: bool = False) -> Path:
    """`count` spec files cycling the example sprint, each with its own id and target path.

    Spec number `i` is example `i % 17` with `-B<i>` added to its id and `_<i>` to its file name;
    `spread` picks fewer than 17 examples evenly over the sprint (the same mix of long and short
    specs as a whole sprint)."""
    examples = sorted((EXAMPLES / "specs").glob("*.json"))
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(start, start + count):
        pick = (index * len(examples)) // count if spread and count < len(examples) else index
        source = examples[pick % len(examples)]
        data = json.loads(source.read_text(encoding="utf-8"))
        base = data.get("id") or data.get("key") or source.name.removesuffix("_spec.json")
        spec_id = f"{base}-B{index:04d}"
        data["id"] = spec_id
        rf = data.setdefault("rf", {})
        target = Path(
            rf.pop("target_path", None) or rf.pop("output_path", None) or f"tests/generated/{base}.robot"
        )
        rf["target_path"] = str(target.with_name(f"{target.stem}_{index:04d}.robot"))
        (directory / f"{spec_id}_spec.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    return directory


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (its threads included) from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status_kb(pid: int, name: str) -> int:
    """A `VmHWM`/`VmRSS`-style line of /proc/<pid>/status, in kB (0 when gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{name}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class BatchRun:
    """What one timed batch produced."""

    batch_id: str
    specs: int
    elapsed_s: float
    """First enqueue (clock started before planning) to the last file written."""
    jobs: list[dict[str, str]]
    failed: int
    enqueue_s: float

    @property
    def collected(self) -> int:
        return sum(1 for job in self.jobs if job.get("state") == "collected")

    def job_durations(self) -> list[float]:
        return [float(j["finished_at"]) - float(j["started_at"]) for j in self.jobs if j.get("finished_at")]


@dataclass
class Stack:
    """Redis, the MCP server and the scripted model, up for the whole bench run."""

    work_dir: Path
    redis: LocalRedis = field(init=False)
    children: list[Child] = field(default_factory=list)
    workers: list[Child] = field(default_factory=list)
    mcp_port: int = field(default_factory=free_port)
    llm_port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.log_dir = self.work_dir / "logs"
        self.redis = LocalRedis(directory=self.work_dir / "redis", appendonly=False)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Stack:
        self.redis.start()
        mcp = robot_fleet_command("mcp-serve", "--repo", str(EXAMPLES / "framework"), "--host", HOST,
                                  "--port", str(self.mcp_port), "--project-id", PROJECT_ID,
                                  "--log-level", "WARNING")  # fmt: skip
        self.children.append(start_child("mcp-server", mcp, self.log_dir, ready_port=(HOST, self.mcp_port)))
        llm = robot_fleet_command(
            "fake-llm", "--host", HOST, "--port", str(self.llm_port), "--log-level", "warning"
        )
        self.children.append(start_child("fake-llm", llm, self.log_dir, ready_port=(HOST, self.llm_port)))
        return self

    def stop(self) -> None:
        self.stop_workers()
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        self.redis.stop()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- configuration -------------------------------------------------------------------

    @property
    def mcp_url(self) -> str:
        return f"http://{HOST}:{self.mcp_port}/mcp"

    @property
    def llm_base(self) -> str:
        return f"http://{HOST}:{self.llm_port}"

    def env(self, latency: float, **extra: str) -> dict[str, str]:
        """The fleet's environment (the original tool's variable names)."""
        return {
            "REDIS_URL": self.redis.url,
            "OPENAI_API_KEY": "bench-not-a-secret",
            "OPENAI_BASE_URL": f"{self.llm_base}/v1",
            "OPENAI_MODEL_WRITER": model_name(latency),
            "GITLAB_MCP_URL": self.mcp_url,
            "GITLAB_PROJECT_ID": PROJECT_ID,
            "GITLAB_REF": "main",
            **extra,
        }

    def settings(self, latency: float) -> Settings:
        env = self.env(latency)
        return Settings(**{name.lower(): value for name, value in env.items()})

    # -- workers -------------------------------------------------------------------------

    def start_workers(self, processes: int, threads: int, latency: float, **extra: str) -> list[Child]:
        """`processes` worker processes of `threads` threads each; returns once all consume."""
        self.stop_workers()
        env = self.env(latency, **extra)
        stamp = f"{processes}x{threads}-{time.monotonic_ns()}"
        for index in range(processes):
            command = robot_fleet_command(
                "worker", "--concurrency", str(threads), "--pool", "threads", "--without-mingle",
                "--without-gossip", f"--hostname=bench{index}-{stamp}@%h",
            )  # fmt: skip
            self.workers.append(start_child(f"worker-{stamp}-{index}", command, self.log_dir, env=env))
        deadline = time.monotonic() + WORKER_READY_TIMEOUT_S
        for worker in self.workers:
            while "ready" not in worker.log_text():
                if not worker.alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"{worker.name} did not start:\n{worker.log_text()[-3000:]}")
                time.sleep(0.05)
        return self.workers

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers.clear()

    # -- counters ------------------------------------------------------------------------

    def mcp_stats(self) -> dict[str, Any]:
        return httpx.get(f"http://{HOST}:{self.mcp_port}/stats", timeout=10).json()

    def llm_stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.llm_base}/stats", timeout=10).json()

    def reset_stats(self) -> None:
        httpx.post(f"http://{HOST}:{self.mcp_port}/stats/reset", timeout=10).raise_for_status()
        httpx.post(f"{self.llm_base}/stats/reset", timeout=10).raise_for_status()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis.url, decode_responses=True)

    def commandstats(self) -> dict[str, int]:
        """Calls per Redis command since the server started (INFO commandstats)."""
        with contextlib.closing(self.client()) as client:
            info = client.info("commandstats")
        return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in info.items()}

    def pids(self) -> dict[str, list[int]]:
        """Process ids by role, for CPU accounting."""
        by_name = {child.name: child.process.pid for child in self.children}
        return {
            "worker": [w.process.pid for w in self.workers],
            "fake-llm": [by_name["fake-llm"]],
            "mcp-server": [by_name["mcp-server"]],
            "redis": [self.redis.process.pid] if self.redis.process else [],
        }

    def cpu_snapshot(self) -> dict[str, float]:
        snapshot = {role: sum(proc_cpu_s(pid) for pid in pids) for role, pids in self.pids().items()}
        times = os.times()
        snapshot["bench (enqueue + collector)"] = times.user + times.system
        return snapshot

    # -- one batch -----------------------------------------------------------------------

    def run_batch(self, specs_dir: Path, name: str, latency: float, timeout_s: float) -> BatchRun:
        output_dir = self.work_dir / "out" / name
        shutil.rmtree(output_dir, ignore_errors=True)
        return asyncio.run(self._run_batch(specs_dir, output_dir, name, latency, timeout_s))

    async def _run_batch(
        self, specs_dir: Path, output_dir: Path, name: str, latency: float, timeout_s: float
    ) -> BatchRun:
        settings = self.settings(latency)
        quiet = Console(file=io.StringIO())
        started = time.time()
        plan = plan_batch(specs_dir, output_dir, settings, force=True)
        batch_id = await enqueue(settings, plan, name, quiet)
        if batch_id is None:
            raise RuntimeError(f"nothing to enqueue in {specs_dir}")
        enqueue_s = time.time() - started
        store = Store.from_url(settings.redis_url)
        try:
            await self._collect(store, batch_id, len(plan.accepted), output_dir, started + timeout_s)
            jobs = await store.jobs(await store.job_ids(batch_id))
        finally:
            await store.close()
        ends = [float(job["collected_at"]) for job in jobs if job.get("collected_at")]
        ends += [float(job["finished_at"]) for job in jobs if job.get("state") == "failed"]
        elapsed = (max(ends) if ends else time.time()) - started
        failed = sum(1 for job in jobs if job.get("state") == "failed")
        return BatchRun(batch_id, len(plan.accepted), elapsed, jobs, failed, enqueue_s)

    @staticmethod
    async def _collect(store: Store, batch_id: str, total: int, output_dir: Path, deadline: float) -> None:
        """Collect (write the files, as `robot-fleet collect` does) until every job is final."""
        collector = Collector(store, output_override=output_dir)
        done = 0
        last_progress = time.monotonic()
        while True:
            got = len(await collector.step([batch_id], block_ms=COLLECT_BLOCK_MS))
            done += got
            if done >= total:
                return
            if got:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress >= STATE_POLL_S:
                last_progress = time.monotonic()
                states = [job.get("state") for job in await store.jobs(await store.job_ids(batch_id))]
                if all(state in FINAL_STATES for state in states):
                    return
            if time.time() > deadline:
                raise TimeoutError(f"batch {batch_id}: {done}/{total} files after the time limit")


def log_xlens(stack: Stack, job_ids: list[str]) -> list[int]:
    """Entries in each job's log stream (one XADD each)."""
    with contextlib.closing(stack.client()) as client:
        pipe = client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.xlen(keys.job_log(job_id))
        return [int(n) for n in pipe.execute()]


@contextlib.contextmanager
def running_stack(work_dir: Path) -> Iterator[Stack]:
    stack = Stack(work_dir)
    try:
        yield stack.start()
    finally:
        stack.stop()
