"""The repository context every prompt starts with: `doc/convention.md`, the file tree, and the
repository's declared rules (`.robot-fleet.toml`, its Robocop configuration).

Fetched by code before the first model turn (writer rule 1), once per process per (project, ref):
concurrent jobs wait on the same fetch instead of repeating it. Failures are not cached. Root files
are read only when the tree shows them: a missing one costs no request.

The tree is listed with keyset pagination, every page followed. The real GitLab MCP server may cut
a listing without handing back a next-page token (a full page with no token); such a page is
"possibly truncated", and the listing is completed sub-directory by sub-directory.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from worker.agent.catalog import CatalogEntry, build_catalog
from worker.agent.checks.robocop import CONFIG_FILES, LintFailed, RobocopConfig, repository_config
from worker.agent.checks.rules import NO_RULES, RULES_PATH, Rules, load_rules
from worker.agent.tools import GuardedTools, ToolMemo, ToolOutcome
from worker.errors import ConfigError, ConventionMissing, RobotFleetError, ToolServerUnavailable

logger = logging.getLogger(__name__)

CONVENTION_PATH = "doc/convention.md"
READ_TOOLS_NEEDED = ("get_file_contents", "get_repository_tree")
TREE_PAGE_SIZE = 100
MAX_TREE_PAGES = 200
TREE_CONCURRENCY = 4


@dataclass(frozen=True)
class RepoContext:
    project_id: str
    ref: str | None
    convention: str
    paths: tuple[str, ...]
    """Blob paths of the repository, sorted."""
    mcp_calls: int
    rules: Rules = NO_RULES
    robocop: RobocopConfig | None = None
    """The repository's own Robocop configuration; None: it has none (the fleet's defaults apply)."""
    robocop_problem: str | None = None
    """Why the repository's Robocop configuration could not be used (the rules stage says so)."""
    fetched_at: float = field(default_factory=time.monotonic)


@dataclass
class _Listing:
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Entries by path, in the order the server gave them (keyset resumption depends on it)."""
    truncated: bool = False

    def paths(self, kind: str) -> list[str]:
        return [
            path for path, item in self.entries.items() if (item.get("type") == "tree") == (kind == "tree")
        ]


class _TreeWalker:
    """Lists the whole tree, and never loses a path silently.

    The real server drops GitLab's next-page `Link` header, so a full page comes back without a
    token. GitLab documents its keyset `page_token` as the tree record id of the last entry of the
    previous page, so the walker makes that token itself and reads on. Should a server still stop
    short (it ignores the token), the listing is completed directory by directory, and a directory
    whose own listing stays cut is logged as a warning and kept in `incomplete`."""

    def __init__(self, tools: GuardedTools) -> None:
        self._tools = tools
        self.calls = 0
        self.incomplete: list[str] = []
        self._limit = asyncio.Semaphore(TREE_CONCURRENCY)

    async def walk(self, path: str = "") -> list[str]:
        listing = await self._list(path, recursive=True)
        if not listing.truncated:
            return listing.paths("blob")
        logger.info("tree listing of %r may be truncated; completing it directory by directory", path or "/")
        shallow = await self._list(path, recursive=False)
        if shallow.truncated:
            self.incomplete.append(path or "/")
            logger.warning(
                "the MCP server stops listing %r after %d entries and does not page on: files past them "
                "are unknown to the writer",
                path or "/",
                len(shallow.entries),
            )
        subtrees = await asyncio.gather(*(self.walk(tree) for tree in shallow.paths("tree")))
        blobs = {*listing.paths("blob"), *shallow.paths("blob")}
        return sorted(blobs.union(*subtrees))

    async def _list(self, path: str, *, recursive: bool) -> _Listing:
        listing = _Listing()
        token: str | None = None
        made: set[str] = set()
        for _ in range(MAX_TREE_PAGES):
            items, token = await self._page(path, recursive, token)
            fresh = [item for item in items if str(item.get("path", "")) not in listing.entries]
            listing.entries.update((str(item.get("path", "")), item) for item in fresh)
            if token:
                continue
            if len(items) < TREE_PAGE_SIZE:
                return listing
            token = _resume_token(listing.entries)  # a full page without a token: read on by id
            if not fresh or token is None or token in made:
                listing.truncated = True
                return listing
            made.add(token)
        listing.truncated = True
        return listing

    async def _page(
        self, path: str, recursive: bool, token: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        arguments: dict[str, Any] = {
            "path": path,
            "recursive": recursive,
            "per_page": TREE_PAGE_SIZE,
            "pagination": "keyset",
        }
        if token:
            arguments["page_token"] = token
        async with self._limit:
            self.calls += 1
            outcome = await self._tools.call_pinned("get_repository_tree", arguments)
        if outcome.is_error:
            raise tool_failure(self._tools, outcome.text, f"listing the repository tree at {path or '/'!r}")
        return _parse_tree_page(outcome.text)


def _resume_token(entries: dict[str, dict[str, Any]]) -> str | None:
    """The id to resume a keyset listing after: the latest entry whose id no earlier entry shares
    (GitLab resumes after the first entry holding the id; identical files share a blob id)."""
    counts = Counter(str(item.get("id") or "") for item in entries.values())
    for item in reversed(entries.values()):
        ident = str(item.get("id") or "")
        if ident and counts[ident] == 1:
            return ident
    return None


def _parse_tree_page(text: str) -> tuple[list[dict[str, Any]], str | None]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ToolServerUnavailable(f"get_repository_tree returned non-JSON text: {text[:200]!r}") from exc
    if isinstance(data, list):
        return [item for item in data if isinstance(item, dict)], None
    if isinstance(data, dict):
        items = data.get("items") or data.get("tree") or []
        token = data.get("next_page_token") or data.get("nextPageToken")
        return [item for item in items if isinstance(item, dict)], token or None
    raise ToolServerUnavailable(f"get_repository_tree returned an unexpected shape: {text[:200]!r}")


NOT_FOUND_MARKERS = ("not found", "404")
"""What a failed read says when something does not exist. The real server says it of a file
(`File not found: <path>`) and of a tree (`Repository or path not found`) whether the file, the
project or the ref is what is missing: only asking for the project and the ref themselves tells
them apart (`check_project_and_ref`)."""


def tool_failure(tools: GuardedTools, text: str, doing: str) -> RobotFleetError:
    """What a failed code-level call means: the configured project or ref does not exist
    (permanent, names the setting), or the server failed (retryable; `fetch_context` checks the
    project and ref before it lets a "not found" through)."""
    lowered = text.lower()
    policy = tools.policy
    if "project not found" in lowered:
        return ConfigError(
            f"project {policy.project_id!r} not found on the MCP server while {doing}: check GITLAB_PROJECT_ID"
        )
    if any(
        what in lowered
        for what in ("commit not found", "ref not found", "branch not found", "tree not found")
    ):
        return ConfigError(
            f"ref {policy.ref or '(default branch)'!r} not found while {doing}: check GITLAB_REF ({text})"
        )
    return ToolServerUnavailable(f"{doing} failed: {text}")


def _is_missing_file(text: str) -> bool:
    lowered = text.lower()
    return "file not found" in lowered or ("404" in lowered and "file" in lowered)


async def check_project_and_ref(tools: GuardedTools) -> None:
    """Raise a `ConfigError` naming GITLAB_PROJECT_ID or GITLAB_REF when the server does not know the
    configured project or ref (two calls: the project, then the root of the tree at the ref)."""
    policy = tools.policy
    project = ToolOutcome("")
    if "get_project" in tools.names:
        project = await tools.call_pinned("get_project", {"project_id": policy.project_id})
        if project.is_error and _says_not_found(project.text):
            raise ConfigError(
                f"project {policy.project_id!r} not found on the MCP server (or its token cannot see it): "
                "check GITLAB_PROJECT_ID (a numeric id or a plain group/project path)"
            )
    root = await tools.call_pinned("get_repository_tree", {"path": "", "per_page": 1})
    if root.is_error and _says_not_found(root.text) and not _is_empty_project(project):
        raise ConfigError(
            f"ref {policy.ref or '(default branch)'!r} not found in project {policy.project_id!r}: "
            "check GITLAB_REF (a branch, tag or commit)"
        )


def _says_not_found(text: str) -> bool:
    return any(marker in text.lower() for marker in NOT_FOUND_MARKERS)


def _is_empty_project(outcome: ToolOutcome) -> bool:
    try:
        project = json.loads(outcome.text)
    except ValueError:
        return False
    return isinstance(project, dict) and project.get("empty_repo") is True


def _answers_for_good(outcome: ToolOutcome) -> bool:
    """A file's content, or its absence, holds at a ref; other errors may pass."""
    return not outcome.is_error or _is_missing_file(outcome.text)


async def _read_text(tools: GuardedTools, path: str) -> str | None:
    outcome = await tools.call_pinned("get_file_contents", {"file_path": path})
    if outcome.is_error:
        if _is_missing_file(outcome.text):
            return None
        raise tool_failure(tools, outcome.text, f"reading {path}")
    try:
        data = json.loads(outcome.text)
    except ValueError:
        return outcome.text
    if isinstance(data, dict) and isinstance(data.get("content"), str):
        return None if data.get("encoding") == "base64" else data["content"]
    return outcome.text


async def fetch_convention(tools: GuardedTools, ref: str | None) -> str:
    text = await _read_text(tools, CONVENTION_PATH)
    if text is None:
        raise ConventionMissing(
            f"{CONVENTION_PATH} at ref {ref or '(default branch)'} is missing from the repository (or is not "
            "a text file); the writer cannot follow the team's conventions"
        )
    return text


async def _convention_and_tree(
    tools: GuardedTools, ref: str | None, walker: _TreeWalker
) -> tuple[str, list[str]]:
    """Both at once; when one fails the other is cancelled and awaited, so no call of this fetch is
    still in flight when its caller closes the session. A "not found" is checked against the
    project and the ref before it is believed."""
    if missing := [name for name in READ_TOOLS_NEEDED if name not in tools.names]:
        raise ConfigError(
            f"the MCP server at GITLAB_MCP_URL offers no {' or '.join(missing)} tool: the writer cannot read "
            "the repository through it (GitLab's own /api/v4/mcp has none; zereight/gitlab-mcp has both)"
        )
    convention = asyncio.ensure_future(fetch_convention(tools, ref))
    tree = asyncio.ensure_future(walker.walk())
    try:
        await asyncio.wait({convention, tree}, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in (convention, tree):
            task.cancel()
        await asyncio.gather(convention, tree, return_exceptions=True)
    failures = [exc for task in (convention, tree) if not task.cancelled() and (exc := task.exception())]
    if any(_may_be_a_wrong_setting(failure) for failure in failures):
        await check_project_and_ref(tools)
    if failures:
        raise failures[0]
    return convention.result(), tree.result()


def _may_be_a_wrong_setting(failure: BaseException) -> bool:
    return isinstance(failure, ConventionMissing) or (
        isinstance(failure, ToolServerUnavailable) and _says_not_found(failure.message)
    )


async def fetch_context(tools: GuardedTools, project_id: str, ref: str | None) -> RepoContext:
    walker = _TreeWalker(tools)
    convention, paths = await _convention_and_tree(tools, ref, walker)
    tree = set(paths)
    wanted = [name for name in (RULES_PATH, *CONFIG_FILES) if name in tree]
    texts = await asyncio.gather(*(_read_text(tools, name) for name in wanted))
    files = {name: text for name, text in zip(wanted, texts, strict=True) if text is not None}
    robocop, problem = None, None
    try:
        robocop = repository_config(files)
    except LintFailed as exc:
        problem = str(exc)
    return RepoContext(
        project_id=project_id,
        ref=ref,
        convention=convention,
        paths=tuple(sorted(tree)),
        mcp_calls=walker.calls + 1 + len(wanted),
        rules=load_rules(files.get(RULES_PATH)),
        robocop=robocop,
        robocop_problem=problem,
    )


DEFAULT_CONTEXT_TTL_S = 900.0


class ContextCache:
    """Per-process cache of repository contexts keyed by (project, ref); one fetch at a time per key.

    Entries expire after `ttl_s` so a long-lived worker sees convention changes on the branch.
    """

    def __init__(self, ttl_s: float = DEFAULT_CONTEXT_TTL_S) -> None:
        self._ttl_s = ttl_s
        self.memo = ToolMemo(ttl_s, keep=_answers_for_good)
        """The process's file reads, shared by every job's guard (the model's reads included)."""
        self._contexts: dict[tuple[str, str | None], RepoContext] = {}
        self._locks: dict[tuple[str, str | None], asyncio.Lock] = {}
        self._catalogs: dict[tuple[str, str | None, float], tuple[CatalogEntry, ...]] = {}
        self._catalog_locks: dict[tuple[str, str | None, float], asyncio.Lock] = {}

    async def get(self, tools: GuardedTools, project_id: str, ref: str | None) -> tuple[RepoContext, bool]:
        """The context and whether this call fetched it (False when served from the cache)."""
        key = (project_id, ref)
        if (cached := self._fresh(key)) is not None:
            return cached, False
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if (cached := self._fresh(key)) is not None:
                return cached, False
            context = await fetch_context(tools, project_id, ref)
            self._contexts[key] = context
            return context, True

    def _fresh(self, key: tuple[str, str | None]) -> RepoContext | None:
        context = self._contexts.get(key)
        if context is not None and time.monotonic() - context.fetched_at < self._ttl_s:
            return context
        return None

    async def catalog(self, tools: GuardedTools, context: RepoContext) -> tuple[CatalogEntry, ...]:
        """The repository's keyword catalog at the context's ref, built on first need (once per
        context: a context is replaced when it expires, never changed)."""
        key = (context.project_id, context.ref, context.fetched_at)
        async with self._catalog_locks.setdefault(key, asyncio.Lock()):
            if key not in self._catalogs:
                catalog = await build_catalog(lambda path: _read_text(tools, path), context.paths)
                live = {(c.project_id, c.ref, c.fetched_at) for c in self._contexts.values()}
                self._catalogs = {k: v for k, v in self._catalogs.items() if k in live}
                self._catalogs[key] = catalog
        return self._catalogs[key]

    @staticmethod
    async def read_file(tools: GuardedTools, path: str) -> str | None:
        """A repository text file (None when missing or binary). Read through a guard holding
        `memo`, each path reaches the server once per process; concurrent readers share it."""
        return await _read_text(tools, path)

    def clear(self) -> None:
        self._contexts.clear()
        self._catalogs.clear()
        self.memo = ToolMemo(self._ttl_s, keep=_answers_for_good)
