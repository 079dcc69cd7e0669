"""Verified suites over the real servers: every gate of the verification stages, driven by a
scripted draft that breaks it, ends `verified` after repair — and the verified suite passes when a
person runs it — or, with no repair left, `failing` (written) or failed (nothing written) with the
exact diagnostic. Never a false `verified`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from producer.manifest import load_entries
from tests.conftest import StandIn, writer_env
from tests.fleet_harness import Fleet, fault_spec, fleet_on_db, repository_variant, spec_dir
from tests.robot_helpers import run_in_framework
from tests.test_write_cli import SPEC, write

pytestmark = pytest.mark.integration

GATES = [
    ("fails_when_run", r"test `SHOP-901 [^`]+` failed when run at `[^`]+`"),
    ("log_only", r"calls none of the repository's keywords; use them for its steps\. Closest: `"),
    ("placeholder", r"line \d+: placeholder `<\w+>`: write the real value"),
    ("undefined_variable", r"line \d+: variable `\$\{BROWSER_HEADLESS\}` is not defined"),
    ("rule_breaking", r"`Sleep` is forbidden \(\.robot-fleet\.toml: keywords\.forbidden\)"),
]


def env(mcp: StandIn, llm: StandIn, draft: str, **extra: str) -> dict[str, str]:
    return writer_env(mcp, llm, knobs=f"draft={draft}", WRITER_EXECUTE="true", WRITER_REVIEW="false", **extra)


@pytest.mark.parametrize(("draft", "diagnostic"), GATES)
def test_each_broken_draft_is_diagnosed_then_repaired_into_a_suite_that_passes_when_run(
    tmp_path: Path, mcp_server: StandIn, fake_llm: StandIn, draft: str, diagnostic: str
) -> None:
    run = write(tmp_path, env(mcp_server, fake_llm, draft))
    text = " ".join(run.stdout.split())
    assert run.returncode == 0, run.stdout + run.stderr
    assert "checks: failing" in text and re.search(f"! repair 1/2: - .*{diagnostic}", text), text
    assert f"verified: wrote {run.output}" in text
    ran, passed, failing = run_in_framework({SPEC["rf"]["target_path"]: run.text}, tmp_path)
    assert ran >= 1 and passed == ran, failing


@pytest.mark.parametrize(("draft", "diagnostic"), GATES)
def test_with_no_repair_left_a_broken_draft_is_written_as_failing_with_its_diagnostic(
    tmp_path: Path, mcp_server: StandIn, fake_llm: StandIn, draft: str, diagnostic: str
) -> None:
    run = write(tmp_path, env(mcp_server, fake_llm, draft, WRITER_MAX_REPAIRS="0"))
    text = " ".join(run.stdout.split())
    assert run.returncode == 1, text
    assert re.search(f"! not repaired \\(repair budget spent\\): - .*{diagnostic}", text), text
    assert f"failing: wrote {run.output}" in text and run.output.exists()


def test_a_failing_suite_is_kept_out_of_the_tree_when_asked(
    tmp_path: Path, mcp_server: StandIn, fake_llm: StandIn
) -> None:
    run = write(
        tmp_path,
        env(mcp_server, fake_llm, "placeholder", WRITER_MAX_REPAIRS="0", WRITE_FAILING_SUITES="false"),
    )
    assert run.returncode == 1 and "failing, not written (WRITE_FAILING_SUITES=false)" in " ".join(
        run.stdout.split()
    )
    assert not run.output.exists()


def test_a_call_that_resolves_nowhere_is_never_written(
    tmp_path: Path, mcp_server: StandIn, fake_llm: StandIn
) -> None:
    run = write(tmp_path, env(mcp_server, fake_llm, "unknown_keyword", WRITER_MAX_REPAIRS="0"))
    assert run.returncode == 1 and "failed (repairs_exhausted)" in run.stderr
    assert "No keyword named `Verify Everything Went Fine`" in " ".join(run.stderr.split())
    assert "retrying will not help" in run.stderr and not run.output.exists()


def _import_browser(repo: Path) -> None:
    common = repo / "resources" / "common.resource"
    common.write_text(
        common.read_text().replace("Library    String\n", "Library    String\nLibrary    Browser\n")
    )


@pytest.fixture(scope="module")
def browser_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    """examples/framework whose common resource also imports `Browser`, which the workers lack."""
    yield from repository_variant(tmp_path_factory, "browser", _import_browser)


def test_a_keyword_hiding_behind_a_missing_library_leaves_the_suite_unverified_naming_it(
    tmp_path: Path, browser_repo: StandIn, fake_llm: StandIn
) -> None:
    run = write(tmp_path, env(browser_repo, fake_llm, "unknown_keyword"))
    text = " ".join(run.stdout.split())
    assert run.returncode == 1, text
    assert "unverified: wrote" in text and "`Verify Everything Went Fine`" in text
    assert "could only come from `Browser`, which the workers cannot load" in text


VERDICT_DB = 10


@pytest.fixture(scope="module")
def strict_fleet(
    tmp_path_factory: pytest.TempPathFactory, redis_server, mcp_server: StandIn, fake_llm: StandIn
):
    """A worker that runs suites and has no repair turn: every broken draft ends as it was."""
    yield from fleet_on_db(tmp_path_factory, redis_server, mcp_server, fake_llm, VERDICT_DB, "strict",
                           WRITER_EXECUTE="true", WRITER_REVIEW="false", WRITER_MAX_REPAIRS="0")  # fmt: skip


def verdict_specs(tmp_path: Path) -> Path:
    return spec_dir(tmp_path, [], {
        "V-1.json": fault_spec("V-1"), "V-2.json": fault_spec("V-2", draft="placeholder"),
        "V-3.json": fault_spec("V-3", draft="unknown_keyword"), "V-4.json": fault_spec("V-4", draft="fails_when_run"),
    })  # fmt: skip


def test_a_batch_keeps_verified_failing_and_failed_apart_everywhere(
    strict_fleet: Fleet, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    done = strict_fleet.cli(
        "run", str(verdict_specs(tmp_path)), "--batch", "t-verdicts", "--output-dir", str(out)
    )
    text = " ".join(done.stdout.split())
    assert done.returncode == 1, text
    assert "3 suites: 1 verified, 2 failing; 1 failed, 0 rejected" in text
    batch = strict_fleet.batch_of(done.stdout)
    jobs = {job["spec_id"]: job for job in strict_fleet.jobs(batch)}
    assert {spec: (job["state"], job.get("verdict", "")) for spec, job in jobs.items()} == {
        "V-1": ("collected", "verified"), "V-2": ("collected", "failing"), "V-3": ("failed", ""),
        "V-4": ("collected", "failing"),
    }  # fmt: skip
    entries = {entry["spec_id"]: entry for entry in load_entries(out).values()}
    assert {spec: entry["verdict"] for spec, entry in entries.items()} == {
        "V-1": "verified", "V-2": "failing", "V-4": "failing"}  # fmt: skip
    assert entries["V-1"]["figures"]["tests_passed"] == entries["V-1"]["figures"]["tests_run"] >= 1
    assert entries["V-4"]["figures"]["tests_failed"] == 1
    status = json.loads(strict_fleet.cli("status", batch, "--json").stdout)
    assert status["verdicts"] == {"verified": 1, "failing": 2}
    shown = {job["spec_id"]: job for job in status["jobs"]}
    static = next(s for s in shown["V-2"]["checks"]["stages"] if s["stage"] == "static")
    assert static["outcome"] == "failed" and any("placeholder `<" in line for line in static["diagnostics"])
    assert shown["V-4"]["stages"] == {"static": "passed", "rules": "passed", "review": "skipped",
                                      "execution": "failed"}  # fmt: skip
    assert shown["V-1"]["tests_run"] >= 1 and isinstance(shown["V-1"]["reuse_share"], float)


def test_failing_suites_stay_out_of_the_tree_when_the_run_asks(strict_fleet: Fleet, tmp_path: Path) -> None:
    out = tmp_path / "out"
    specs = spec_dir(tmp_path, [], {"W-1.json": fault_spec("W-1", draft="placeholder")})
    environment = {**strict_fleet.env, "WRITE_FAILING_SUITES": "false"}
    done = subprocess.run([sys.executable, "-m", "producer.cli", "run", str(specs), "--batch", "t-withheld",
                           "--output-dir", str(out)], env={**os.environ, **environment, "COLUMNS": "220"},
                          capture_output=True, text=True, timeout=180)  # fmt: skip
    assert done.returncode == 1
    assert "not written (failing; WRITE_FAILING_SUITES=false)" in " ".join(done.stdout.split())
    assert not list(out.rglob("*.robot"))
