"""Printing the writer's events live on a terminal: text as it streams, thinking dimmed, one line
per tool call, diagnostics in yellow."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from worker.agent.events import Event, EventKind

ARGUMENT_PREVIEW_CHARS = 120
EARLIER_FAILED = "an earlier stage failed"


class ConsoleSink:
    def __init__(self, console: Console, *, show_text: bool = True) -> None:
        self._console = console
        self._show_text = show_text
        self._mid_line = False
        self._streaming: EventKind | None = None

    def emit(self, event: Event) -> None:
        match event.kind:
            case EventKind.TEXT if self._show_text:
                self._write(event.text, style=None, kind=event.kind)
            case EventKind.THINKING if self._show_text:
                self._write(event.text, style="dim italic", kind=event.kind)
            case EventKind.REVIEW if self._show_text:
                self._write(event.text, style="magenta dim", kind=event.kind)
            case EventKind.ROUND:
                self._line(f"[bold cyan]── {escape(event.text)} ──[/]")
            case EventKind.TOOL_CALL:
                preview = event.text[:ARGUMENT_PREVIEW_CHARS]
                self._line(f"[magenta]→ {escape(preview)}[/]")
            case EventKind.TOOL_RESULT if event.data.get("is_error"):
                self._line(f"[red]  ✗ {escape(event.text)}[/]")
            case EventKind.DIAGNOSTICS:
                repair, budget = event.data.get("repair"), event.data.get("max_repairs")
                label = f"repair {repair}/{budget}" if repair else "not repaired (repair budget spent)"
                self._line(f"[yellow]! {label}:[/]")
                for line in event.data.get("diagnostics") or [event.text]:
                    self._line(f"[yellow]  - {escape(str(line))}[/]")
            case EventKind.CHECKS:
                self._checks(event)
            case EventKind.INFO:
                self._line(f"[dim]{escape(event.text)}[/]")
            case _:
                return

    def _checks(self, event: Event) -> None:
        verdict = str(event.data.get("verdict", ""))
        style = {"verified": "green", "failing": "red"}.get(verdict, "yellow")
        self._line(f"[{style}]checks: {escape(event.text)}[/]")
        for stage in event.data.get("stages") or []:
            reason = (stage.get("diagnostics") or [""])[0]
            if stage.get("outcome") in ("incomplete", "not_run") and reason and reason != EARLIER_FAILED:
                self._line(f"[dim]  {stage['stage']}: {escape(str(reason))}[/]")

    def _write(self, text: str, style: str | None, kind: EventKind) -> None:
        if kind != self._streaming and self._mid_line:  # thinking, answer and review never run together
            self._console.print()
        self._streaming = kind
        self._console.print(text, end="", style=style, markup=False, highlight=False, soft_wrap=True)
        self._mid_line = not text.endswith("\n")

    def _line(self, markup: str) -> None:
        if self._mid_line:
            self._console.print()
            self._mid_line = False
        self._console.print(markup, highlight=False)
