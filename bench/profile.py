"""Where a worker's CPU goes: py-spy samples of the worker processes, split by layer.

py-spy samples every thread of a running process from outside (Celery's threads pool and the
asyncio loop thread alike) and leaves idle threads out, so each sample is CPU spent. Each sample
is put in the layer of its innermost frame that belongs to a known layer (a JSON encoder called by
the openai client counts as "model client"); samples with no known frame are the Python runtime
(asyncio's loop, threading, logging).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = f"{Path(__file__).resolve().parents[1]}/"
SAMPLE_RATE_HZ = 100
STOP_TIMEOUT_S = 20.0

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "verification (robot, robocop, checks)",
        ("robot/", "robocop/", "worker/agent/checks/", "worker/agent/catalog.py", "worker/agent/output.py"),
    ),
    ("model client (openai)", ("openai/", "jiter/", "worker/adapters/llm.py", "worker/agent/stream.py")),
    (
        "MCP client (mcp)",
        (
            "mcp/",
            "mcp_types/",
            "worker/adapters/mcp_tools.py",
            "worker/agent/tools.py",
            "worker/agent/context.py",
        ),
    ),
    ("Redis (job store, log stream)", ("redis/", "worker/adapters/store.py", "worker/fleet/logsink.py")),
    (
        "Celery (celery, kombu)",
        ("celery/", "kombu/", "billiard/", "vine/", "worker/fleet/tasks.py", "worker/fleet/celery_app.py"),
    ),
    (
        "writer loop (prompt, events, job)",
        (
            "worker/agent/loop.py",
            "worker/agent/prompt.py",
            "worker/agent/events.py",
            "worker/fleet/jobs.py",
            "worker/agent/writer.py",
            "worker/fleet/runtime.py",
            "worker/spec.py",
            "worker/redact.py",
        ),
    ),
)
"""Markers are matched at the start of a frame's file as py-spy prints it (relative to
site-packages or the project). HTTP transports (httpx2, httpcore2, h11, anyio) and pydantic serve
both SDKs, so they have no layer of their own: their samples go to the SDK that called them."""
RUNTIME = "Python runtime (asyncio loop, threads, logging, json)"
IDLE_LEAVES = (
    ("threading.py", "Condition.wait"),
    ("threading.py", "Thread._wait_for_tstate_lock"),
    ("concurrent/futures/thread.py", "_worker"),
    ("selectors.py", "EpollSelector.select"),
    ("queue.py", "Queue.get"),
    ("celery/worker/loops.py", "asynloop"),
    ("redis/_parsers/socket.py", "SocketBuffer._read_from_socket"),
)
"""Leaf frames of threads blocked in a wait (py-spy in non-blocking mode may count some as
active): a thread pool waiting for work, an event loop in epoll, a blocking Redis read."""
IDLE = "idle (blocked in a wait)"


def py_spy() -> str | None:
    """The py-spy binary next to this interpreter, else on PATH (pip install py-spy)."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


@dataclass
class Recording:
    process: subprocess.Popen[bytes]
    output: Path


def start_recording(pid: int, output: Path) -> Recording | None:
    """py-spy sampling `pid` (all threads, idle left out) until `stop_recording`."""
    binary = py_spy()
    if binary is None:
        return None
    command = [binary, "record", "--pid", str(pid), "--rate", str(SAMPLE_RATE_HZ), "--nonblocking",
               "--format", "raw", "--output", str(output)]  # fmt: skip
    log = output.with_suffix(".log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    return Recording(process, output)


def stop_recording(recording: Recording) -> Counter[str]:
    """Stop py-spy (SIGINT makes it write its file) and split its samples by layer."""
    if recording.process.poll() is None:
        recording.process.send_signal(signal.SIGINT)
        try:
            recording.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            recording.process.kill()
            recording.process.wait()
    if not recording.output.exists():
        return Counter()
    return split_by_layer(recording.output.read_text(errors="replace"))


def frame_file(frame: str) -> str:
    """`function (path/file.py:123)` -> `path/file.py`, relative to site-packages or the project."""
    where = frame.rpartition(" (")[2].rstrip(")").rpartition(":")[0]
    for cut in ("site-packages/", PROJECT_ROOT):
        if cut in where:
            where = where.split(cut, 1)[1]
    return where


def layer_of(stack: list[str]) -> str:
    """The layer of a sample: its innermost frame in a known layer (frames root first)."""
    leaf = stack[-1]
    if any(frame_file(leaf) == path and leaf.startswith(f"{function} (") for path, function in IDLE_LEAVES):
        return IDLE
    for frame in reversed(stack):
        path = frame_file(frame)
        for layer, markers in LAYERS:
            if path.startswith(markers):
                return layer
    return RUNTIME


def split_by_layer(raw: str) -> Counter[str]:
    """py-spy's raw output (`frame;frame;... count` per line) -> samples per layer."""
    counts: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            counts[layer_of(stack.split(";"))] += int(count)
    return counts


def top_frames(raw: str, limit: int = 15) -> list[tuple[str, int]]:
    """The innermost project or library functions with the most samples (self + callees below
    the first frame outside the standard library)."""
    counts: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if layer_of(frames) == IDLE:
            continue
        named = next((f for f in reversed(frames) if "site-packages" in f or "/worker/" in f), frames[-1])
        counts[_short(named)] += int(count)
    return counts.most_common(limit)


def _short(frame: str) -> str:
    function, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for cut in ("site-packages/", PROJECT_ROOT):
        if cut in where:
            where = where.split(cut, 1)[1]
    return f"{function} ({where})"
