"""`robot-fleet demo`: the whole job on the embedded default, nothing to configure.

Starts the offline GitLab MCP server on `examples/framework` and the scripted model on free ports,
generates every spec of `examples/specs` with the writer (concurrently, one MCP session, one
context cache), writes the files under `./generated`, prints a summary, and stops what it started
— on success, on failure and on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from producer.local_redis import free_port
from producer.outputs import write_output
from producer.procs import Child, robot_fleet_command, start_child
from worker.agent.context import ContextCache
from worker.agent.events import NullSink
from worker.agent.loop import WriterResult
from worker.errors import RobotFleetError
from worker.llm import OpenAIChatModel, build_client
from worker.mcp_tools import McpSession
from worker.settings import Settings
from worker.spec import Spec, load_spec_file
from worker.writer import WriterConfig, generate

PROJECT_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = PROJECT_ROOT / "examples"
DEMO_PROJECT_ID = "42"
DEMO_CONCURRENCY = 8


@dataclass(frozen=True)
class StandIns:
    mcp_url: str
    llm_url: str


@contextlib.contextmanager
def running_stand_ins(repo: Path, log_dir: Path) -> Iterator[StandIns]:
    """The offline MCP server and the scripted model as child processes, stopped on exit."""
    children: list[Child] = []
    try:
        mcp_port, llm_port = free_port(), free_port()
        mcp_cmd = robot_fleet_command(
            "mcp-serve", "--repo", str(repo), "--port", str(mcp_port), "--project-id", DEMO_PROJECT_ID
        )
        children.append(start_child("mcp-server", mcp_cmd, log_dir, ready_port=("127.0.0.1", mcp_port)))
        llm_cmd = robot_fleet_command("fake-llm", "--port", str(llm_port), "--chunk-latency", "0.002")
        children.append(start_child("fake-llm", llm_cmd, log_dir, ready_port=("127.0.0.1", llm_port)))
        yield StandIns(f"http://127.0.0.1:{mcp_port}/mcp", f"http://127.0.0.1:{llm_port}/v1")
    finally:
        for child in reversed(children):
            child.stop()


def demo_settings(stand_ins: StandIns, output_dir: Path) -> Settings:
    return Settings(
        openai_api_key="demo-key",
        openai_base_url=stand_ins.llm_url,
        openai_model_writer="fake-writer",
        gitlab_mcp_url=stand_ins.mcp_url,
        gitlab_project_id=DEMO_PROJECT_ID,
        gitlab_ref="main",
        output_dir=output_dir,
    )


async def _generate_all(specs: list[Spec], settings: Settings) -> list[WriterResult | RobotFleetError]:
    config = WriterConfig.from_settings(settings)
    client = build_client(settings)
    model = OpenAIChatModel(client, settings.openai_model_writer, settings.writer_temperature)
    cache = ContextCache()
    limit = asyncio.Semaphore(DEMO_CONCURRENCY)
    try:
        async with McpSession(settings.gitlab_mcp_url, settings.mcp_headers()) as toolset:
            listing = await toolset.list_tools()

            async def one(spec: Spec) -> WriterResult | RobotFleetError:
                async with limit:
                    try:
                        return await generate(
                            spec,
                            config,
                            model=model,
                            toolset=toolset,
                            listing=listing,
                            cache=cache,
                            sink=NullSink(),
                        )
                    except RobotFleetError as exc:
                        return exc

            return await asyncio.gather(*(one(spec) for spec in specs))
    finally:
        await client.close()


def run_demo(console: Console, output_dir: Path, specs_dir: Path = EXAMPLES / "specs") -> int:
    settings_probe = Settings()
    specs: list[Spec] = []
    for path in sorted(specs_dir.glob("*.json")):
        try:
            specs.append(load_spec_file(path, max_bytes=settings_probe.spec_max_bytes))
        except RobotFleetError as exc:
            console.print(f"[yellow]skipped[/] {exc.message}", highlight=False)
    with tempfile.TemporaryDirectory(prefix="robot-fleet-demo-") as logs:
        console.print(
            f"starting the offline MCP server on {EXAMPLES / 'framework'} and the scripted model ..."
        )
        with running_stand_ins(EXAMPLES / "framework", Path(logs)) as stand_ins:
            console.print(f"MCP server {stand_ins.mcp_url}  model {stand_ins.llm_url}", highlight=False)
            settings = demo_settings(stand_ins, output_dir)
            console.print(f"generating {len(specs)} specs ...")
            results = asyncio.run(_generate_all(specs, settings))
    return _report(console, specs, results, output_dir)


def _report(
    console: Console, specs: list[Spec], results: list[WriterResult | RobotFleetError], out: Path
) -> int:
    table = Table(title=f"robot-fleet demo → {out}")
    for column in ("spec", "file", "state", "rounds", "tool calls", "tokens"):
        table.add_column(column)
    failed = 0
    for spec, result in zip(specs, results, strict=True):
        if isinstance(result, RobotFleetError):
            failed += 1
            table.add_row(
                spec.spec_id, spec.target_path, f"[red]{result.kind}[/]", "", "", result.message[:60]
            )
            continue
        write_output(out, spec.target_path, result.robot_text)
        tokens = result.usage.prompt_tokens + result.usage.completion_tokens
        calls = str(sum(result.tool_calls.values()))
        table.add_row(
            spec.spec_id, spec.target_path, "[green]written[/]", str(result.rounds), calls, str(tokens)
        )
    console.print(table)
    console.print(f"{len(specs) - failed} written, {failed} failed, under {out.resolve()}")
    return 1 if failed else 0
