"""Grounding (static stage): every call resolves, with an accepted argument count, imports exist;
each case diagnosed precisely, blocking so such a suite is never written."""

from __future__ import annotations

from tests.unit.verify_helpers import stage, verify
from worker.agent.checks.verdict import Outcome, Stage, Verdict

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


def static(body: str, settings: str = "Resource    resources/common.resource", files: dict | None = None):
    suite = f"*** Settings ***\n{settings}\n\n*** Test Cases ***\nT-1 Case\n{body}"
    return stage(verify(suite, files or REPO), Stage.STATIC)


def test_unknown_keyword_names_line_statement_and_closest_existing_names() -> None:
    result = static("    Open Shop Session\n    Open Shop Sessoin\n")
    assert result.outcome is Outcome.FAILED and result.blocking
    assert result.diagnostics == (
        "line 7: No keyword named `Open Shop Sessoin` in the suite, its resources or its libraries. "
        "Closest existing keywords: `Open Shop Session`. — in: Open Shop Sessoin",
    )
    assert (result.figures["calls"], result.figures["calls_resolved"]) == (2, 1)


def test_wrong_argument_count_says_what_the_keyword_declares() -> None:
    result = static("    Log Test Step\n    Log Test Step    a    b    c\n")
    assert result.blocking
    assert result.diagnostics == (
        "line 6: Keyword 'Log Test Step' expected 1 to 2 arguments, got 0. It declares: message, level=INFO."
        " — in: Log Test Step",
        "line 7: Keyword 'Log Test Step' expected 1 to 2 arguments, got 3. It declares: message, level=INFO."
        " — in: Log Test Step    a    b    c",
    )


def test_missing_resource_is_reported_with_its_import_line() -> None:
    result = static(
        "    Open Shop Session\n",
        settings="Resource    resources/common.resource\nResource    resources/nope.resource",
    )
    assert result.blocking
    assert result.diagnostics == (
        "line 3: Resource `resources/nope.resource` does not exist in the repository. "
        "— in: Resource    resources/nope.resource",
    )


def test_keyword_of_an_installed_library_resolves_with_its_arguments() -> None:
    result = static(
        "    Open Shop Session\n    ${items}=    Create List\n    Append To List    ${items}    x\n"
        "    Collections.Sort List    ${items}\n"
    )
    assert result.outcome is Outcome.PASSED, result.diagnostics
    assert result.figures["calls_by_source"] == {"resource": 1, "suite": 0, "library": 2, "builtin": 1}
    assert result.figures["reuse_share"] == 0.25


def test_keyword_defined_in_the_suite_itself_resolves() -> None:
    suite = (
        "*** Settings ***\nResource    resources/common.resource\n\n"
        "*** Test Cases ***\nT-1 Case\n    Check Total    10\n    Check Total\n\n"
        "*** Keywords ***\nCheck Total\n    [Arguments]    ${total}\n    Open Shop Session\n"
        "    Should Be True    ${total} > 0\n"
    )
    result = stage(verify(suite, REPO), Stage.STATIC)
    assert result.diagnostics == (
        "line 7: Keyword 'Check Total' expected 1 argument, got 0. It declares: total. — in: Check Total",
    )
    assert result.figures["calls_resolved"] == 3  # the good call, and both calls inside the keyword


def test_keywords_reached_through_a_nested_resource_import_resolve() -> None:
    result = static('    Send GET Request    /cart    200\n    Given User "alice" Is Logged In\n')
    assert result.outcome is Outcome.PASSED, result.diagnostics


def test_a_call_a_missing_library_might_define_is_unverified_and_never_verified() -> None:
    verification = verify(
        "*** Settings ***\nResource    resources/common.resource\nResource    resources/ui.resource\n\n"
        "*** Test Cases ***\nT-1 Case\n    Frobnicate The Widget    http://x\n    Open Shop Session\n",
        REPO,
    )
    result = stage(verification, Stage.STATIC)
    assert result.outcome is Outcome.INCOMPLETE
    assert result.figures["calls_unverified"] == 1 and result.figures["calls_resolved"] == 1
    assert "`Frobnicate The Widget`" in result.diagnostics[0] and "`SeleniumLibrary`" in result.diagnostics[0]
    assert verification.checks.verdict is Verdict.UNVERIFIED


def test_resource_is_found_relative_to_the_suite_then_to_the_root() -> None:
    files = {**REPO, "tests/a/local.resource": "*** Keywords ***\nLocal Step\n    No Operation\n"}
    suite = (
        "*** Settings ***\nResource    local.resource\nResource    ${CURDIR}/../../resources/api.resource\n\n"
        "*** Test Cases ***\nT-1 X\n    Local Step\n    Send GET Request    /    200\n"
    )
    assert stage(verify(suite, files), Stage.STATIC).outcome is Outcome.PASSED


def test_imports_are_looked_up_in_the_tree_without_reading_absent_candidates() -> None:
    reads: list[str] = []
    files = dict(REPO)

    class Recording(dict):
        def get(self, key, default=None):  # type: ignore[override]
            reads.append(key)
            return files.get(key, default)

    suite = "*** Settings ***\nResource    resources/common.resource\n\n*** Test Cases ***\nT-1 X\n    Open Shop Session\n"
    verify(suite, Recording(files))
    assert "tests/a/resources/common.resource" not in reads  # the suite-relative candidate is not in the tree
    assert reads.count("resources/common.resource") == 1
