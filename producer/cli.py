"""The `robot-fleet` command line."""

from __future__ import annotations

import typer

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


if __name__ == "__main__":
    app()
