"""Convention and tree fetched by code, completed when the server cuts pages, cached per key."""

from __future__ import annotations

import asyncio

import pytest

from tests.unit.fakes import DictToolset
from worker.agent.context import ContextCache, fetch_context
from worker.agent.tools import GuardedTools, ToolPolicy
from worker.errors import ConventionMissing


def guard(toolset: DictToolset) -> GuardedTools:
    return GuardedTools(toolset, asyncio.run(toolset.list_tools()), ToolPolicy(project_id="42", ref="main"))


def repo(n: int) -> dict[str, str]:
    files = {"doc/convention.md": "# Rules"}
    files |= {f"tests/area{i % 7}/t{i}.robot": "" for i in range(n)}
    return files


def test_every_tree_page_is_followed() -> None:
    toolset = DictToolset(repo(450))
    context = asyncio.run(fetch_context(guard(toolset), "42", "main"))
    assert len(context.paths) == 451
    assert context.convention == "# Rules"
    tree_calls = [args for name, args in toolset.calls if name == "get_repository_tree"]
    assert len(tree_calls) == 5 and tree_calls[-1]["page_token"] == "400"


def test_full_page_without_token_is_completed_by_subdirectories() -> None:
    toolset = DictToolset(repo(250), tree_page_cut=100)
    context = asyncio.run(fetch_context(guard(toolset), "42", "main"))
    assert len(context.paths) == 251
    assert any(
        args.get("recursive") is False for name, args in toolset.calls if name == "get_repository_tree"
    )


def test_missing_convention_is_permanent_and_names_file_and_ref() -> None:
    with pytest.raises(ConventionMissing, match=r"doc/convention.md at ref main is missing"):
        asyncio.run(fetch_context(guard(DictToolset({"tests/a.robot": ""})), "42", "main"))


def test_cache_fetches_once_for_concurrent_jobs() -> None:
    toolset = DictToolset(repo(10), delay_s=0.01)
    cache = ContextCache()
    tools = guard(toolset)

    async def many() -> list[bool]:
        results = await asyncio.gather(*(cache.get(tools, "42", "main") for _ in range(8)))
        return [fetched for _, fetched in results]

    assert sorted(asyncio.run(many())) == [False] * 7 + [True]
    assert sum(1 for name, _ in toolset.calls if name == "get_file_contents") == 1
