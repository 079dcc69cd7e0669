"""`robot-fleet write SPEC.json`: the original single-spec job, done with the fleet's writer."""

from __future__ import annotations

import asyncio
from pathlib import Path

from rich.console import Console

from producer.console import ConsoleSink
from producer.outputs import write_output
from worker.adapters.services import open_services
from worker.agent.checks.verdict import Verdict, verdict_of
from worker.agent.loop import WriterResult
from worker.agent.writer import WriterConfig
from worker.errors import ConfigError, RobotFleetError, retry_hint
from worker.settings import Settings
from worker.spec import Spec, load_spec_file, resolve_in_output

CONNECT_WAIT_S = 5.0


async def _generate(spec: Spec, settings: Settings, sink: ConsoleSink) -> WriterResult:
    """A hand-run job opens the same services as a worker (and shares the fleet's budgets)."""
    async with open_services(settings, connect_wait_s=CONNECT_WAIT_S) as services:
        return await services.write(spec, sink)


def run_write(
    spec_path: Path, output_dir: Path | None, settings: Settings, console: Console, quiet: bool
) -> int:
    """Return the process exit code: 0 written and verified, 1 the job failed or the suite is not
    verified (a failing one is written unless WRITE_FAILING_SUITES=false), 2 bad input or configuration."""
    errors = Console(stderr=True)
    out_root = output_dir or settings.output_dir
    try:
        spec = load_spec_file(spec_path, max_bytes=settings.spec_max_bytes)
        resolve_in_output(out_root, spec.target_path)
        WriterConfig.from_settings(settings)  # a setting the writer cannot work with: exit 2 now
    except RobotFleetError as exc:
        errors.print(f"[red]error ({exc.kind}):[/] {exc.message}", highlight=False)
        return 2
    sink = ConsoleSink(console, show_text=not quiet)
    try:
        result = asyncio.run(_generate(spec, settings, sink))
    except RobotFleetError as exc:
        console.print()
        errors.print(f"[red]failed ({exc.kind}):[/] {exc.message} ({retry_hint(exc.kind)})", highlight=False)
        return 2 if isinstance(exc, ConfigError) else 1  # a setting the server showed to be wrong
    verdict = verdict_of(result.checks)
    figures = (
        f"rounds={result.rounds} repairs={result.repairs} tool_calls={sum(result.tool_calls.values())} "
        f"tokens={result.usage.prompt_tokens}+{result.usage.completion_tokens} time={result.duration_s:.1f}s"
    )
    style = "green" if verdict is Verdict.VERIFIED else "red" if verdict is Verdict.FAILING else "yellow"
    if verdict is Verdict.FAILING and not settings.write_failing_suites:
        console.print(
            f"\n[{style}]{verdict}[/], not written (WRITE_FAILING_SUITES=false)  {figures}", highlight=False
        )
        return 1
    path = write_output(out_root, spec.target_path, result.robot_text)
    console.print(f"\n[{style}]{verdict}[/]: wrote {path}  {figures}", highlight=False)
    return 0 if verdict is Verdict.VERIFIED else 1
