"""The worker's event sink: the job's live log in a Redis stream, batched, and its progress.

`emit` only appends to a buffer (consecutive text or thinking pieces are merged into one entry);
a background task flushes the buffer every FLUSH_INTERVAL_S in one pipelined round trip, so a
job costs a few Redis commands per second however many tokens the model streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from dataclasses import dataclass

from worker.adapters.store import Store
from worker.agent.events import Event, EventKind
from worker.errors import StoreUnavailable

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.25
MAX_BUFFERED_ENTRIES = 2000


@dataclass
class Progress:
    """What Flower's `task-progress` event shows; written by the loop thread, read by the task."""

    round: int = 0
    tool: str = ""
    tokens: int = 0
    waiting: str = ""
    """What the job waits for before it starts (the fleet paused on an outage), or ""."""
    version: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def update(self, **changes: int | str) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(self, name, value)
            self.version += 1

    def wait(self, why: str) -> None:
        self.update(waiting=why)

    def snapshot(self) -> dict[str, int | str]:
        with self._lock:
            return {"round": self.round, "tool": self.tool, "tokens": self.tokens, "waiting": self.waiting,
                    "version": self.version}  # fmt: skip


class RedisLogSink:
    def __init__(self, store: Store, job_id: str, attempt: int, progress: Progress) -> None:
        self._store = store
        self._job_id = job_id
        self._attempt = str(attempt)
        self._progress = progress
        self._buffer: list[dict[str, str]] = []
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self.flushes = 0

    def emit(self, event: Event) -> None:
        if event.kind in (EventKind.TEXT, EventKind.THINKING) and self._buffer:
            last = self._buffer[-1]
            if last["k"] == event.kind.value and "d" not in last:
                last["t"] += event.text
                return
        entry = {"k": event.kind.value, "t": event.text, "a": self._attempt}
        if event.data:
            entry["d"] = json.dumps(event.data, ensure_ascii=False)
        if len(self._buffer) < MAX_BUFFERED_ENTRIES:
            self._buffer.append(entry)
        self._track(event)

    def _track(self, event: Event) -> None:
        match event.kind:
            case EventKind.ROUND:
                self._progress.update(round=int(event.data.get("round", 0)), tool="")
            case EventKind.TOOL_CALL:
                self._progress.update(tool=str(event.data.get("name", "")))
            case EventKind.USAGE:
                tokens = int(event.data.get("prompt_tokens", 0)) + int(event.data.get("completion_tokens", 0))
                self._progress.update(tokens=tokens)

    async def __aenter__(self) -> RedisLogSink:
        self._task = asyncio.create_task(self._flush_forever(), name=f"log-{self._job_id}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        # Stop the flusher between flushes, never inside one: a Redis command cancelled mid-flight
        # can leave its connection out of step with the server.
        self._stop.set()
        if self._task is not None:
            await self._task
        await self.flush()

    async def _flush_forever(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=FLUSH_INTERVAL_S)
            await self.flush()

    async def flush(self) -> None:
        if not self._buffer:
            return
        entries, self._buffer = self._buffer, []
        try:
            await self._store.append_log(self._job_id, entries)
            self.flushes += 1
        except StoreUnavailable as exc:
            # the log is best effort: keep the entries for the next flush, the job goes on
            logger.warning("job %s: log flush failed (%s); will retry", self._job_id, exc.message)
            self._buffer = (entries + self._buffer)[-MAX_BUFFERED_ENTRIES:]
