"""Grounding through the real MCP server on examples/framework: the seven cases of the issue, with
resources fetched over MCP (transitively) and cached per process."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import StandIn
from worker.agent.context import ContextCache
from worker.agent.grounding import Grounder, Grounding
from worker.agent.tools import GuardedTools, ToolPolicy
from worker.mcp_tools import McpSession

pytestmark = pytest.mark.integration

HEAD = "*** Settings ***\nResource    resources/common.resource\nResource    resources/auth.resource\n"


def ground_all(mcp: StandIn, suites: list[str]) -> list[Grounding]:
    async def go() -> list[Grounding]:
        async with McpSession(f"{mcp.base}/mcp", {}) as session:
            cache = ContextCache()
            policy = ToolPolicy(project_id="42", ref="main")
            tools = GuardedTools(session, await session.list_tools(), policy, cache.memo)
            grounder = Grounder(lambda path: cache.read_file(tools, path))
            return [await grounder.check(text, "tests/auth/new.robot") for text in suites]

    return asyncio.run(go())


def test_the_seven_grounding_cases_over_mcp(mcp_server: StandIn) -> None:
    cases = {
        "unknown": HEAD + "\n*** Test Cases ***\nT\n    Login Ass    alice\n",
        "arguments": HEAD + "\n*** Test Cases ***\nT\n    Login As    alice    secret    extra\n",
        "missing resource": HEAD + "Resource    resources/payments.resource\n\n*** Test Cases ***\nT\n    Logout\n",
        "installed library": HEAD + "Library    Collections\n\n*** Test Cases ***\nT\n    ${l}=    Create List\n    Append To List    ${l}    a\n",
        "suite keyword": HEAD + "\n*** Test Cases ***\nT\n    Do It    x\n\n*** Keywords ***\nDo It\n    [Arguments]    ${a}\n    Log    ${a}\n",
        "nested resource": "*** Settings ***\nResource    resources/auth.resource\n\n*** Test Cases ***\nT\n    Send GET Request    /health\n",
        "not installed": HEAD + "Library    SeleniumLibrary\n\n*** Test Cases ***\nT\n    Open Browser    http://shop    chrome\n    Logout\n",
    }  # fmt: skip
    mcp_server.reset()
    results = dict(zip(cases, ground_all(mcp_server, list(cases.values())), strict=True))
    assert results["unknown"].diagnostics == (
        "line 7: No keyword named 'Login Ass' in the suite, its resources or its libraries. "
        "Closest existing keywords: 'Login As'.",
    )
    assert results["arguments"].diagnostics == (
        "line 7: Keyword 'Login As' expected 1 to 2 arguments, got 3. It declares: username, password=${NONE}.",
    )
    assert results["missing resource"].diagnostics == (
        "line 4: Resource 'resources/payments.resource' does not exist in the repository.",
    )
    for name in ("installed library", "suite keyword", "nested resource"):
        assert results[name].ok and results[name].resolved == results[name].calls, name
    unverified = results["not installed"]
    assert unverified.ok and (unverified.resolved, unverified.unverified) == (1, 1)
    assert unverified.unverified_libraries == ("SeleniumLibrary",)
    # Robot's lookup probes each import relative to the importing file, then the root: 9 distinct
    # paths (4 of them misses) for these suites, each read once over MCP whatever the suite count.
    reads = mcp_server.stats()["tool_calls"]["get_file_contents"]
    assert reads == 9, f"every distinct path read once for all seven suites, got {reads} reads"
