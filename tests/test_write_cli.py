"""`robot-fleet write` as a subprocess against the offline MCP server and the scripted model over
HTTP: the real openai client, the real mcp client, the real writer loop."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import StandIn, writer_env
from tests.robot_helpers import builtin_keywords, framework_keywords, keyword_calls, normalize
from worker.agent.output import validate_suite

pytestmark = pytest.mark.integration

SPEC = {
    "id": "SHOP-901",
    "title": "Customer logs in with valid credentials",
    "area": "auth",
    "scenarios": [
        {
            "name": "Login with valid credentials",
            "steps": [
                "Open the shop session",
                'Log in as "alice" with password "Secret123!"',
                "Check the user is logged in",
            ],
            "tags": ["smoke"],
        }
    ],
    "rf": {"target_path": "tests/auth/generated/login_valid.robot"},
}


@dataclass
class WriteRun:
    returncode: int
    stdout: str
    stderr: str
    output: Path

    @property
    def text(self) -> str:
        return self.output.read_text(encoding="utf-8")


def write(tmp_path: Path, env: dict[str, str], spec: dict | None = None) -> WriteRun:
    """Run `robot-fleet write`; the spec's title names the test, so each test is its own
    conversation for the scripted model (its `fail_first` counts per conversation)."""
    spec_path = tmp_path / "SHOP-901_spec.json"
    spec = dict(spec or SPEC, title=f"{SPEC['title']} ({tmp_path.name})")
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "producer.cli", "write", str(spec_path), "--output-dir", str(out)],
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    target = spec.get("rf", {}).get("target_path", "tests/generated/SHOP-901.robot")
    return WriteRun(done.returncode, done.stdout, done.stderr, out / target)


def assert_grounded_suite(run: WriteRun) -> None:
    assert run.returncode == 0, run.stdout + run.stderr
    assert validate_suite(run.text).ok, run.text
    calls = [normalize(call) for call in keyword_calls(run.text)]
    known = framework_keywords() | builtin_keywords()
    assert calls and all(call in known for call in calls), calls
    assert any(call in framework_keywords() for call in calls)


def test_writes_a_parseable_suite_using_framework_keywords(
    tmp_path: Path, mcp_server: StandIn, fake_llm: StandIn
) -> None:
    mcp_server.reset()
    run = write(tmp_path, writer_env(mcp_server, fake_llm))
    assert_grounded_suite(run)
    assert "SHOP-901" in run.text
    assert f"wrote {run.output}" in " ".join(run.stdout.split())
    assert not list(run.output.parent.glob(".*.tmp")), "no temp file left behind"
    stats = mcp_server.stats()
    assert stats["tool_calls"].get("get_repository_tree", 0) >= 1
    assert stats["write_attempts"] == 0


@pytest.mark.parametrize("mode", ["split", "whole", "parallel"])
def test_tool_call_shapes(tmp_path: Path, mcp_server: StandIn, fake_llm: StandIn, mode: str) -> None:
    # upfront=ignore: the writer reads with the tools what the prompt gives (the shapes are the subject)
    run = write(tmp_path, writer_env(mcp_server, fake_llm, knobs=f"tool_calls={mode}&upfront=ignore"))
    assert_grounded_suite(run)
    assert "→ get_file_contents" in run.stdout


@pytest.mark.parametrize(
    "quirk", ["thinking", "index0", "empty_ids", "missing_index", "args_object", "stop_with_tools"]
)
def test_provider_quirks(tmp_path: Path, mcp_server: StandIn, fake_llm: StandIn, quirk: str) -> None:
    knobs = f"tool_calls=parallel&quirks={quirk}&upfront=ignore"  # tool-call deltas, not only answers
    run = write(tmp_path, writer_env(mcp_server, fake_llm, knobs=knobs))
    assert_grounded_suite(run)


def test_usage_chunk_is_recorded(tmp_path: Path, mcp_server: StandIn, fake_llm: StandIn) -> None:
    run = write(tmp_path, writer_env(mcp_server, fake_llm))
    summary = " ".join(run.stdout.split())
    prompt_tokens, completion_tokens = summary.split("tokens=")[1].split()[0].split("+")
    assert int(prompt_tokens) > 1000 and int(completion_tokens) > 10


def test_fenced_answer_is_unwrapped(tmp_path: Path, mcp_server: StandIn, fake_llm: StandIn) -> None:
    run = write(tmp_path, writer_env(mcp_server, fake_llm, knobs="fences=1"))
    assert_grounded_suite(run)
    assert "```" not in run.text


def test_broken_first_draft_is_repaired(tmp_path: Path, mcp_server: StandIn, fake_llm: StandIn) -> None:
    run = write(tmp_path, writer_env(mcp_server, fake_llm, knobs="draft=syntax"))
    assert_grounded_suite(run)
    assert "repair 1" in run.stdout and "repairs=1" in " ".join(run.stdout.split())


def test_no_answer_is_a_clear_failure(tmp_path: Path, mcp_server: StandIn, fake_llm: StandIn) -> None:
    run = write(tmp_path, writer_env(mcp_server, fake_llm, knobs="no_answer=empty"))
    assert run.returncode == 1
    assert "failed (no_answer)" in run.stderr
    assert not run.output.exists()


def test_endless_tool_calls_exhaust_the_rounds(
    tmp_path: Path, mcp_server: StandIn, fake_llm: StandIn
) -> None:
    run = write(tmp_path, writer_env(mcp_server, fake_llm, knobs="no_answer=loop", WRITER_MAX_ROUNDS="4"))
    assert run.returncode == 1
    assert "failed (rounds_exhausted)" in run.stderr and "within 4 rounds" in run.stderr


def test_400_is_permanent_with_the_provider_message(
    tmp_path: Path, mcp_server: StandIn, fake_llm: StandIn
) -> None:
    run = write(tmp_path, writer_env(mcp_server, fake_llm, knobs="fail_first=1&fail_status=400"))
    assert run.returncode == 1
    assert "failed (model_rejected)" in run.stderr and "(400)" in run.stderr


def test_429_is_retried_by_the_client_honouring_retry_after(
    tmp_path: Path, mcp_server: StandIn, fake_llm: StandIn
) -> None:
    fake_llm.reset()
    run = write(  # the review is a conversation of its own: off here, the writer's client is the subject
        tmp_path, writer_env(mcp_server, fake_llm, knobs="fail_first=2&fail_status=429&retry_after=0.2",
                             WRITER_REVIEW="false"),
    )  # fmt: skip
    assert_grounded_suite(run)
    assert fake_llm.stats()["by_status"].get("429") == 2


def test_persistent_500_ends_as_a_retryable_error(
    tmp_path: Path, mcp_server: StandIn, fake_llm: StandIn
) -> None:
    fake_llm.reset()
    run = write(tmp_path, writer_env(mcp_server, fake_llm, knobs="rate_500=1", OPENAI_MAX_RETRIES="1"))
    assert run.returncode == 1
    assert "failed (model_unavailable)" in run.stderr and "500" in run.stderr
    assert fake_llm.stats()["by_status"].get("500") == 2


def test_prompt_injection_cannot_write_or_read_another_project(
    tmp_path: Path, mcp_server: StandIn, fake_llm: StandIn
) -> None:
    mcp_server.reset()
    run = write(tmp_path, writer_env(mcp_server, fake_llm, knobs="evil=1"))
    assert_grounded_suite(run)
    stats = mcp_server.stats()
    assert stats["write_attempts"] == 0
    assert stats["foreign_project_calls"] == 0
    assert "not available to you" in run.stdout
    assert sorted(p.name for p in (tmp_path / "out").rglob("*") if p.is_file()) == [run.output.name]


def test_bad_spec_exits_2_naming_the_file(tmp_path: Path, mcp_server: StandIn, fake_llm: StandIn) -> None:
    spec = dict(SPEC, rf={"target_path": "../outside.robot"})
    run = write(tmp_path, writer_env(mcp_server, fake_llm), spec=spec)
    assert run.returncode == 2
    assert "SHOP-901_spec.json: target path '../outside.robot' contains '..'" in " ".join(run.stderr.split())


def test_missing_project_id_is_a_configuration_error(
    tmp_path: Path, mcp_server: StandIn, fake_llm: StandIn
) -> None:
    run = write(tmp_path, writer_env(mcp_server, fake_llm, GITLAB_PROJECT_ID=""))
    assert run.returncode == 2 and "GITLAB_PROJECT_ID" in run.stderr


def test_unreachable_mcp_server_is_retryable(tmp_path: Path, mcp_server: StandIn, fake_llm: StandIn) -> None:
    run = write(tmp_path, writer_env(mcp_server, fake_llm, GITLAB_MCP_URL="http://127.0.0.1:9/mcp"))
    assert run.returncode == 1 and "failed (mcp_unavailable)" in run.stderr
