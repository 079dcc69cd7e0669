"""Counters the scripted model keeps, served as JSON by `GET /stats` (reset by `POST /stats/reset`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Conversation:
    """Counters of one conversation (key: a hash of its first user message)."""

    spec_id: str = ""
    requests: int = 0
    completions: int = 0
    tool_calls: int = 0
    final_answers: int = 0
    repairs: int = 0
    faults: int = 0


@dataclass
class Stats:
    """Server-wide counters."""

    requests: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    completions: int = 0
    streamed: int = 0
    tool_calls_emitted: Counter[str] = field(default_factory=Counter)
    final_answers: int = 0
    empty_answers: int = 0
    repairs: int = 0
    protocol_errors: int = 0
    faults_injected: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    conversations: dict[str, Conversation] = field(default_factory=dict)

    def conversation(self, key: str, spec_id: str) -> Conversation:
        return self.conversations.setdefault(key, Conversation(spec_id=spec_id))

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_status": dict(self.by_status),
            "completions": self.completions,
            "streamed": self.streamed,
            "tool_calls_emitted": dict(self.tool_calls_emitted),
            "final_answers": self.final_answers,
            "empty_answers": self.empty_answers,
            "repairs": self.repairs,
            "protocol_errors": self.protocol_errors,
            "faults_injected": self.faults_injected,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "conversations": {key: vars(conv).copy() for key, conv in self.conversations.items()},
        }
