"""The stream assembler against the provider quirks of DESIGN.md rule 4 (pure unit tests)."""

from __future__ import annotations

import json
import re
from typing import Any

from worker.agent.stream import TurnAssembler


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"id": "c", "object": "chat.completion.chunk", "choices": choices, **extra}


def assemble(*chunks: dict[str, Any]):
    assembler = TurnAssembler()
    for item in chunks:
        assembler.add(item)
    return assembler.finish()


def test_joins_text_deltas_and_reports_them_live() -> None:
    seen: list[str] = []
    assembler = TurnAssembler(on_text=seen.append)
    for piece in ["*** Test", " Cases ***", "\n"]:
        assembler.add(chunk({"content": piece}))
    turn = assembler.finish()
    assert turn.text == "*** Test Cases ***\n"
    assert seen == ["*** Test", " Cases ***", "\n"]


def test_thinking_parts_stay_out_of_the_answer() -> None:
    thoughts: list[str] = []
    assembler = TurnAssembler(on_thinking=thoughts.append)
    assembler.add(chunk({"content": [{"type": "thinking", "thinking": [{"type": "text", "text": "plan"}]}]}))
    assembler.add(chunk({"content": [{"type": "text", "text": "answer"}]}))
    assembler.add(chunk({"reasoning_content": " more"}))
    turn = assembler.finish()
    assert turn.text == "answer"
    assert turn.thinking == "plan more"
    assert thoughts == ["plan", " more"]


def test_arguments_split_across_chunks_are_joined() -> None:
    turn = assemble(
        chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "get_file_contents"}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"file_'}}]}),
        chunk(
            {"tool_calls": [{"index": 0, "function": {"arguments": 'path": "a.robot"}'}}]},
            finish="tool_calls",
        ),
    )
    assert [(c.id, c.name, json.loads(c.arguments)) for c in turn.tool_calls] == [
        ("call_1", "get_file_contents", {"file_path": "a.robot"})
    ]
    assert turn.finish_reason == "tool_calls"


def test_parallel_calls_with_repeated_index_zero_are_separated() -> None:
    turn = assemble(
        chunk({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": '{"x": 1}'}}]}),
        chunk({"tool_calls": [{"index": 0, "id": "b", "function": {"name": "g", "arguments": "{"}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"y": 2}'}}]}),
    )
    assert [(c.id, c.name, c.arguments) for c in turn.tool_calls] == [
        ("a", "f", '{"x": 1}'),
        ("b", "g", '{"y": 2}'),
    ]


def test_empty_and_missing_ids_get_nine_alphanumeric_characters() -> None:
    turn = assemble(
        chunk({"tool_calls": [{"index": 0, "id": "", "function": {"name": "f", "arguments": "{}"}}]}),
        chunk({"tool_calls": [{"index": 1, "function": {"name": "g", "arguments": "{}"}}]}),
    )
    ids = [call.id for call in turn.tool_calls]
    assert len(ids) == 2 and len(set(ids)) == 2
    assert all(re.fullmatch(r"[A-Za-z0-9]{9}", call_id) for call_id in ids)


def test_missing_index_and_empty_ids_with_whole_calls() -> None:
    turn = assemble(
        chunk({"tool_calls": [{"function": {"name": "f", "arguments": '{"a": 1}'}}]}),
        chunk({"tool_calls": [{"function": {"name": "f", "arguments": '{"a": 2}'}}]}),
    )
    assert [json.loads(call.arguments) for call in turn.tool_calls] == [{"a": 1}, {"a": 2}]


def test_arguments_given_as_an_object_are_serialised() -> None:
    turn = assemble(
        chunk({"tool_calls": [{"index": 0, "id": "x", "function": {"name": "f", "arguments": {"k": "v"}}}]})
    )
    assert json.loads(turn.tool_calls[0].arguments) == {"k": "v"}


def test_duplicate_ids_are_made_unique() -> None:
    turn = assemble(
        chunk({"tool_calls": [{"index": 0, "id": "same", "function": {"name": "f", "arguments": "{}"}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "same", "function": {"name": "g", "arguments": "{}"}}]}),
    )
    assert len({call.id for call in turn.tool_calls}) == 2


def test_stop_finish_reason_with_tool_calls_keeps_the_calls() -> None:
    turn = assemble(
        chunk({"tool_calls": [{"index": 0, "id": "i", "function": {"name": "f", "arguments": "{}"}}]}, "stop")
    )
    assert turn.finish_reason == "stop"
    assert [call.name for call in turn.tool_calls] == ["f"]


def test_usage_chunk_without_choices_is_read() -> None:
    usage = {"prompt_tokens": 100, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 64}}
    turn = assemble(chunk({"content": "x"}, "stop"), chunk(None, usage=usage))
    assert (turn.usage.prompt_tokens, turn.usage.completion_tokens, turn.usage.cached_tokens) == (100, 7, 64)


def test_nameless_call_fragments_are_dropped() -> None:
    turn = assemble(chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}))
    assert turn.tool_calls == ()
