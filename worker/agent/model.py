"""The model interface the writer loop depends on: stream one turn as OpenAI-style chunk dicts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol


class ChatModel(Protocol):
    @property
    def name(self) -> str: ...

    def stream_turn(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], extra: dict[str, Any] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield the chunks of one completion. `extra` adds request fields (`response_format`,
        `tool_choice`). Raise only `ModelUnavailable` (retryable) or `ModelRequestRejected` (permanent)."""
        ...
