"""The collector: results stream (consumer group) -> .robot files in the output tree + manifest.

For each entry: only the job's current, succeeded attempt is written; the file is written
atomically, the manifest updated, the job marked collected, and only then the entry acknowledged.
The entries of one step that share an output tree are written together: their files one by one and
the manifest once, under one hold of its lock; then each job is marked and its entry acknowledged.
A collector that dies anywhere in between leaves the entries pending; the next one reclaims them and
finishes idempotently (a file already holding the new text is not written again): at once when it
starts under the dead one's name (`collect --name`, by default the host's), else once the entries
sat idle `--reclaim-idle`. A file a person edited since it was generated is never overwritten: the
new text lands beside it as `.robot.new`.

The filesystem may refuse a write (permission, disk full, read-only, name too long): that entry
(every entry of its group, when it is the manifest that is refused) stays pending and is tried
again with backoff (1 s, 2 s, ... 30 s) while the others go on; the collector reports it once (a
`WriteProblem`, and again when the reason changes or it is written) and never dies of it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from producer.manifest import edited_by_a_person, file_sha256, locked_entries
from producer.outputs import atomic_write_text, sweep_temp_files
from worker.adapters.store import Store
from worker.failpoints import failpoint
from worker.records import BatchRecord, JobRecord, JobResult, JobState, ResultEntry
from worker.spec import resolve_in_output

logger = logging.getLogger(__name__)

MANIFEST_FIGURES = ("calls", "calls_resolved", "calls_unverified", "calls_by_source", "reuse_share",
                    "placeholders", "rule_violations", "tests_run", "tests_passed", "tests_failed",
                    "criteria_covered", "criteria_total", "criteria_derived", "review_violations_found",
                    "review_violations_fixed", "review_prompt_tokens", "review_completion_tokens",
                    "review_cached_tokens", "cached_tokens")  # fmt: skip
RECLAIM_IDLE_MS = 30_000
RECLAIM_EVERY_S = 5.0
NEW_SUFFIX = ".new"
WRITE_RETRY_S = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
"""Waits before writing a refused file again (the last repeats)."""


@dataclass(frozen=True)
class Collected:
    job_id: str
    spec_id: str
    batch_id: str
    path: Path | None
    """None when the suite was kept out of the tree (failing, WRITE_FAILING_SUITES=false)."""
    beside: bool
    """True when the file was written as `.robot.new` next to a file a person edited."""


@dataclass(frozen=True)
class WriteProblem:
    """The filesystem refused a result's file (or it was written after it had)."""

    job_id: str
    path: str
    reason: str
    """`Permission denied`, `No space left on device`, ... (and where, when not the file itself)."""
    tries: int
    retry_in_s: float | None
    """None: written now (`reason` says what it had been), or given up (`gave_up`)."""
    gave_up: bool = False

    def line(self) -> str:
        if self.gave_up:
            return f"could not write {self.path}: {self.reason} (tried {self.tries} times; left pending)"
        if self.retry_in_s is None:
            return f"wrote {self.path} after {self.tries} failed tries ({self.reason})"
        return f"could not write {self.path}: {self.reason}; trying again in {self.retry_in_s:.0f}s"


class WriteRefused(Exception):
    """The filesystem refused the file of a result (translated from the `OSError` where it is written)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class _NothingWritten(Exception):
    """Every file of a group refused: leave the manifest unsaved."""


@dataclass(frozen=True)
class _Ready:
    """An entry whose file is to be written: its job's current, succeeded attempt."""

    entry: ResultEntry
    job: JobRecord
    result: JobResult
    output_dir: Path


@dataclass
class _Refused:
    entry: ResultEntry
    due: float
    tries: int
    path: str
    reason: str


def consumer_name() -> str:
    """A collector's name in the results group when the user gives none: unique to the process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def host_collector_name() -> str:
    """`collect`'s default name: the same after a restart on this host, so a collector started
    again takes over at once what the one before it had read and not written."""
    return f"collect@{socket.gethostname()}"


def _reason(exc: OSError, path: Path) -> str:
    """`Permission denied`, `No space left on device`, ... and where, when not the file itself (the
    manifest's lock, a directory)."""
    text = os.strerror(exc.errno) if exc.errno else str(exc)
    where = _temp_of(Path(exc.filename)) if isinstance(exc.filename, str) and exc.filename else None
    if where is not None and where != path:
        return f"{text} (at {where})"
    return text


def _temp_of(where: Path) -> Path:
    """The file an `atomic_write_text` temp file stands for (`.name.XXXXXXXX.tmp` -> `name`), so a
    reason names the same place at every try (the file's own temp, or the manifest's)."""
    name = where.name
    if name.startswith(".") and name.endswith(".tmp") and name.count(".") >= 3:
        return where.with_name(name[1:].rsplit(".", 2)[0])
    return where


class Collector:
    def __init__(
        self,
        store: Store,
        *,
        output_override: Path | None = None,
        consumer: str | None = None,
        reclaim_idle_ms: int = RECLAIM_IDLE_MS,
        on_problem: Callable[[WriteProblem], None] | None = None,
        max_tries: int | None = None,
    ) -> None:
        """`on_problem`: told when the filesystem refuses a file; `max_tries`: writes of one file
        before the collector stops trying it (None: never; its entry stays pending either way)."""
        self._store = store
        self._override = output_override
        self._consumer = consumer or consumer_name()
        self._reclaim_idle_ms = reclaim_idle_ms
        self._on_problem = on_problem or (lambda problem: None)
        self._max_tries = max_tries
        self._last_reclaim = 0.0
        self._batches: dict[str, BatchRecord] = {}
        self._own_taken: set[str] = set()
        self._refused: dict[str, _Refused] = {}
        self.given_up: dict[str, WriteProblem] = {}
        """Entries it stopped trying (max_tries), by entry id."""

    @property
    def name(self) -> str:
        return self._consumer

    @property
    def retrying(self) -> int:
        """Files the filesystem refused, to be tried again."""
        return len(self._refused)

    async def step(self, batch_ids: list[str], block_ms: int = 1000) -> list[Collected]:
        """Collect what is available (its own and reclaimed entries first, then refused files that are
        due again); wait up to `block_ms` for new ones (less when a refused file is due sooner)."""
        entries: list[ResultEntry] = []
        for batch_id in batch_ids:
            if batch_id not in self._own_taken:  # once: what this name read before a restart
                self._own_taken.add(batch_id)
                await self._store.ensure_group(batch_id)
                entries += await self._store.own_pending(batch_id, self._consumer)
        if time.monotonic() - self._last_reclaim >= RECLAIM_EVERY_S:
            self._last_reclaim = time.monotonic()
            for batch_id in batch_ids:
                await self._store.ensure_group(batch_id)
                entries += await self._store.reclaim_results(batch_id, self._consumer, self._reclaim_idle_ms)
        now = time.monotonic()
        entries += [refused.entry for refused in self._refused.values() if refused.due <= now]
        due = min((refused.due for refused in self._refused.values()), default=now + block_ms / 1000)
        # with entries in hand, only a glance at the stream; never BLOCK 0 (Redis: wait forever)
        wait_ms = 1 if entries else max(1, min(block_ms, int((due - now) * 1000)))
        entries += await self._store.read_results(batch_ids, self._consumer, wait_ms)
        collected: list[Collected] = []
        groups: dict[Path, list[_Ready]] = {}  # by output tree: one manifest save each
        for entry in {entry.entry_id: entry for entry in entries}.values():
            if self._waiting(entry):
                continue
            ready = await self._prepare(entry)
            if isinstance(ready, _Ready):
                groups.setdefault(ready.output_dir, []).append(ready)
                continue
            done = self._settled(entry, ready)
            if done is not None:
                collected.append(done)
        for output_dir, group in groups.items():
            outcomes = await self._write_group(output_dir, group)
            for ready, outcome in zip(group, outcomes, strict=True):
                if isinstance(outcome, WriteRefused):
                    self._refuse(ready.entry, self._refused.get(ready.entry.entry_id), outcome)
                    continue
                done = self._settled(ready.entry, await self._finish(ready, *outcome))
                if done is not None:
                    collected.append(done)
        return collected

    def _waiting(self, entry: ResultEntry) -> bool:
        """A refused file before its time (a reclaim handed its entry back early), or given up."""
        refused = self._refused.get(entry.entry_id)
        return (refused is not None and refused.due > time.monotonic()) or entry.entry_id in self.given_up

    def _settled(self, entry: ResultEntry, done: Collected | None) -> Collected | None:
        """An entry collected (or dropped as stale): no longer refused; says so when it had been."""
        refused = self._refused.pop(entry.entry_id, None)
        # a stale entry now (done None, or no path): another collector wrote it, nothing to tell
        if refused is not None and done is not None and done.path is not None:
            self._on_problem(WriteProblem(entry.job_id, refused.path, refused.reason, refused.tries, None))
        return done

    def _refuse(self, entry: ResultEntry, before: _Refused | None, exc: WriteRefused) -> None:
        tries = (before.tries if before else 0) + 1
        if self._max_tries is not None and tries >= self._max_tries:
            self._refused.pop(entry.entry_id, None)
            problem = WriteProblem(entry.job_id, str(exc.path), exc.reason, tries, None, gave_up=True)
            self.given_up[entry.entry_id] = problem
            self._on_problem(problem)
            return
        wait = WRITE_RETRY_S[min(tries - 1, len(WRITE_RETRY_S) - 1)]
        self._refused[entry.entry_id] = _Refused(
            entry, time.monotonic() + wait, tries, str(exc.path), exc.reason
        )
        logger.info("job %s: could not write %s (%s); trying again in %.0fs", entry.job_id, exc.path, exc.reason,
                    wait)  # fmt: skip
        if before is None or before.reason != exc.reason:
            self._on_problem(WriteProblem(entry.job_id, str(exc.path), exc.reason, tries, wait))

    async def collect_entry(self, entry: ResultEntry) -> Collected | None:
        """One entry on its own (a group of one); raises `WriteRefused` when its file is refused."""
        ready = await self._prepare(entry)
        if not isinstance(ready, _Ready):
            return ready
        (outcome,) = await self._write_group(ready.output_dir, [ready])
        if isinstance(outcome, WriteRefused):
            raise outcome
        return await self._finish(ready, *outcome)

    async def _prepare(self, entry: ResultEntry) -> _Ready | Collected | None:
        """The entry's file to write; or, settled here: None for a stale result (acknowledged), a
        `Collected` without a path for a failing suite kept out of the tree (marked, acknowledged)."""
        job = await self._store.job(entry.job_id)
        current = job is not None and job.state is JobState.SUCCEEDED and job.attempt == entry.attempt
        result = await self._store.result(entry.job_id) if current else None
        if job is None or result is None or result.attempt != entry.attempt:
            logger.info(
                "job %s attempt %d: stale or already collected result, acknowledged",
                entry.job_id,
                entry.attempt,
            )
            await self._store.ack(entry)
            return None
        batch = await self._batch(entry.batch_id)
        output_dir = self._output_dir(batch)
        if job.verdict == "failing" and not batch.write_failing:
            logger.info(
                "job %s: failing suite kept out of the tree (WRITE_FAILING_SUITES=false)", entry.job_id
            )
            await self._store.mark_collected(entry.job_id, entry.attempt, {"output_path": "", "withheld": 1})
            await self._store.ack(entry)
            return Collected(entry.job_id, job.spec_id, entry.batch_id, None, False)
        return _Ready(entry, job, result, output_dir)

    async def _write_group(
        self, output_dir: Path, group: list[_Ready]
    ) -> list[tuple[Path, bool] | WriteRefused]:
        """The group's files and one manifest save, in one thread; per entry, where its file went or
        why it was refused (all of them when the manifest was)."""
        outcomes = await asyncio.to_thread(
            self._write_all, output_dir, [(ready.job, ready.result) for ready in group]
        )
        answers: list[tuple[Path, bool] | WriteRefused] = []
        for ready, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, OSError):
                target = resolve_in_output(output_dir, ready.job.target_path)
                answers.append(WriteRefused(target, _reason(outcome, target)))
            else:
                answers.append(outcome)
        return answers

    async def _finish(self, ready: _Ready, path: Path, beside: bool) -> Collected:
        """File and manifest written: mark the job collected, then acknowledge its entry."""
        entry = ready.entry
        failpoint("collector.after_write")
        await self._store.mark_collected(
            entry.job_id, entry.attempt, {"output_path": str(path), "beside": int(beside)}
        )
        await self._store.ack(entry)
        return Collected(entry.job_id, ready.job.spec_id, entry.batch_id, path, beside)

    async def _batch(self, batch_id: str) -> BatchRecord:
        if batch_id not in self._batches:
            self._batches[batch_id] = await self._store.batch(batch_id) or BatchRecord(batch_id)
        return self._batches[batch_id]

    def _output_dir(self, batch: BatchRecord) -> Path:
        if self._override is not None:
            return self._override
        if not batch.output_dir:
            raise RuntimeError(f"batch {batch.batch_id} has no output directory recorded; pass --output-dir")
        return Path(batch.output_dir)

    @staticmethod
    def _write_all(
        output_dir: Path, items: list[tuple[JobRecord, JobResult]]
    ) -> list[tuple[Path, bool] | OSError]:
        """Under one hold of the manifest's lock: each file (or the `OSError` that refused it, the
        others going on), then the manifest saved once with the entries of the files written."""
        outcomes: list[tuple[Path, bool] | OSError] = []
        try:
            with locked_entries(output_dir) as entries:
                for job, result in items:
                    try:
                        outcomes.append(Collector._write_one(entries, output_dir, job, result))
                    except OSError as exc:
                        outcomes.append(exc)
                if all(isinstance(outcome, OSError) for outcome in outcomes):
                    raise _NothingWritten  # the manifest is left as it was, not saved again
        except _NothingWritten:
            pass
        except OSError as exc:  # the manifest (its lock, reading or saving it): no entry of it recorded
            refused: list[tuple[Path, bool] | OSError] = [
                outcome if isinstance(outcome, OSError) else exc for outcome in outcomes
            ]
            refused.extend([exc] * (len(items) - len(outcomes)))
            outcomes = refused
        return outcomes

    @staticmethod
    def _write_one(
        entries: dict[str, dict[str, Any]], output_dir: Path, job: JobRecord, result: JobResult
    ) -> tuple[Path, bool]:
        """One file, its manifest entry updated in `entries` (held under the manifest's lock)."""
        target_path = job.target_path
        text = result.robot_text
        figures = result.payload
        path = resolve_in_output(output_dir, target_path)
        sweep_temp_files(path)  # safe: every write of this tree happens under the manifest lock
        current, wanted = file_sha256(path), _sha(text)
        if current != wanted and edited_by_a_person(entries, target_path, current):
            beside = path.with_name(path.name + NEW_SUFFIX)
            atomic_write_text(beside, text)
            logger.warning("%s was edited since it was generated; new version written to %s", path, beside)
            return beside, True
        if current != wanted:
            atomic_write_text(path, text, crash_point="collector.mid_write")
        entries[target_path] = {
            "spec_id": job.spec_id,
            "spec_sha256": job.spec_sha256,
            "model": job.model,
            "ref": job.ref,
            "prompt_version": job.prompt_version,
            "batch_id": job.batch_id,
            "job_id": job.job_id,
            "attempt": result.attempt,
            "prompt_tokens": figures.get("prompt_tokens", 0),
            "completion_tokens": figures.get("completion_tokens", 0),
            "verdict": figures.get("verdict", "unverified"),
            "checks": figures.get("checks"),
            "figures": {name: figures[name] for name in MANIFEST_FIGURES if name in figures},
            "file_sha256": wanted,
            "written_at": time.time(),
        }
        return path, False


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
