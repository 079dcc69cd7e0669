"""The session table of `--sessions` mode: which `Mcp-Session-Id`s are live, and when they expire.

The real server (zereight/gitlab-mcp on the TypeScript SDK) holds a session per client: it issues an
`Mcp-Session-Id` at `initialize`, answers a request carrying an id it does not know (never issued,
closed with DELETE, expired, or lost in a restart) with HTTP 404 `{"error": "Session not found"}`,
and forgets a session `SESSION_TIMEOUT_SECONDS` after its last POST (with remote authorization;
the default is one hour). The stand-in mirrors that here, in front of the SDK's own session manager,
so the expiry is measured the same way whatever GET stream the client keeps open.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import Enum


class SessionState(Enum):
    LIVE = "live"
    UNKNOWN = "unknown"
    EXPIRED = "expired"


class SessionTable:
    def __init__(self, timeout_s: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s = timeout_s
        self.clock = clock
        self._lock = threading.Lock()
        self._last_post: dict[str, float] = {}
        self.counts = {"opened": 0, "closed": 0, "expired": 0, "not_found": 0, "not_initialized": 0}

    def opened(self, session_id: str) -> None:
        with self._lock:
            if session_id not in self._last_post:
                self.counts["opened"] += 1
            self._last_post[session_id] = self.clock()

    def check(self, session_id: str, *, activity: bool) -> SessionState:
        """The session's state; a live one's idle clock restarts when this request is `activity`."""
        with self._lock:
            last = self._last_post.get(session_id)
            if last is None:
                self.counts["not_found"] += 1
                return SessionState.UNKNOWN
            now = self.clock()
            if self.timeout_s is not None and now - last > self.timeout_s:
                del self._last_post[session_id]
                self.counts["expired"] += 1
                self.counts["not_found"] += 1
                return SessionState.EXPIRED
            if activity:
                self._last_post[session_id] = now
            return SessionState.LIVE

    def refused_uninitialized(self) -> None:
        """A request other than `initialize` without a session (e.g. the SDK's `server/discover`)."""
        with self._lock:
            self.counts["not_initialized"] += 1

    def closed(self, session_id: str) -> None:
        with self._lock:
            if self._last_post.pop(session_id, None) is not None:
                self.counts["closed"] += 1

    def reset(self) -> None:
        with self._lock:
            self.counts = dict.fromkeys(self.counts, 0)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            now = self.clock()
            live = [
                t for t in self._last_post.values() if self.timeout_s is None or now - t <= self.timeout_s
            ]
            return {**self.counts, "active": len(live)}
