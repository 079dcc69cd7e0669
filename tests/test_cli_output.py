"""What a user reads: files others can read, tables readable at 80 columns, spec errors with a
hint, rejected specs and stray files accounted for, thinking apart from the answer, the commands
grouped by what a user does, the demo's own Redis."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from producer.outputs import atomic_write_text
from tests.conftest import EXAMPLES, StandIn
from tests.fleet_harness import Fleet, fault_spec, fleet_on_db, spec_dir
from worker.agent.events import Event, EventKind

pytestmark = pytest.mark.integration

OUTPUT_DB = 11


def test_written_files_and_the_manifest_honour_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.robot", "x\n")
        os.umask(0o077)
        atomic_write_text(tmp_path / "b.robot", "x\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.robot").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.robot").stat().st_mode) == 0o600


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, redis_server, mcp_server: StandIn, fake_llm: StandIn):
    yield from fleet_on_db(
        tmp_path_factory, redis_server, mcp_server, fake_llm, OUTPUT_DB, "output", WRITER_REVIEW="false"
    )


def narrow(fleet: Fleet, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "producer.cli", *args], capture_output=True, text=True,
                          timeout=180, env={**os.environ, **fleet.env, "COLUMNS": "80"})  # fmt: skip


def test_a_batch_at_80_columns_keeps_ids_whole_and_accounts_for_every_file(
    fleet: Fleet, tmp_path: Path
) -> None:
    long_id = "AMCXSQL-1707"
    specs = spec_dir(tmp_path, [], {f"{long_id}_spec.json": {**fault_spec(long_id), "rf": {"target_path":
                     "tests/auth/very/long/folder/names/for/a/sprint/login_with_valid_credentials.robot"}}})  # fmt: skip
    (specs / "notes.txt").write_text("planner notes")
    (specs / "cut_spec.json").write_text('{"id": "CUT-1", "title": "cut')
    out = tmp_path / "out"
    done = narrow(fleet, "run", str(specs), "--batch", "t-narrow", "--output-dir", str(out))
    lines = done.stdout.splitlines()
    table = [
        line for line in lines if not line.startswith("rejected ")
    ]  # a rejection is one line, however long
    assert all(len(line) <= 80 for line in table), [line for line in table if len(line) > 80]
    assert any(line.startswith(long_id + " ") for line in lines), done.stdout
    assert any("tests/auth/very/long" in line and str(out) not in line for line in lines), done.stdout
    batch = fleet.batch_of(done.stdout)
    assert any(line == f"batch {batch}" for line in lines), "the batch id whole on a line of its own"
    text = " ".join(done.stdout.split())
    assert "skipped " + str(specs / "notes.txt") + ": not a spec file" in text
    assert "a string is never closed" in text and "export it again from the planner" in text
    status = json.loads(narrow(fleet, "status", batch, "--json").stdout)
    assert [r["spec_id"] for r in status["rejected"]] == ["cut"] and status["ignored"] == [
        str(specs / "notes.txt")
    ]
    logs = narrow(fleet, "logs", f"{batch}:cut")
    assert logs.returncode == 2 and "cut was rejected in batch" in " ".join(logs.stdout.split())
    assert "a string is never closed" in " ".join(logs.stdout.split())
    batches = narrow(fleet, "status").stdout.splitlines()
    assert any(line.startswith(batch) for line in batches) and all(len(line) <= 80 for line in batches)


def test_thinking_and_the_answer_never_run_together() -> None:
    from io import StringIO

    from rich.console import Console

    from producer.console import ConsoleSink

    buffer = StringIO()
    sink = ConsoleSink(Console(file=buffer, width=80))
    for kind, text in [(EventKind.THINKING, "writing the suite."), (EventKind.TEXT, "*** Settings ***\n")]:
        sink.emit(Event(kind, text))
    assert buffer.getvalue().splitlines() == ["writing the suite.", "*** Settings ***"]


def test_help_lists_the_sprint_commands_first_and_the_stand_ins_last() -> None:
    done = subprocess.run([sys.executable, "-m", "producer.cli", "--help"], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "100"}, timeout=60)  # fmt: skip
    panels = re.findall(r"─ ([A-Z][\w -]+?) ─", done.stdout)
    assert panels == ["Options", "A sprint", "The fleet", "Offline stand-ins"], panels
    assert done.stdout.index(" run ") < done.stdout.index(" worker ") < done.stdout.index(" mcp-serve ")


def test_the_demo_uses_a_private_redis_unless_redis_url_is_set(tmp_path: Path) -> None:
    from rich.console import Console

    from producer.demo import demo_redis
    from worker.settings import Settings

    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    os.environ.clear()
    os.environ.update(env)
    cwd = Path.cwd()
    os.chdir(tmp_path)  # no .env here either
    try:
        with demo_redis(Settings(), Console(file=open(os.devnull, "w"))) as (url, private):
            assert private and not url.endswith(":6379/0")
    finally:
        os.chdir(cwd)


def test_examples_specs_bad_are_each_refused_with_a_complete_line(tmp_path: Path) -> None:
    from producer.enqueue import plan_batch
    from worker.settings import Settings

    plan = plan_batch(EXAMPLES / "specs-bad", tmp_path, Settings(gitlab_project_id="42"))
    assert plan.accepted == [] and plan.ignored == [str(EXAMPLES / "specs-bad" / "README.md")]
    for rejection in plan.rejected:
        assert not rejection.reason.rstrip().endswith((" at", ":")), rejection.reason
