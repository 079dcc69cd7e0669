"""The batch report's HTML: one file, no script, no external asset (it opens from disk or as a CI
artifact). Every value is escaped here (`esc`); suites go through pygments, which escapes them too.
The Content-Security-Policy forbids scripts and any fetch, so a `<script>` that got through anyway
would not run."""

from __future__ import annotations

import html
import time
from collections.abc import Iterable
from pathlib import PurePath
from typing import Any

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import RobotFrameworkLexer

from producer.report import VERDICTS, Report, Summary, Tokens, number, seconds

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
SHOWN_DIAGNOSTICS = 3
"""Diagnostics shown in a spec's row; the others are one click away (a <details> element)."""
COLOURS = {"verified": "#1a7f37", "failing": "#cf222e", "unverified": "#bf8700", "unreviewed": "#bf8700",
           "failed": "#6e7781", "running": "#0969da"}  # fmt: skip
PAGE_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1400px; padding: 0 24px 48px;
       color: #1f2328; }
h1 { font-size: 22px; margin: 24px 0 4px; } h2 { font-size: 18px; margin: 32px 0 8px; }
.meta { color: #59636e; margin: 0 0 16px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { border: 1px solid #d1d9e0; border-radius: 8px; padding: 10px 14px; min-width: 120px; }
.card b { display: block; font-size: 22px; } .card span { color: #59636e; }
table.jobs { border-collapse: collapse; width: 100%; }
table.jobs th, table.jobs td { border-bottom: 1px solid #d1d9e0; padding: 6px 8px; text-align: left;
                               vertical-align: top; }
table.jobs th { background: #f6f8fa; position: sticky; top: 0; }
.badge { display: inline-block; border-radius: 10px; padding: 0 8px; color: #fff; font-size: 12px;
         white-space: nowrap; }
.stage { display: inline-block; border: 1px solid #d1d9e0; border-radius: 4px; padding: 0 4px;
         margin: 1px; font-size: 12px; white-space: nowrap; }
.stage.failed { border-color: #cf222e; color: #cf222e; } .stage.passed { color: #1a7f37; }
.stage.incomplete { border-color: #bf8700; color: #9a6700; }
ul.diag { margin: 0; padding-left: 18px; } ul.diag li { white-space: pre-wrap; word-break: break-word; }
.num { text-align: right; white-space: nowrap; } .dim { color: #59636e; } svg text.dim { fill: #59636e; }
section.suite { margin: 24px 0; } section.suite h3 { font-size: 15px; margin: 0 0 6px; }
.highlight pre { margin: 0; } .highlighttable { border: 1px solid #d1d9e0; border-radius: 6px; }
.highlighttable td.linenos { color: #8c959f; user-select: none; }
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def anchor(spec_id: object) -> str:
    return esc(f"suite-{spec_id}")


def render(report: Report) -> str:
    title = f"robot-fleet report · {report.batch_id}"
    parts = [
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>",
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">',
        f"<title>{esc(title)}</title><style>{PAGE_CSS}{HtmlFormatter().get_style_defs('.highlight')}</style>",
        f"</head><body><h1>{esc(title)}</h1>",
        meta_line(report),
        summary_cards(report.summary),
        "<h2>Time per spec</h2>",
        time_chart(report.jobs),
        "<h2>Specs</h2>",
        jobs_table(report.jobs),
        rejected_section(report.rejected),
        "<h2>Suites</h2>",
        *(suite_section(job) for job in report.jobs if job.get("robot_text")),
        "</body></html>\n",
    ]
    return "\n".join(parts)


def when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else "—"


def meta_line(report: Report) -> str:
    batch = report.batch
    facts = [f"enqueued {when(seconds(batch.get('created_at')))}", f"model {batch.get('model', '?')}",
             f"project {batch.get('project_id', '?')} at {batch.get('ref') or 'the default branch'}",
             f"output {batch.get('output_dir', '?')}", f"report written {when(report.generated_at)}"]  # fmt: skip
    return f'<p class="meta">{" · ".join(esc(fact) for fact in facts)}</p>'


def card(figure: object, label: str, colour: str = "") -> str:
    style = f' style="color:{colour}"' if colour else ""
    return f'<div class="card"><b{style}>{esc(figure)}</b><span>{esc(label)}</span></div>'


def duration(total_s: float) -> str:
    minutes, secs = divmod(round(total_s), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{total_s:.1f} s"


def summary_cards(summary: Summary) -> str:
    tokens: Tokens = summary.tokens
    cards = [card(summary.verdicts[verdict], verdict, COLOURS[verdict])
             for verdict in VERDICTS if summary.verdicts[verdict] or verdict in ("verified", "failing")]  # fmt: skip
    cards += [card(summary.failed, "failed", COLOURS["failed"]), card(summary.rejected, "rejected")]
    if summary.in_progress:
        cards.append(card(summary.in_progress, "not finished", COLOURS["running"]))
    cards += [
        card(f"{tokens.total:,}", f"tokens ({tokens.prompt:,} prompt, {tokens.cached:,} cached, "
             f"{tokens.completion:,} completion; {tokens.review:,} by the reviewer)"),
        card(duration(summary.wall_seconds), f"wall clock ({duration(summary.job_seconds)} of job time)"),
        card(f"{summary.rounds:,}", f"model rounds, {summary.tool_calls:,} tool calls"),
    ]  # fmt: skip
    if summary.cost is not None:
        cards.append(card(f"{summary.cost:,.4f}", "cost (PRICE_*_PER_MTOK)"))
    return f'<div class="cards" id="summary">{"".join(cards)}</div>'


def verdict_of(job: dict[str, Any]) -> str:
    """The verdict of a job that produced a suite, else its state (failed, running...)."""
    state = str(job.get("state", "?"))
    return str(job.get("verdict") or "unverified") if job.get("has_suite") else state


def time_chart(jobs: list[dict[str, Any]]) -> str:
    """Horizontal bars, one per spec: the job's duration, coloured by verdict, tokens beside."""
    if not jobs:
        return '<p class="dim">no jobs</p>'
    label_w, bar_w, row_h = 180, 760, 22
    longest = max(seconds(job.get("duration_s")) for job in jobs) or 1.0
    rows = []
    for index, job in enumerate(jobs):
        took = seconds(job.get("duration_s"))
        width = max(1.0, bar_w * took / longest)
        y = index * row_h
        verdict = verdict_of(job)
        colour = COLOURS.get(verdict, COLOURS["failed"])
        note = f"{took:.1f} s · {Tokens.of(job).total:,} tokens" if took else verdict
        rows.append(
            f'<g class="bar"><title>{esc(job.get("spec_id"))}: {esc(verdict)}, {esc(note)}</title>'
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end">{esc(job.get("spec_id"))}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{width:.1f}" height="{row_h - 6}" fill="{colour}"/>'
            f'<text x="{label_w + width + 6:.1f}" y="{y + 15}" class="dim">{esc(note)}</text></g>'
        )
    height = len(jobs) * row_h
    return (f'<svg id="time-chart" xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 200}" '
            f'height="{height}" font-size="12" role="img" aria-label="time per spec">{"".join(rows)}</svg>')  # fmt: skip


def jobs_table(jobs: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{name}</th>" for name in ("spec", "verdict", "checks", "grounding", "tokens",
                                                   "time", "attempts", "diagnostics"))  # fmt: skip
    rows = "".join(job_row(job) for job in jobs)
    return f'<table class="jobs" id="jobs"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def job_row(job: dict[str, Any]) -> str:
    spec_id = job.get("spec_id", "?")
    verdict = verdict_of(job)
    name = f'<a href="#{anchor(spec_id)}">{esc(spec_id)}</a>' if job.get("robot_text") else esc(spec_id)
    cells = [
        f'{name}<br><span class="dim">{esc(job.get("target_path", ""))}</span>',
        f'<span class="badge" style="background:{COLOURS.get(verdict, COLOURS["failed"])}">{esc(verdict)}</span>',
        stages_cell(job),
        grounding_cell(job),
        f'<span class="num">{Tokens.of(job).total:,}</span>',
        f'<span class="num">{seconds(job.get("duration_s")):.1f} s</span>' if job.get("duration_s") else "",
        f'<span class="num">{number(job.get("attempt"))}</span>',
        diagnostics_cell(job),
    ]  # fmt: skip
    return f'<tr data-spec="{esc(spec_id)}" data-verdict="{esc(verdict)}">{"".join(f"<td>{c}</td>" for c in cells)}</tr>'


def stages_cell(job: dict[str, Any]) -> str:
    stages = job.get("stages")
    stages = stages if isinstance(stages, dict) else {}
    return "".join(f'<span class="stage {esc(outcome)}">{esc(stage)}: {esc(outcome)}</span>'
                   for stage, outcome in stages.items())  # fmt: skip


def grounding_cell(job: dict[str, Any]) -> str:
    """How far the suite stands on the repository: resolved calls, reuse, criteria, tests run."""
    lines = []
    if job.get("calls"):
        unverified = number(job.get("calls_unverified"))
        lines.append(f"calls {number(job.get('calls_resolved'))}/{number(job.get('calls'))} resolved"
                     + (f", {unverified} unverified" if unverified else ""))  # fmt: skip
    if job.get("reuse_share") not in (None, ""):
        lines.append(f"reuse {seconds(job.get('reuse_share')):.0%}")
    sources = job.get("calls_by_source")
    if isinstance(sources, dict) and any(sources.values()):
        lines.append(", ".join(f"{source} {count}" for source, count in sources.items() if count))
    if job.get("criteria_total"):
        lines.append(f"criteria {number(job.get('criteria_covered'))}/{number(job.get('criteria_total'))}")
    if job.get("tests_run"):
        lines.append(f"tests {number(job.get('tests_passed'))}/{number(job.get('tests_run'))} passed")
    if number(job.get("rule_violations")):
        lines.append(f"{number(job.get('rule_violations'))} rules broken")
    return "<br>".join(esc(line) for line in lines)


def diagnostics_of(job: dict[str, Any]) -> list[str]:
    """What a reviewer must read: the error of a failed job, the diagnostics of every stage that
    failed or could not check everything."""
    found = []
    if job.get("error_kind"):
        found.append(f"{job['error_kind']}: {job.get('error_message', '')}")
        extra = job.get("diagnostics")
        found += [str(line) for line in extra] if isinstance(extra, list) else []
    checks = job.get("checks")
    checks = checks if isinstance(checks, dict) else {}
    for stage in checks.get("stages") or []:
        if isinstance(stage, dict) and stage.get("outcome") in ("failed", "incomplete"):
            found += [f"{stage.get('stage')}: {line}" for line in stage.get("diagnostics") or []]
    return found


def diagnostics_cell(job: dict[str, Any]) -> str:
    found = diagnostics_of(job)
    shown = _items(found[:SHOWN_DIAGNOSTICS])
    if len(found) <= SHOWN_DIAGNOSTICS:
        return shown
    rest = _items(found[SHOWN_DIAGNOSTICS:])
    return f"{shown}<details><summary>{len(found) - SHOWN_DIAGNOSTICS} more</summary>{rest}</details>"


def _items(lines: Iterable[str]) -> str:
    items = "".join(f"<li>{esc(line)}</li>" for line in lines)
    return f'<ul class="diag">{items}</ul>' if items else ""


def rejected_section(rejected: list[dict[str, Any]]) -> str:
    if not rejected:
        return '<h2>Rejected specs</h2><p class="dim" id="rejected">none</p>'
    rows = []
    for item in rejected:
        source = str(item.get("source", "?"))
        reason = str(item.get("reason", "")).removeprefix(f"{source}: ")
        rows.append(f"<tr><td>{esc(PurePath(source).name)}</td><td>{esc(reason)}</td></tr>")
    return (f'<h2>Rejected specs</h2><table class="jobs" id="rejected"><thead><tr><th>file</th><th>reason</th>'
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table>")  # fmt: skip


def suite_section(job: dict[str, Any]) -> str:
    code = highlight(str(job["robot_text"]), RobotFrameworkLexer(), HtmlFormatter(linenos="table"))
    heading = f"{job.get('spec_id')} · {job.get('target_path', '')} · {verdict_of(job)}"
    return f'<section class="suite" id="{anchor(job.get("spec_id"))}"><h3>{esc(heading)}</h3>{code}</section>'
