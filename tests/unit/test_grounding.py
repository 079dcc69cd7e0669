"""Grounding against a repository: the seven cases of the grounding issue, each diagnosed precisely."""

from __future__ import annotations

import asyncio

from worker.agent.grounding import Grounder, Grounding

REPO = {
    "resources/common.resource": (
        "*** Settings ***\nLibrary    Collections\nResource    resources/api.resource\n\n"
        "*** Keywords ***\nOpen Shop Session\n    No Operation\n\n"
        "Log Test Step\n    [Arguments]    ${message}    ${level}=INFO\n    Log    ${message}    ${level}\n"
    ),
    "resources/api.resource": (
        "*** Keywords ***\nSend GET Request\n    [Arguments]    ${path}    ${expected_status}\n    No Operation\n\n"
        "User ${name} Is Logged In\n    Log    ${name}\n"
    ),
    "resources/ui.resource": "*** Settings ***\nLibrary    SeleniumLibrary\n",
}


def ground(
    body: str, settings: str = "Resource    resources/common.resource", target: str = "tests/a/t.robot"
) -> Grounding:
    async def read(path: str) -> str | None:
        return REPO.get(path)

    suite = f"*** Settings ***\n{settings}\n\n*** Test Cases ***\nT-1 Case\n{body}"
    return asyncio.run(Grounder(read).check(suite, target))


def test_unknown_keyword_names_line_and_closest_existing_names() -> None:
    result = ground("    Open Shop Sessoin\n")
    assert result.diagnostics == (
        "line 6: No keyword named 'Open Shop Sessoin' in the suite, its resources or its libraries. "
        "Closest existing keywords: 'Open Shop Session'.",
    )
    assert (result.calls, result.resolved) == (1, 0)


def test_wrong_argument_count_says_what_the_keyword_declares() -> None:
    result = ground("    Log Test Step\n    Log Test Step    a    b    c\n")
    assert result.diagnostics == (
        "line 6: Keyword 'Log Test Step' expected 1 to 2 arguments, got 0. It declares: message, level=INFO.",
        "line 7: Keyword 'Log Test Step' expected 1 to 2 arguments, got 3. It declares: message, level=INFO.",
    )


def test_missing_resource_is_reported_with_its_import_line() -> None:
    result = ground(
        "    Log    x\n",
        settings="Resource    resources/common.resource\nResource    resources/nope.resource",
    )
    assert result.diagnostics == (
        "line 3: Resource 'resources/nope.resource' does not exist in the repository.",
    )


def test_keyword_of_an_installed_library_resolves_with_its_arguments() -> None:
    result = ground(
        "    ${items}=    Create List\n    Append To List    ${items}    x\n    Collections.Sort List    ${items}\n"
    )
    assert result.ok and (result.calls, result.resolved) == (3, 3)


def test_keyword_defined_in_the_suite_itself_resolves() -> None:
    async def read(path: str) -> str | None:
        return REPO.get(path)

    suite = (
        "*** Test Cases ***\nT-1 Case\n    Check Total    10\n    Check Total\n\n"
        "*** Keywords ***\nCheck Total\n    [Arguments]    ${total}\n    Should Be True    ${total} > 0\n"
    )
    result = asyncio.run(Grounder(read).check(suite, "tests/t.robot"))
    assert result.diagnostics == (
        "line 4: Keyword 'Check Total' expected 1 argument, got 0. It declares: total.",
    )
    assert result.resolved == 2  # the good call, and Should Be True inside the suite's keyword


def test_keywords_reached_through_a_nested_resource_import_resolve() -> None:
    result = ground('    Send GET Request    /cart    200\n    Given User "alice" Is Logged In\n')
    assert result.ok and result.resolved == 2


def test_library_that_is_not_installed_is_unverified_not_an_error() -> None:
    result = ground("    Open Browser    http://x    chrome\n    Open Shop Session\n",
                    settings="Resource    resources/common.resource\nResource    resources/ui.resource")  # fmt: skip
    assert result.ok
    assert (result.calls, result.resolved, result.unverified) == (2, 1, 1)
    assert result.unverified_libraries == ("SeleniumLibrary",)


def test_resource_is_found_relative_to_the_suite_then_to_the_root() -> None:
    async def read(path: str) -> str | None:
        return {"tests/a/local.resource": "*** Keywords ***\nLocal Step\n    No Operation\n"}.get(
            path
        ) or REPO.get(path)

    suite = "*** Settings ***\nResource    local.resource\nResource    ${CURDIR}/../../resources/api.resource\n\n*** Test Cases ***\nT\n    Local Step\n    Send GET Request    /    200\n"
    assert asyncio.run(Grounder(read).check(suite, "tests/a/t.robot")).ok
