"""Stage 4, execution (opt-in): the suite run by Robot Framework, as the team runs it.

The worker writes what the suite needs at the pinned ref (`materialize.py`) into a private
temporary directory, runs `python -m robot` on the suite there in a subprocess of its own process
group (the repository's run options; a wall-clock limit; an environment holding no secret: only
PATH, locale and the variables a setting names), reads `output.xml` with `robot.api.ExecutionResult`
and reports each failing test: its name, the step that failed and Robot's message.

This runs the team's own keywords, against whatever system they point at. A run that cannot happen
(robot refuses the options, the runner breaks) is `not_run`, never `passed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from robot.api import ExecutionResult
from robot.errors import DataError

from worker.agent.checks import materialize
from worker.agent.checks.scope import ReadFile, Scope
from worker.agent.checks.suite import ParsedSuite
from worker.agent.checks.verdict import Outcome, Stage, StageResult, not_run

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 120.0
MESSAGE_CHARS = 300
MAX_ERRORS = 5
BASE_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
ROBOT_USAGE_ERROR = 252


@dataclass(frozen=True)
class RunSettings:
    timeout_s: float = DEFAULT_TIMEOUT_S
    extra_options: tuple[str, ...] = ()
    """Added after the repository's own run options (WRITER_EXECUTE_OPTIONS)."""
    env_names: tuple[str, ...] = ()
    """Environment variables passed through to the run (WRITER_EXECUTE_ENV); never a secret."""
    secret_names: frozenset[str] = frozenset()
    """Never passed, whatever `env_names` says."""
    concurrency: int = max(1, os.cpu_count() or 1)


class SuiteRunner:
    """Runs suites for one worker process, at most `concurrency` at a time."""

    def __init__(self, settings: RunSettings) -> None:
        self.settings = settings
        self._slots: asyncio.Semaphore | None = None

    def environment(self, home: Path) -> dict[str, str]:
        names = [*BASE_ENV, *self.settings.env_names]
        env = {name: os.environ[name] for name in names if name in os.environ}
        for name in self.settings.secret_names:
            env.pop(name, None)
        env.update(HOME=str(home), TMPDIR=str(home), PYTHONDONTWRITEBYTECODE="1", PYTHONIOENCODING="utf-8")
        return env

    async def run(
        self,
        parsed: ParsedSuite,
        scope: Scope,
        options: Iterable[str],
        read_file: ReadFile,
        tree: Collection[str],
    ) -> StageResult:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.settings.concurrency)
        options = [*options, *self.settings.extra_options]
        inits = list(scope.inits)
        needed = [*scope.imported_files, *inits, *_variable_files(options)]
        scan = {parsed.target_path: parsed.model, **scope.resources}
        files = await materialize.closure(scan, needed, read_file, tree, skip=parsed.target_path)
        async with self._slots:
            with tempfile.TemporaryDirectory(prefix="robot-fleet-run-") as folder:
                root = Path(folder) / "repo"
                materialize.write_tree(root, {**files, parsed.target_path: parsed.text})
                start = inits[0].rsplit("/", 1)[0] if inits and "/" in inits[0] else None
                target = start if start is not None else ("." if inits else parsed.target_path)
                return await self._robot(root, Path(folder), options, target, len(files), parsed)

    async def _robot(
        self, root: Path, home: Path, options: list[str], target: str, files: int, parsed: ParsedSuite
    ) -> StageResult:
        output = home / "output.xml"
        command = [sys.executable, "-m", "robot", *options, "--output", str(output), "--log", "NONE",
                   "--report", "NONE", "--console", "quiet", target]  # fmt: skip
        try:
            process = await asyncio.create_subprocess_exec(
                *command, cwd=root, env=self.environment(home), start_new_session=True,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
        except OSError as exc:
            return not_run(Stage.EXECUTION, f"robot could not be started: {exc}")
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                _, stderr = await process.communicate()
        except TimeoutError:
            _kill(process)
            await process.wait()
            message = (
                f"the suite did not finish within {self.settings.timeout_s:g}s (WRITER_EXECUTE_TIMEOUT_S)"
            )
            return StageResult(Stage.EXECUTION, Outcome.FAILED, (message,), {"files_materialized": files})
        except BaseException:
            _kill(process)
            raise
        errors = stderr.decode("utf-8", "replace")
        if process.returncode == ROBOT_USAGE_ERROR or not output.exists():
            lines = [line.strip() for line in errors.splitlines() if line.strip()]
            reason = next((line for line in lines if "[ ERROR ]" in line), lines[-1] if lines else "")
            reason = reason.replace("[ ERROR ] ", "") or f"exit code {process.returncode}"
            return not_run(Stage.EXECUTION, f"robot did not run the suite: {reason}")
        return await asyncio.to_thread(_read_results, output, errors, files, parsed)


def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _variable_files(options: list[str]) -> list[str]:
    return [value.split(":", 1)[0] for flag, value in pairwise(options)
            if flag in ("--variablefile", "-V")]  # fmt: skip


def _read_results(output: Path, errors: str, files: int, parsed: ParsedSuite) -> StageResult:
    try:
        result = ExecutionResult(str(output))
    except DataError as exc:
        return not_run(Stage.EXECUTION, f"robot's output could not be read: {exc}")
    tests = list(result.suite.all_tests)
    failed = [test for test in tests if test.status == "FAIL"]
    skipped = [test for test in tests if test.status == "SKIP"]
    figures = {"tests_run": len(tests), "tests_passed": len(tests) - len(failed) - len(skipped),
               "tests_failed": len(failed), "tests_skipped": len(skipped), "files_materialized": files}  # fmt: skip
    written = {test.name: test for test in parsed.suite.tests}
    problems = [_failure(test, written.get(test.name)) for test in failed]
    problems += [f"robot reported: {line.strip()}" for line in errors.splitlines() if "[ ERROR ]" in line][
        :MAX_ERRORS
    ]
    if not tests:
        return StageResult(
            Stage.EXECUTION, Outcome.FAILED, ("robot ran no test of the suite.", *problems), figures
        )
    if failed:
        return StageResult(Stage.EXECUTION, Outcome.FAILED, tuple(problems), figures)
    if skipped:
        names = ", ".join(f"`{test.name}`" for test in skipped[:5])
        return StageResult(Stage.EXECUTION, Outcome.INCOMPLETE, (f"skipped when run: {names}",), figures)
    return StageResult(Stage.EXECUTION, Outcome.PASSED, tuple(problems), figures)


def _failure(test: Any, written: Any) -> str:
    """`written` is the test in the suite's running model: the failed step's line comes from it."""
    steps = _steps(test)
    index = next((i for i, item in enumerate(steps) if getattr(item, "status", "") == "FAIL"), None)
    message = " ".join(str(test.message).split())
    if len(message) > MESSAGE_CHARS:
        message = message[: MESSAGE_CHARS - 1] + "…"
    where = ""
    if index is not None:
        step = steps[index]
        call = "    ".join([step.name, *map(str, getattr(step, "args", ()))]) if step.name else step.type
        source = _steps(written) if written is not None else []
        line = getattr(source[index], "lineno", None) if index < len(source) else None
        where = f" at `{call}`" + (f" (line {line})" if line else "")
    return f"test `{test.name}` failed when run{where}: {message}"


def _steps(test: Any) -> list[Any]:
    return [item for item in (test.setup, *test.body, test.teardown) if item]
