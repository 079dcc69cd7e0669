"""Tools as the writer loop sees them: a small toolset interface and the guard in front of it.

The guard enforces writer rules 2 and 5: only an allow-list of read-only tools is offered (and
intersected with what the server lists); any other call is refused with a message to the model and
never reaches the server; `project_id`/`ref` are injected where the schema has them and pinned to
the configured project and ref whatever the model passes; invalid argument JSON, tool errors and
timeouts come back as text for the model; results over a size limit are cut with a marker.
File reads are answered from a per-process memo after the first (`ToolMemo`).
Infrastructure failures (`ToolServerUnavailable`, `ToolServerRejected`) are the only exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

READ_ONLY_TOOLS: frozenset[str] = frozenset(
    {"get_file_contents", "get_repository_tree", "search_project_code", "get_project"}
)
PINNED_PROJECT_KEYS = ("project_id",)
PINNED_REF_KEYS = ("ref",)
TRUNCATION_MARKER = "\n[... truncated by robot-fleet: {dropped} of {total} characters not shown ...]"


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    text: str
    is_error: bool = False


class Toolset(Protocol):
    """What the loop needs from a tool server (MCP in production, a dict in unit tests)."""

    async def list_tools(self) -> list[ToolSpec]: ...

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> ToolOutcome: ...


@dataclass(frozen=True)
class ToolPolicy:
    project_id: str
    ref: str | None
    allowed: frozenset[str] = READ_ONLY_TOOLS
    max_result_chars: int = 24_000
    timeout_s: float = 30.0


TOOL_ATTEMPTS = 3
"""A call that times out is tried this often before the model is told (and the job marked degraded)."""
TOOL_RETRY_BACKOFF_S = (1.0, 3.0)


@dataclass
class BudgetWait:
    """Time one tool call spent waiting for a fleet-wide budget: not the server's time, so not
    counted against the call's timeout. The rate limiter's request hook writes it (the hook runs in
    a copy of the caller's context, so it sees the caller's holder)."""

    waited_s: float = 0.0
    since: float | None = None

    def total(self, now: float) -> float:
        return self.waited_s + (now - self.since if self.since is not None else 0.0)


BUDGET_WAIT: contextvars.ContextVar[BudgetWait | None] = contextvars.ContextVar("budget_wait", default=None)


MEMOIZED_TOOLS: frozenset[str] = frozenset({"get_file_contents"})
"""Reads whose answer depends on their (pinned) arguments only: a file at a ref."""
DEFAULT_MEMO_TTL_S = 15 * 60


class ToolMemo:
    """Per-process memory of successful read-only calls, keyed by tool and pinned arguments.

    Every job of a batch reads the same similar tests and resources; the first read reaches the
    MCP server, the others (the model's and grounding's alike) are answered from here until the
    entry is `ttl_s` old. Concurrent readers of one key share a single call. Only answers `keep`
    accepts are remembered (by default: not errors)."""

    def __init__(
        self,
        ttl_s: float = DEFAULT_MEMO_TTL_S,
        keep: Callable[[ToolOutcome], bool] = lambda o: not o.is_error,
    ) -> None:
        self._ttl_s = ttl_s
        self._keep = keep
        self._results: dict[str, tuple[float, ToolOutcome]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.hits = 0

    async def get_or_call(self, key: str, call: Callable[[], Awaitable[ToolOutcome]]) -> ToolOutcome:
        if (fresh := self._fresh(key)) is not None:
            return fresh
        async with self._locks.setdefault(key, asyncio.Lock()):
            if (fresh := self._fresh(key)) is not None:
                return fresh
            outcome = await call()
            if self._keep(outcome):
                self._results[key] = (time.monotonic(), outcome)
            return outcome

    def _fresh(self, key: str) -> ToolOutcome | None:
        cached = self._results.get(key)
        if cached is None or time.monotonic() - cached[0] >= self._ttl_s:
            return None
        self.hits += 1
        return cached[1]


class GuardedTools:
    """The only way the writer reaches tools: allow-list, pinned project and ref, timeouts."""

    def __init__(
        self, toolset: Toolset, specs: Iterable[ToolSpec], policy: ToolPolicy, memo: ToolMemo | None = None
    ) -> None:
        self._toolset = toolset
        self._policy = policy
        self._memo = memo
        self._specs = {spec.name: spec for spec in specs if spec.name in policy.allowed}
        self.degraded: list[str] = []
        """Calls that needed more than one try (or never answered): the job ran degraded."""

    @property
    def policy(self) -> ToolPolicy:
        return self._policy

    @property
    def names(self) -> list[str]:
        return sorted(self._specs)

    def openai_tools(self) -> list[dict[str, Any]]:
        """The offered tools in the OpenAI `tools` format, pinned arguments hidden from the model;
        canonical (sorted by name, keys sorted), so every job's request starts with the same bytes
        whatever order the server lists them in: a provider's prompt cache sees one prefix."""
        return [
            {
                "type": "function",
                "function": {
                    "name": spec.name,
                    "description": spec.description,
                    "parameters": _canonical(_without_pinned(spec.input_schema)),
                },
            }
            for spec in sorted(self._specs.values(), key=lambda spec: spec.name)
        ]

    async def call(self, name: str, raw_arguments: str) -> ToolOutcome:
        """Run one model-requested call; every failure but infrastructure becomes model-facing text."""
        if name not in self._specs:
            offered = ", ".join(self.names) or "none"
            return ToolOutcome(
                f"Error: tool {name!r} is not available to you (read-only access). Available tools: {offered}.",
                is_error=True,
            )
        try:
            arguments = json.loads(raw_arguments) if raw_arguments.strip() else {}
        except ValueError as exc:
            return ToolOutcome(f"Error: the arguments are not valid JSON ({exc}); send a JSON object.", True)
        if not isinstance(arguments, dict):
            return ToolOutcome("Error: the arguments must be a JSON object.", is_error=True)
        return await self.call_pinned(name, arguments, for_model=True)

    async def call_pinned(
        self, name: str, arguments: dict[str, Any], *, for_model: bool = False
    ) -> ToolOutcome:
        """Call with project/ref pinned and a timeout. Results for the model are cut to the size
        limit (its context is precious); code reading a file or a tree page gets it whole."""
        pinned = self._pin(name, arguments)
        if self._memo is not None and name in MEMOIZED_TOOLS:
            key = json.dumps([name, pinned], sort_keys=True, default=str)
            outcome = await self._memo.get_or_call(key, lambda: self._call(name, pinned))
        else:
            outcome = await self._call(name, pinned)
        return ToolOutcome(self._truncate(outcome.text), outcome.is_error) if for_model else outcome

    async def _call(self, name: str, pinned: dict[str, Any]) -> ToolOutcome:
        """The call, tried again when it times out: a slow server is an infrastructure failure, and
        the model is told only when every try failed. Either way the job records it ran degraded."""
        timeout = self._policy.timeout_s
        what = f"{name} {_brief(pinned)}".strip()
        for attempt in range(1, TOOL_ATTEMPTS + 1):
            outcome = await self._timed(name, pinned)
            if outcome is not None:
                if attempt > 1:
                    self.degraded.append(
                        f"{what}: timed out {attempt - 1}x after {timeout:g}s, answered on try {attempt}"
                    )
                return outcome
            if attempt < TOOL_ATTEMPTS:
                await asyncio.sleep(TOOL_RETRY_BACKOFF_S[attempt - 1])
        self.degraded.append(f"{what}: timed out {TOOL_ATTEMPTS}x after {timeout:g}s; the model was told")
        return ToolOutcome(
            f"Error: {name} timed out after {timeout:g}s ({TOOL_ATTEMPTS} tries).", is_error=True
        )

    async def _timed(self, name: str, pinned: dict[str, Any]) -> ToolOutcome | None:
        """The call's outcome, or None when it took longer than the policy's timeout of the server's
        time (time spent waiting for a fleet-wide budget does not count)."""
        timeout = self._policy.timeout_s
        wait = BudgetWait()
        token = BUDGET_WAIT.set(wait)
        try:
            task = asyncio.ensure_future(self._toolset.call_tool(name, pinned))
        finally:
            BUDGET_WAIT.reset(token)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            while True:
                remaining = started + timeout + wait.total(loop.time()) - loop.time()
                if remaining <= 0:
                    return None
                done, _ = await asyncio.wait({task}, timeout=remaining)
                if done:
                    return task.result()
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def _pin(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        schema = self._specs[name].input_schema if name in self._specs else {}
        properties = schema.get("properties") or {}
        pinned = dict(arguments)
        for key in PINNED_PROJECT_KEYS:
            if key in properties or key in pinned:
                pinned[key] = self._policy.project_id
        for key in PINNED_REF_KEYS:
            if self._policy.ref is not None and (key in properties or key in pinned):
                pinned[key] = self._policy.ref
            elif self._policy.ref is None:
                pinned.pop(key, None)
        return pinned

    def _truncate(self, text: str) -> str:
        limit = self._policy.max_result_chars
        if len(text) <= limit:
            return text
        return text[:limit] + TRUNCATION_MARKER.format(dropped=len(text) - limit, total=len(text))


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_canonical(item) for item in value]
    return value


def _brief(arguments: dict[str, Any]) -> str:
    """What a call was about, for the degraded record: its path, if it has one."""
    return str(arguments.get("file_path") or arguments.get("path") or "")


def _without_pinned(schema: dict[str, Any]) -> dict[str, Any]:
    cleaned = copy.deepcopy(schema) if schema else {"type": "object", "properties": {}}
    hidden = set(PINNED_PROJECT_KEYS) | set(PINNED_REF_KEYS)
    properties = cleaned.get("properties")
    if isinstance(properties, dict):
        for key in hidden:
            properties.pop(key, None)
    if isinstance(cleaned.get("required"), list):
        cleaned["required"] = [key for key in cleaned["required"] if key not in hidden]
    cleaned.setdefault("type", "object")
    return cleaned
