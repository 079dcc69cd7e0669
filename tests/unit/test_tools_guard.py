"""The tool guard: allow-list, pinning of project and ref, errors as text, truncation, timeouts."""

from __future__ import annotations

import asyncio
import json

from tests.unit.fakes import DictToolset
from worker.agent.tools import GuardedTools, ToolPolicy


def guard(toolset: DictToolset, **policy: object) -> GuardedTools:
    listing = asyncio.run(toolset.list_tools())
    return GuardedTools(toolset, listing, ToolPolicy(project_id="42", ref="main", **policy))  # type: ignore[arg-type]


def test_only_listed_read_only_tools_are_offered_and_pinned_args_hidden() -> None:
    tools = guard(DictToolset({}, extra_tools=("push_files", "create_merge_request")))
    offered = tools.openai_tools()
    assert [t["function"]["name"] for t in offered] == ["get_file_contents", "get_repository_tree"]
    for tool in offered:
        assert set(tool["function"]["parameters"]["properties"]) == {"file_path"}


def test_write_tool_call_is_refused_and_never_reaches_the_server() -> None:
    toolset = DictToolset({})
    outcome = asyncio.run(guard(toolset).call("push_files", '{"branch": "main"}'))
    assert outcome.is_error and "not available" in outcome.text
    assert toolset.calls == []


def test_project_and_ref_chosen_by_the_model_are_overridden() -> None:
    toolset = DictToolset({"a.robot": "x"})
    args = json.dumps({"file_path": "a.robot", "project_id": "secret/infra", "ref": "prod"})
    outcome = asyncio.run(guard(toolset).call("get_file_contents", args))
    assert not outcome.is_error
    assert toolset.calls == [
        ("get_file_contents", {"file_path": "a.robot", "project_id": "42", "ref": "main"})
    ]


def test_invalid_argument_json_is_an_error_message_for_the_model() -> None:
    toolset = DictToolset({})
    outcome = asyncio.run(guard(toolset).call("get_file_contents", '{"file_path": '))
    assert outcome.is_error and "not valid JSON" in outcome.text
    assert asyncio.run(guard(toolset).call("get_file_contents", "[1]")).text.startswith(
        "Error: the arguments must"
    )
    assert toolset.calls == []


def test_oversize_results_are_cut_with_a_marker() -> None:
    toolset = DictToolset({"big.txt": "y" * 5000})
    outcome = asyncio.run(
        guard(toolset, max_result_chars=1000).call("get_file_contents", '{"file_path": "big.txt"}')
    )
    assert len(outcome.text) < 1200
    assert "truncated by robot-fleet" in outcome.text and "not shown" in outcome.text


def test_slow_tool_times_out_as_a_message() -> None:
    toolset = DictToolset({"a": "b"}, delay_s=0.5)
    outcome = asyncio.run(guard(toolset, timeout_s=0.05).call("get_file_contents", '{"file_path": "a"}'))
    assert outcome.is_error and "timed out" in outcome.text


def test_code_reads_get_whole_results_only_the_model_sees_them_cut() -> None:
    toolset = DictToolset({"big.resource": "y" * 5000})
    tools = guard(toolset, max_result_chars=1000)
    whole = asyncio.run(tools.call_pinned("get_file_contents", {"file_path": "big.resource"}))
    assert "truncated" not in whole.text and json.loads(whole.text)["content"] == "y" * 5000


def test_file_reads_are_memoised_per_process_and_shared_by_concurrent_callers() -> None:
    from worker.agent.tools import ToolMemo

    toolset = DictToolset({"a.robot": "x" * 50, "b.robot": "y"}, delay_s=0.02)
    listing = asyncio.run(toolset.list_tools())
    memo = ToolMemo()
    policy = ToolPolicy(project_id="42", ref="main", max_result_chars=1000)
    first_job, second_job = (GuardedTools(toolset, listing, policy, memo) for _ in range(2))

    async def scenario() -> list[object]:
        reads = [first_job.call("get_file_contents", '{"file_path": "a.robot"}') for _ in range(3)]
        reads += [
            second_job.call("get_file_contents", '{"file_path": "a.robot", "ref": "x"}')
        ]  # pinned: same key
        reads += [second_job.call("get_file_contents", '{"file_path": "missing.robot"}') for _ in range(2)]
        reads += [second_job.call_pinned("get_file_contents", {"file_path": "b.robot"})]
        return await asyncio.gather(*reads)

    outcomes = asyncio.run(scenario())
    assert len({outcome.text for outcome in outcomes[:4]}) == 1 and not outcomes[0].is_error
    assert all(outcome.is_error for outcome in outcomes[4:6])
    paths = [args["file_path"] for name, args in toolset.calls]
    assert sorted(paths) == ["a.robot", "b.robot", "missing.robot", "missing.robot"], "errors are not kept"
    assert memo.hits >= 3
