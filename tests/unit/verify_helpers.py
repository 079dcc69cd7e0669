"""Running the verification pipeline on a repository held in a dict (pure unit tests; the same
pipeline over the real MCP server is tested in tests/test_verification_mcp.py)."""

from __future__ import annotations

import asyncio

from worker.agent.catalog import build_catalog, suggest
from worker.agent.checks.execute import RunSettings, SuiteRunner
from worker.agent.checks.pipeline import SpecFacts, Verification, Verifier, VerifyConfig
from worker.agent.checks.robocop import repository_config
from worker.agent.checks.rules import RULES_PATH, load_rules
from worker.agent.checks.verdict import Stage, StageResult


def verify(
    text: str,
    files: dict[str, str],
    *,
    target: str = "tests/a/t.robot",
    spec_id: str = "T-1",
    spec_tags: tuple[str, ...] = (),
    area: str | None = None,
    execute: bool = False,
    format_output: bool = False,
    run: RunSettings | None = None,
) -> Verification:
    async def read(path: str) -> str | None:
        return files.get(path)

    async def suggestions(about: str) -> list[str]:
        return suggest(await build_catalog(read, sorted(files)), about)

    verifier = Verifier(
        SpecFacts(spec_id, target, spec_tags, area, ""),
        VerifyConfig(format_output=format_output, execute=execute),
        rules=load_rules(files.get(RULES_PATH)),
        repo_lint=repository_config(files),
        lint_problem=None,
        read_file=read,
        tree=tuple(sorted(files)),
        suggest=suggestions,
        runner=SuiteRunner(run or RunSettings()) if execute else None,
    )
    return asyncio.run(verifier.verify(text))


def stage(verification: Verification, which: Stage) -> StageResult:
    found = verification.checks.stage(which)
    assert found is not None, verification.checks
    return found
