"""Following a batch: counts derived from its jobs, collection while it runs, the final table."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from producer.collector import Collected, Collector
from worker.adapters.store import Store
from worker.errors import retry_hint

POLL_BLOCK_MS = 500
NO_WORKER_HINT_S = 15.0
DONE = ("succeeded", "collected")
VERDICT_STYLES = {"verified": "green", "failing": "red", "unverified": "yellow", "unreviewed": "yellow"}


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

    @property
    def verdicts(self) -> Counter[str]:
        """Verdicts of the jobs that produced a suite (succeeded or collected)."""
        return Counter(job.get("verdict") or "unverified" for job in self.jobs if job.get("state") in DONE)

    @property
    def not_verified(self) -> list[dict[str, str]]:
        return [job for job in self.jobs if job.get("state") in DONE and job.get("verdict") != "verified"]


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


WIDE = 150
"""From this many columns on, the table also shows attempts, rounds and time in columns of their own."""
STATE_STYLES = {"collected": "green", "succeeded": "green", "failed": "red", "running": "cyan"}


def jobs_table(view: BatchView, width: int, output_dir: str | None = None) -> Table:
    """One row per job, readable at 80 columns: ids and states never split (they fold whole in a
    narrow cell), output paths relative to the output tree, long text folded in the last column."""
    wide = width >= WIDE
    table = Table(show_lines=False, box=None if width < 100 else box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("spec", no_wrap=True, overflow="ellipsis")
    table.add_column("state", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    if wide:
        for name in ("att.", "rounds"):
            table.add_column(name, justify="right", no_wrap=True)
    table.add_column("checks", overflow="fold", ratio=2 if wide else 1)
    table.add_column("tokens", justify="right", overflow="fold")
    if wide:
        table.add_column("time", justify="right", no_wrap=True)
    table.add_column("output / error", overflow="fold", ratio=3 if wide else 2)
    for job in view.jobs:
        state = job.get("state", "?")
        style = STATE_STYLES.get(state, "")
        cells = [
            escape(job.get("spec_id", "")),
            f"[{style}]{state}[/]" if style else state,
            verdict_cell(job),
        ]
        if wide:
            cells += [job.get("attempt", "0"), job.get("rounds", "")]
        cells += [checks_cell(job, lines=not wide), tokens_cell(job, short=not wide)]
        if wide:
            cells.append(f"{float(job['duration_s']):.1f}s" if job.get("duration_s") else "")
        cells.append(note_cell(job, output_dir))
        table.add_row(*cells)
    return table


def tokens_cell(job: dict[str, str], *, short: bool = False) -> str:
    """The writer's tokens, and the reviewer's beside them (`short`: in thousands)."""
    writer = int(job.get("prompt_tokens") or 0) + int(job.get("completion_tokens") or 0)
    review = int(job.get("review_prompt_tokens") or 0) + int(job.get("review_completion_tokens") or 0)
    if not writer:
        return ""
    shown = (lambda n: f"{n / 1000:.0f}k") if short else (lambda n: f"{n:,}")
    return shown(writer) + (f" +{shown(review)} review" if review else "")


def verdict_cell(job: dict[str, str]) -> str:
    if job.get("state") not in DONE:
        return ""
    verdict = job.get("verdict") or "unverified"
    return f"[{VERDICT_STYLES.get(verdict, '')}]{verdict}[/]"


def checks_cell(job: dict[str, str], *, lines: bool = False) -> str:
    """Calls resolved / total (and unverified ones), criteria covered, tests passed / run, rule
    violations; `lines`: one figure per line (a narrow table never splits one)."""
    parts = []
    if job.get("calls"):
        unverified = int(job.get("calls_unverified") or 0)
        parts.append(
            f"{job.get('calls_resolved', 0)}/{job['calls']} calls"
            + (f" ({unverified}?)" if unverified else "")
        )
    if job.get("criteria_total"):
        parts.append(f"{job.get('criteria_covered', 0)}/{job['criteria_total']} criteria")
    if job.get("tests_run"):
        parts.append(f"{job.get('tests_passed', 0)}/{job['tests_run']} run")
    if int(job.get("rule_violations") or 0):
        parts.append(f"{job['rule_violations']} rules broken")
    return ("\n" if lines else ", ").join(parts)


def note_cell(job: dict[str, str], output_dir: str | None = None) -> str:
    if job.get("error_kind"):
        hint = retry_hint(job["error_kind"]) if job.get("state") == "failed" else "will be retried"
        return f"[red]{escape(job['error_kind'])}[/]: {escape(job.get('error_message', '')[:160])} [dim]({hint})[/]"
    note = escape(relative(job.get("output_path", ""), output_dir))
    if job.get("withheld") == "1":
        return "[yellow]not written (failing; WRITE_FAILING_SUITES=false)[/]"
    if job.get("beside") == "1":
        return f"[yellow]{note} (beside an edited file)[/]"
    if job.get("verdict") == "failing" and job.get("state") in DONE:
        return f"{note} [red]({first_problem(job)})[/]" if note else f"[red]{first_problem(job)}[/]"
    return note


def relative(path: str, output_dir: str | None) -> str:
    """A path under the output tree as the tree's own relative path."""
    if path and output_dir:
        with contextlib.suppress(ValueError):
            return str(Path(path).relative_to(output_dir))
    return path


def first_problem(job: dict[str, str]) -> str:
    """The stages that failed, for a failing suite's row (the diagnostics are in `status --json`)."""
    try:
        stages = json.loads(job.get("stages") or "{}")
    except ValueError:
        stages = {}
    failed = [stage for stage, outcome in stages.items() if outcome == "failed"]
    return f"{', '.join(failed)} failed" if failed else "failing"
