"""Verification over the real MCP server (HTTP, the offline GitLab stand-in): the grounding cases on
examples/framework, and a French repository with three keyword layers whose rules come from its
`.robot-fleet.toml`, not from its prose."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from tests.conftest import REPO_ROOT, StandIn, start_stand_in
from worker.adapters.mcp_tools import McpSession
from worker.agent.checks.execute import RunSettings, SuiteRunner
from worker.agent.checks.pipeline import Verification, VerifyConfig
from worker.agent.checks.verdict import Outcome, Stage, Verdict
from worker.agent.context import ContextCache
from worker.agent.loop import WriterLimits
from worker.agent.tools import GuardedTools, ToolPolicy
from worker.agent.writer import WriterConfig, build_verifier
from worker.spec import parse_spec

pytestmark = pytest.mark.integration

FRENCH = REPO_ROOT / "tests" / "fixtures" / "boutique_fr"
HEAD = "*** Settings ***\nResource    resources/common.resource\nResource    resources/auth.resource\n"


def verify_all(mcp: StandIn, project: str, suites: list[str], target: str, spec_id: str = "T-1",
               execute: bool = False) -> list[Verification]:  # fmt: skip
    spec = parse_spec(f'{{"id": "{spec_id}", "title": "x", "rf": {{"target_path": "{target}"}}}}'.encode(),
                      source="x.json", max_bytes=10_000)  # fmt: skip
    config = WriterConfig(ToolPolicy(project_id=project, ref="main"), WriterLimits(),
                          checks=VerifyConfig(format_output=True, execute=execute))  # fmt: skip

    async def go() -> list[Verification]:
        async with McpSession(f"{mcp.base}/mcp", {}) as session:
            cache = ContextCache()
            tools = GuardedTools(session, await session.list_tools(), config.policy, cache.memo)
            context, _ = await cache.get(tools, project, "main")
            check = build_verifier(spec, config, context, tools, cache, SuiteRunner(RunSettings()))
            assert check is not None
            return [await check(text) for text in suites]

    return asyncio.run(go())


def test_the_grounding_cases_over_mcp_read_each_file_once_and_probe_nothing(mcp_server: StandIn) -> None:
    cases = {
        "unknown": HEAD + "\n*** Test Cases ***\nT-1 A\n    Login Ass    alice\n    Logout\n",
        "arguments": HEAD + "\n*** Test Cases ***\nT-1 A\n    Login As    alice    secret    extra\n",
        "missing resource": HEAD + "Resource    resources/payments.resource\n\n*** Test Cases ***\nT-1 A\n    Logout\n",
        "installed library": HEAD + "Library    Collections\n\n*** Test Cases ***\nT-1 A\n    Logout\n    ${l}=    Create List\n    Append To List    ${l}    a\n",
        "suite keyword": HEAD + "\n*** Test Cases ***\nT-1 A\n    Do It    x\n\n*** Keywords ***\nDo It\n    [Arguments]    ${a}\n    Logout\n",
        "nested resource": "*** Settings ***\nResource    resources/auth.resource\n\n*** Test Cases ***\nT-1 A\n    Send GET Request    /health\n",
        "not installed": HEAD + "Library    SeleniumLibrary\n\n*** Test Cases ***\nT-1 A\n    Open Browser    http://shop    chrome\n    Logout\n",
    }  # fmt: skip
    mcp_server.reset()
    found = verify_all(mcp_server, "42", list(cases.values()), "tests/auth/new.robot")
    results = {name: v.checks.stage(Stage.STATIC) for name, v in zip(cases, found, strict=True)}
    assert results["unknown"].diagnostics == (  # type: ignore[union-attr]
        "line 8: No keyword named `Login Ass` in the suite, its resources or its libraries. "
        "Closest existing keywords: `Login As`. — in: Login Ass    alice",
    )
    assert (
        results["arguments"]
        .diagnostics[0]
        .startswith(  # type: ignore[union-attr]
            "line 8: Keyword 'Login As' expected 1 to 2 arguments, got 3. It declares: username, password=${NONE}."
        )
    )
    assert results["missing resource"].diagnostics == (  # type: ignore[union-attr]
        "line 4: Resource `resources/payments.resource` does not exist in the repository. "
        "— in: Resource    resources/payments.resource",
    )
    for name in ("installed library", "suite keyword", "nested resource"):
        assert results[name].outcome is Outcome.PASSED, (name, results[name])  # type: ignore[union-attr]
    assert results["not installed"].outcome is Outcome.INCOMPLETE  # type: ignore[union-attr]
    # imports resolved against the tree: only files that exist are read, each once for all suites
    stats = mcp_server.stats()
    reads = stats["tool_calls"]["get_file_contents"]
    # convention, rules file, common/auth/api_client resources, the 3 variable files common imports;
    # never resources/payments.resource (not in the tree) nor a suite-relative candidate
    assert reads == 8, f"got {reads} reads"


@pytest.fixture(scope="module")
def french(tmp_path_factory: pytest.TempPathFactory) -> StandIn:
    server = start_stand_in("mcp-fr", ["mcp-serve", "--repo", str(FRENCH), "--project-id", "7",
                                       "--log-level", "WARNING"], tmp_path_factory.mktemp("mcp-fr"))  # fmt: skip
    yield server  # type: ignore[misc]
    server.child.stop()


@pytest.fixture(scope="module")
def french_without_rules(tmp_path_factory: pytest.TempPathFactory) -> StandIn:
    copy = tmp_path_factory.mktemp("fr") / "repo"
    shutil.copytree(FRENCH, copy)
    (copy / ".robot-fleet.toml").unlink()
    server = start_stand_in("mcp-fr-bare", ["mcp-serve", "--repo", str(copy), "--project-id", "7",
                                            "--log-level", "WARNING"], copy.parent)  # fmt: skip
    yield server  # type: ignore[misc]
    server.child.stop()


GOOD = (
    (FRENCH / "tests" / "panier" / "ajout_article.robot")
    .read_text(encoding="utf-8")
    .replace("BOUT-2", "BOUT-1")
)
BAD = """*** Settings ***
Documentation    Un test qui contourne les couches.
Resource    resources/panier_business.resource
Suite Setup    Ouvrir La Boutique

*** Test Cases ***
BOUT-1 Contourner Les Couches
    [Tags]    BOUT-1    panier
    Initialiser Le Panier Technique
    Enregistrer Ligne    LIV-01    2
    Sleep    1s
    Le Total Du Panier Devrait Être    25.00
"""


def test_layers_tags_documentation_and_forbidden_keywords_are_enforced_from_the_rules_file(
    french: StandIn,
) -> None:
    good, bad = verify_all(french, "7", [GOOD, BAD], "tests/panier/nouveau.robot", "BOUT-1", execute=True)
    assert good.checks.verdict is Verdict.VERIFIED, good.checks
    assert good.checks.figures()["tests_passed"] == 2
    rules = bad.checks.stage(Stage.RULES)
    assert rules is not None and rules.outcome is Outcome.FAILED
    keys = sorted(
        line.split(".robot-fleet.toml: ")[1].rstrip(").").split(")")[0] for line in rules.diagnostics
    )
    assert keys == ["documentation.tests", "keywords.allowed_sources", "keywords.allowed_sources",
                    "keywords.forbidden", "tags.first"], rules.diagnostics  # fmt: skip
    assert any(
        "`Enregistrer Ligne` comes from `resources/panier_technical.resource`" in d for d in rules.diagnostics
    )
    assert bad.checks.verdict is Verdict.FAILING


def test_without_the_rules_file_the_same_prose_convention_enforces_nothing(
    french_without_rules: StandIn,
) -> None:
    (bad,) = verify_all(french_without_rules, "7", [BAD], "tests/panier/nouveau.robot", "BOUT-1")
    assert bad.checks.stage(Stage.RULES).outcome is Outcome.PASSED  # type: ignore[union-attr]
