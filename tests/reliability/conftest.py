"""Issue 6's fault and bad-input tests share one recorder: each test reports its figures, and the
session prints them as the markdown table of docs/RELIABILITY.md (also written to the file named by
RELIABILITY_REPORT, if set). `make reliability` runs them alone."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

_FIGURES = pytest.StashKey[list[dict[str, Any]]]()


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Callable[..., None]:
    """`report(item, "what was done", figure=value, ...)`: call it after the test's assertions."""

    def record(item: int, what: str, **figures: Any) -> None:
        rows = request.config.stash.setdefault(_FIGURES, [])
        rows.append({"item": item, "test": request.node.name, "what": what, "figures": figures})

    return record


def _table(rows: list[dict[str, Any]]) -> str:
    lines = ["| # | fault or input | figures | test |", "|---|---|---|---|"]
    for row in sorted(rows, key=lambda row: (row["item"], row["test"])):
        figures = ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in row["figures"].items())
        lines.append(f"| {row['item']} | {row['what']} | {figures} | `{row['test']}` |")
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    rows = config.stash.get(_FIGURES, [])
    if not rows:
        return
    table = _table(rows)
    terminalreporter.section("reliability figures (docs/RELIABILITY.md)")
    terminalreporter.write_line(table)
    target = os.environ.get("RELIABILITY_REPORT")
    if target:
        Path(target).write_text(table + "\n\n```json\n" + json.dumps(rows, indent=1) + "\n```\n")
