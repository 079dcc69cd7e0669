"""The fleet commands behind the CLI: enqueue, run, status, logs, retry, collect.

Each reads the settings it is given, talks to Redis through the store, and returns an exit code.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from celery import Celery
from rich.console import Console
from rich.markup import escape

from producer.collector import RECLAIM_EVERY_S, Collected, Collector, WriteProblem, host_collector_name
from producer.console import ConsoleSink
from producer.enqueue import Plan, new_batch_id, plan_batch, record_batch
from producer.follow import (
    BatchView,
    follow_batch,
    jobs_table,
    load_view,
    problem_line,
    telling_when_redis_is_silent,
)
from producer.local_redis import redis_answers
from worker.adapters.celery_config import create_app, send_job
from worker.adapters.circuits import Circuits, CircuitsView
from worker.adapters.store import SOCKET_CONNECT_TIMEOUT_S, Store
from worker.agent.events import Event, EventKind
from worker.errors import PermanentError, RetryableError, RobotFleetError, StoreUnavailable
from worker.records import JobState
from worker.redact import redactor_for
from worker.settings import Settings

logger = logging.getLogger(__name__)

FOLLOW_BLOCK_MS = 1000
ONE_SHOT_TRIES = 3
"""`collect` without `--follow` writes a refused file this often (1 s, then 2 s apart) before it
says so and exits 1; `--follow` and `run` never stop trying."""
refused_note = "the jobs are recorded: a worker's lease sweep sends them within about two leases"
RETRYABLE_KINDS = {cls.kind for cls in RetryableError.__subclasses__()} | {RetryableError.kind}
PERMANENT_KINDS = {cls.kind for cls in PermanentError.__subclasses__()} | {PermanentError.kind}


def _store(settings: Settings) -> Store:
    """The store, once Redis answers: a Redis that is not there fails now, in one line, instead of
    after the half minute the store spends riding over an outage of a Redis it was talking to."""
    if not redis_answers(settings.redis_url, timeout=SOCKET_CONNECT_TIMEOUT_S):
        where = urlsplit(settings.redis_url)
        place = f"{where.hostname}:{where.port or 6379}" if where.hostname else where.path
        raise StoreUnavailable(
            f"Redis unavailable at {place}: no answer, or the password in REDIS_URL refused"
        )
    return Store.from_url(settings.redis_url, redactor_for(settings))


def print_plan(console: Console, plan: Plan) -> None:
    for rejection in plan.rejected:
        # one line per rejection, however long: no wrapping, and the reason is never read as markup
        console.print(
            f"[red]rejected[/] {escape(rejection.reason)}", highlight=False, emoji=False, soft_wrap=True
        )
    for spec in plan.skipped:
        console.print(
            f"[dim]up to date[/] {spec.spec_id} → {spec.target_path} (use --force to regenerate)",
            highlight=False,
        )
    for name in plan.ignored:
        console.print(
            f"[dim]skipped[/] {escape(name)}: not a spec file (not matched by --pattern)", highlight=False
        )
    ignored = f", {len(plan.ignored)} other files skipped" if plan.ignored else ""
    console.print(
        f"{len(plan.accepted)} to generate, {len(plan.skipped)} up to date, {len(plan.rejected)} rejected{ignored}",
        highlight=False,
    )


async def enqueue(settings: Settings, plan: Plan, batch_name: str | None, console: Console) -> str | None:
    if not plan.accepted:
        console.print("nothing to generate")
        return None
    store = _store(settings)
    try:
        batch_id = new_batch_id(batch_name)
        pairs = await record_batch(store, plan, settings, batch_id)
    finally:
        await store.close()
    refused = send_jobs(create_app(settings), [(job_id, spec.spec_id) for job_id, spec in pairs])
    console.print(f"batch [bold]{batch_id}[/]: {len(pairs)} jobs queued", highlight=False)
    if refused:
        console.print(
            f"[yellow]the broker refused {refused} of their messages ({refused_note})[/]", highlight=False
        )
    return batch_id


def send_jobs(app: Celery, jobs: list[tuple[str, str]]) -> int:
    """Send each job's task; returns how many the broker refused. Those jobs are recorded and
    dispatched, so the fleet's lease sweep sends them within about two leases."""
    refused = 0
    for job_id, spec_id in jobs:
        try:
            send_job(app, job_id, spec_id)
        except StoreUnavailable as exc:
            refused += 1
            logger.warning("job %s: %s (the fleet's lease sweep sends it)", job_id, exc.message)
    return refused


def make_plan(
    settings: Settings, specs_dir: Path, output_dir: Path | None, pattern: str, recursive: bool, force: bool
) -> Plan:
    return plan_batch(
        specs_dir,
        output_dir or settings.output_dir,
        settings,
        pattern=pattern,
        recursive=recursive,
        force=force,
    )


async def run_batch(
    settings: Settings,
    plan: Plan,
    batch_name: str | None,
    console: Console,
    on_batch: Callable[[str], None] | None = None,
) -> int:
    batch_id = await enqueue(settings, plan, batch_name, console)
    if batch_id is None:
        return 1 if plan.rejected else 0
    if on_batch is not None:
        on_batch(batch_id)
    store = _store(settings)
    try:
        collector = Collector(store, on_problem=_printer(console))
        view, collected = await follow_batch(store, batch_id, console, collector=collector)
        fleet = await Circuits(store).read()
    finally:
        await store.close()
    console.print(f"batch [bold]{batch_id}[/]", highlight=False)
    console.print(jobs_table(view, console.width, str(plan.output_dir.resolve()), fleet))
    beside = [item for item in collected if item.beside]
    for item in beside:
        console.print(f"[yellow]kept an edited file[/]: new version at {item.path}", highlight=False)
    console.print(summary_line(view, len(plan.rejected), plan.output_dir), highlight=False)
    if view.failed or view.not_verified:
        console.print(f"see why: robot-fleet status {batch_id}; retry: robot-fleet retry {batch_id}")
    return 1 if view.failed or plan.rejected or view.not_verified else 0


def _printer(console: Console) -> Callable[[WriteProblem], None]:
    return lambda problem: console.print(problem_line(problem), highlight=False, soft_wrap=True)


def print_pauses(console: Console, fleet: CircuitsView) -> None:
    for circuit in fleet.paused:
        console.print(f"[yellow]{escape(circuit.describe(fleet.now))}[/]", highlight=False, soft_wrap=True)


def summary_line(view: BatchView, rejected: int, output_dir: Path) -> str:
    """`17 suites: 15 verified, 2 failing; 0 failed, 0 rejected → generated` (verdicts of the suites
    written; `failed` jobs produced none)."""
    verdicts = view.verdicts
    order = ("verified", "failing", "unverified", "unreviewed")
    parts = [
        f"{verdicts[name]} {name}" for name in order if verdicts[name] or name in ("verified", "failing")
    ]
    suites = sum(verdicts.values())
    return (
        f"{suites} suites: {', '.join(parts)}; {len(view.failed)} failed, {rejected} rejected → {output_dir}"
    )


async def status(settings: Settings, batch_id: str | None, as_json: bool, console: Console) -> int:
    store = _store(settings)
    try:
        fleet = await Circuits(store).read()
        if not as_json:
            print_pauses(console, fleet)
        if batch_id is None:
            rows = []
            for bid in await store.batch_ids():
                view = await load_view(store, bid)
                rows.append(
                    {"batch_id": bid, "jobs": len(view.jobs), **{str(k): n for k, n in view.counts.items()},
                     **dict(view.verdicts), "tokens": view.tokens, "cached": view.cached}
                )  # fmt: skip
            _print_rows(console, rows, as_json, "batches")
            return 0
        record = await store.batch(batch_id)
        if record is None:
            console.print(
                f"[red]no batch {batch_id!r}[/] (robot-fleet status lists the recent ones)", highlight=False
            )
            return 2
        view = await load_view(store, batch_id)
        if as_json:
            shown = {
                "batch_id": batch_id,
                "verdicts": dict(view.verdicts),
                "jobs": [job.shown() for job in view.jobs],
                # every spec of the batch, not only its jobs
                "rejected": [
                    {"source": r.source, "reason": r.reason, "spec_id": r.spec_id} for r in record.rejected
                ],
                "skipped": list(record.skipped),
                "ignored": list(record.ignored),
                "fleet": {str(circuit.dependency): circuit.shown(fleet.now) for circuit in fleet.circuits},
            }
            console.print_json(json.dumps(shown))
        else:
            console.print(f"batch [bold]{batch_id}[/]", highlight=False)
            console.print(jobs_table(view, console.width, record.output_dir, fleet))
            for rejection in record.rejected:
                console.print(f"[red]rejected[/] {escape(rejection.reason)}", highlight=False, soft_wrap=True)
        return 0
    finally:
        await store.close()


BATCH_COLUMNS = ("jobs", "verified", "failing", "unverified", "failed", "active", "tokens", "cached")


def _print_rows(console: Console, rows: list[dict[str, Any]], as_json: bool, title: str) -> None:
    if as_json:
        console.print_json(json.dumps(rows))
        return
    from rich.table import Table

    table = Table(title=title, box=None, pad_edge=False)
    table.add_column("batch", no_wrap=True)
    for column in BATCH_COLUMNS:
        table.add_column(column, justify="right", overflow="fold")
    for row in rows:
        counts = {**row, "unverified": int(row.get("unverified", 0)) + int(row.get("unreviewed", 0)),
                  "active": sum(int(row.get(state, 0)) for state in ("running", "queued", "retrying"))}  # fmt: skip
        table.add_row(
            str(row["batch_id"]), *(_count(column, counts.get(column, 0)) for column in BATCH_COLUMNS)
        )
    console.print(table)


def _count(column: str, value: int) -> str:
    """Token counts in k or M (a sprint spends millions), the other columns as they are."""
    if column not in ("tokens", "cached") or value < 10_000:
        return f"{value:,}"
    return f"{value / 1_000_000:.1f}M" if value >= 1_000_000 else f"{value / 1000:.0f}k"


async def logs(settings: Settings, job_id: str, follow: bool, console: Console) -> int:
    store = _store(settings)
    sink = ConsoleSink(console)
    try:
        if await store.job(job_id) is None:
            console.print(await _no_job(store, job_id), highlight=False)
            return 2
        last = "0"
        while True:
            entries = await store.read_log(job_id, last, block_ms=FOLLOW_BLOCK_MS if follow else None)
            for entry in entries:
                last = entry.entry_id
                sink.emit(Event(EventKind(entry.kind), entry.text, dict(entry.data)))
            job = await store.job(job_id)
            if job is None or not follow or (not entries and not job.state.active):
                state, attempt = (job.state, job.attempt) if job is not None else ("expired", 0)
                resumed = (
                    f", resumed after round {job.resumed_from_round}"
                    if job and job.resumed_from_round
                    else ""
                )
                console.print(
                    f"\n[dim]job {job_id}: {state} (attempt {attempt}{resumed})[/]", highlight=False
                )
                return 0
    finally:
        await store.close()


async def _no_job(store: Store, job_id: str) -> str:
    """Why there is no such job: a spec the batch rejected (and why), an unknown batch, or a typo."""
    batch_id, _, spec_id = job_id.partition(":")
    record = await store.batch(batch_id) if spec_id else None
    if record is None:
        return f"[red]no job {escape(job_id)!r}[/] (job ids look like BATCH:SPEC_ID; robot-fleet status lists batches)"
    for rejection in record.rejected:
        if rejection.spec_id == spec_id:
            return f"[red]{escape(spec_id)} was rejected[/] in batch {escape(batch_id)}: {escape(rejection.reason)}"
    if spec_id in record.skipped:
        return f"[yellow]{escape(spec_id)} was up to date[/] in batch {escape(batch_id)}: no job ran (--force regenerates)"
    return f"[red]batch {escape(batch_id)} has no spec {escape(spec_id)!r}[/] (robot-fleet status {escape(batch_id)} lists its jobs)"


async def retry(settings: Settings, batch_id: str, job_id: str | None, kind: str, console: Console,
                *, fresh: bool = False) -> int:  # fmt: skip
    """Send failed jobs again; `fresh`: from their first round, whatever their journal holds."""
    store = _store(settings)
    try:
        view = await load_view(store, batch_id)
        wanted = {"retryable": RETRYABLE_KINDS, "permanent": PERMANENT_KINDS}.get(kind)
        chosen = [
            job for job in view.failed
            if (job_id is None or job.job_id == job_id) and (wanted is None or job.error_kind in wanted)
        ]  # fmt: skip
        again = [
            (job.job_id, job.spec_id) for job in chosen if await store.request_retry(job.job_id, fresh=fresh)
        ]
        refused = send_jobs(create_app(settings), again)
        console.print(f"{len(again)} failed jobs of {batch_id} sent again", highlight=False)
        if refused:
            console.print(
                f"[yellow]the broker refused {refused} of their messages ({refused_note})[/]", highlight=False
            )
        return 0 if again or not chosen else 1
    finally:
        await store.close()


async def collect(
    settings: Settings,
    batch_id: str | None,
    follow: bool,
    output_dir: Path | None,
    console: Console,
    *,
    reclaim_idle_s: float = 30.0,
    name: str | None = None,
) -> int:
    """Write the results waiting; without `follow`, exit 1 when something is left uncollected (a file
    the filesystem refused, results another collector holds, with `batch_id` jobs not finished)."""
    store = _store(settings)
    collector = Collector(store, output_override=output_dir, reclaim_idle_ms=int(reclaim_idle_s * 1000),
                          consumer=name or host_collector_name(), on_problem=_printer(console),
                          max_tries=None if follow else ONE_SHOT_TRIES)  # fmt: skip
    # results another collector read and holds are waited for until they are written or idle long
    # enough to be taken over (the reclaim runs every RECLAIM_EVERY_S)
    patience = time.monotonic() + reclaim_idle_s + RECLAIM_EVERY_S + 2.0
    told = False
    try:
        while True:

            async def poll() -> tuple[list[str], list[Collected]]:
                ids = [batch_id] if batch_id else await store.batch_ids(limit=200)
                return ids, await collector.step(ids, block_ms=FOLLOW_BLOCK_MS)

            batch_ids, items = await telling_when_redis_is_silent(poll(), console)
            for item in items:
                note = " [yellow](beside an edited file)[/]" if item.beside else ""
                where = (
                    item.path
                    if item.path is not None
                    else "not written (failing; WRITE_FAILING_SUITES=false)"
                )
                console.print(f"collected {item.job_id} → {where}{note}", highlight=False)
            if follow or items or collector.retrying:
                continue
            held = [entry for batch in batch_ids for entry in await store.pending_results(batch)
                    if entry.consumer != collector.name]  # fmt: skip
            if held and time.monotonic() < patience:
                if not told:
                    told = True
                    owners = ", ".join(sorted({entry.consumer for entry in held}))
                    console.print(f"waiting for {len(held)} results another collector ({escape(owners)}) read "
                                  f"and has not written; taken over once idle {reclaim_idle_s:g}s",
                                  highlight=False)  # fmt: skip
                await asyncio.sleep(1.0)
                continue
            return await _left_uncollected(store, batch_ids, batch_id, collector, console)
    except RobotFleetError as exc:
        console.print(f"[red]collector stopped ({exc.kind}):[/] {exc.message}", highlight=False)
        return 1
    finally:
        await store.close()


async def _left_uncollected(store: Store, batch_ids: list[str], batch_id: str | None, collector: Collector,
                            console: Console) -> int:  # fmt: skip
    """Say what a one-shot collect leaves behind; 1 when anything (0: all written)."""
    pending_count = sum([len(await store.pending_results(batch)) for batch in batch_ids])
    unfinished = 0
    if batch_id is not None:  # a result read by no collector yet counts too (its job `succeeded`)
        jobs = await store.jobs(await store.job_ids(batch_id), only=())
        unfinished = sum(job.state.active for job in jobs)
        pending_count = max(pending_count, sum(job.state is JobState.SUCCEEDED for job in jobs))
    if pending_count:
        refused = (
            f" ({len(collector.given_up)} refused by the filesystem, above)" if collector.given_up else ""
        )
        console.print(f"[red]{pending_count} results not written{refused}[/]: run robot-fleet collect again "
                      "(the entries stay pending, nothing is lost)", highlight=False)  # fmt: skip
    if unfinished:
        console.print(f"[yellow]{unfinished} jobs of {escape(batch_id or '')} not finished yet[/]: "
                      "collect --follow writes their files as they finish", highlight=False)  # fmt: skip
    return 1 if pending_count or unfinished else 0
