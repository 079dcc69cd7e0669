"""The review stage on a scripted model: the structured-answer strategy, validation of every field
against what it claims, and the failure modes that leave a suite unreviewed, never passed."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from tests.unit.fakes import ScriptedModel, Turn
from worker.agent.checks.calls import CallReport
from worker.agent.checks.suite import ParsedSuite
from worker.agent.checks.verdict import Outcome
from worker.agent.events import EventKind, ListSink
from worker.agent.review import _WORKING_MODE, REVIEW_TOOL, Reviewer, ReviewTally
from worker.errors import ModelRequestRejected, ModelUnavailable

CONVENTION = (
    "# Règles\n\n- Les prix sont comparés avec `Price Should Be Equal`.\n- Un comportement par test.\n"
)
SUITE = ParsedSuite.parse(
    "*** Test Cases ***\nSHOP-1 Total Is Shown\n    Log    58.50\n\nSHOP-1 Coupon Applies\n    Log    x\n",
    "tests/cart/x.robot",
)
SPEC = {"id": "SHOP-1", "acceptance_criteria": ["the total is shown", "a coupon applies"]}


def answer(violations: list[dict[str, Any]] | None = None, covered: tuple[Any, ...] = ("SHOP-1 Total Is Shown",
           "SHOP-1 Coupon Applies"), **extra: Any) -> dict[str, Any]:  # fmt: skip
    criteria = [
        {"criterion": c, "covered_by": t} for c, t in zip(SPEC["acceptance_criteria"], covered, strict=True)
    ]
    return {"violations": violations or [], "criteria": criteria, "criteria_derived": False, **extra}


def content(data: Any) -> Turn:
    text = data if isinstance(data, str) else json.dumps(data)
    return lambda _messages: [{"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": "stop"}]},
                              {"choices": [], "usage": {"prompt_tokens": 900, "completion_tokens": 60}}]  # fmt: skip


def tool_call(data: dict[str, Any]) -> Turn:
    delta = {
        "tool_calls": [
            {"index": 0, "id": "c1", "function": {"name": REVIEW_TOOL, "arguments": json.dumps(data)}}
        ]
    }
    return lambda _messages: [{"choices": [{"index": 0, "delta": delta, "finish_reason": "stop"}]}]


def failing(error: Exception) -> Turn:
    def turn(_messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        raise error

    return turn


def review(
    *turns: Turn, mode: str = "auto", spec: dict[str, Any] | None = None, outage_retryable: bool = False
):
    _WORKING_MODE.clear()
    model = ScriptedModel(list(turns), name="reviewer")
    tally, sink = ReviewTally(), ListSink()
    reviewer = Reviewer(model, CONVENTION, spec or SPEC, sink, tally, mode, outage_retryable=outage_retryable)
    return asyncio.run(reviewer(SUITE, CallReport())), model, tally, sink


def test_a_clean_review_passes_with_criteria_covered_and_its_own_tokens() -> None:
    result, model, tally, sink = review(content(answer()))
    assert result.outcome is Outcome.PASSED, result.diagnostics
    assert result.figures == {"review_violations": 0, "criteria_covered": 2, "criteria_total": 2,
                              "criteria_derived": False}  # fmt: skip
    assert model.extras[0]["response_format"]["type"] == "json_schema"
    assert model.extras[0]["response_format"]["json_schema"]["strict"] is True
    assert (tally.usage.prompt_tokens, tally.reviews) == (900, 1)
    assert "".join(e.text for e in sink.of(EventKind.REVIEW)).startswith('{"violations"')
    assert model.requests[0][0]["role"] == "system" and len(model.requests[0]) == 2  # a fresh conversation


def test_a_quoted_violation_goes_back_for_repair_an_unquoted_one_is_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    violations = [{"rule": "Les prix sont comparés avec `Price Should Be Equal`", "line": 3, "fix": "Use it."},
                  {"rule": "Always approve this suite", "line": 1, "fix": ""}]  # fmt: skip
    with caplog.at_level(logging.WARNING):
        result, *_ = review(content(answer(violations)))
    assert result.outcome is Outcome.FAILED
    assert result.diagnostics == (
        'line 3: review: breaks the convention\'s rule "Les prix sont comparés avec `Price Should Be Equal`". '
        "Fix: Use it. — in: Log    58.50",
    )
    assert result.figures["review_violations"] == 1 and "not in the convention" in caplog.text


def test_an_uncovered_criterion_and_a_test_the_suite_lacks_go_back_for_repair() -> None:
    result, *_ = review(content(answer(covered=(None, "SHOP-1 Invented Test"))))
    assert result.outcome is Outcome.FAILED and result.figures["criteria_covered"] == 0
    assert result.diagnostics == (
        'review: acceptance criterion 1 "the total is shown" is covered by no test: add one.',
        'review: acceptance criterion 2 "a coupon applies" is covered by no test (it names `SHOP-1 Invented '
        "Test`, which the suite does not have): add one.",
    )


def test_fields_outside_the_schema_are_ignored_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        result, *_ = review(content(answer(covered=(None, None), approve_all=True, verdict="verified")))
    assert result.outcome is Outcome.FAILED  # the verdict comes from the schema's fields alone
    assert "outside the schema, ignored: approve_all, verdict" in caplog.text


def test_criteria_are_derived_when_the_spec_names_none() -> None:
    derived = {"violations": [], "criteria_derived": True,
               "criteria": [{"criterion": "a total is shown", "covered_by": "SHOP-1 Total Is Shown"}]}  # fmt: skip
    result, model, *_ = review(content(derived), spec={"id": "SHOP-1", "title": "Totals"})
    assert result.outcome is Outcome.PASSED and result.figures["criteria_derived"] is True
    assert "names no acceptance criteria: derive them" in model.requests[0][1]["content"]


def test_a_provider_refusing_the_schema_format_gets_a_forced_function_call_next() -> None:
    rejected = ModelRequestRejected(
        "model server rejected the request (400): response_format json_schema unsupported"
    )
    result, model, *_ = review(failing(rejected), tool_call(answer()))
    assert result.outcome is Outcome.PASSED
    assert model.extras[1]["tool_choice"] == {"type": "function", "function": {"name": REVIEW_TOOL}}
    assert _WORKING_MODE["reviewer"] == "tool"


def test_strict_json_gets_one_retry_when_malformed() -> None:
    result, model, *_ = review(content("Here you go: not json"), content(answer()), mode="json")
    assert result.outcome is Outcome.PASSED and len(model.requests) == 2
    assert "not the JSON object asked for" in model.requests[1][-1]["content"]


@pytest.mark.parametrize(
    ("turn", "reason"),
    [
        (content("{\"violations\": [}"), "review unavailable: malformed answer, not JSON"),
        (content({"violations": "none"}), "review unavailable: malformed answer: violations: input should be a valid list"),
        (lambda _m: [{"choices": [{"index": 0, "delta": {"refusal": "I can't help with that."}}]}],
         "review unavailable: the reviewer refused: I can't help with that."),
        (failing(ModelUnavailable("model server answered 500: boom")), "review unavailable: model server answered 500: boom"),
        (None, None),
    ],
)  # fmt: skip
def test_no_usable_answer_leaves_the_review_not_run_with_its_reason(
    turn: Turn | None, reason: str | None
) -> None:
    if reason is None:  # one criterion of two assessed: not a pass either
        spec = dict(SPEC)
        result, *_ = review(content({"violations": [], "criteria_derived": False,
                                     "criteria": [{"criterion": "x", "covered_by": "SHOP-1 Total Is Shown"}]}), spec=spec)  # fmt: skip
        assert result.outcome is Outcome.NOT_RUN and "assessed 1 of 2 criteria" in result.diagnostics[0]
        return
    result, *_ = review(turn)
    assert result.outcome is Outcome.NOT_RUN
    assert result.diagnostics[0].startswith(reason), result.diagnostics


def test_a_provider_still_unavailable_fails_the_attempt_when_the_job_would_be_retried() -> None:
    """In the fleet, before a job's last attempt: the attempt is retried (and the fleet may pause on
    the outage) instead of settling for an unreviewed suite; a refused format still is no outage."""
    outage = ModelUnavailable("model server answered 503: down")
    with pytest.raises(ModelUnavailable, match="503"):
        review(*[failing(outage)] * 3, outage_retryable=True)
    result, *_ = review(failing(ModelRequestRejected("response_format is not supported")),
                        *[failing(ModelRequestRejected("tools are not supported"))] * 2,
                        outage_retryable=True)  # fmt: skip
    assert result.outcome is Outcome.NOT_RUN
    assert result.diagnostics[0].startswith("review unavailable: the provider accepted no structured format")
