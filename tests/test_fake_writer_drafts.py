"""Broken first drafts of the scripted writer, and repairs that fix only what a request names.

Each draft knob breaks the first answer one way; a repair request that does not name the defect
leaves it, one that names its marker gets the clean suite back. Driven over HTTP like the
examples test, on SHOP-130 of the example sprint against examples/framework.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import openai
import pytest
from robot.api import get_model

from tests.conftest import StandIn
from tests.test_fake_llm import client_for, parse_suite, run, stream_turn
from tests.test_fake_writer_examples import (
    MODEL,
    SPECS,
    load_spec,
    parsed_tests,
    run_suites,
    target_path,
    write_suite,
)

pytestmark = pytest.mark.integration

SPEC = load_spec(SPECS / "SHOP-130_spec.json")
FIRST_TEST = "SHOP-130 Cart Is Not Accessible After Logout"
SECOND_TEST = "SHOP-130 Logging In Again After Logout Works"
UNRELATED = "Your answer is not a valid suite for this repository yet. Please correct it."


def answers(server: str, spec: dict[str, Any], repairs: Sequence[str] = (), model: str = MODEL) -> list[str]:
    return run(write_suite(client_for(server), spec, repairs, model))


def with_draft(draft: str) -> dict[str, Any]:
    return {**SPEC, "fake_llm": {"draft": draft}}


@pytest.fixture(scope="module")
def clean(fake_llm: StandIn) -> str:
    return answers(fake_llm.base, SPEC)[0]


def calls(text: str) -> list[tuple[str, int]]:
    return [(name, len(args)) for name, args in parse_suite(text).calls]


def first_test(text: str) -> dict[str, Any]:
    return parsed_tests(text)[FIRST_TEST]


def only_logs(text: str) -> bool:
    return all(name == "Log" for name, _ in calls(text))


BROKEN: dict[str, tuple[Callable[[str], bool], str]] = {
    "syntax": (
        lambda t: "*** Test Steps ***" in t and not t.startswith("***"),
        "line 9: Unrecognized section header '*** Test Steps ***'.",
    ),
    "unknown_keyword": (
        lambda t: "\n    Verify Everything Went Fine\n" in t,
        "line 12: No keyword named 'Verify Everything Went Fine' in the suite, its resources or its libraries.",
    ),
    "wrong_args": (
        lambda t: "\n    Login As\n" in t,
        "line 12: Keyword 'Login As' expected 1 to 2 arguments, got 0.",
    ),
    "missing_resource": (
        lambda t: "\nResource    resources/shared_steps.resource\n" in t,
        "line 2: Resource 'resources/shared_steps.resource' does not exist in the repository.",
    ),
    "placeholder": (
        lambda t: "    Login As    <username>    Hunter2024!\n" in t,
        "line 13: placeholder <username> left in the suite.",
    ),
    "undefined_variable": (
        lambda t: "${BROWSER_HEADLESS}" in t,
        "line 12: Variable '${BROWSER_HEADLESS}' not found.",
    ),
    "log_only": (only_logs, "The suite calls no keyword of the repository (e.g. Login As, Logout)."),
    "fails_when_run": (
        lambda t: "Response Status Should Be    402" in t,
        f"Test '{FIRST_TEST}' failed: Expected status 402 but got 401.",
    ),
}


@pytest.mark.parametrize("draft", sorted(BROKEN))
def test_draft_stays_broken_until_a_repair_request_names_its_marker(
    fake_llm: StandIn, clean: str, draft: str
) -> None:
    broken, naming = BROKEN[draft]
    first, unrepaired, repaired = answers(fake_llm.base, with_draft(draft), [UNRELATED, naming])
    assert not broken(clean)
    assert broken(first), first
    assert unrepaired == first, "a request that does not name the defect leaves it"
    assert repaired == clean, "\n".join(difflib.unified_diff(clean.splitlines(), repaired.splitlines()))


def test_fails_when_run_draft_passes_static_checks_and_only_its_first_test_fails(
    fake_llm: StandIn, clean: str, tmp_path: Path
) -> None:
    [draft] = answers(fake_llm.base, with_draft("fails_when_run"))
    assert parse_suite(draft).errors == []
    assert calls(draft) == calls(clean), "same keywords, same number of arguments"
    outcomes = run_suites({target_path(SPEC): draft}, tmp_path / "framework")
    assert outcomes[FIRST_TEST][0] is False and "402" in outcomes[FIRST_TEST][1]
    assert outcomes[SECOND_TEST] == (True, "")


def test_log_only_draft_calls_no_repository_keyword(fake_llm: StandIn) -> None:
    [draft] = answers(fake_llm.base, with_draft("log_only"))
    assert only_logs(draft)
    assert '    Log    Log in as "bob" with password "Hunter2024!"\n' in draft
    assert get_model(draft) is not None and parse_suite(draft).errors == []


def test_rule_breaking_defects_are_fixed_one_marker_at_a_time(fake_llm: StandIn, clean: str) -> None:
    repairs = ["line 14: Sleep is forbidden.", "line 11: the test has no [Documentation].", UNRELATED]
    repairs.append("line 12: [Tags] must start with the ticket id.")
    first, no_sleep, documented, still, repaired = answers(
        fake_llm.base, with_draft("rule_breaking"), repairs
    )
    assert "\n    Sleep    1s\n" in first
    assert first_test(first)["doc"] is None and first_test(first)["tags"] == ["smoke", "SHOP-130", "auth"]
    assert "Sleep" not in no_sleep and first_test(no_sleep)["doc"] is None
    assert first_test(documented)["doc"] and first_test(documented)["tags"][0] == "smoke"
    assert still == documented
    assert repaired == clean
    assert parsed_tests(first)[SECOND_TEST] == parsed_tests(clean)[SECOND_TEST], "only the first test breaks"


def test_a_clean_test_named_by_a_repair_request_is_rewritten_with_the_next_best_keywords(
    fake_llm: StandIn, clean: str
) -> None:
    naming = f"Test '{FIRST_TEST}' failed when run: Expected status 200 but got 401."
    first, second, third = answers(fake_llm.base, SPEC, [naming, naming])
    assert first == clean
    before, after = first_test(first)["calls"], first_test(second)["calls"]
    assert after != before and len(after) == len(before)
    assert parsed_tests(second)[SECOND_TEST] == parsed_tests(first)[SECOND_TEST], (
        "only the named test changes"
    )
    assert parse_suite(second).errors == []
    assert first_test(third)["calls"] != after, "a second report makes a third try"
    assert answers(fake_llm.base, SPEC, [naming, naming]) == [first, second, third], "deterministic"


def test_a_fixed_draft_test_named_again_is_then_rewritten(fake_llm: StandIn, clean: str) -> None:
    naming = f"Test '{FIRST_TEST}' failed: Expected status 402 but got 401."
    first, fixed, rewritten = answers(fake_llm.base, with_draft("fails_when_run"), [naming, naming])
    assert "Response Status Should Be    402" in first
    assert fixed == clean, "the first report names the broken test: its defect is fixed"
    assert first_test(rewritten)["calls"] != first_test(clean)["calls"], "the second report: a new try"


def test_an_unknown_draft_is_a_400(fake_llm: StandIn) -> None:
    async def scenario() -> None:
        messages = [{"role": "user", "content": "## Spec\n```json\n{}\n```"}]
        with pytest.raises(openai.BadRequestError, match="draft"):
            await stream_turn(client_for(fake_llm.base), messages, model=f"{MODEL}?draft=sloppy", tools=None)

    run(scenario())
