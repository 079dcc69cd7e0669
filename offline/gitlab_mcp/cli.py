"""Placeholder: `robot-fleet mcp-serve` (being written)."""

from pathlib import Path

import typer


def serve(repo: Path = typer.Option(..., "--repo")) -> None:
    raise typer.Exit(1)
