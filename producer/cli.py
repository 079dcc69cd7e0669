"""The `robot-fleet` command line. Commands import their machinery lazily so the CLI starts fast."""

from __future__ import annotations

from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from offline.fake_llm.cli import serve as fake_llm_serve
from offline.gitlab_mcp.cli import serve as mcp_serve
from offline.gitlab_rest.cli import serve as gitlab_rest_serve

if TYPE_CHECKING:
    from worker.settings import Settings

T = TypeVar("T")

app = typer.Typer(
    name="robot-fleet",
    help="Batch-generate Robot Framework tests from spec files on a Celery fleet.",
    no_args_is_help=True,
    rich_markup_mode="markdown",  # a docstring's line breaks are not kept: paragraphs fold to the width
    add_completion=False,
)

app.command("mcp-serve", help="Run the offline read-only GitLab MCP server over a local checkout.")(mcp_serve)
app.command("fake-llm", help="Run the scripted OpenAI-compatible model server.")(fake_llm_serve)
app.command("gitlab-rest-double", help="Serve a checkout as GitLab REST v4.")(gitlab_rest_serve)

OutputDir = Annotated[
    Path | None, typer.Option("--output-dir", "-o", help="Output tree (default: OUTPUT_DIR).")
]
SpecsDir = Annotated[Path, typer.Argument(help="Directory of spec JSON files.")]
BatchName = Annotated[
    str | None, typer.Option("--batch", help="A name for the batch (its id starts with it).")
]
Pattern = Annotated[str, typer.Option("--pattern", help="Glob of spec files in SPECS_DIR.")]
Recursive = Annotated[bool, typer.Option("--recursive", "-r", help="Look in sub-directories too.")]
Force = Annotated[bool, typer.Option("--force", help="Regenerate specs whose output is up to date.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Validate and show the plan; enqueue nothing.")]


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; a failure it can explain becomes one line and exit code 1."""
    import asyncio

    from worker.errors import RobotFleetError

    try:
        return asyncio.run(coro)
    except RobotFleetError as exc:
        hint = " (is REDIS_URL right and Redis running?)" if exc.kind == "store_unavailable" else ""
        Console(stderr=True).print(f"[red]error ({exc.kind}):[/] {exc.message}{hint}", highlight=False)
        raise typer.Exit(1) from exc


def _settings() -> Settings:
    """The settings; a value that does not validate is one line a variable and exit code 2."""
    from pydantic import ValidationError

    from worker.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        from rich.markup import escape

        console = Console(stderr=True)
        for error in exc.errors():
            name = str(error["loc"][0]).upper() if error["loc"] else "settings"
            secret = any(word in name for word in ("KEY", "TOKEN", "PASSWORD", "AUTH"))
            shown = name if secret else f"{name}={error.get('input')!r}"
            console.print(f"[red]error (config):[/] {escape(shown)}: {escape(error['msg'])}", highlight=False)
        raise typer.Exit(2) from None


def _batch(specs_dir: Path, batch: str | None, output_dir: Path | None, pattern: str, recursive: bool,
           force: bool, dry_run: bool, *, follow: bool) -> int:  # fmt: skip
    """`enqueue` and `run`: plan (rejections and skips printed), then queue, and follow for `run`."""
    from producer.fleet_cmds import enqueue as do_enqueue
    from producer.fleet_cmds import make_plan, print_plan, run_batch
    from worker.errors import SpecError

    console, settings = Console(), _settings()
    try:
        plan = make_plan(settings, specs_dir, output_dir, pattern, recursive, force)
    except SpecError as exc:
        Console(stderr=True).print(f"[red]error:[/] {exc.message}", highlight=False)
        return 2
    print_plan(console, plan)
    if dry_run:
        return 1 if plan.rejected else 0
    if follow:
        return _run(run_batch(settings, plan, batch, console))
    batch_id = _run(do_enqueue(settings, plan, batch, console))
    if batch_id:
        typer.echo(batch_id)
    return 1 if plan.rejected else 0


@app.command("write")
def write(
    spec: Annotated[Path, typer.Argument(help="The spec JSON file.")],
    output_dir: OutputDir = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not stream the model's text.")] = False,
) -> None:
    """Generate one .robot file from one spec, here, streaming the model live (no fleet needed)."""
    from producer.write_cmd import run_write

    raise typer.Exit(run_write(spec, output_dir, _settings(), Console(), quiet))


@app.command("rules")
def rules(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Print the rules the fleet enforces on the configured project and ref, and missing libraries."""
    from producer.rules_cmd import run_rules

    raise typer.Exit(_run_configured(lambda: run_rules(_settings(), Console(), as_json=as_json)))


def _run_configured(command: Any) -> int:
    """A command that reads the repository: its errors are one line (config errors exit 2)."""
    from worker.errors import PermanentError, RobotFleetError

    try:
        return int(command())
    except RobotFleetError as exc:
        Console(stderr=True).print(f"[red]error ({exc.kind}):[/] {exc.message}", highlight=False)
        return 2 if isinstance(exc, PermanentError) else 1


@app.command("enqueue")
def enqueue(
    specs_dir: SpecsDir,
    batch: BatchName = None,
    output_dir: OutputDir = None,
    pattern: Pattern = "*.json",
    recursive: Recursive = False,
    force: Force = False,
    dry_run: DryRun = False,
) -> None:
    """Validate a directory of specs and queue one job per valid spec; print the batch id."""
    raise typer.Exit(_batch(specs_dir, batch, output_dir, pattern, recursive, force, dry_run, follow=False))


@app.command("run")
def run(
    specs_dir: SpecsDir,
    batch: BatchName = None,
    output_dir: OutputDir = None,
    pattern: Pattern = "*.json",
    recursive: Recursive = False,
    force: Force = False,
    dry_run: DryRun = False,
) -> None:
    """Enqueue a directory of specs, follow the batch while collecting its files, print a summary."""
    raise typer.Exit(_batch(specs_dir, batch, output_dir, pattern, recursive, force, dry_run, follow=True))


@app.command("status")
def status(
    batch: Annotated[str | None, typer.Argument(help="A batch id; without it, the recent batches.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Recent batches, or one batch's jobs with state, attempts, rounds, tokens and errors."""
    from producer.fleet_cmds import status as do_status

    raise typer.Exit(_run(do_status(_settings(), batch, as_json, Console(soft_wrap=as_json))))


@app.command("logs")
def logs(
    job: Annotated[str, typer.Argument(help="A job id (BATCH:SPEC_ID).")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep following the live output.")] = False,
) -> None:
    """Replay a job's log (model text, thinking, tool calls, diagnostics); follow it live."""
    from producer.fleet_cmds import logs as do_logs

    raise typer.Exit(_run(do_logs(_settings(), job, follow, Console())))


@app.command("retry")
def retry(
    batch: Annotated[str, typer.Argument(help="The batch id.")],
    job: Annotated[str | None, typer.Option("--job", help="Only this job id.")] = None,
    kind: Annotated[str, typer.Option("--kind", help="retryable | permanent | all")] = "all",
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Start from the first round, ignoring the rounds journaled.")
    ] = False,
) -> None:
    """Send failed jobs again as a new attempt; the older attempt can no longer write its result."""
    from producer.fleet_cmds import retry as do_retry

    if kind not in ("retryable", "permanent", "all"):
        raise typer.BadParameter("expected retryable, permanent or all", param_hint="--kind")
    raise typer.Exit(_run(do_retry(_settings(), batch, job, kind, Console(), fresh=fresh)))


@app.command("collect")
def collect(
    batch: Annotated[str | None, typer.Option("--batch", help="Only this batch.")] = None,
    follow: Annotated[bool, typer.Option("--follow", help="Keep collecting as results arrive.")] = False,
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", "-o", help="Override the batches' output tree.")
    ] = None,
    reclaim_idle: Annotated[
        float,
        typer.Option(
            "--reclaim-idle", help="Seconds before a dead collector's unacknowledged results are taken over."
        ),
    ] = 30.0,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="This collector's name in the results group (default: collect@HOST). A collector started "
            "again under a dead one's name takes over at once what it had read and not written.",
        ),
    ] = None,
) -> None:
    """Write finished results as .robot files (atomic), update the manifest, acknowledge.

    Without --follow it exits 1 when something is left uncollected: a file the filesystem refused,
    results another collector holds, jobs of the batch not finished."""
    from producer.fleet_cmds import collect as do_collect

    raise typer.Exit(
        _run(
            do_collect(
                _settings(), batch, follow, output_dir, Console(), reclaim_idle_s=reclaim_idle, name=name
            )
        )
    )


@app.command("worker", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(
    ctx: typer.Context,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", help="Concurrent jobs in this worker.")
    ] = 8,
    pool: Annotated[str, typer.Option("--pool", help="threads | prefork")] = "threads",
    loglevel: Annotated[str, typer.Option("--loglevel", "-l", help="Celery log level.")] = "INFO",
) -> None:
    """Start a Celery worker of the fleet; extra options go to `celery worker`."""
    if pool not in ("threads", "prefork"):
        raise typer.BadParameter("expected threads or prefork", param_hint="--pool")
    from worker.agent.writer import WriterConfig
    from worker.errors import ConfigError

    try:  # refuse to start rather than fail every job one by one
        WriterConfig.from_settings(_settings())
    except ConfigError as exc:
        Console(stderr=True).print(f"[red]error (config):[/] {exc.message}", highlight=False)
        raise typer.Exit(2) from exc
    from worker.adapters.celery_config import QUEUE
    from worker.fleet.celery_app import app as celery_app

    argv = [
        "worker",
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        f"--loglevel={loglevel}",
        "--events",
        f"--queues={QUEUE}",
    ]
    celery_app.worker_main([*argv, *ctx.args])


@app.command("flower")
def flower(
    port: Annotated[int, typer.Option("--port", help="HTTP port.")] = 5555,
    address: Annotated[str, typer.Option("--address", help="Bind address.")] = "127.0.0.1",
) -> None:
    """Start Flower on the fleet's broker (basic auth from FLOWER_BASIC_AUTH=user:password)."""
    from worker.adapters.celery_config import flower_argv
    from worker.fleet.celery_app import app as celery_app

    celery_app.start(flower_argv(port, address))


@app.command("metrics")
def metrics(
    port: Annotated[int, typer.Option("--port", help="HTTP port.")] = 9808,
    address: Annotated[str, typer.Option("--address", help="Bind address.")] = "127.0.0.1",
    batches: Annotated[
        int, typer.Option("--batches", min=0, max=20, help="Newest batches exported with a batch label.")
    ] = 5,
) -> None:
    """Serve the fleet's Prometheus metrics: jobs, verdicts, tokens, rounds, rate-limit waits, queue."""
    from producer.metrics import serve

    raise typer.Exit(serve(_settings(), port=port, address=address, recent=batches))


@app.command("report")
def report(
    batch: Annotated[str, typer.Argument(help="The batch id.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="The HTML file (default: report-BATCH.html).")
    ] = None,
) -> None:
    """Write one self-contained HTML page to review a batch: verdicts, checks, diagnostics, suites."""
    from producer.report import write_report

    raise typer.Exit(_run(write_report(_settings(), batch, output, Console())))


@app.command("demo")
def demo(
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Where the files go.")] = Path(
        "generated"
    ),
    keep: Annotated[bool, typer.Option("--keep", help="Keep the fleet and Flower up until Ctrl-C.")] = False,
) -> None:
    """Run the example sprint on a local fleet with the offline stand-ins (what `make demo` runs)."""
    from producer.demo import run_demo

    raise typer.Exit(run_demo(Console(), output_dir, keep=keep))


PANELS = {
    "A sprint": ("run", "enqueue", "status", "logs", "retry", "collect", "report", "write", "rules"),
    "The fleet": ("worker", "flower", "metrics", "demo"),
    "Offline stand-ins": ("mcp-serve", "fake-llm", "gitlab-rest-double"),
}


def _group_commands() -> None:
    """`--help` lists commands by what a user does: a sprint first, the fleet, the stand-ins last."""
    order = [name for names in PANELS.values() for name in names]
    panel_of = {name: panel for panel, names in PANELS.items() for name in names}
    for info in app.registered_commands:
        info.rich_help_panel = panel_of.get(info.name or "", "Other")
    app.registered_commands.sort(
        key=lambda info: order.index(info.name) if info.name in order else len(order)
    )


_group_commands()

if __name__ == "__main__":
    app()
