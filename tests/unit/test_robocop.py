"""Robocop linting and formatting of generated suites held as strings."""

from __future__ import annotations

import asyncio

import pytest

from worker.agent.checks.robocop import LintIssue, diagnostics, format_suite, lint_suite

VALID = """\
*** Settings ***
Documentation    Demo suite.


*** Test Cases ***
Adds Two Numbers
    [Documentation]    Sums are right.
    ${sum}=    Evaluate    1 + 2
    Should Be Equal As Integers    ${sum}    3
"""

DUPLICATED_TEST = """\
*** Settings ***
Documentation    Demo suite.


*** Test Cases ***
Same Name
    [Documentation]    First.
    Log    one

Same Name
    [Documentation]    Second.
    Log    two
"""

# Valid Robot data, but without test documentation: warnings (DOC02) only.
UNDOCUMENTED_TEST = """\
*** Settings ***
Documentation    Demo suite.


*** Test Cases ***
Undocumented
    Log    hi
"""

# Robocop's defaults leave documentation alone, separators after [Documentation] included.
BADLY_SPACED = (
    "*** Settings ***\n"
    "Documentation  Demo suite.\n"
    "\n"
    "\n"
    "*** Test Cases ***\n"
    "Adds Two Numbers\n"
    "  [Documentation]    Sums are right.\n"
    "   ${sum}=  Evaluate  1 + 2\n"
    "\tShould Be Equal As Integers\t${sum}   3\n"
)


def test_valid_suite_has_no_error_level_issues() -> None:
    assert lint_suite(VALID) == []


def test_duplicated_test_name_is_an_error_with_its_line_and_rule_id() -> None:
    issues = lint_suite(DUPLICATED_TEST)
    assert [(issue.line, issue.rule_id, issue.severity) for issue in issues] == [(10, "DUP01", "E")]
    assert "Same Name" in issues[0].message


def test_non_existing_setting_is_an_error() -> None:
    text = VALID.replace("[Documentation]", "[Tagz]")
    assert [(issue.line, issue.rule_id) for issue in lint_suite(text)] == [(7, "ERR08")]


def test_warning_threshold_reports_what_the_default_does_not() -> None:
    assert lint_suite(UNDOCUMENTED_TEST) == []
    warnings = lint_suite(UNDOCUMENTED_TEST, threshold="W")
    assert LintIssue(6, "DOC02", "W", "Missing documentation in 'Undocumented' test case") in warnings
    assert all(issue.severity in {"W", "E"} for issue in warnings)


def test_ignore_removes_a_rule_by_id_or_name() -> None:
    assert lint_suite(DUPLICATED_TEST, ignore=("DUP01",)) == []
    assert lint_suite(DUPLICATED_TEST, ignore=("duplicated-test-case",)) == []


def test_select_restricts_to_the_named_rules() -> None:
    issues = lint_suite(UNDOCUMENTED_TEST, threshold="I", select=("missing-doc-test-case",))
    assert {issue.rule_id for issue in issues} == {"DOC02"}


def test_issues_are_sorted_by_line() -> None:
    text = DUPLICATED_TEST.replace("[Documentation]    First.", "[Tagz]    x")
    lines = [issue.line for issue in lint_suite(text)]
    assert lines == sorted(lines) == [7, 10]


def test_unparseable_or_odd_input_gives_no_issues_rather_than_raising() -> None:
    for text in ("", "\x00\x01 not robot at all", "*** Test Cases ***\n\n"):
        assert isinstance(lint_suite(text), list)


def test_unknown_threshold_is_a_caller_error() -> None:
    with pytest.raises(ValueError, match="threshold"):
        lint_suite(VALID, threshold="X")


def test_diagnostics_are_one_readable_line_per_issue() -> None:
    issues = [LintIssue(12, "ERR01", "E", "Robot Framework syntax error")]
    assert diagnostics(issues) == ["line 12: [ERR01] Robot Framework syntax error"]


def test_formatting_normalises_separators_and_indentation_to_four_spaces() -> None:
    assert format_suite(BADLY_SPACED) == VALID


def test_formatting_leaves_a_formatted_suite_unchanged() -> None:
    assert format_suite(VALID) == VALID
    assert format_suite(format_suite(BADLY_SPACED)) == format_suite(BADLY_SPACED)


def test_formatting_returns_garbage_unchanged() -> None:
    for text in ("", "\x00\x01 not robot at all", "just  some\n   prose   here"):
        assert format_suite(text) == text


def test_concurrent_calls_from_worker_threads_agree() -> None:
    async def run_all() -> list[object]:
        calls = [asyncio.to_thread(lint_suite, DUPLICATED_TEST) for _ in range(8)]
        calls += [asyncio.to_thread(format_suite, BADLY_SPACED) for _ in range(8)]
        return await asyncio.gather(*calls)

    results = asyncio.run(run_all())
    assert all(result == results[0] for result in results[:8])
    assert all(result == VALID for result in results[8:])
