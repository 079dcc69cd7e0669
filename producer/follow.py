"""Following a batch: counts derived from its jobs, collection while it runs, the final table."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from producer.collector import Collected, Collector, WriteProblem
from worker.adapters.circuits import Circuits, CircuitsView
from worker.adapters.store import Store
from worker.errors import retry_hint
from worker.records import Dependency, JobRecord, JobState, span

POLL_BLOCK_MS = 500
T = TypeVar("T")
NO_WORKER_HINT_S = 15.0
VERDICT_STYLES = {"verified": "green", "failing": "red", "unverified": "yellow", "unreviewed": "yellow"}


@dataclass
class BatchView:
    batch_id: str
    jobs: list[JobRecord] = field(default_factory=list)

    @property
    def counts(self) -> Counter[JobState]:
        return Counter(job.state for job in self.jobs)

    @property
    def tokens(self) -> int:
        """The writer's and the reviewer's tokens."""
        return sum(job.tokens + job.review_tokens for job in self.jobs)

    @property
    def cached(self) -> int:
        return sum(job.cached_tokens for job in self.jobs)

    @property
    def finished(self) -> bool:
        """Every job is collected or failed for good (succeeded still waits for its file)."""
        return all(job.state.settled for job in self.jobs)

    @property
    def failed(self) -> list[JobRecord]:
        return [job for job in self.jobs if job.state is JobState.FAILED]

    @property
    def verdicts(self) -> Counter[str]:
        """Verdicts of the jobs that produced a suite (succeeded or collected)."""
        return Counter(job.shown_verdict for job in self.jobs if job.state.has_suite)

    @property
    def not_verified(self) -> list[JobRecord]:
        return [job for job in self.jobs if job.state.has_suite and job.verdict != "verified"]


async def load_view(store: Store, batch_id: str) -> BatchView:
    return BatchView(batch_id, await store.jobs(await store.job_ids(batch_id)))


class BatchWatch:
    """A batch's jobs kept up to date. Each poll reads the state and attempt of every job, and the
    whole record only of those not final yet or changed since: a 300-spec sprint near its end
    costs one pipelined read of two fields a job, not 300 records; and a job that looked final and
    was sent again (`robot-fleet retry` from another terminal) is seen again."""

    def __init__(self, store: Store, batch_id: str, final: frozenset[JobState]) -> None:
        self._store = store
        self._batch_id = batch_id
        self._final = final
        self._ids: list[str] = []
        self._jobs: dict[str, JobRecord] = {}

    async def refresh(self) -> BatchView:
        if not self._ids:
            self._ids = await self._store.job_ids(self._batch_id)
        known = [
            job_id for job_id in self._ids if job_id in self._jobs and self._jobs[job_id].state in self._final
        ]
        stale = [job_id for job_id in self._ids if job_id not in known]
        for brief in await self._store.jobs(known, only=("attempt",)):
            seen = self._jobs[brief.job_id]
            if (brief.state, brief.attempt) != (seen.state, seen.attempt):
                stale.append(brief.job_id)
        for record in await self._store.jobs(stale):
            self._jobs[record.job_id] = record
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
    # without a collector, a succeeded job is as far as this follower can see it go
    final = frozenset(
        {JobState.COLLECTED, JobState.FAILED} | ({JobState.SUCCEEDED} if collector is None else set())
    )
    watch = BatchWatch(store, batch_id, final)
    circuits = Circuits(store)
    pauses = PauseNotes()
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

        async def poll() -> tuple[list[Collected], BatchView, CircuitsView]:
            if collector is not None:
                got = await collector.step([batch_id], block_ms=POLL_BLOCK_MS)
            else:
                got = []
                await asyncio.sleep(POLL_BLOCK_MS / 1000)
            return got, await watch.refresh(), await circuits.read()

        while True:
            got, view, fleet = await telling_when_redis_is_silent(poll(), progress.console)
            collected += got
            for line in pauses.changes(fleet):
                progress.console.print(line, highlight=False)
            counts = view.counts
            done = sum(counts[state] for state in final)
            progress.update(bar, completed=done, detail=progress_detail(view, fleet, collector))
            if (
                not hinted
                and counts[JobState.QUEUED] == len(view.jobs)
                and not any(not circuit.unprobed(fleet.now) for circuit in fleet.paused)
                and time.monotonic() - started > NO_WORKER_HINT_S
            ):
                hinted = True
                progress.console.print(
                    f"[yellow]no job has started after {NO_WORKER_HINT_S:.0f}s: is a worker running on this "
                    "REDIS_URL? (robot-fleet worker)[/]"
                )
            if done >= len(view.jobs) or (deadline is not None and time.monotonic() > deadline):
                return view, collected


SILENT_STORE_S = 5.0
"""A poll Redis has not answered for this long is said (an outage: redis-py retries each command for
about 9 minutes before the follower gives up with a one-line error)."""


async def telling_when_redis_is_silent(step: Coroutine[Any, Any, T], console: Console) -> T:
    """`step`'s result; one line when Redis leaves it unanswered for SILENT_STORE_S, one when it
    answers again, instead of a progress line frozen without a word."""
    task = asyncio.ensure_future(step)
    done, _ = await asyncio.wait({task}, timeout=SILENT_STORE_S)
    if task in done:
        return task.result()
    silent_since = time.monotonic() - SILENT_STORE_S
    console.print(f"[yellow]Redis has not answered for {SILENT_STORE_S:.0f}s: waiting for it (the workers wait "
                  "too; after about 9 minutes without it this stops with an error)[/]", highlight=False)  # fmt: skip
    result = await task
    console.print(
        f"[green]Redis answers again (silent {span(time.monotonic() - silent_since)})[/]", highlight=False
    )
    return result


def progress_detail(view: BatchView, fleet: CircuitsView, collector: Collector | None) -> str:
    """`13 ok 0 failed 4 running 0 waiting  41,200 tokens`, then what holds jobs up: the fleet's
    pause, the retries waiting and their kinds, files the filesystem refused."""
    counts = view.counts
    detail = (
        f"[green]{counts[JobState.COLLECTED] + counts[JobState.SUCCEEDED]} ok[/] "
        f"[red]{counts[JobState.FAILED]} failed[/] [cyan]{counts[JobState.RUNNING]} running[/] "
        f"{counts[JobState.QUEUED] + counts[JobState.RETRYING]} waiting  {view.tokens:,} tokens"
    )
    if fleet.paused:
        detail += " [yellow]· paused on " + ", ".join(c.dependency.label for c in fleet.paused) + "[/]"
    kinds = Counter(job.error_kind for job in view.jobs if job.state is JobState.RETRYING and job.error_kind)
    if kinds:
        detail += (
            " [yellow]· retrying: " + ", ".join(f"{kind} ×{n}" for kind, n in kinds.most_common()) + "[/]"
        )
    if collector is not None and collector.retrying:
        detail += f" [red]· {collector.retrying} files refused by the filesystem[/]"
    return detail


class PauseNotes:
    """One line when the fleet pauses on a dependency, one when it resumes."""

    def __init__(self) -> None:
        self._shown: dict[Dependency, float] = {}

    def changes(self, fleet: CircuitsView) -> list[str]:
        lines = []
        for circuit in fleet.circuits:
            if circuit.paused and self._shown.get(circuit.dependency) != circuit.opened_at:
                self._shown[circuit.dependency] = circuit.opened_at
                lines.append(
                    f"[yellow]{escape(circuit.describe(fleet.now))}: no job starts until it answers[/]"
                )
            elif not circuit.paused and circuit.dependency in self._shown:
                opened = self._shown.pop(circuit.dependency)
                lines.append(f"[green]fleet resumed: {circuit.dependency.label} answers again "
                             f"(paused {span(circuit.closed_at - opened)})[/]")  # fmt: skip
        return lines


def problem_line(problem: WriteProblem) -> str:
    style = "green" if problem.retry_in_s is None and not problem.gave_up else "red"
    return f"[{style}]{escape(problem.line())}[/]"


WIDE = 150
"""From this many columns on, the table also shows attempts, rounds and time in columns of their own."""
STATE_STYLES = {JobState.COLLECTED: "green", JobState.SUCCEEDED: "green", JobState.FAILED: "red",
                JobState.RUNNING: "cyan"}  # fmt: skip


def jobs_table(
    view: BatchView, width: int, output_dir: str | None = None, fleet: CircuitsView | None = None
) -> Table:
    """One row per job, readable at 80 columns: ids and states never split (they fold whole in a
    narrow cell), output paths relative to the output tree, long text folded in the last column;
    an unfinished job says what it waits for (`fleet`: the circuits, read with the jobs)."""
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
        style = STATE_STYLES.get(job.state, "")
        cells = [
            escape(job.spec_id),
            f"[{style}]{job.state}[/]" if style else str(job.state),
            verdict_cell(job),
        ]
        if wide:
            cells += [str(job.attempt), rounds_cell(job)]
        cells += [checks_cell(job, lines=not wide), tokens_cell(job, short=not wide)]
        if wide:
            cells.append(time_cell(job, fleet))
        cells.append(note_cell(job, output_dir, fleet))
        table.add_row(*cells)
    return table


def rounds_cell(job: JobRecord) -> str:
    """Rounds, and the round the attempt resumed from (`6 (↻3)`: rounds 1-3 replayed)."""
    if not job.rounds:
        return ""
    return f"{job.rounds} (↻{job.resumed_from_round})" if job.resumed_from_round else str(job.rounds)


def tokens_cell(job: JobRecord, *, short: bool = False) -> str:
    """The writer's tokens, the reviewer's beside them, and (wide) how many the provider had cached."""
    if not job.tokens:
        return ""
    shown = (lambda n: f"{n / 1000:.0f}k") if short else (lambda n: f"{n:,}")
    cell = shown(job.tokens) + (f" +{shown(job.review_tokens)} review" if job.review_tokens else "")
    return cell if short or not job.cached_tokens else f"{cell} ({shown(job.cached_tokens)} cached)"


def verdict_cell(job: JobRecord) -> str:
    if not job.state.has_suite:
        return ""
    return f"[{VERDICT_STYLES.get(job.shown_verdict, '')}]{job.shown_verdict}[/]"


def checks_cell(job: JobRecord, *, lines: bool = False) -> str:
    """Calls resolved / total (and unverified ones), criteria covered, tests passed / run, rule
    violations; `lines`: one figure per line (a narrow table never splits one)."""
    parts = []
    if job.calls:
        unverified = f" ({job.calls_unverified}?)" if job.calls_unverified else ""
        parts.append(f"{job.calls_resolved}/{job.calls} calls{unverified}")
    if job.criteria_total:
        parts.append(f"{job.criteria_covered}/{job.criteria_total} criteria")
    if job.tests_run:
        parts.append(f"{job.tests_passed}/{job.tests_run} run")
    if job.rule_violations:
        parts.append(f"{job.rule_violations} rules broken")
    return ("\n" if lines else ", ").join(parts)


def time_cell(job: JobRecord, fleet: CircuitsView | None) -> str:
    """The job's own clock: first claim to end; a job still at it (again, after a retry: its
    recorded duration is the earlier end's), so far (`12.0s…`)."""
    if job.state.active:
        if job.first_started_at and fleet is not None:
            return f"{max(0.0, fleet.now - job.first_started_at):.1f}s…"
        return ""
    return f"{job.duration_s:.1f}s" if job.duration_s else ""


def note_cell(job: JobRecord, output_dir: str | None = None, fleet: CircuitsView | None = None) -> str:
    if job.state.active:
        return waiting_note(job, fleet)
    if job.error_kind:
        hint = retry_hint(job.error_kind)
        return f"[red]{escape(job.error_kind)}[/]: {escape(job.error_message[:160])} [dim]({hint})[/]"
    note = escape(relative(job.output_path, output_dir))
    if job.withheld:
        return "[yellow]not written (failing; WRITE_FAILING_SUITES=false)[/]"
    if job.beside:
        return f"[yellow]{note} (beside an edited file)[/]"
    if job.verdict == "failing" and job.state.has_suite:
        return f"{note} [red]({first_problem(job)})[/]" if note else f"[red]{first_problem(job)}[/]"
    return note


def waiting_note(job: JobRecord, fleet: CircuitsView | None) -> str:
    """What an unfinished job waits on: the fleet's pause, the last error and when the next attempt is
    due (`mcp_unavailable: ... (attempt 2 failed; next in 14s)`), the error of the attempt before."""
    parts = []
    paused = fleet.paused if fleet is not None else ()
    if paused and job.state is not JobState.RUNNING:
        parts.append(
            "[yellow]waiting: fleet paused on " + ", ".join(c.dependency.label for c in paused) + "[/]"
        )
    if job.state is JobState.RETRYING and job.error_kind:
        due = (
            f"; next in {max(0.0, job.retry_at - fleet.now):.0f}s"
            if fleet and job.retry_at and not paused
            else ""
        )
        parts.append(f"[red]{escape(job.error_kind)}[/]: {escape(job.error_message[:160])} "
                     f"[dim](attempt {job.attempt} failed{due})[/]")  # fmt: skip
    elif job.last_error_kind:
        before = f"attempt {job.attempt - 1}" if job.state is JobState.RUNNING else "last attempt"
        parts.append(
            f"[dim]{before}:[/] [red]{escape(job.last_error_kind)}[/]: {escape(job.last_error_message[:160])}"
        )
    return "; ".join(parts)


def relative(path: str, output_dir: str | None) -> str:
    """A path under the output tree as the tree's own relative path."""
    if path and output_dir:
        with contextlib.suppress(ValueError):
            return str(Path(path).relative_to(output_dir))
    return path


def first_problem(job: JobRecord) -> str:
    """The stages that failed, for a failing suite's row (the diagnostics are in `status --json`)."""
    failed = [stage for stage, outcome in job.stages.items() if outcome == "failed"]
    return f"{', '.join(failed)} failed" if failed else "failing"
