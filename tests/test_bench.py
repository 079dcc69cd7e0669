"""The benchmark cannot rot: its quick mode (N=10, small concurrency, tiny latency) runs every figure
on the real pipeline and must produce every key of results.json and a table row per figure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.report import FIGURES, TITLES

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[1]
QUICK_TIMEOUT_S = 170


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    output = tmp_path_factory.mktemp("bench") / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--output", str(output)],
        cwd=REPO_ROOT, env={**os.environ, "COLUMNS": "200"},
        capture_output=True, text=True, timeout=QUICK_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(output.read_text(encoding="utf-8")), done.stdout


@pytest.mark.timeout(QUICK_TIMEOUT_S + 10)
def test_quick_bench_measures_every_figure_without_error(quick_run: tuple[dict, str]) -> None:
    results, _ = quick_run
    assert results["meta"]["mode"] == "quick"
    for figure in FIGURES:
        assert figure in results, figure
        assert "error" not in results[figure], results[figure]
        assert isinstance(results[figure]["met"], bool)


def test_quick_bench_figures_have_sane_values(quick_run: tuple[dict, str]) -> None:
    results, _ = quick_run
    efficiency = results["efficiency"]
    assert efficiency["specs"] == 10 and efficiency["failed"] == 0
    assert efficiency["t_fleet_s"] > 0 and efficiency["t_alone_s"] > 0
    assert 0.5 <= efficiency["ratio"] <= 3
    assert results["baseline"]["per_spec_s"] > 0 and results["baseline"]["speedup"] > 1
    capacity = results["capacity"]
    assert capacity["specs_per_s"] > 0 and capacity["no_validation_specs_per_s"] > 0
    assert capacity["cpu_s_per_spec_by_process"]["worker"] > 0
    assert (
        sum(capacity["profile_split_pct"].values()) == pytest.approx(100, abs=1)
        or capacity["profile_samples"] <= 1
    )
    mcp = results["mcp_calls"]
    assert mcp["fleet_tool_calls_per_spec"] > 0 and mcp["original_tool_calls_per_spec"] > 0
    assert mcp["cold_context_fetches"] <= mcp["worker_processes"] and mcp["warm_tree_calls"] == 0
    assert 50 < results["memory"]["peak_rss_mb"] < 2000
    logs = results["log_streaming"]
    assert logs["redis_commands_per_job"] > 0
    assert 0 < logs["log_entries_per_job"] < logs["completion_tokens_per_job"]
    points = results["scaling"]["points"]
    assert [p["concurrency"] for p in points] == [1, 2] and all(p["specs_per_s"] > 0 for p in points)


def test_quick_bench_prints_a_table_row_per_figure(quick_run: tuple[dict, str]) -> None:
    _, stdout = quick_run
    assert "| figure | measured | target | met |" in stdout
    for figure in FIGURES:
        assert f"| {TITLES[figure]} |" in stdout, figure
