"""Assembles one streamed model turn from OpenAI-style chunk dicts, tolerating real providers.

Quirks handled (DESIGN.md, writer rule 4):
- `delta.content` as a string or as a list of parts, with `thinking` parts (string or list of text
  parts) kept apart from the answer; `reasoning_content` / `reasoning` fields count as thinking;
- tool-call deltas with a missing index, or a repeated index 0 for parallel calls (a delta that
  brings a new id, or a name while the current call already has a name and complete arguments,
  starts a new call);
- empty or missing ids (replaced by 9 alphanumeric characters, as Mistral requires), repeated ids;
- arguments as a string in pieces, or as an object; a whole call in one chunk;
- `finish_reason` "stop" although tool calls were sent (the calls win);
- a final usage chunk with no choices;
- `delta.refusal` (structured outputs: the model declined to answer) kept apart from the text.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_ID_ALPHABET = string.ascii_letters + string.digits
TOOL_CALL_ID_LENGTH = 9


def new_tool_call_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(TOOL_CALL_ID_LENGTH))


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str
    """The arguments as JSON text, exactly as the model produced them (objects re-serialised)."""


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cached_tokens + other.cached_tokens,
        )


@dataclass(frozen=True, slots=True)
class AssembledTurn:
    text: str
    thinking: str
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str | None
    usage: Usage | None
    refusal: str = ""


@dataclass(slots=True)
class _PendingCall:
    id: str = ""
    name: str = ""
    arguments: str = ""

    def arguments_complete(self) -> bool:
        try:
            json.loads(self.arguments)
        except ValueError:
            return False
        return True


@dataclass
class TurnAssembler:
    """Feed chunks with `add`; read the turn with `finish`. Callbacks see text and thinking live."""

    on_text: Callable[[str], None] | None = None
    on_thinking: Callable[[str], None] | None = None
    _text: list[str] = field(default_factory=list)
    _thinking: list[str] = field(default_factory=list)
    _refusal: list[str] = field(default_factory=list)
    _calls: list[_PendingCall] = field(default_factory=list)
    _by_index: dict[int, _PendingCall] = field(default_factory=dict)
    _finish_reason: str | None = None
    _usage: Usage | None = None

    def add(self, chunk: dict[str, Any]) -> None:
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._usage = _parse_usage(usage)
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or choice.get("message") or {}
            self._add_content(delta.get("content"))
            for key in ("reasoning_content", "reasoning"):
                if isinstance(delta.get(key), str) and delta[key]:
                    self._add_thinking(delta[key])
            if isinstance(delta.get("refusal"), str):
                self._refusal.append(delta["refusal"])
            for tool_delta in delta.get("tool_calls") or ():
                self._add_tool_delta(tool_delta)
            if choice.get("finish_reason"):
                self._finish_reason = choice["finish_reason"]

    def finish(self) -> AssembledTurn:
        calls: list[ToolCall] = []
        seen_ids: set[str] = set()
        for pending in self._calls:
            if not pending.name:
                continue
            call_id = pending.id if pending.id and pending.id not in seen_ids else new_tool_call_id()
            seen_ids.add(call_id)
            calls.append(ToolCall(id=call_id, name=pending.name, arguments=pending.arguments))
        return AssembledTurn(
            text="".join(self._text),
            thinking="".join(self._thinking),
            tool_calls=tuple(calls),
            finish_reason=self._finish_reason,
            usage=self._usage,
            refusal="".join(self._refusal),
        )

    def _add_content(self, content: Any) -> None:
        if isinstance(content, str):
            if content:
                self._add_text(content)
            return
        if not isinstance(content, list):
            return
        for part in content:
            if isinstance(part, str):
                self._add_text(part)
            elif isinstance(part, dict):
                kind = part.get("type")
                if kind in ("thinking", "reasoning"):
                    self._add_thinking(_flatten_text(part.get(kind, part.get("text"))))
                elif kind == "text" or (kind is None and "text" in part):
                    self._add_text(_flatten_text(part.get("text")))

    def _add_text(self, text: str) -> None:
        if text:
            self._text.append(text)
            if self.on_text:
                self.on_text(text)

    def _add_thinking(self, text: str) -> None:
        if text:
            self._thinking.append(text)
            if self.on_thinking:
                self.on_thinking(text)

    def _add_tool_delta(self, delta: dict[str, Any]) -> None:
        function = delta.get("function") or {}
        call_id = delta.get("id") or ""
        name = function.get("name") or ""
        arguments = function.get("arguments")
        pending = self._call_for(delta.get("index"), call_id, name)
        if call_id and not pending.id:
            pending.id = call_id
        if name and not pending.name:
            pending.name = name
        if isinstance(arguments, dict | list):
            pending.arguments = json.dumps(arguments, ensure_ascii=False)
        elif isinstance(arguments, str):
            pending.arguments += arguments

    def _call_for(self, index: Any, call_id: str, name: str) -> _PendingCall:
        current = self._by_index.get(index) if isinstance(index, int) else None
        if current is None and not isinstance(index, int) and self._calls:
            current = self._calls[-1]
        if current is None or self._starts_new_call(current, call_id, name):
            current = _PendingCall()
            self._calls.append(current)
            if isinstance(index, int):
                self._by_index[index] = current
        return current

    @staticmethod
    def _starts_new_call(current: _PendingCall, call_id: str, name: str) -> bool:
        if call_id and current.id and call_id != current.id:
            return True
        if call_id and current.id == call_id:
            return False
        return bool(name and current.name and current.arguments_complete())


def _flatten_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(_flatten_text(item.get("text") if isinstance(item, dict) else item) for item in value)
    return ""


def _parse_usage(usage: dict[str, Any]) -> Usage:
    details = usage.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens") if isinstance(details, dict) else 0
    return Usage(
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        cached_tokens=int(cached or 0),
    )
