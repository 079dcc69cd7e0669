"""`robot-fleet report BATCH [-o FILE]`: one self-contained HTML page to review a batch.

This module reads the batch from the job store and sums its figures; `producer.report_html` draws
the page. Everything read is untrusted text (spec content, model output, provider messages): it is
masked with the fleet's redactor once, here, and escaped where the page is drawn.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from producer.fleet_cmds import _store
from worker.adapters.store import Store
from worker.records import BatchRecord, JobRecord, JobState
from worker.redact import redactor_for
from worker.settings import Settings

VERDICTS = ("verified", "failing", "unverified", "unreviewed")


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
    def of(cls, job: Mapping[str, Any]) -> Tokens:
        """A job's tokens, from its stored (or shown) fields."""
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


def summarise(batch: BatchRecord, jobs: list[JobRecord], rejected: int, prices: Prices) -> Summary:
    summary = Summary(rejected=rejected)
    last = 0.0
    for job in jobs:
        if job.state.has_suite:
            summary.verdicts[job.shown_verdict] += 1
        summary.failed += job.state is JobState.FAILED
        summary.in_progress += job.state.active
        summary.tokens += Tokens.of(job.fields)
        summary.job_seconds += job.duration_s
        summary.rounds += job.rounds
        summary.tool_calls += job.tool_calls
        last = max(last, job.finished_at)
    created = batch.created_at
    summary.wall_seconds = max(0.0, last - created) if last and created else 0.0
    summary.cost = prices.cost(summary.tokens)
    return summary


async def load_report(
    store: Store, batch_id: str, prices: Prices, redact: Callable[[str], str]
) -> Report | None:
    """The batch as the page shows it, or None when there is no such batch."""
    record = await store.batch(batch_id)
    if record is None:
        return None
    batch: dict[str, Any] = scrub({**{k: v for k, v in vars(record).items() if k not in ("rejected",)},
                                   "skipped": list(record.skipped), "ignored": list(record.ignored)}, redact)  # fmt: skip
    jobs, shown = await store.jobs(await store.job_ids(batch_id)), []
    for job in jobs:
        page: dict[str, Any] = {**job.shown(), "has_suite": job.state.has_suite}
        result = await store.result(job.job_id) if job.state.has_suite else None
        if result is not None:
            page["robot_text"] = result.robot_text
        shown.append(scrub(page, redact))
    rejected = [
        scrub({"source": r.source, "reason": r.reason, "spec_id": r.spec_id}, redact) for r in record.rejected
    ]
    return Report(batch_id, batch, shown, rejected, summarise(record, jobs, len(rejected), prices), prices,
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
