"""Counters the scripted model keeps, served as JSON by `GET /stats` (reset by `POST /stats/reset`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from offline.window import DEFAULT_WINDOW_S, Peak

HONOUR_TOLERANCE_S = 0.05
# a retry this much earlier than Retry-After still counts as honouring it (clock and network jitter)


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
    review: bool = False
    # a reviewer's conversation (its requests ask for a structured answer)
    prompt_tokens: int = 0
    cached_tokens: int = 0


@dataclass
class RetryAfter:
    """Did clients wait as long as the Retry-After of a 429 asked before their next request?"""

    followed: int = 0
    # 429s with Retry-After that the same conversation followed with another request
    honoured: int = 0
    # ...that came at least Retry-After (less HONOUR_TOLERANCE_S) later
    violated: int = 0
    # ...that came sooner
    min_margin_s: float | None = None
    # the smallest (gap - Retry-After) over all followed 429s; negative when one was violated
    pending: dict[str, tuple[float, float]] = field(default_factory=dict)
    # conversation key -> (monotonic time of its last 429, the Retry-After it carried)

    def sent(self, key: str, at: float, retry_after: float) -> None:
        self.pending[key] = (at, retry_after)

    def arrived(self, key: str, at: float) -> None:
        """A request of conversation `key` arrived at `at`: settle the 429 it follows, if any."""
        if key not in self.pending:
            return
        sent_at, retry_after = self.pending.pop(key)
        margin = at - sent_at - retry_after
        self.followed += 1
        if margin >= -HONOUR_TOLERANCE_S:
            self.honoured += 1
        else:
            self.violated += 1
        self.min_margin_s = margin if self.min_margin_s is None else min(self.min_margin_s, margin)

    def as_json(self) -> dict[str, Any]:
        margin = None if self.min_margin_s is None else round(self.min_margin_s, 3)
        return {
            "followed": self.followed,
            "honoured": self.honoured,
            "violated": self.violated,
            "min_margin_s": margin,
        }


@dataclass
class Stats:
    """Server-wide counters."""

    window_s: float = DEFAULT_WINDOW_S
    requests: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    completions: int = 0
    streamed: int = 0
    tool_calls_emitted: Counter[str] = field(default_factory=Counter)
    final_answers: int = 0
    empty_answers: int = 0
    repairs: int = 0
    reviews: int = 0
    # review requests (a structured answer asked for), whatever their answer
    reviews_by_mode: Counter[str] = field(default_factory=Counter)
    # ...by mode: json_schema, tool, json_object
    review_answers: Counter[str] = field(default_factory=Counter)
    # what the reviewer said: pass, violation, uncovered, malformed, refusal, obey, rejected, error500
    protocol_errors: int = 0
    faults_injected: int = 0
    rate_limited: int = 0
    rate_limited_by: Counter[str] = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    conversations: dict[str, Conversation] = field(default_factory=dict)
    window: Peak = field(init=False)
    retry_after: RetryAfter = field(default_factory=RetryAfter)

    def __post_init__(self) -> None:
        self.window = Peak(self.window_s)

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
            "reviews": self.reviews,
            "reviews_by_mode": dict(self.reviews_by_mode),
            "review_answers": dict(self.review_answers),
            "protocol_errors": self.protocol_errors,
            "faults_injected": self.faults_injected,
            "rate_limited": self.rate_limited,
            "rate_limited_by": dict(self.rate_limited_by),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "window": self.window.as_json(),
            "retry_after": self.retry_after.as_json(),
            "conversations": {key: vars(conv).copy() for key, conv in self.conversations.items()},
        }
