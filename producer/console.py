"""Printing the writer's events live on a terminal: text as it streams, thinking dimmed, one line
per tool call, diagnostics in yellow."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from worker.agent.events import Event, EventKind

ARGUMENT_PREVIEW_CHARS = 120


class ConsoleSink:
    def __init__(self, console: Console, *, show_text: bool = True) -> None:
        self._console = console
        self._show_text = show_text
        self._mid_line = False

    def emit(self, event: Event) -> None:
        match event.kind:
            case EventKind.TEXT if self._show_text:
                self._write(event.text, style=None)
            case EventKind.THINKING if self._show_text:
                self._write(event.text, style="dim italic")
            case EventKind.ROUND:
                self._line(f"[bold cyan]── {escape(event.text)} ──[/]")
            case EventKind.TOOL_CALL:
                preview = event.text[:ARGUMENT_PREVIEW_CHARS]
                self._line(f"[magenta]→ {escape(preview)}[/]")
            case EventKind.TOOL_RESULT if event.data.get("is_error"):
                self._line(f"[red]  ✗ {escape(event.text)}[/]")
            case EventKind.DIAGNOSTICS:
                self._line(f"[yellow]! repair {event.data.get('repair')}: {escape(event.text)}[/]")
            case EventKind.INFO:
                self._line(f"[dim]{escape(event.text)}[/]")
            case _:
                return

    def _write(self, text: str, style: str | None) -> None:
        self._console.print(text, end="", style=style, markup=False, highlight=False, soft_wrap=True)
        self._mid_line = not text.endswith("\n")

    def _line(self, markup: str) -> None:
        if self._mid_line:
            self._console.print()
            self._mid_line = False
        self._console.print(markup, highlight=False)
