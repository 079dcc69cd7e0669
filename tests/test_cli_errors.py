"""The CLI explains what it cannot do in one line, without a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from producer.local_redis import free_port
from tests.conftest import EXAMPLES

pytestmark = pytest.mark.integration


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "producer.cli", *args],
        env={**os.environ, "COLUMNS": "200", **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize("args", [("status",), ("run", str(EXAMPLES / "specs"))], ids=["status", "run"])
def test_unreachable_redis_is_one_line_and_exit_1(tmp_path: Path, args: tuple[str, ...]) -> None:
    done = cli(*args, *(["--output-dir", str(tmp_path)] if args[0] == "run" else []),
               REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", GITLAB_PROJECT_ID="42")  # fmt: skip
    assert done.returncode == 1
    assert "error (store_unavailable): Redis unavailable" in done.stderr and "REDIS_URL" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_missing_specs_directory_is_exit_2(tmp_path: Path) -> None:
    done = cli("enqueue", str(tmp_path / "nope"))
    assert done.returncode == 2 and "nope: not a directory of spec files" in done.stderr


def test_worker_refuses_to_start_without_a_project_to_read() -> None:
    done = cli("worker", GITLAB_PROJECT_ID="", REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert done.returncode == 2
    assert "error (config): GITLAB_PROJECT_ID is not set" in " ".join(done.stderr.split())
