"""Counters the tests and benchmarks read through `GET /stats` (and clear with `POST /stats/reset`).

Updated from the event loop and from worker threads alike, so every change takes one lock.

`window` is the busiest sliding interval of `window_s` seconds: the most /mcp requests any such
interval held since start (or the last reset), kept by `offline.window.Peak` as the scripted model's.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from offline.window import DEFAULT_WINDOW_S, Peak


class Stats:
    """What the server saw since start (or the last reset)."""

    def __init__(
        self, window_s: float = DEFAULT_WINDOW_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._tool_calls: Counter[str] = Counter()
        self._window = Peak(window_s, clock)

    def request(self) -> None:
        """Count one HTTP request to /mcp, in `requests` and in the sliding window."""
        with self._lock:
            self._counts["requests"] += 1
            self._window.hit()

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
            self._window = Peak(self._window.seconds, self._window.clock)

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
                "window": {"seconds": self._window.seconds, "max_requests": self._window.max_requests},
            }
