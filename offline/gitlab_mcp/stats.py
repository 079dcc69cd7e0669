"""Counters the tests and benchmarks read through `GET /stats` (and clear with `POST /stats/reset`).

Updated from the event loop and from worker threads alike, so every change takes one lock.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class Stats:
    """What the server saw since start (or the last reset)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._tool_calls: Counter[str] = Counter()

    def add(self, name: str, amount: int = 1) -> None:
        """Count one event: requests, rate_limited, unauthorized, write_attempts, ..."""
        with self._lock:
            self._counts[name] += amount

    def tool_call(self, tool: str) -> None:
        with self._lock:
            self._tool_calls[tool] += 1

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._tool_calls.clear()

    def snapshot(self) -> dict[str, Any]:
        """The `/stats` JSON body."""
        with self._lock:
            return {
                "requests": self._counts["requests"],
                "rate_limited": self._counts["rate_limited"],
                "unauthorized": self._counts["unauthorized"],
                "tool_calls": dict(self._tool_calls),
                "write_attempts": self._counts["write_attempts"],
                "foreign_project_calls": self._counts["foreign_project_calls"],
                "default_branch_lookups": self._counts["default_branch_lookups"],
            }
