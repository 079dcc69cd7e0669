"""The scripted writer is not tuned to the example shop: a small library repository it has never
seen (other keywords, other variables, other words) gets a suite that passes when run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import StandIn
from tests.test_fake_llm import client_for, run
from tests.test_fake_writer_examples import run_suites, write_suite

pytestmark = pytest.mark.integration

LIBRARY = """*** Settings ***
Documentation    Loans of the lending library.
Library    Collections
Variables    variables/members.py

*** Keywords ***
Open Library
    [Documentation]    Starts with no loans.
    ${loans}=    Create Dictionary
    Set Suite Variable    ${LOANS}    ${loans}
    Set Suite Variable    ${MEMBER}    ${NONE}

Sign In Member
    [Documentation]    Signs in the member ``name``.
    [Arguments]    ${name}
    Dictionary Should Contain Key    ${MEMBERS}    ${name}
    Set Suite Variable    ${MEMBER}    ${name}

Borrow Book
    [Documentation]    Borrows the book ``isbn`` for ``days`` days and returns the loan id.
    [Arguments]    ${isbn}    ${days}=14
    Should Not Be Equal    ${MEMBER}    ${NONE}
    Dictionary Should Not Contain Key    ${LOANS}    ${isbn}
    Set To Dictionary    ${LOANS}    ${isbn}    ${MEMBER}
    RETURN    L-${isbn}

Borrowing Should Fail
    [Documentation]    Tries to borrow ``isbn`` and checks that it is refused.
    [Arguments]    ${isbn}
    Dictionary Should Contain Key    ${LOANS}    ${isbn}

Return Book
    [Documentation]    Returns the book ``isbn``.
    [Arguments]    ${isbn}
    Remove From Dictionary    ${LOANS}    ${isbn}

Book Should Be On Loan
    [Arguments]    ${isbn}
    Dictionary Should Contain Key    ${LOANS}    ${isbn}

Book Should Be Available
    [Arguments]    ${isbn}
    Dictionary Should Not Contain Key    ${LOANS}    ${isbn}

Loan Count Should Be
    [Arguments]    ${expected_count}
    Length Should Be    ${LOANS}    ${expected_count}

Loan Id Should Start With Prefix
    [Arguments]    ${loan_id}
    Should Start With    ${loan_id}    L-

Reset Catalogue
    [Documentation]    Back office only.
    [Tags]    robot:private
    Log    reset
"""
SIMILAR = """*** Settings ***
Documentation    Borrowing books.
Resource    resources/library.resource
Suite Setup    Open Library

*** Test Cases ***
LIB-1 Borrow A Book
    [Documentation]    A member borrows a book.
    [Tags]    LIB-1    loans    smoke
    Sign In Member    ann
    ${loan_id}=    Borrow Book    978-0000000001
    Book Should Be On Loan    978-0000000001
"""
FILES = {
    "doc/convention.md": "# Library QA\nTests start with the ticket id.\n",
    "resources/library.resource": LIBRARY,
    "tests/loans/borrowing.robot": SIMILAR,
    "variables/members.py": 'MEMBERS = {"ann": {"card": "C-100"}, "ben": {"card": "C-200"}}\n'
    'OVERDUE_ISBN = "978-0000000002"\n',
}
SPEC = {
    "id": "LIB-7",
    "title": "Members cannot borrow a book twice",
    "area": "loans",
    "preconditions": ['Member "ben" exists'],
    "scenarios": [
        {
            "name": "Second borrow is refused",
            "steps": [
                'Sign in as member "ben"',
                'Borrow the book "978-0000000009" for 7 days',
                "Verify the loan id starts with the prefix",
                'Borrow the book "978-0000000009" again',
                "Verify borrowing fails",
                'Verify book "978-0000000009" is on loan',
                "Verify 1 loan is counted",
            ],
        },
        {
            "name": "Returned book is available",
            "steps": [
                'Sign in as member "ann" and borrow the overdue book',
                "Return the overdue book",
                "Verify the overdue book is available",
            ],
            "tags": ["smoke"],
        },
    ],
    "rf": {"target_path": "tests/loans/double_borrow.robot"},
}
EXPECTED = """LIB-7 Second Borrow Is Refused
    [Documentation]    Second borrow is refused
    [Tags]    LIB-7    loans    regression
    Sign In Member    ben
    ${loan_id}=    Borrow Book    978-0000000009    7
    Loan Id Should Start With Prefix    ${loan_id}
    Borrowing Should Fail    978-0000000009
    Book Should Be On Loan    978-0000000009
    Loan Count Should Be    1

LIB-7 Returned Book Is Available
    [Documentation]    Returned book is available
    [Tags]    LIB-7    loans    smoke
    Sign In Member    ann
    ${loan_id}=    Borrow Book    ${OVERDUE_ISBN}
    Return Book    ${OVERDUE_ISBN}
    Book Should Be Available    ${OVERDUE_ISBN}
"""


def test_an_unseen_repository_gets_a_suite_that_passes(fake_llm: StandIn, tmp_path: Path) -> None:
    [text] = run(write_suite(client_for(fake_llm.base), SPEC, files=FILES))
    assert text.endswith(EXPECTED), text
    assert "Resource    resources/library.resource\nSuite Setup    Open Library\n" in text
    repository = tmp_path / "library"
    for path, content in FILES.items():
        (repository / path).parent.mkdir(parents=True, exist_ok=True)
        (repository / path).write_text(content, encoding="utf-8")
    outcomes = run_suites({"tests/loans/double_borrow.robot": text}, tmp_path / "run", repository)
    assert outcomes == {name: (True, "") for name in outcomes} and len(outcomes) == 2, outcomes
