"""What the writer loop reports while it runs: tokens, thinking, tool calls, diagnostics, usage.

The loop emits; a sink decides what to do with it (the CLI prints, the worker batches into Redis).
`emit` is synchronous and must not block: sinks that do I/O buffer and flush on their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class EventKind(StrEnum):
    ROUND = "round"
    TEXT = "text"
    THINKING = "thinking"
    TOOL_CALL = "tool_call"
    TOOL_RESULT = "tool_result"
    DIAGNOSTICS = "diagnostics"
    USAGE = "usage"
    CHECKS = "checks"
    REVIEW = "review"
    """The reviewer's answer as it streams (its own conversation, not the writer's)."""
    INFO = "info"


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    text: str = ""
    data: dict[str, Any] = field(default_factory=dict)


class EventSink(Protocol):
    def emit(self, event: Event) -> None: ...


class ListSink:
    """Keeps every event; for tests and for callers that want the whole transcript."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: EventKind) -> list[Event]:
        return [event for event in self.events if event.kind == kind]
