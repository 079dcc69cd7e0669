"""Rules recognised in a convention's wording, and their diagnostics on a suite."""

from __future__ import annotations

from pathlib import Path

from worker.agent.conventions import Rules, check_conventions, rules_from

CONVENTION = (Path(__file__).resolve().parents[2] / "examples/framework/doc/convention.md").read_text()
GOOD = (
    "*** Settings ***\nDocumentation    Logout.\nResource    resources/common.resource\n\n"
    "*** Test Cases ***\nSHOP-1 Logout Works\n    [Documentation]    Ends the session.\n"
    "    [Tags]    SHOP-1    auth    smoke\n    Log    ok\n"
)


def test_rules_stated_by_the_example_convention_are_recognised() -> None:
    rules = rules_from(CONVENTION)
    assert rules.required_resources == ("resources/common.resource",)
    assert rules.test_documentation and rules.test_tags and rules.ticket_in_name and rules.ticket_in_tags
    assert "Sleep" in rules.forbidden_keywords


def test_a_convention_that_says_nothing_enforces_nothing() -> None:
    assert rules_from("# Notes\nWrite good tests.\n") == Rules()
    assert check_conventions("*** Test Cases ***\nx\n    Sleep    1s\n", Rules(), "SHOP-1") == []


def test_suite_following_the_convention_passes() -> None:
    assert check_conventions(GOOD, rules_from(CONVENTION), "SHOP-1") == []


def test_each_broken_rule_is_named_with_its_line() -> None:
    bad = (
        "*** Settings ***\nDocumentation    Logout.\n\n"
        "*** Test Cases ***\nLogout Works\n    [Tags]    auth\n    Sleep    1s\n"
    )
    problems = check_conventions(bad, rules_from(CONVENTION), "SHOP-1")
    assert problems == [
        "line 1: the suite must import `Resource    resources/common.resource` (doc/convention.md).",
        "line 5: test 'Logout Works' must start with the ticket id SHOP-1 (doc/convention.md).",
        "line 5: test 'Logout Works' needs [Documentation] (doc/convention.md).",
        "line 5: test 'Logout Works' needs the ticket id SHOP-1 in its [Tags] (doc/convention.md).",
        "line 7: 'Sleep' is forbidden (doc/convention.md).",
    ]
