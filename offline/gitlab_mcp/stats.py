"""Counters the tests and benchmarks read through `GET /stats` (and clear with `POST /stats/reset`).

Updated from the event loop and from worker threads alike, so every change takes one lock.

`window` is the busiest sliding interval of `window_s` seconds: the most /mcp requests any such
interval held since start (or the last reset). One monotonic stamp per request sits in a deque, and
each new request drops the stamps older than its own time minus the window, so the count after the
drop is the busiest interval ending at that request, and the running maximum over those is the
maximum over all intervals.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

DEFAULT_WINDOW_S = 60.0
MAX_STAMPS = 200_000
# a window holding more requests than this is counted as holding this many


class Stats:
    """What the server saw since start (or the last reset)."""

    def __init__(
        self, window_s: float = DEFAULT_WINDOW_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not window_s > 0:
            raise ValueError(f"a rate window must be positive, not {window_s!r}")
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._tool_calls: Counter[str] = Counter()
        self.window_s = float(window_s)
        self._clock = clock
        self._stamps: deque[float] = deque(maxlen=MAX_STAMPS)
        self._max_in_window = 0

    def request(self) -> None:
        """Count one HTTP request to /mcp, in `requests` and in the sliding window."""
        with self._lock:
            now = self._clock()
            self._counts["requests"] += 1
            horizon = now - self.window_s
            while self._stamps and self._stamps[0] <= horizon:
                self._stamps.popleft()
            self._stamps.append(now)
            self._max_in_window = max(self._max_in_window, len(self._stamps))

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
            self._stamps.clear()
            self._max_in_window = 0

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
                "window": {"seconds": self.window_s, "max_requests": self._max_in_window},
            }
