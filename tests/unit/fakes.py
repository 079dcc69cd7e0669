"""In-memory stand-ins for the loop's two interfaces (the real ones are tested over HTTP)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from worker.agent.tools import ToolOutcome, ToolSpec

Turn = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


def text_turn(text: str) -> Turn:
    return lambda _messages: [
        {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": "stop"}]}
    ]


def call_turn(*calls: tuple[str, dict[str, Any]]) -> Turn:
    def turn(_messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        deltas = [
            {
                "index": i,
                "id": f"call{i}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
            for i, (name, args) in enumerate(calls)
        ]
        return [{"choices": [{"index": 0, "delta": {"tool_calls": deltas}, "finish_reason": "tool_calls"}]}]

    return turn


@dataclass
class ScriptedModel:
    turns: list[Turn]
    requests: list[list[dict[str, Any]]] = field(default_factory=list)
    extras: list[dict[str, Any]] = field(default_factory=list)
    name: str = "scripted"

    async def stream_turn(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], extra: dict[str, Any] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        self.requests.append([dict(m) for m in messages])
        self.extras.append(dict(extra or {}))
        turn = self.turns[min(len(self.requests) - 1, len(self.turns) - 1)]
        for item in turn(messages):
            yield item


@dataclass
class DictToolset:
    """Tools answering from a dict of files; records every call it receives."""

    files: dict[str, str]
    extra_tools: tuple[str, ...] = ("push_files",)
    delay_s: float = 0.0
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    tree_page_cut: int | None = None
    in_flight: int = 0
    max_in_flight: int = 0

    async def list_tools(self) -> list[ToolSpec]:
        schema = {
            "type": "object",
            "properties": {
                "project_id": {"type": "string"},
                "file_path": {"type": "string"},
                "ref": {"type": "string"},
            },
        }
        names = ("get_file_contents", "get_repository_tree", *self.extra_tools)
        return [ToolSpec(name, f"{name} tool", schema) for name in names]

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        self.calls.append((name, dict(arguments)))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight -= 1
        if name == "get_file_contents":
            path = arguments.get("file_path", "")
            if path not in self.files:
                return ToolOutcome(f"Error: File not found: {path}", is_error=True)
            return ToolOutcome(
                json.dumps({"file_path": path, "encoding": "utf8", "content": self.files[path]})
            )
        if name == "get_repository_tree":
            return ToolOutcome(json.dumps(self._tree(arguments)))
        return ToolOutcome("Error: refused", is_error=True)

    def _tree(self, arguments: dict[str, Any]) -> dict[str, Any]:
        base = arguments.get("path", "").strip("/")
        recursive = arguments.get("recursive", False)
        entries: dict[str, str] = {}
        for path in self.files:
            if base and not path.startswith(base + "/"):
                continue
            rest = path[len(base) + 1 :] if base else path
            parts = rest.split("/")
            prefix = f"{base}/" if base else ""
            if recursive:
                for depth in range(1, len(parts)):
                    entries[prefix + "/".join(parts[:depth])] = "tree"
                entries[path] = "blob"
            else:
                entries[prefix + parts[0]] = "tree" if len(parts) > 1 else "blob"
        items = [{"path": p, "type": t, "name": p.rsplit("/", 1)[-1]} for p, t in sorted(entries.items())]
        per_page = arguments.get("per_page", 20)
        if self.tree_page_cut is not None:  # the real server's trap: a full page and no token
            return {"items": items[: self.tree_page_cut], "next_page_token": None}
        start = int(arguments.get("page_token") or 0)
        page = items[start : start + per_page]
        token = str(start + per_page) if start + per_page < len(items) else None
        return {"items": page, "next_page_token": token}
