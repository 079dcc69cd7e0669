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
from dataclasses import dataclass, field
from typing import Any

from worker.agent.catalog import CatalogEntry, build_catalog
from worker.agent.checks.robocop import CONFIG_FILES, LintFailed, RobocopConfig, repository_config
from worker.agent.checks.rules import NO_RULES, RULES_PATH, Rules, load_rules
from worker.agent.tools import GuardedTools, ToolMemo, ToolOutcome
from worker.errors import ConfigError, ConventionMissing, RobotFleetError, ToolServerUnavailable

logger = logging.getLogger(__name__)

CONVENTION_PATH = "doc/convention.md"
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
    blobs: list[str]
    trees: list[str]
    truncated: bool


class _TreeWalker:
    def __init__(self, tools: GuardedTools) -> None:
        self._tools = tools
        self.calls = 0
        self._limit = asyncio.Semaphore(TREE_CONCURRENCY)

    async def walk(self, path: str = "") -> list[str]:
        listing = await self._list(path, recursive=True)
        if not listing.truncated:
            return listing.blobs
        logger.info("tree listing of %r may be truncated; completing it directory by directory", path or "/")
        shallow = await self._list(path, recursive=False)
        subtrees = await asyncio.gather(*(self.walk(tree) for tree in shallow.trees))
        return sorted({*listing.blobs, *shallow.blobs, *(blob for sub in subtrees for blob in sub)})

    async def _list(self, path: str, *, recursive: bool) -> _Listing:
        listing = _Listing(blobs=[], trees=[], truncated=False)
        token: str | None = None
        for _ in range(MAX_TREE_PAGES):
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
                raise tool_failure(
                    self._tools, outcome.text, f"listing the repository tree at {path or '/'!r}"
                )
            items, token = _parse_tree_page(outcome.text)
            for item in items:
                target = listing.trees if item.get("type") == "tree" else listing.blobs
                target.append(str(item.get("path", "")))
            if not token:
                listing.truncated = len(items) >= TREE_PAGE_SIZE
                return listing
        listing.truncated = True
        return listing


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


def tool_failure(tools: GuardedTools, text: str, doing: str) -> RobotFleetError:
    """What a failed code-level call means: the configured project or ref does not exist
    (permanent, names the setting), or the server failed (retryable)."""
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


async def fetch_context(tools: GuardedTools, project_id: str, ref: str | None) -> RepoContext:
    walker = _TreeWalker(tools)
    convention, paths = await asyncio.gather(fetch_convention(tools, ref), walker.walk())
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
