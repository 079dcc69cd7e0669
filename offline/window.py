"""Sliding windows over time, for both stand-ins: the busiest W seconds seen (`Peak`) and the scripted
model's request/token budget (`Budget`).

Both keep one entry per request in a bounded deque and drop the entries older than `now - W` as
time goes on, so every operation costs O(1) amortised. An entry belongs to the window `(now - W, now]`.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DEFAULT_WINDOW_S = 60.0
MAX_ENTRIES = 200_000
# a window holding more requests than this is counted as holding this many


@dataclass
class Entry:
    """One request in a window: when it arrived and the tokens it has cost so far."""

    at: float
    tokens: int = 0
    live: bool = True
    # False once the entry has left the window (tokens added later no longer count)


class _Window:
    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not seconds > 0:
            raise ValueError(f"a rate window must be positive, not {seconds!r}")
        self.seconds = float(seconds)
        self.clock = clock
        self.entries: deque[Entry] = deque()
        self.tokens = 0

    def _prune(self, now: float) -> None:
        horizon = now - self.seconds
        while self.entries and (self.entries[0].at <= horizon or len(self.entries) > MAX_ENTRIES):
            gone = self.entries.popleft()
            gone.live = False
            self.tokens -= gone.tokens

    def _append(self, now: float) -> Entry:
        entry = Entry(now)
        self.entries.append(entry)
        self._prune(now)
        return entry


class Peak(_Window):
    """The largest number of requests, and of tokens, in any sliding interval of `seconds`."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(seconds, clock)
        self.max_requests = 0
        self.max_tokens = 0

    def hit(self, now: float | None = None) -> Entry:
        """Count one request arriving now; add its tokens later with `add_tokens`."""
        entry = self._append(self.clock() if now is None else now)
        self.max_requests = max(self.max_requests, len(self.entries))
        return entry

    def add_tokens(self, entry: Entry, tokens: int, now: float | None = None) -> None:
        self._prune(self.clock() if now is None else now)
        entry.tokens += tokens
        if entry.live:
            self.tokens += tokens
            self.max_tokens = max(self.max_tokens, self.tokens)

    def as_json(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "max_requests": self.max_requests, "max_tokens": self.max_tokens}


class Budget(_Window):
    """At most `rpm` requests and `tpm` tokens in any sliding interval of `seconds` (None: no limit)."""

    def __init__(
        self,
        seconds: float,
        rpm: int | None = None,
        tpm: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(seconds, clock)
        self.rpm = rpm or None
        self.tpm = tpm or None

    @property
    def active(self) -> bool:
        return self.rpm is not None or self.tpm is not None

    def admit(self, tokens: int, now: float | None = None) -> tuple[Entry | None, float, str]:
        """Admit a request that will cost about `tokens`: (its entry, 0, "") or (None, wait, what).

        `wait` is the time until the window has room for it (the window's length when it can never
        fit: a request larger than the whole token budget); `what` is "requests" or "tokens"."""
        now = self.clock() if now is None else now
        self._prune(now)
        if self.rpm is not None and len(self.entries) >= self.rpm:
            return None, self.entries[len(self.entries) - self.rpm].at + self.seconds - now, "requests"
        if self.tpm is not None and self.tokens + tokens > self.tpm:
            return None, self._token_wait(tokens, now), "tokens"
        entry = self._append(now)
        self.add_tokens(entry, tokens)
        return entry, 0.0, ""

    def add_tokens(self, entry: Entry, tokens: int) -> None:
        entry.tokens += tokens
        if entry.live:
            self.tokens += tokens

    def _token_wait(self, tokens: int, now: float) -> float:
        if tokens > self.tpm:  # type: ignore[operator]  # only called when tpm is set
            return self.seconds
        used = self.tokens
        for entry in self.entries:
            used -= entry.tokens
            if used + tokens <= self.tpm:  # type: ignore[operator]
                return entry.at + self.seconds - now
        return self.seconds


def retry_after_header(wait: float) -> int:
    """Whole seconds for a Retry-After header: rounded up, at least 1."""
    return max(1, math.ceil(wait))
