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


@pytest.mark.parametrize("command", ["status", "run", "worker", "rules"])
def test_a_setting_that_does_not_validate_is_one_line_naming_it_and_exit_2(
    tmp_path: Path, command: str
) -> None:
    done = cli(command, *([str(EXAMPLES / "specs")] if command == "run" else []), WRITER_MAX_ROUNDS="many",
               FLEET_PAUSE_AFTER="1", OPENAI_API_KEY="sk-secret-value", GITLAB_PROJECT_ID="42")  # fmt: skip
    text = " ".join(done.stderr.split())
    assert done.returncode == 2, done.stdout + done.stderr
    assert "error (config): WRITER_MAX_ROUNDS='many': Input should be a valid integer" in text
    assert "error (config): FLEET_PAUSE_AFTER='1':" in text and "0 (no pause) or 2 or more" in text
    assert "Traceback" not in done.stdout + done.stderr and "sk-secret-value" not in done.stdout + done.stderr
