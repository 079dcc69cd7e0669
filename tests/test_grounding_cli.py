"""Grounding over the offline servers: broken drafts of the scripted model are diagnosed precisely,
repaired in the repair turn, and a suite that stays ungrounded fails permanently, writing nothing."""

from __future__ import annotations

import re

import pytest

from tests.conftest import StandIn, writer_env
from tests.test_write_cli import assert_grounded_suite, write

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("draft", "diagnostic"),
    [
        (
            "unknown_keyword",
            r"line \d+: No keyword named `Verify Everything Went Fine` in the suite, its resources or its libraries\.",
        ),
        (
            "wrong_args",
            r"line \d+: Keyword '[A-Za-z ]+' expected \d+( to \d+)? arguments?, got 0\. It declares: \w+",
        ),
        (
            "missing_resource",
            r"line \d+: Resource `resources/shared_steps\.resource` does not exist in the repository\.",
        ),
    ],
)
def test_ungrounded_draft_is_diagnosed_and_repaired(
    tmp_path, mcp_server: StandIn, fake_llm: StandIn, draft: str, diagnostic: str
) -> None:
    run = write(tmp_path, writer_env(mcp_server, fake_llm, knobs=f"draft={draft}"))
    assert_grounded_suite(run)
    text = " ".join(run.stdout.split())
    assert re.search(f"! repair 1/2: - {diagnostic}", text), text
    assert "repairs=1" in text and "checks: verified" in text


def test_suite_that_stays_ungrounded_fails_permanently_with_its_diagnostics(
    tmp_path, mcp_server: StandIn, fake_llm: StandIn
) -> None:
    run = write(
        tmp_path, writer_env(mcp_server, fake_llm, knobs="draft=unknown_keyword", WRITER_MAX_REPAIRS="0")
    )
    assert run.returncode == 1
    assert "failed (repairs_exhausted)" in run.stderr and "No keyword named" in " ".join(run.stderr.split())
    assert "retrying will not help" in run.stderr
    assert not run.output.exists()
