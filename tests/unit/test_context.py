"""Convention and tree fetched by code, completed when the server cuts pages, cached per key; a "not
found" told apart from a wrong project or ref."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import Any

import pytest

from tests.unit.fakes import DictToolset
from worker.agent.context import ContextCache, fetch_context
from worker.agent.tools import GuardedTools, ToolOutcome, ToolPolicy, ToolSpec
from worker.errors import ConfigError, ConventionMissing


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


class GitLabTree:
    """A toolset answering tree pages as the real server over GitLab does: 100 entries at most, never
    a next-page token, `page_token` read as the tree record id of the last entry already read (GitLab
    resumes after the first entry with that id). Texts of failures are the real server's."""

    def __init__(self, files: dict[str, str], *, honours_tokens: bool = True) -> None:
        self.files = files
        self.honours_tokens = honours_tokens
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def list_tools(self) -> list[ToolSpec]:
        schema = {"type": "object", "properties": {"project_id": {}, "ref": {}, "path": {}}}
        return [
            ToolSpec(name, name, schema)
            for name in ("get_file_contents", "get_repository_tree", "get_project")
        ]

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        self.calls.append((name, dict(arguments)))
        wrong = arguments.get("project_id") != "42" or arguments.get("ref", "main") != "main"
        if name == "get_project":
            if arguments.get("project_id") != "42":
                return ToolOutcome(
                    'Error: GitLab API error: 404 Not Found\n{"message":"404 Project Not Found"}', True
                )
            return ToolOutcome(json.dumps({"id": 42, "default_branch": "main", "empty_repo": False}))
        if name == "get_file_contents":
            path = arguments["file_path"]
            if wrong or path not in self.files:
                return ToolOutcome(f"Error: File not found: {path}", is_error=True)
            return ToolOutcome(
                json.dumps({"file_path": path, "encoding": "utf8", "content": self.files[path]})
            )
        if wrong:
            return ToolOutcome("Error: Repository or path not found", is_error=True)
        entries = self._entries(arguments.get("path", ""), bool(arguments.get("recursive")))
        start = 0
        if self.honours_tokens and (token := arguments.get("page_token")):
            start = next(i + 1 for i, entry in enumerate(entries) if entry["id"] == token)
        return ToolOutcome(json.dumps({"items": entries[start : start + 100]}))

    def _entries(self, base: str, recursive: bool) -> list[dict[str, str]]:
        found: dict[str, dict[str, str]] = {}
        for path, text in self.files.items():
            if base and not path.startswith(base + "/"):
                continue
            parts = path[len(base) + 1 if base else 0 :].split("/")
            depth = len(parts) if recursive else 1
            for level in range(1, min(depth, len(parts)) + 1):
                sub = "/".join(filter(None, [base, *parts[:level]]))
                blob = level == len(parts)
                ident = hashlib.sha1(f"{'blob ' + text if blob else 'tree ' + sub}".encode()).hexdigest()
                found[sub] = {"id": ident, "path": sub, "type": "blob" if blob else "tree"}
        return [found[path] for path in sorted(found)]


def real_guard(toolset: GitLabTree, project: str = "42", ref: str = "main") -> GuardedTools:
    return GuardedTools(toolset, asyncio.run(toolset.list_tools()), ToolPolicy(project_id=project, ref=ref))


def big_directory_repo() -> dict[str, str]:
    files = repo(40)
    files |= {f"testdata/bulk/item_{i:03d}.txt": f"item {i}" for i in range(130)}
    return files


def test_full_pages_without_token_are_read_on_from_the_last_entry_id() -> None:
    files = big_directory_repo()
    toolset = GitLabTree(files)
    context = asyncio.run(fetch_context(real_guard(toolset), "42", "main"))
    assert set(context.paths) == set(files)
    tree_calls = [args for name, args in toolset.calls if name == "get_repository_tree"]
    assert all(args["recursive"] for args in tree_calls) and len(tree_calls) == 2


def test_identical_files_do_not_stop_the_listing() -> None:
    # identical files share a blob id and GitLab resumes after the first entry holding the id, so
    # the token must be an id no earlier entry holds
    files = {"doc/convention.md": "# Rules"}
    files |= {f"data/f_{i:03d}.txt": "" if i % 2 else f"file {i}" for i in range(250)}
    context = asyncio.run(fetch_context(real_guard(GitLabTree(files)), "42", "main"))
    assert set(context.paths) == set(files)


@pytest.mark.parametrize(
    ("files", "honours_tokens", "seen"),
    [
        (big_directory_repo(), False, 100),  # a server that ignores the token
        ({f"data/empty_{i:03d}.txt": "" for i in range(150)}, True, 100),  # no id to resume after
    ],
    ids=["token-ignored", "150-identical-files"],
)
def test_a_directory_that_cannot_be_paged_is_reported(
    caplog: pytest.LogCaptureFixture, files: dict[str, str], honours_tokens: bool, seen: int
) -> None:
    files = {"doc/convention.md": "# Rules", **files}
    context = asyncio.run(
        fetch_context(real_guard(GitLabTree(files, honours_tokens=honours_tokens)), "42", "main")
    )
    directory = "testdata/bulk" if honours_tokens is False else "data"
    assert sum(1 for path in context.paths if path.startswith(directory + "/")) == seen
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"{directory!r} after {seen} entries" in message for message in warnings), warnings


@pytest.mark.parametrize(
    ("project", "ref", "message"),
    [
        ("99999", "main", r"project '99999' not found .*check GITLAB_PROJECT_ID"),
        ("no/such", "main", r"project 'no/such' not found .*check GITLAB_PROJECT_ID"),
        ("42", "nope", r"ref 'nope' not found in project '42': check GITLAB_REF"),
    ],
)
def test_not_found_from_a_wrong_setting_names_the_setting(project: str, ref: str, message: str) -> None:
    tools = real_guard(GitLabTree(big_directory_repo()), project, ref)
    with pytest.raises(ConfigError, match=message):
        asyncio.run(fetch_context(tools, project, ref))


def test_missing_convention_with_real_texts_is_still_the_convention() -> None:
    toolset = GitLabTree({"tests/a.robot": ""})
    with pytest.raises(ConventionMissing, match=r"doc/convention.md at ref main is missing"):
        asyncio.run(fetch_context(real_guard(toolset), "42", "main"))
    assert [name for name, _ in toolset.calls].count("get_project") == 1


def test_a_server_without_file_or_tree_tools_is_a_configuration_error() -> None:
    toolset = GitLabTree({"doc/convention.md": "# Rules"})
    listing = [spec for spec in asyncio.run(toolset.list_tools()) if spec.name == "get_project"]
    tools = GuardedTools(toolset, listing, ToolPolicy(project_id="42", ref="main"))
    with pytest.raises(
        ConfigError, match=r"GITLAB_MCP_URL offers no get_file_contents or get_repository_tree tool"
    ):
        asyncio.run(fetch_context(tools, "42", "main"))
    assert toolset.calls == []
