"""`robot-fleet rules` as a team runs it before a sprint, on a repository whose convention is in
French (tests/fixtures/boutique_fr), through the offline MCP server: what is enforced and by what,
and the library the workers lack, readable at 80 columns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, StandIn, start_stand_in

pytestmark = pytest.mark.integration

FRENCH = REPO_ROOT / "tests" / "fixtures" / "boutique_fr"


@pytest.fixture(scope="module")
def french_mcp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    server = start_stand_in("mcp-fr", ["mcp-serve", "--repo", str(FRENCH), "--project-id", "7",
                                       "--log-level", "WARNING"], tmp_path_factory.mktemp("mcp-fr"))  # fmt: skip
    yield server
    server.child.stop()


def rules(server: StandIn, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "GITLAB_MCP_URL": f"{server.base}/mcp", "GITLAB_PROJECT_ID": "7",
                   "OPENAI_API_KEY": "sk-test-not-a-secret", "COLUMNS": "80", **env}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "producer.cli", "rules", *args], env=environment,
                          capture_output=True, text=True, timeout=120, cwd=Path("/"))  # fmt: skip


def test_rules_names_the_convention_its_reviewer_the_rules_file_and_the_missing_library(
    french_mcp: StandIn,
) -> None:
    shown = rules(french_mcp, OPENAI_MODEL_REVIEWER="judge-1")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    text = " ".join(shown.stdout.split())
    convention_lines = len((FRENCH / "doc" / "convention.md").read_text().splitlines())
    assert f"convention: doc/convention.md, {convention_lines} lines" in text
    assert "the reviewer (judge-1) checks each suite against it and the spec's criteria" in text
    assert "rules file: .robot-fleet.toml" in text
    assert "not installed here: robotframework-browser (requirements.txt)" in text
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    assert "Traceback" not in shown.stderr


def test_rules_says_when_no_reviewer_checks_the_convention_and_json_says_the_same(
    french_mcp: StandIn,
) -> None:
    shown = rules(french_mcp, WRITER_REVIEW="false")
    assert "no reviewer checks it (WRITER_REVIEW=false)" in " ".join(shown.stdout.split())
    as_json = json.loads(rules(french_mcp, "--json", WRITER_REVIEW="false").stdout)
    assert as_json["convention"] == {"path": "doc/convention.md", "lines": len(
        (FRENCH / "doc" / "convention.md").read_text().splitlines()), "reviewed": False}  # fmt: skip
    assert as_json["missing_requirements"] == ["robotframework-browser"]
    assert as_json["rules"], "the French rules file's rules are listed"
