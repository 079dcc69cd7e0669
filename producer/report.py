"""`robot-fleet report BATCH [-o FILE]`: one self-contained HTML page to review a batch.

This module reads the batch from the job store and sums its figures; `producer.report_html` draws
the page. Everything read is untrusted text (spec content, model output, provider messages): it is
masked with the fleet's redactor once, here, and escaped where the page is drawn.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from producer.fleet_cmds import _store, decoded
from worker.adapters.store import Store
from worker.redact import redactor_for
from worker.settings import Settings

DONE = ("succeeded", "collected")
IN_PROGRESS = ("queued", "running", "retrying")
VERDICTS = ("verified", "failing", "unverified", "unreviewed")
BATCH_JSON_FIELDS = ("rejected", "skipped", "ignored")
"""Batch record fields stored as JSON lists."""


@dataclass(frozen=True)
class Prices:
    """Prices per million tokens (`PRICE_*_PER_MTOK`); the cost is known when prompt and completion
    prices are both set."""

    prompt: float | None = None
    completion: float | None = None
    cached: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Prices:
        return cls(settings.price_prompt_per_mtok, settings.price_completion_per_mtok,
                   settings.price_cached_per_mtok)  # fmt: skip

    def cost(self, tokens: Tokens) -> float | None:
        if self.prompt is None or self.completion is None:
            return None
        cached = self.prompt if self.cached is None else self.cached
        uncached = max(0, tokens.prompt - tokens.cached)
        return (uncached * self.prompt + tokens.cached * cached + tokens.completion * self.completion) / 1e6


@dataclass(frozen=True)
class Tokens:
    """Writer and reviewer together; `cached` is the part of `prompt` served from the cache."""

    prompt: int = 0
    cached: int = 0
    completion: int = 0
    review: int = 0
    """Of the above, the reviewer's (prompt and completion)."""

    @classmethod
    def of(cls, job: dict[str, Any]) -> Tokens:
        review_prompt = number(job.get("review_prompt_tokens"))
        review_completion = number(job.get("review_completion_tokens"))
        return cls(
            prompt=number(job.get("prompt_tokens")) + review_prompt,
            cached=number(job.get("cached_tokens")),
            completion=number(job.get("completion_tokens")) + review_completion,
            review=review_prompt + review_completion,
        )

    def __add__(self, other: Tokens) -> Tokens:
        return Tokens(self.prompt + other.prompt, self.cached + other.cached,
                      self.completion + other.completion, self.review + other.review)  # fmt: skip

    @property
    def total(self) -> int:
        return self.prompt + self.completion


@dataclass
class Summary:
    verdicts: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    in_progress: int = 0
    rejected: int = 0
    tokens: Tokens = field(default_factory=Tokens)
    job_seconds: float = 0.0
    wall_seconds: float = 0.0
    rounds: int = 0
    tool_calls: int = 0
    cost: float | None = None


@dataclass(frozen=True)
class Report:
    batch_id: str
    batch: dict[str, Any]
    jobs: list[dict[str, Any]]
    """Decoded job records, in the batch's order, each with its suite (`robot_text`) when it has one."""
    rejected: list[dict[str, Any]]
    summary: Summary
    prices: Prices
    generated_at: float


def number(value: object) -> int:
    """A count from a record (JSON number or text); anything else counts as 0."""
    try:
        return int(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0


def seconds(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0


def scrub(value: Any, redact: Callable[[str], str]) -> Any:
    """`value` with every string in it masked (a spec or a suite may quote a secret)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [scrub(item, redact) for item in value]
    if isinstance(value, dict):
        return {scrub(key, redact): scrub(item, redact) for key, item in value.items()}
    return value


def summarise(batch: dict[str, Any], jobs: list[dict[str, Any]], rejected: int, prices: Prices) -> Summary:
    summary = Summary(rejected=rejected)
    last = 0.0
    for job in jobs:
        state = job.get("state")
        if state in DONE:
            summary.verdicts[str(job.get("verdict") or "unverified")] += 1
        summary.failed += state == "failed"
        summary.in_progress += state in IN_PROGRESS
        summary.tokens += Tokens.of(job)
        summary.job_seconds += seconds(job.get("duration_s"))
        summary.rounds += number(job.get("rounds"))
        summary.tool_calls += number(job.get("tool_calls"))
        last = max(last, seconds(job.get("finished_at")))
    created = seconds(batch.get("created_at"))
    summary.wall_seconds = max(0.0, last - created) if last and created else 0.0
    summary.cost = prices.cost(summary.tokens)
    return summary


async def load_report(
    store: Store, batch_id: str, prices: Prices, redact: Callable[[str], str]
) -> Report | None:
    """The batch as the page shows it, or None when there is no such batch."""
    raw_batch = await store.batch(batch_id)
    if raw_batch is None:
        return None
    batch: dict[str, Any] = scrub(dict(raw_batch), redact)
    for name in BATCH_JSON_FIELDS:
        with contextlib.suppress(ValueError):
            batch[name] = json.loads(batch.get(name) or "[]")
    jobs = []
    for record in await store.jobs(await store.job_ids(batch_id)):
        job = decoded(record)
        result = await store.result(record["job_id"]) if record.get("state") in DONE else None
        if result is not None:
            job["robot_text"] = str(result.get("robot_text") or "")
        jobs.append(scrub(job, redact))
    rejected = batch.get("rejected") if isinstance(batch.get("rejected"), list) else []
    rejected = [item for item in rejected if isinstance(item, dict)]
    return Report(batch_id, batch, jobs, rejected, summarise(batch, jobs, len(rejected), prices), prices,
                  time.time())  # fmt: skip


def write_atomically(path: Path, text: str) -> None:
    """A reader (a browser, a CI artifact upload) never sees half a page."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


async def write_report(settings: Settings, batch_id: str, output: Path | None, console: Console) -> int:
    from producer.report_html import render

    store = _store(settings)
    try:
        report = await load_report(store, batch_id, Prices.from_settings(settings), redactor_for(settings))
    finally:
        await store.close()
    if report is None:
        console.print(
            f"[red]no batch {batch_id!r}[/] (robot-fleet status lists the recent ones)", highlight=False
        )
        return 2
    path = output or Path(f"report-{batch_id}.html")
    write_atomically(path, render(report))
    console.print(f"report of {batch_id} ({len(report.jobs)} jobs, {report.summary.rejected} rejected) → {path}",
                  highlight=False)  # fmt: skip
    return 0
