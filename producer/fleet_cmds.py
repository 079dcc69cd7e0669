"""The fleet commands behind the CLI: enqueue, run, status, logs, retry, collect.

Each reads the settings it is given, talks to Redis through the store, and returns an exit code.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.markup import escape

from producer.collector import Collector
from producer.console import ConsoleSink
from producer.enqueue import Plan, new_batch_id, plan_batch, record_batch
from producer.follow import BatchView, follow_batch, jobs_table, load_view
from producer.local_redis import redis_answers
from worker.adapters.celery_config import create_app, send_job
from worker.adapters.store import SOCKET_CONNECT_TIMEOUT_S, Store
from worker.agent.events import Event, EventKind
from worker.errors import PermanentError, RetryableError, RobotFleetError, StoreUnavailable
from worker.redact import redactor_for
from worker.settings import Settings

FOLLOW_BLOCK_MS = 1000
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
    app = create_app(settings)
    for job_id, spec in pairs:
        send_job(app, job_id, spec.spec_id)
    console.print(f"batch [bold]{batch_id}[/]: {len(pairs)} jobs queued", highlight=False)
    return batch_id


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
        view, collected = await follow_batch(store, batch_id, console, collector=Collector(store))
    finally:
        await store.close()
    console.print(f"batch [bold]{batch_id}[/]", highlight=False)
    console.print(jobs_table(view, console.width, str(plan.output_dir.resolve())))
    beside = [item for item in collected if item.beside]
    for item in beside:
        console.print(f"[yellow]kept an edited file[/]: new version at {item.path}", highlight=False)
    console.print(summary_line(view, len(plan.rejected), plan.output_dir), highlight=False)
    if view.failed or view.not_verified:
        console.print(f"see why: robot-fleet status {batch_id}; retry: robot-fleet retry {batch_id}")
    return 1 if view.failed or plan.rejected or view.not_verified else 0


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
        if batch_id is None:
            rows = []
            for bid in await store.batch_ids():
                view = await load_view(store, bid)
                rows.append(
                    {"batch_id": bid, "jobs": len(view.jobs), **dict(view.counts), **dict(view.verdicts),
                     "tokens": view.tokens}
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
                "jobs": [decoded(j) for j in view.jobs],
            }
            for name in ("rejected", "skipped", "ignored"):  # every spec of the batch, not only its jobs
                shown[name] = json.loads(record.get(name) or "[]")
            console.print_json(json.dumps(shown))
        else:
            console.print(f"batch [bold]{batch_id}[/]", highlight=False)
            console.print(jobs_table(view, console.width, record.get("output_dir")))
            for rejection in json.loads(record.get("rejected") or "[]"):
                console.print(
                    f"[red]rejected[/] {escape(rejection['reason'])}", highlight=False, soft_wrap=True
                )
        return 0
    finally:
        await store.close()


JSON_FIELDS = ("stages", "checks", "calls_by_source", "diagnostics", "attempt", "rounds", "repairs", "tool_calls",
               "prompt_tokens", "completion_tokens", "cached_tokens", "calls", "calls_resolved",
               "calls_unverified", "reuse_share", "placeholders", "rule_violations", "tests_run",
               "tests_passed", "tests_failed", "tests_skipped", "duration_s", "first_draft_placeholders",
               "criteria_covered", "criteria_total", "criteria_derived", "review_violations_found",
               "review_violations_fixed", "review_prompt_tokens", "review_completion_tokens", "reviews",
               "degraded")  # fmt: skip
"""Job fields stored as JSON text (lists, objects, numbers): `status --json` shows them decoded."""


def decoded(job: dict[str, str]) -> dict[str, object]:
    shown: dict[str, object] = dict(job)
    for name in JSON_FIELDS:
        if job.get(name):
            with contextlib.suppress(ValueError):
                shown[name] = json.loads(job[name])
    return shown


BATCH_COLUMNS = ("jobs", "verified", "failing", "unverified", "failed", "active", "tokens")


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
        table.add_row(str(row["batch_id"]), *(f"{counts.get(column, 0):,}" for column in BATCH_COLUMNS))
    console.print(table)


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
            for entry_id, fields in entries:
                last = entry_id
                data = json.loads(fields["d"]) if fields.get("d") else {}
                sink.emit(Event(EventKind(fields.get("k", "info")), fields.get("t", ""), data))
            job = await store.job(job_id) or {}
            if not follow or (not entries and job.get("state") in ("succeeded", "collected", "failed")):
                console.print(
                    f"\n[dim]job {job_id}: {job.get('state')} (attempt {job.get('attempt')})[/]",
                    highlight=False,
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
    for rejection in json.loads(record.get("rejected") or "[]"):
        if rejection.get("spec_id") == spec_id:
            return f"[red]{escape(spec_id)} was rejected[/] in batch {escape(batch_id)}: {escape(rejection['reason'])}"
    if spec_id in json.loads(record.get("skipped") or "[]"):
        return f"[yellow]{escape(spec_id)} was up to date[/] in batch {escape(batch_id)}: no job ran (--force regenerates)"
    return f"[red]batch {escape(batch_id)} has no spec {escape(spec_id)!r}[/] (robot-fleet status {escape(batch_id)} lists its jobs)"


async def retry(settings: Settings, batch_id: str, job_id: str | None, kind: str, console: Console) -> int:
    store = _store(settings)
    try:
        view = await load_view(store, batch_id)
        wanted = {"retryable": RETRYABLE_KINDS, "permanent": PERMANENT_KINDS}.get(kind)
        chosen = [
            job for job in view.failed
            if (job_id is None or job["job_id"] == job_id) and (wanted is None or job.get("error_kind") in wanted)
        ]  # fmt: skip
        app = create_app(settings)
        sent = 0
        for job in chosen:
            if await store.request_retry(job["job_id"]):
                send_job(app, job["job_id"], job["spec_id"])
                sent += 1
        console.print(f"{sent} failed jobs of {batch_id} sent again", highlight=False)
        return 0 if sent or not chosen else 1
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
) -> int:
    store = _store(settings)
    collector = Collector(store, output_override=output_dir, reclaim_idle_ms=int(reclaim_idle_s * 1000))
    try:
        while True:
            batch_ids = [batch_id] if batch_id else await store.batch_ids(limit=200)
            items = await collector.step(batch_ids, block_ms=FOLLOW_BLOCK_MS)
            for item in items:
                note = " [yellow](beside an edited file)[/]" if item.beside else ""
                where = (
                    item.path
                    if item.path is not None
                    else "not written (failing; WRITE_FAILING_SUITES=false)"
                )
                console.print(f"collected {item.job_id} → {where}{note}", highlight=False)
            if not follow and not items:
                return 0
    except RobotFleetError as exc:
        console.print(f"[red]collector stopped ({exc.kind}):[/] {exc.message}", highlight=False)
        return 1
    finally:
        await store.close()
