"""Placeholder: `robot-fleet fake-llm` (being written)."""

import typer


def serve(port: int = typer.Option(8000, "--port")) -> None:
    raise typer.Exit(1)
