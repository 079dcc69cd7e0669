"""The writer loop on a scripted model and an in-memory toolset: protocol, repairs, every bound."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.unit.fakes import DictToolset, ScriptedModel, Turn, call_turn, text_turn
from worker.agent.checks.pipeline import VerifyConfig
from worker.agent.context import ContextCache
from worker.agent.events import EventKind, ListSink
from worker.agent.loop import WriterLimits, WriterResult
from worker.agent.tools import ToolPolicy
from worker.agent.writer import WriterConfig, generate
from worker.errors import JobTimeout, NoAnswer, RepairsExhausted, RoundsExhausted
from worker.spec import parse_spec

GOOD = "*** Settings ***\nDocumentation    Generated\n\n*** Test Cases ***\nA-1 Works\n    Log    ok\n"
BROKEN = "*** Test Steps ***\nA-1 Works\n    Log    ok\n"
FILES = {
    "doc/convention.md": "# Convention\nTag every test.",
    "tests/a.robot": GOOD,
    "resources/r.resource": "",
}


def run(
    turns: list[Turn], *, toolset: DictToolset | None = None, sink: ListSink | None = None, **limits: Any
):
    toolset = toolset or DictToolset(dict(FILES))
    model = ScriptedModel(turns)
    config = WriterConfig(
        ToolPolicy(project_id="42", ref="main"),
        WriterLimits(**limits),
        checks=VerifyConfig(format_output=False),
    )
    spec = parse_spec(b'{"id": "A-1", "title": "works"}', source="A-1.json", max_bytes=10_000)

    async def go() -> WriterResult:
        listing = await toolset.list_tools()
        return await generate(
            spec,
            config,
            model=model,
            toolset=toolset,
            listing=listing,
            cache=ContextCache(),
            sink=sink or ListSink(),
        )

    return asyncio.run(go()), model, toolset


def test_context_is_in_the_system_prompt_before_the_first_turn() -> None:
    result, model, _ = run([text_turn(GOOD)])
    system = model.requests[0][0]["content"]
    assert "## doc/convention.md" in system and "Tag every test." in system
    assert "## Repository tree" in system and "tests/a.robot" in system
    assert "## Spec" in model.requests[0][1]["content"]
    assert result.robot_text == GOOD and result.rounds == 1


def test_assistant_message_carries_tool_calls_and_each_call_is_answered() -> None:
    turns = [
        call_turn(
            ("get_file_contents", {"file_path": "tests/a.robot"}),
            ("get_file_contents", {"file_path": "nope"}),
        ),
        text_turn(GOOD),
    ]
    result, model, _ = run(turns)
    second = model.requests[1]
    assistant = second[2]
    assert assistant["role"] == "assistant" and [c["id"] for c in assistant["tool_calls"]] == [
        "call0",
        "call1",
    ]
    tool_messages = second[3:]
    assert [m["tool_call_id"] for m in tool_messages] == ["call0", "call1"]
    assert "File not found: nope" in tool_messages[1]["content"]
    assert result.tool_calls == {"get_file_contents": 2}


def test_parallel_calls_of_one_turn_run_concurrently() -> None:
    toolset = DictToolset(dict(FILES), delay_s=0.05)
    paths = (
        "tests/e.robot",
        "tests/d.robot",
        "tests/b.robot",
        "tests/c.robot",
    )  # distinct, and none given up front: reads are memoised
    calls = [("get_file_contents", {"file_path": path}) for path in paths]
    run([call_turn(*calls), text_turn(GOOD)], toolset=toolset)
    assert toolset.max_in_flight == 4


def test_invalid_answer_gets_diagnostics_and_a_repair_turn() -> None:
    sink = ListSink()
    result, model, _ = run([text_turn(BROKEN), text_turn(GOOD)], sink=sink)
    repair_request = model.requests[1][-1]
    assert repair_request["role"] == "user" and "Unrecognized section header" in repair_request["content"]
    assert result.repairs == 1 and result.diagnostics
    assert sink.of(EventKind.DIAGNOSTICS)[0].data["repair"] == 1


def test_repairs_exhausted_is_permanent_with_diagnostics() -> None:
    with pytest.raises(RepairsExhausted) as info:
        run([text_turn(BROKEN)], max_repairs=2)
    assert "after 2 repair turns" in info.value.message
    assert any("Test Steps" in d for d in info.value.diagnostics)


def test_rounds_exhausted_when_the_model_only_calls_tools() -> None:
    with pytest.raises(RoundsExhausted, match="within 3 rounds"):
        run([call_turn(("get_repository_tree", {}))], max_rounds=3)


def test_empty_answer_is_nudged_then_fails_as_no_answer() -> None:
    with pytest.raises(NoAnswer):
        run([text_turn("")], max_repairs=1)
    result, _, _ = run([text_turn(""), text_turn(GOOD)])
    assert result.repairs == 1


def test_wall_clock_budget_covers_tools_and_fails_as_timeout() -> None:
    toolset = DictToolset(dict(FILES), delay_s=0.3)
    with pytest.raises(JobTimeout, match=r"within 0\.2s"):
        run(
            [call_turn(("get_file_contents", {"file_path": "tests/a.robot"})), text_turn(GOOD)],
            toolset=toolset,
            timeout_s=0.2,
        )


def test_events_cover_round_tool_call_result_and_text() -> None:
    sink = ListSink()
    run([call_turn(("get_file_contents", {"file_path": "tests/a.robot"})), text_turn(GOOD)], sink=sink)
    kinds = {event.kind for event in sink.events}
    assert {
        EventKind.ROUND,
        EventKind.TOOL_CALL,
        EventKind.TOOL_RESULT,
        EventKind.TEXT,
        EventKind.INFO,
    } <= kinds
    assert sink.of(EventKind.TOOL_CALL)[0].data["arguments"] == {"file_path": "tests/a.robot"}


def test_spec_id_from_the_file_name_is_shown_to_the_model() -> None:
    from worker.agent.prompt import user_message

    spec = parse_spec(b'{"title": "no id"}', source="specs/SHOP-143_spec.json", max_bytes=10_000)
    assert '"id": "SHOP-143"' in user_message(spec)


def test_the_keyword_catalog_and_the_most_similar_test_with_its_imports_are_given_up_front() -> None:
    files = {
        **FILES,
        "resources/r.resource": "*** Keywords ***\nOpen Shop\n    [Documentation]    Opens the shop.\n    No Operation\n",
        "tests/a.robot": GOOD.replace(
            "*** Test Cases ***", "Resource    resources/r.resource\n\n*** Test Cases ***"
        ),
        "tests/z/other.robot": GOOD,
    }
    _, model, _ = run([text_turn(GOOD)], toolset=DictToolset(files))
    system, user = model.requests[0][0]["content"], model.requests[0][1]["content"]
    assert "## Keywords of the repository" in system
    assert "Open Shop | - | Opens the shop. | resources/r.resource" in system
    # what the similar test imports leads (shared by specs of other folders), the test itself follows
    first, test = (
        user.index("## Repository file: resources/r.resource"),
        user.index("## Repository file: tests/a.robot"),
    )
    assert first < test < user.index("## Spec")
    assert "tests/z/other.robot" not in user  # not in the target's folder, and one similar test is enough
