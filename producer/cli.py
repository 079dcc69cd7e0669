"""The `robot-fleet` command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from offline.fake_llm.cli import serve as fake_llm_serve
from offline.gitlab_mcp.cli import serve as mcp_serve

app = typer.Typer(
    name="robot-fleet",
    help="Batch-generate Robot Framework tests from spec files on a Celery fleet.",
    no_args_is_help=True,
    add_completion=False,
)

app.command("mcp-serve", help="Run the offline read-only GitLab MCP server over a local checkout.")(mcp_serve)
app.command("fake-llm", help="Run the scripted OpenAI-compatible model server.")(fake_llm_serve)


@app.command("write")
def write(
    spec: Annotated[Path, typer.Argument(help="The spec JSON file.", exists=False)],
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", "-o", help="Output tree (default: OUTPUT_DIR).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not stream the model's text.")] = False,
) -> None:
    """Generate one .robot file from one spec, streaming the model live."""
    from producer.write_cmd import run_write
    from worker.settings import Settings

    raise typer.Exit(run_write(spec, output_dir, Settings(), Console(), quiet))


@app.command("demo")
def demo(
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Where the files go.")] = Path(
        "generated"
    ),
) -> None:
    """Run the example sprint end to end on the offline stand-ins (what `make demo` runs)."""
    from producer.demo import run_demo

    raise typer.Exit(run_demo(Console(), output_dir))


if __name__ == "__main__":
    app()
