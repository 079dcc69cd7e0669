"""Child processes the demo (and the tests) start and must stop: servers, workers, collectors."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def robot_fleet_command(*args: str) -> list[str]:
    """The CLI as a child process, from the same interpreter (works without the console script)."""
    return [sys.executable, "-m", "producer.cli", *args]


@dataclass
class Child:
    """A started child process, its own process group, its output in a log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM the whole group, then SIGKILL what is left after `timeout`."""
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.process.wait()
        # children of the group that outlived the leader
        self.signal(signal.SIGKILL)
        return self.process.returncode


def start_child(
    name: str,
    command: Sequence[str],
    log_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    ready_port: tuple[str, int] | None = None,
    ready_timeout: float = READY_TIMEOUT_S,
) -> Child:
    """Start `command` in its own process group; wait until `ready_port` accepts connections."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    full_env = {**os.environ, **(env or {})}
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )
    child = Child(name=name, process=process, log_path=log_path)
    if ready_port is not None:
        deadline = time.monotonic() + ready_timeout
        while not port_open(*ready_port):
            if not child.alive():
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{child.log_text()[-2000:]}")
            if time.monotonic() > deadline:
                child.stop()
                raise RuntimeError(f"{name} did not listen on {ready_port} in {ready_timeout}s")
            time.sleep(0.05)
    return child
