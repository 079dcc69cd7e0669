"""Answer extraction and Robot Framework validation (rule 6)."""

from __future__ import annotations

from worker.agent.output import check_answer, extract_robot_text, validate_suite

SUITE = "*** Settings ***\nDocumentation    Demo\n\n*** Test Cases ***\nT1\n    Log    hi\n"


def test_valid_suite_has_no_diagnostics() -> None:
    assert validate_suite(SUITE).ok


def test_fences_and_chatter_are_removed() -> None:
    answer = f"Here is the file:\n```robot\n{SUITE}```\nLet me know if you need more."
    assert extract_robot_text(answer) == SUITE


def test_untagged_fence_is_used_when_no_robot_fence() -> None:
    assert extract_robot_text(f"```\n{SUITE}```") == SUITE


def test_leading_and_trailing_prose_without_fences_is_removed() -> None:
    answer = f"Sure! Below is the suite.\n{SUITE}\nI hope this helps.\n"
    assert extract_robot_text(answer) == SUITE


def test_invalid_section_header_is_diagnosed_with_its_line() -> None:
    result = validate_suite("*** Settings ***\nDocumentation    x\n\n*** Test Steps ***\nT1\n    Log    x\n")
    assert not result.ok
    assert any(
        d.startswith("line 4: Unrecognized section header '*** Test Steps ***'") for d in result.diagnostics
    )


def test_text_before_first_section_inside_a_fence_is_diagnosed() -> None:
    result = check_answer(f"```robot\nThis is my suite\n{SUITE}```")
    assert any("before the first section" in d for d in result.diagnostics)


def test_bad_setting_and_unclosed_for_are_diagnosed() -> None:
    text = "*** Test Cases ***\nT1\n    [Tagz]    a\n    FOR    ${x}    IN    1\n        Log    ${x}\n"
    diagnostics = validate_suite(text).diagnostics
    assert any("line 3" in d and "Tagz" in d for d in diagnostics)
    assert any("line 4" in d and "FOR loop must have closing END" in d for d in diagnostics)


def test_suite_without_tests_and_empty_answer_are_rejected() -> None:
    assert "no test cases" in validate_suite("*** Settings ***\nDocumentation    x\n").diagnostics[0]
    assert "empty" in check_answer("   ").diagnostics[0]
