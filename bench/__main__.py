"""`python -m bench` (`make bench`): the fleet's figures of issue #7, measured on the real pipeline.

python -m bench                       # every figure, full size (a few minutes on 2 cores)
python -m bench --quick               # N=10, small concurrency, tiny latency (the test suite)
python -m bench --only capacity       # one figure (and the figures it depends on)
python -m bench --output out.json     # where results.json goes (default bench/results.json)
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import scenarios
from bench.fleet import Stack
from bench.report import FIGURES, markdown_table, scaling_table, write_json

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results.json"

RUNNERS: dict[str, Callable[[scenarios.Bench], dict[str, Any]]] = {
    "efficiency": scenarios.efficiency,
    "baseline": scenarios.baseline,
    "mcp_calls": scenarios.mcp_calls,
    "log_streaming": scenarios.log_streaming,
    "capacity": scenarios.capacity,
    "memory": scenarios.memory,
    "scaling": scenarios.scaling,
    "tokens": scenarios.tokens,
}
"""In run order: the efficiency batch feeds baseline, mcp_calls and log_streaming."""
NEEDS = {
    "baseline": ("efficiency",),
    "mcp_calls": ("efficiency", "baseline"),
    "log_streaming": ("efficiency",),
    "tokens": ("efficiency", "baseline"),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N=10 mode (what tests/test_bench.py runs)")
    parser.add_argument("--only", action="append", choices=FIGURES, help="run this figure (repeatable)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="results JSON path")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, profiles)")
    return parser.parse_args(argv)


def selected(only: list[str] | None) -> list[str]:
    wanted = set(only or FIGURES)
    for figure in list(wanted):
        wanted.update(NEEDS.get(figure, ()))
    return [name for name in RUNNERS if name in wanted]


def run(config: scenarios.Config, figures: list[str], work_dir: Path) -> dict[str, Any]:
    results: dict[str, Any] = {"config": vars(config) | {"concurrency": config.concurrency}}
    with Stack(work_dir) as stack:
        bench = scenarios.Bench(stack, config, work_dir)
        for name in figures:
            started = time.monotonic()
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            try:
                results[name] = RUNNERS[name](bench)
            except Exception as exc:  # one figure failing must not hide the others
                traceback.print_exc()
                results[name] = {"error": f"{type(exc).__name__}: {exc}", "met": False}
            results[name]["wall_s"] = round(time.monotonic() - started, 1)
            print(f"[bench] {name} done in {results[name]['wall_s']}s", file=sys.stderr, flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    config = scenarios.Config.quick() if args.quick else scenarios.Config()
    work_dir = Path(tempfile.mkdtemp(prefix="robot-fleet-bench-"))
    started = time.monotonic()
    try:
        results = run(config, selected(args.only), work_dir)
    finally:
        if args.keep:
            print(f"[bench] work directory kept: {work_dir}", file=sys.stderr)
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    wall = time.monotonic() - started
    write_json(args.output, results, "quick" if args.quick else "full", wall)
    print(markdown_table(results))
    if table := scaling_table(results):
        print(f"\nScaling (figure 7):\n\n{table}")
    print(f"\nwall time {wall:.0f}s; results in {args.output}")
    return 1 if any("error" in results.get(name, {}) for name in FIGURES) else 0


if __name__ == "__main__":
    sys.exit(main())
