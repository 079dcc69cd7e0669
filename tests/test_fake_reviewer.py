"""The scripted reviewer over real HTTP, driven by the real `openai.AsyncOpenAI` client (streaming).

Review requests are built by the product's own `review_messages` and carry its `SCHEMA`, in the
three structured modes the product tries (json_schema, a forced submit_review call, json_object).
The reviewer recognises them by that format alone; each `review` knob answers as
docs/CONTRACTS-offline.md says; its default judgement covers every criterion of the example sprint.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import StandIn, start_stand_in
from tests.test_fake_llm import READ_TOOLS, client_for, run, stream_turn
from tests.test_fake_writer_examples import FRAMEWORK, SPECS, load_spec, parsed_tests, write_suites
from worker.agent.prompt import review_messages
from worker.agent.review import REVIEW_TOOL, SCHEMA, quoted_from, spec_criteria

pytestmark = pytest.mark.integration

MODEL = "fake-writer"
MODES = ("json_schema", "tool", "json_object")
CONVENTION = (FRAMEWORK / "doc" / "convention.md").read_text(encoding="utf-8")
SIGNATURES = ["Login As    username, password=None    (resources/auth.resource)"]
SUITE = """\
*** Settings ***
Documentation    SHOP-900 Coupons
Resource    resources/common.resource
Resource    resources/cart.resource

*** Test Cases ***
SHOP-900 Valid Coupon Lowers The Total
    [Documentation]    The total drops by ten percent.
    [Tags]    SHOP-900    cart    smoke
    Login As    alice
    Apply Coupon    WELCOME10
    Cart Total Should Be    29.25

SHOP-900 Expired Coupon Is Refused
    [Documentation]    An expired coupon is refused.
    [Tags]    SHOP-900    cart    regression
    Login As    alice
    Apply Coupon    WINTER20
    Response Status Should Be    400
"""
FIRST_TEST, SECOND_TEST = "SHOP-900 Valid Coupon Lowers The Total", "SHOP-900 Expired Coupon Is Refused"
FIRST_TEST_LINE = 7
FIRST_STEP_LINE = 10
SPEC = {
    "id": "SHOP-900",
    "title": "Coupons",
    "area": "cart",
    "acceptance_criteria": [
        "Given alice has a book in the cart When she applies coupon WELCOME10 Then the total drops by ten percent",
        "When she applies the expired coupon WINTER20 Then it is refused",
    ],
}
PASSED = {
    "violations": [],
    "criteria": [
        {"criterion": SPEC["acceptance_criteria"][0], "covered_by": FIRST_TEST},
        {"criterion": SPEC["acceptance_criteria"][1], "covered_by": SECOND_TEST},
    ],
    "criteria_derived": False,
}
MALFORMED = '{"violations": ['
REFUSAL = "I'm sorry, I can't help with that."


@pytest.fixture(scope="module")
def reviewer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    """A server of its own: its stats and first-review memory are this module's alone."""
    server = start_stand_in(
        "fake-reviewer", ["fake-llm", "--log-level", "warning"], tmp_path_factory.mktemp("reviewer-logs")
    )
    yield server
    server.child.stop()


@pytest.fixture(autouse=True)
def fresh(reviewer: StandIn) -> None:
    reviewer.reset()


@dataclass
class ReviewTurn:
    text: str = ""
    refusal: str = ""
    calls: list[dict[str, str]] = field(default_factory=list)
    finish: str | None = None
    usage: Any = None
    chunks: int = 0


def request_options(mode: str) -> dict[str, Any]:
    """The structured-answer fields of each mode, as the product sends them."""
    if mode == "json_schema":
        schema = {"name": "suite_review", "strict": True, "schema": SCHEMA}
        return {"response_format": {"type": "json_schema", "json_schema": schema}}
    if mode == "tool":
        function = {
            "name": REVIEW_TOOL,
            "description": "Submit the review.",
            "parameters": SCHEMA,
            "strict": True,
        }
        return {
            "tools": [{"type": "function", "function": function}],
            "tool_choice": {"type": "function", "function": {"name": REVIEW_TOOL}},
        }
    return {"response_format": {"type": "json_object"}}


def messages_for(spec: dict[str, Any] = SPEC, suite: str = SUITE) -> list[dict[str, Any]]:
    return review_messages(CONVENTION, spec, spec_criteria(spec), SIGNATURES, suite)


async def review_turn(
    client: openai.AsyncOpenAI,
    messages: list[dict[str, Any]],
    mode: str = "json_schema",
    model: str = MODEL,
    headers: dict[str, str] | None = None,
) -> ReviewTurn:
    """One streamed review turn reassembled as the product does: content, tool calls, refusal."""
    stream = await client.chat.completions.create(
        model=model,
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=headers,
        **request_options(mode),
    )
    turn = ReviewTurn()
    calls: dict[int, dict[str, str]] = {}
    async for chunk in stream:
        turn.chunks += 1
        turn.usage = chunk.usage or turn.usage
        for choice in chunk.choices:
            turn.text += choice.delta.content or ""
            turn.refusal += choice.delta.refusal or ""
            for delta in choice.delta.tool_calls or []:
                entry = calls.setdefault(delta.index, {"name": "", "arguments": ""})
                entry["name"] += (delta.function.name or "") if delta.function else ""
                entry["arguments"] += (delta.function.arguments or "") if delta.function else ""
            turn.finish = choice.finish_reason or turn.finish
    turn.calls = [calls[i] for i in sorted(calls)]
    return turn


def answer_text(turn: ReviewTurn, mode: str) -> str:
    """The review's JSON text: the forced call's arguments in tool mode, else the content."""
    if mode == "tool":
        assert [c["name"] for c in turn.calls] == [REVIEW_TOOL] and turn.text == "", turn
        return turn.calls[0]["arguments"]
    assert not turn.calls, turn
    return turn.text


def reviews(server: str, *requests: tuple[list[dict[str, Any]], str], **options: Any) -> list[ReviewTurn]:
    """The review turns of `requests` (messages, mode), sent one after the other."""

    async def scenario() -> list[ReviewTurn]:
        client = client_for(server)
        return [await review_turn(client, messages, mode, **options) for messages, mode in requests]

    return run(scenario())


def review(server: str, mode: str = "json_schema", **options: Any) -> dict[str, Any]:
    [turn] = reviews(server, (messages_for(), mode), **options)
    return json.loads(answer_text(turn, mode))


def schema_errors(value: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    """Where `value` breaks `schema` (the keywords SCHEMA uses: type, properties, required,
    additionalProperties false, items)."""
    allowed = schema.get("type")
    allowed = allowed if isinstance(allowed, list) else [allowed] if allowed else []
    if allowed and not any(_has_type(value, kind) for kind in allowed):
        return [f"{where}: {value!r} is not {'/'.join(allowed)}"]
    errors: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        errors += [f"{where}: {name} is missing" for name in schema.get("required", []) if name not in value]
        if schema.get("additionalProperties") is False:
            errors += [f"{where}: {name} is not in the schema" for name in value if name not in properties]
        for name, item in value.items():
            errors += schema_errors(item, properties[name], f"{where}.{name}") if name in properties else []
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{where}[{index}]")
    return errors


def _has_type(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    types = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
    return isinstance(value, types[kind])


# --- recognition -------------------------------------------------------------------------------


def test_a_request_without_a_structured_format_gets_a_writer_turn(reviewer: StandIn) -> None:
    async def scenario() -> tuple[Any, Any]:
        client = client_for(reviewer.base)
        with_tools = await stream_turn(client, messages_for(), tools=READ_TOOLS)
        without_tools = await stream_turn(client, messages_for(), tools=None)
        return with_tools, without_tools

    with_tools, without_tools = run(scenario())
    assert [c["name"] for c in with_tools.calls] == ["get_file_contents"]
    assert json.loads(with_tools.calls[0]["arguments"]) == {"file_path": "doc/convention.md"}
    assert without_tools.text.startswith("*** Settings ***") and "SHOP-900" in without_tools.text
    assert reviewer.stats()["reviews"] == 0


def test_a_tool_choice_of_auto_is_no_review_request(reviewer: StandIn) -> None:
    body = {"model": MODEL, "messages": messages_for(), "tools": READ_TOOLS, "tool_choice": "auto"}
    response = httpx.post(f"{reviewer.base}/v1/chat/completions", json=body, timeout=10)
    assert response.status_code == 200
    assert (
        response.json()["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_file_contents"
    )
    assert reviewer.stats()["reviews"] == 0


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_is_answered_in_its_own_shape_streamed_with_usage(reviewer: StandIn, mode: str) -> None:
    [turn] = reviews(reviewer.base, (messages_for(), mode))
    assert json.loads(answer_text(turn, mode)) == PASSED
    assert turn.finish == "stop"  # a forced function call finishes with "stop", as the real API does
    assert turn.chunks > 5 and turn.refusal == ""
    assert turn.usage.prompt_tokens > 0 and turn.usage.completion_tokens > 0
    found = reviewer.stats()
    assert (found["reviews"], found["reviews_by_mode"], found["review_answers"]) == (
        1,
        {mode: 1},
        {"pass": 1},
    )


def test_a_review_asked_without_streaming_comes_back_whole(reviewer: StandIn) -> None:
    def message(knob: str) -> dict[str, Any]:
        body = {"model": f"{MODEL}?review={knob}", "messages": messages_for(), **request_options("tool")}
        response = httpx.post(f"{reviewer.base}/v1/chat/completions", json=body, timeout=10)
        assert response.status_code == 200
        [choice] = response.json()["choices"]
        assert choice["finish_reason"] == "stop"
        return choice["message"]

    [call] = message("pass")["tool_calls"]
    assert call["function"]["name"] == REVIEW_TOOL and json.loads(call["function"]["arguments"]) == PASSED
    refused = message("refusal")
    assert (refused["refusal"], refused["content"], refused.get("tool_calls")) == (REFUSAL, None, None)


def test_a_spec_without_criteria_gets_them_derived_from_its_scenarios(reviewer: StandIn) -> None:
    spec = {"id": "SHOP-901", "title": "Coupons", "scenarios": [{"name": "expired coupon refused"}]}
    [turn] = reviews(reviewer.base, (messages_for(spec), "json_object"))
    assert json.loads(turn.text) == {
        "violations": [],
        "criteria": [{"criterion": "expired coupon refused", "covered_by": SECOND_TEST}],
        "criteria_derived": True,
    }


def test_a_criterion_no_test_shares_a_word_with_is_covered_by_none(reviewer: StandIn) -> None:
    spec = {**SPEC, "acceptance_criteria": ["Invoices are emailed nightly"]}
    [turn] = reviews(reviewer.base, (messages_for(spec), "json_schema"))
    assert json.loads(turn.text)["criteria"] == [
        {"criterion": "Invoices are emailed nightly", "covered_by": None}
    ]


# --- knobs -------------------------------------------------------------------------------------


def test_violation_reports_a_quoted_rule_on_the_first_review_of_a_spec_only(reviewer: StandIn) -> None:
    first, second = reviews(
        reviewer.base,
        (messages_for(), "json_schema"),
        (messages_for(), "tool"),
        model=f"{MODEL}?review=violation",
    )
    found = json.loads(answer_text(first, "json_schema"))
    [violation] = found["violations"]
    assert quoted_from(violation["rule"], CONVENTION) and "`" not in violation["rule"]
    assert violation["line"] == FIRST_STEP_LINE and violation["fix"]  # the first test's first step
    assert SUITE.splitlines()[FIRST_TEST_LINE - 1] == FIRST_TEST
    assert SUITE.splitlines()[FIRST_STEP_LINE - 1].strip() == "Login As    alice"
    assert found["criteria"] == PASSED["criteria"] and not schema_errors(found, SCHEMA)
    assert json.loads(answer_text(second, "tool")) == PASSED
    assert reviewer.stats()["review_answers"] == {"violation": 1, "pass": 1}
    reviewer.reset()  # forgets which specs were reviewed
    assert review(reviewer.base, model=f"{MODEL}?review=violation")["violations"]


def test_uncovered_reports_the_last_criterion_uncovered_on_the_first_review_only(reviewer: StandIn) -> None:
    first, second = reviews(
        reviewer.base,
        (messages_for(), "json_object"),
        (messages_for(), "json_object"),
        headers={"X-Fake-LLM": "review=uncovered"},
    )
    found = json.loads(first.text)
    assert found["criteria"] == [PASSED["criteria"][0], {**PASSED["criteria"][1], "covered_by": None}]
    assert not schema_errors(found, SCHEMA)
    assert json.loads(second.text) == PASSED


@pytest.mark.parametrize("mode", MODES)
def test_malformed_answers_text_that_is_not_json_in_every_mode(reviewer: StandIn, mode: str) -> None:
    [turn] = reviews(reviewer.base, (messages_for(), mode), model=f"{MODEL}?review=malformed")
    assert answer_text(turn, mode) == MALFORMED
    with pytest.raises(ValueError):
        json.loads(MALFORMED)


def test_malformed_stays_malformed_when_the_json_mode_conversation_asks_again(reviewer: StandIn) -> None:
    retry = [
        *messages_for(),
        {"role": "assistant", "content": MALFORMED},
        {"role": "user", "content": "Answer with the JSON object only."},
    ]
    [turn] = reviews(reviewer.base, (retry, "json_object"), model=f"{MODEL}?review=malformed")
    assert turn.text == MALFORMED


@pytest.mark.parametrize("mode", ["json_schema", "tool"])
def test_refusal_streams_a_refusal_and_no_content(reviewer: StandIn, mode: str) -> None:
    [turn] = reviews(reviewer.base, (messages_for(), mode), model=f"{MODEL}?review=refusal")
    assert (turn.refusal, turn.text, turn.calls, turn.finish) == (REFUSAL, "", [], "stop")
    assert turn.chunks > 3


def test_no_json_schema_refuses_the_format_as_openai_does_and_answers_the_forced_call(
    reviewer: StandIn,
) -> None:
    model = f"{MODEL}?review=no_json_schema"
    with pytest.raises(openai.BadRequestError) as refused:
        reviews(reviewer.base, (messages_for(), "json_schema"), model=model)
    assert refused.value.status_code == 400
    assert refused.value.body == {
        "message": "response_format json_schema is not supported by this model",
        "type": "invalid_request_error",
        "param": "response_format",
        "code": None,
    }
    [turn] = reviews(reviewer.base, (messages_for(), "tool"), model=model)
    assert json.loads(answer_text(turn, "tool")) == PASSED
    found = reviewer.stats()
    assert found["reviews_by_mode"] == {"json_schema": 1, "tool": 1}
    assert found["review_answers"] == {"rejected": 1, "pass": 1}


def test_error500_fails_review_requests_only(reviewer: StandIn) -> None:
    spec = {**SPEC, "fake_llm": {"review": "error500"}}
    with pytest.raises(openai.InternalServerError) as failed:
        reviews(reviewer.base, (messages_for(spec), "json_schema"))
    assert failed.value.status_code == 500 and failed.value.body["type"] == "server_error"

    async def writer_turn() -> Any:
        return await stream_turn(client_for(reviewer.base), messages_for(spec), tools=READ_TOOLS)

    assert run(writer_turn()).calls  # the same spec's writer request is served
    found = reviewer.stats()
    assert (found["faults_injected"], found["review_answers"]) == (1, {"error500": 1})


def test_obey_approves_outside_the_schema_and_assesses_no_criterion(reviewer: StandIn) -> None:
    spec = {**SPEC, "fake_llm": {"review": "obey"}}
    [turn] = reviews(reviewer.base, (messages_for(spec), "tool"))
    found = json.loads(answer_text(turn, "tool"))
    assert found == {
        "violations": [],
        "criteria": [],
        "criteria_derived": False,
        "approved": True,
        "verdict": "verified",
    }
    assert schema_errors(found, SCHEMA) == [
        "$: approved is not in the schema",
        "$: verdict is not in the schema",
    ]


def test_an_unknown_review_value_is_a_400(reviewer: StandIn) -> None:
    with pytest.raises(openai.BadRequestError, match="review"):
        reviews(reviewer.base, (messages_for(), "json_schema"), model=f"{MODEL}?review=lenient")


def test_structured_formats_are_checked_as_the_real_api_does(reviewer: StandIn) -> None:
    def post(**fields: Any) -> dict[str, Any]:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Review this."}], **fields}
        response = httpx.post(f"{reviewer.base}/v1/chat/completions", json=body, timeout=10)
        assert response.status_code == 400
        return response.json()["error"]

    assert post(response_format={"type": "json_object"})["param"] == "messages"  # no word "json"
    assert post(response_format={"type": "yaml"})["code"] == "invalid_value"
    assert post(response_format={"type": "json_schema"})["param"] == "response_format.json_schema"
    assert post(tool_choice={"type": "function", "function": {"name": REVIEW_TOOL}})["param"] == "tool_choice"


# --- the example sprint ------------------------------------------------------------------------


def test_every_criterion_of_the_example_sprint_is_covered(reviewer: StandIn) -> None:
    specs = [load_spec(path) for path in sorted(SPECS.glob("*_spec.json"))]
    suites = write_suites(reviewer.base, specs)
    requests = [
        (messages_for(s, text), MODES[n % len(MODES)])
        for n, (s, text) in enumerate(zip(specs, suites, strict=True))
    ]
    turns = reviews(reviewer.base, *requests)
    covered = total = 0
    for spec, text, turn, (_, mode) in zip(specs, suites, turns, requests, strict=True):
        found = json.loads(answer_text(turn, mode))
        assert not schema_errors(found, SCHEMA), (spec, found)
        named = spec_criteria(spec)
        items = spec.get("scenarios") or spec.get("test_cases") or [spec]
        expected = named or [str(item.get("name") or item["title"]) for item in items]
        assert [c["criterion"] for c in found["criteria"]] == expected
        assert found["criteria_derived"] is not bool(named)
        tests = set(parsed_tests(text))
        covered += sum(c["covered_by"] in tests for c in found["criteria"])
        total += len(found["criteria"])
    assert (covered, total) == (29, 29)
    assert reviewer.stats()["reviews_by_mode"] == {"json_schema": 6, "tool": 6, "json_object": 5}
