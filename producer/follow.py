"""Following a batch: counts derived from its jobs, collection while it runs, the final table."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from producer.collector import Collected, Collector
from worker.store import Store

POLL_BLOCK_MS = 500
NO_WORKER_HINT_S = 15.0


@dataclass
class BatchView:
    batch_id: str
    jobs: list[dict[str, str]] = field(default_factory=list)

    @property
    def counts(self) -> Counter[str]:
        return Counter(job.get("state", "?") for job in self.jobs)

    @property
    def tokens(self) -> int:
        return sum(
            int(job.get("prompt_tokens") or 0) + int(job.get("completion_tokens") or 0) for job in self.jobs
        )

    @property
    def finished(self) -> bool:
        """Every job is collected or failed for good (succeeded still waits for its file)."""
        return all(job.get("state") in ("collected", "failed") for job in self.jobs)

    @property
    def failed(self) -> list[dict[str, str]]:
        return [job for job in self.jobs if job.get("state") == "failed"]


async def load_view(store: Store, batch_id: str) -> BatchView:
    return BatchView(batch_id, await store.jobs(await store.job_ids(batch_id)))


class BatchWatch:
    """A batch's jobs kept up to date by re-reading only those not final yet: a 300-spec sprint
    near its end costs a few reads a poll, not 300."""

    def __init__(self, store: Store, batch_id: str, final: frozenset[str]) -> None:
        self._store = store
        self._batch_id = batch_id
        self._final = final
        self._ids: list[str] = []
        self._jobs: dict[str, dict[str, str]] = {}

    async def refresh(self) -> BatchView:
        if not self._ids:
            self._ids = await self._store.job_ids(self._batch_id)
        stale = [job_id for job_id in self._ids if self._jobs.get(job_id, {}).get("state") not in self._final]
        for record in await self._store.jobs(stale):
            self._jobs[record["job_id"]] = record
        return BatchView(self._batch_id, [self._jobs[job_id] for job_id in self._ids if job_id in self._jobs])


async def follow_batch(
    store: Store,
    batch_id: str,
    console: Console,
    *,
    collector: Collector | None,
    timeout_s: float | None = None,
) -> tuple[BatchView, list[Collected]]:
    """Show progress until the batch is finished, collecting its results on the way."""
    collected: list[Collected] = []
    started = time.monotonic()
    hinted = False
    deadline = started + timeout_s if timeout_s else None
    final = frozenset(
        {"collected", "failed"} if collector is not None else {"collected", "failed", "succeeded"}
    )
    watch = BatchWatch(store, batch_id, final)
    view = await watch.refresh()
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task(batch_id, total=len(view.jobs), detail="")
        while True:
            if collector is not None:
                collected += await collector.step([batch_id], block_ms=POLL_BLOCK_MS)
            else:
                await asyncio.sleep(POLL_BLOCK_MS / 1000)
            view = await watch.refresh()
            counts = view.counts
            done = counts["collected"] + counts["failed"] + (counts["succeeded"] if collector is None else 0)
            detail = (
                f"[green]{counts['collected'] + counts['succeeded']} ok[/] [red]{counts['failed']} failed[/] "
                f"[cyan]{counts['running']} running[/] {counts['queued'] + counts['retrying']} waiting  "
                f"{view.tokens:,} tokens"
            )
            progress.update(bar, completed=done, detail=detail)
            if (
                not hinted
                and counts["queued"] == len(view.jobs)
                and time.monotonic() - started > NO_WORKER_HINT_S
            ):
                hinted = True
                progress.console.print(
                    f"[yellow]no job has started after {NO_WORKER_HINT_S:.0f}s: is a worker running on this "
                    "REDIS_URL? (robot-fleet worker)[/]"
                )
            if done >= len(view.jobs) or (deadline is not None and time.monotonic() > deadline):
                return view, collected


def jobs_table(view: BatchView, title: str) -> Table:
    table = Table(title=title, show_lines=False)
    for column in ("spec", "state", "att.", "rounds", "grounding", "tokens", "time", "error / output"):
        table.add_column(column, overflow="fold")
    for job in view.jobs:
        state = job.get("state", "?")
        style = {"collected": "green", "succeeded": "green", "failed": "red", "running": "cyan"}.get(
            state, ""
        )
        tokens = int(job.get("prompt_tokens") or 0) + int(job.get("completion_tokens") or 0)
        duration = f"{float(job['duration_s']):.1f}s" if job.get("duration_s") else ""
        note = job.get("output_path", "")
        if job.get("beside") == "1":
            note = f"[yellow]{note} (beside an edited file)[/]"
        if job.get("error_kind"):
            note = f"[red]{job['error_kind']}[/]: {job.get('error_message', '')[:160]}"
        table.add_row(job.get("spec_id", ""), f"[{style}]{state}[/]" if style else state, job.get("attempt", "0"),
                      job.get("rounds", ""), grounding_cell(job), f"{tokens:,}" if tokens else "", duration, note)  # fmt: skip
    return table


def grounding_cell(job: dict[str, str]) -> str:
    """Calls resolved / total, and how many could only be left unverified (library not installed)."""
    if not job.get("grounded_calls"):
        return ""
    cell = f"{job['grounded_resolved']}/{job['grounded_calls']}"
    unverified = int(job.get("grounded_unverified") or 0)
    return f"{cell} ({unverified} unverified)" if unverified else cell
