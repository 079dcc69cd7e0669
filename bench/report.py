"""The bench's output: `results.json` and one markdown table with a row per figure."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

FIGURES = ("efficiency", "baseline", "capacity", "mcp_calls", "memory", "log_streaming", "scaling", "tokens")
TITLES = {
    "efficiency": "1. Fleet efficiency",
    "baseline": "2. Against the original way",
    "capacity": "3. Capacity (instant model)",
    "mcp_calls": "4. MCP calls",
    "memory": "5. Memory",
    "log_streaming": "6. Log streaming",
    "scaling": "7. Scaling curve",
    "tokens": "8. Tokens",
}


def _cell(results: dict[str, Any], figure: str) -> tuple[str, str, str]:
    """(measured, target, met) for one figure; `error` when the figure could not be measured."""
    data = results.get(figure)
    if data is None:
        return "not run", "", ""
    if "error" in data:
        return f"error: {data['error'][:120]}", "", "no"
    measured, target = _describe(figure, data)
    return measured, target, "yes" if data.get("met") else "no"


def _describe(figure: str, d: dict[str, Any]) -> tuple[str, str]:
    match figure:
        case "efficiency":
            return (f"T_fleet {d['t_fleet_s']:.1f}s / ideal {d['ideal_s']:.1f}s "
                    f"({d['waves']} waves x {d['t_alone_s']:.2f}s alone) = **{d['ratio']:.3f}**; "
                    f"N={d['specs']}, C={d['processes']}x{d['threads']}, latency {d['model_latency_s']}s; "
                f"job {d['job_run_s_in_batch_mean']:.2f}s in batch vs {d['job_run_s_alone_mean']:.2f}s alone, "
                f"{d['cores_busy']} of {_cores()} cores busy",
                    f"<= {d['target']}")  # fmt: skip
        case "baseline":
            return (f"original {d['per_spec_s']:.2f}s/spec ({d['specs_run']} specs run, extrapolated to "
                    f"{d['extrapolated_to']}: {d['t_original_s']:.0f}s) vs fleet {d['t_fleet_s']:.1f}s: "
                    f"**x{d['speedup']:.1f}**", f">= x{d['target']}")  # fmt: skip
        case "capacity":
            split = ", ".join(f"{k.split(' (')[0]} {v}%" for k, v in list(d["profile_split_pct"].items())[:6])
            cpu = d["cpu_s_per_spec_by_process"]
            return (f"**{d['specs_per_s']:.1f} specs/s** (N={d['specs']}, {d['processes']}x{d['threads']}, "
                    f"{d['cores']} cores; {d['no_validation_specs_per_s']:.1f}/s without validation); CPU/spec: "
                    f"worker {1000 * cpu['worker']:.0f} ms, model stand-in {1000 * cpu['fake-llm']:.0f} ms, "
                    f"MCP stand-in {1000 * cpu['mcp-server']:.0f} ms; worker profile: {split}",
                    f">= {d['target']:.0f} specs/s")  # fmt: skip
        case "mcp_calls":
            original = (f" vs original **{d['original_tool_calls_per_spec']}** ({d['original_requests_per_spec']} requests)"
                        if "original_tool_calls_per_spec" in d else "")  # fmt: skip
            return (f"fleet **{d['fleet_tool_calls_per_spec']}** tool calls/spec ({d['fleet_requests_per_spec']} "
                    f"requests){original}; cold batch: {d['cold_context_fetches']} context fetches, "
                    f"{d['cold_tree_calls']} tree calls for {d['worker_processes']} processes",
                    "convention + tree once per process per (project, ref)")  # fmt: skip
        case "memory":
            return (f"**{d['peak_rss_mb']:.0f} MB** peak RSS (VmHWM), 1 process x {d['threads']} threads, "
                    f"{d['specs']} specs; idle {d['idle_rss_mb']:.0f} MB", f"<= {d['target_mb']:.0f} MB")  # fmt: skip
        case "log_streaming":
            return (f"**{d['redis_commands_per_job']}** Redis commands/job; {d['log_entries_per_job']} log "
                    f"entries (XADD)/job for {d['completion_tokens_per_job']} tokens "
                    f"({d['tokens_per_log_entry']} tokens/entry)", "batched, not one per token")  # fmt: skip
        case "tokens":
            f, o, b = d["fleet"], d["original"], d["budget"]
            return (f"fleet {f['prompt_per_spec']:,.0f} prompt tokens/spec ({f['cached_per_spec']:,.0f} cached, "
                    f"share **{d['cached_share']:.2f}**), {f['completion_per_spec']:,.0f} completion, "
                    f"{f['rounds_per_spec']} rounds + {f['reviews_per_spec']} reviews; original "
                    f"{o['prompt_per_spec']:,.0f} ({o['cached_per_spec']:,.0f} cached), {o['rounds_per_spec']} rounds; "
                    f"billed-equivalent (cached x{d['cached_discount']}) {o['billed_prompt_per_spec']:,.0f} vs "
                    f"{f['billed_prompt_per_spec']:,.0f}: **x{d['billed_ratio_vs_original']:.2f}**; under "
                    f"{b['tpm_budget']:,} tokens/{b['window_s']:g}s: {b['specs_per_min']} specs/min of "
                    f"{b['ideal_specs_per_min']} ideal = **{d['budget_utilisation']:.2f}**",
                    ">= x3 billed, cached share >= 0.7, budget use >= 0.9")  # fmt: skip
        case "scaling":
            curve = ", ".join(f"C={p['concurrency']}: {p['specs_per_s']:.2f}/s ({p['share_of_linear']:.2f})"
                              for p in d["points"])  # fmt: skip
            return f"{curve} (latency {d['model_latency_s']}s)", "curve (specs/s, share of linear)"
    return json.dumps(d)[:200], ""


def markdown_table(results: dict[str, Any]) -> str:
    lines = ["| figure | measured | target | met |", "|---|---|---|---|"]
    for figure in FIGURES:
        measured, target, met = _cell(results, figure)
        lines.append(f"| {TITLES[figure]} | {measured} | {target} | {met} |")
    return "\n".join(lines)


def scaling_table(results: dict[str, Any]) -> str:
    points = (results.get("scaling") or {}).get("points") or []
    if not points:
        return ""
    lines = [
        "| C | processes x threads | specs | elapsed (s) | specs/s | share of linear |",
        "|---|---|---|---|---|---|",
    ]
    for p in points:
        lines.append(f"| {p['concurrency']} | {p['processes']}x{p['threads']} | {p['specs']} | "
                     f"{p['elapsed_s']:.2f} | {p['specs_per_s']:.2f} | {p['share_of_linear']:.2f} |")  # fmt: skip
    return "\n".join(lines)


def write_json(path: Path, results: dict[str, Any], mode: str, wall_s: float) -> None:
    document = {
        "meta": {"mode": mode, "wall_s": round(wall_s, 1), "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                 "python": platform.python_version(), "machine": platform.machine(), "cores": _cores()},
        **results,
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")


def _cores() -> int:
    import os

    return os.cpu_count() or 0
