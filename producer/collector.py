"""The collector: results stream (consumer group) -> .robot files in the output tree + manifest.

For each entry: only the job's current, succeeded attempt is written; the file is written
atomically, the manifest updated, the job marked collected, and only then the entry acknowledged.
A collector that dies anywhere in between leaves the entry pending; the next one reclaims it and
finishes idempotently (a file already holding the new text is not written again). A file a person
edited since it was generated is never overwritten: the new text lands beside it as `.robot.new`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class Collected:
    job_id: str
    spec_id: str
    batch_id: str
    path: Path | None
    """None when the suite was kept out of the tree (failing, WRITE_FAILING_SUITES=false)."""
    beside: bool
    """True when the file was written as `.robot.new` next to a file a person edited."""


def consumer_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Collector:
    def __init__(
        self,
        store: Store,
        *,
        output_override: Path | None = None,
        consumer: str | None = None,
        reclaim_idle_ms: int = RECLAIM_IDLE_MS,
    ) -> None:
        self._store = store
        self._override = output_override
        self._consumer = consumer or consumer_name()
        self._reclaim_idle_ms = reclaim_idle_ms
        self._last_reclaim = 0.0
        self._batches: dict[str, BatchRecord] = {}

    async def step(self, batch_ids: list[str], block_ms: int = 1000) -> list[Collected]:
        """Collect what is available (reclaimed entries first); wait up to `block_ms` for new ones."""
        entries: list[ResultEntry] = []
        if time.monotonic() - self._last_reclaim >= RECLAIM_EVERY_S:
            self._last_reclaim = time.monotonic()
            for batch_id in batch_ids:
                await self._store.ensure_group(batch_id)
                entries += await self._store.reclaim_results(batch_id, self._consumer, self._reclaim_idle_ms)
        entries += await self._store.read_results(batch_ids, self._consumer, block_ms)
        collected = []
        for entry in entries:
            done = await self.collect_entry(entry)
            if done is not None:
                collected.append(done)
        return collected

    async def collect_entry(self, entry: ResultEntry) -> Collected | None:
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
        path, beside = await asyncio.to_thread(self._write, output_dir, job, result)
        failpoint("collector.after_write")
        await self._store.mark_collected(
            entry.job_id, entry.attempt, {"output_path": str(path), "beside": int(beside)}
        )
        await self._store.ack(entry)
        return Collected(entry.job_id, job.spec_id, entry.batch_id, path, beside)

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
    def _write(output_dir: Path, job: JobRecord, result: JobResult) -> tuple[Path, bool]:
        target_path = job.target_path
        text = result.robot_text
        figures = result.payload
        path = resolve_in_output(output_dir, target_path)
        with locked_entries(output_dir) as entries:
            sweep_temp_files(path)  # safe: every write of this tree happens under the manifest lock
            current, wanted = file_sha256(path), _sha(text)
            if current != wanted and edited_by_a_person(entries, target_path, current):
                beside = path.with_name(path.name + NEW_SUFFIX)
                atomic_write_text(beside, text)
                logger.warning(
                    "%s was edited since it was generated; new version written to %s", path, beside
                )
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
