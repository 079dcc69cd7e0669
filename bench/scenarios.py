"""One function per figure of issue #7; each returns a JSON-ready dict (see docs/PERFORMANCE.md).

Figures 1, 4 and 6 come from the same fleet run (the efficiency batch), figure 2 compares with it.
Every batch runs on real worker processes and is timed from the first enqueue to the last file
written by the collector, with the workers already up (and warmed: context cached, imports done).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import profile
from bench import tokens as token_figures
from bench.fleet import PROJECT_ROOT, BatchRun, Stack, log_xlens, make_specs, proc_status_kb
from worker import keys

BATCH_TIMEOUT_S = 300.0
ORIGINAL_TIMEOUT_S = 120.0
EFFICIENCY_TARGET = 1.10
SPEEDUP_TARGET_FRACTION = 0.9
CAPACITY_TARGET = 100.0
MEMORY_TARGET_MB = 250.0


@dataclass(frozen=True)
class Config:
    """Sizes of one bench run; `quick()` is the N=10 mode the test suite runs."""

    latency_s: float = 0.4
    n_efficiency: int = 160
    processes: int = 2
    threads: int = 8
    alone_samples: int = 17
    baseline_specs: int = 8
    n_capacity: int = 500
    capacity_processes: int = 2
    capacity_threads: int = 8
    n_profile: int = 120
    n_no_validation: int = 150
    memory_threads: int = 16
    n_memory: int = 48
    scaling: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    scaling_waves: int = 3
    n_budget: int = 48
    budget_tpm: int = 400_000
    """Fleet-wide tokens per `budget_window_s`: small enough that the budget, not the cores, sets the pace."""
    budget_window_s: float = 10.0

    @property
    def concurrency(self) -> int:
        return self.processes * self.threads

    @classmethod
    def quick(cls) -> Config:
        return cls(latency_s=0.05, n_efficiency=10, processes=2, threads=2, alone_samples=2, baseline_specs=2,
                   n_capacity=20, capacity_threads=4, n_profile=10, n_no_validation=8, memory_threads=4,
                   n_memory=8, scaling=(1, 2), scaling_waves=2, n_budget=8, budget_window_s=4.0)  # fmt: skip


@dataclass
class Bench:
    stack: Stack
    config: Config
    work_dir: Path
    shared: dict[str, Any] = field(default_factory=dict)
    """Measurements one figure hands to another (the efficiency batch feeds figures 2, 4, 6)."""

    def specs(self, name: str, count: int) -> Path:
        directory = self.work_dir / "specs" / f"{name}-{count}"
        return directory if directory.exists() else make_specs(directory, count, spread=True)

    def batch(self, name: str, count: int, latency: float) -> BatchRun:
        run = self.stack.run_batch(self.specs(name, count), name, latency, BATCH_TIMEOUT_S)
        if run.failed:
            reasons = Counter(job.get("error_kind", "?") for job in run.jobs if job.get("state") == "failed")
            raise RuntimeError(f"batch {run.batch_id}: {run.failed} jobs failed: {dict(reasons)}")
        return run

    def warm_up(self, latency: float, count: int) -> BatchRun:
        """A first batch on fresh workers: MCP context fetched, imports done, connections open."""
        return self.batch("warmup", count, latency)


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else 0.0


def _mean(values: list[float]) -> float:
    return round(statistics.fmean(values), 3) if values else 0.0


# -- figures 1, 4, 6: one fleet, the efficiency batch ---------------------------------------


def efficiency(bench: Bench) -> dict[str, Any]:
    cfg, stack = bench.config, bench.stack
    stack.start_workers(cfg.processes, cfg.threads, cfg.latency_s)
    stack.reset_stats()
    cold = bench.warm_up(cfg.latency_s, cfg.concurrency)
    bench.shared["cold"] = {"run": cold, "mcp": stack.mcp_stats(), "llm": stack.llm_stats()}
    alone = _alone_times(bench)
    stack.reset_stats()
    before, cpu_before = stack.commandstats(), stack.cpu_snapshot()
    run = bench.batch("efficiency", cfg.n_efficiency, cfg.latency_s)
    cpu = {role: round((v - cpu_before[role]) / run.elapsed_s, 2) for role, v in stack.cpu_snapshot().items()}
    bench.shared["efficiency"] = {
        "run": run, "mcp": stack.mcp_stats(), "llm": stack.llm_stats(),
        "redis": _delta(before, stack.commandstats()),
        "rss_kb": [proc_status_kb(w.process.pid, "VmHWM") for w in stack.workers],
    }  # fmt: skip
    waves = math.ceil(cfg.n_efficiency / cfg.concurrency)
    t_alone = bench.shared["t_alone_s"] = _mean(alone)
    ideal = waves * t_alone
    ratio = _ratio(run.elapsed_s, ideal)
    in_batch = run.job_durations()
    return {
        "specs": run.specs, "processes": cfg.processes, "threads": cfg.threads, "concurrency": cfg.concurrency,
        "model_latency_s": cfg.latency_s, "t_fleet_s": round(run.elapsed_s, 3), "t_alone_s": t_alone,
        "t_alone_samples": len(alone), "waves": waves, "ideal_s": round(ideal, 3), "ratio": ratio,
        "target": EFFICIENCY_TARGET, "met": ratio <= EFFICIENCY_TARGET, "enqueue_s": round(run.enqueue_s, 3),
        "rounds_mean": _mean([float(j.get("rounds") or 0) for j in run.jobs]),
        "job_run_s_in_batch_mean": _mean(in_batch), "job_run_s_alone_mean": bench.shared["alone_run_s"],
        "collect_lag_s_mean": _mean(_lags(run)), "failed": run.failed,
        "cores_busy_by_process": cpu, "cores_busy": round(sum(cpu.values()), 2),
    }  # fmt: skip


def _alone_times(bench: Bench) -> list[float]:
    """Each distinct example spec (or a sample) run alone on the warm fleet: enqueue to file."""
    examples = sorted((PROJECT_ROOT / "examples" / "specs").glob("*.json"))
    step = max(1, len(examples) // bench.config.alone_samples)
    picked = list(range(0, len(examples), step))[: bench.config.alone_samples]
    times, runs = [], []
    for index in picked:
        directory = bench.work_dir / "specs" / f"alone-{index}"
        if not directory.exists():
            make_specs(directory, 1, start=index)
        run = bench.stack.run_batch(directory, f"alone-{index}", bench.config.latency_s, BATCH_TIMEOUT_S)
        times.append(run.elapsed_s)
        runs += run.job_durations()
    bench.shared["alone_run_s"] = _mean(runs)
    return times


def _lags(run: BatchRun) -> list[float]:
    return [float(j["collected_at"]) - float(j["finished_at"]) for j in run.jobs if j.get("collected_at")]


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    delta = {name: after[name] - before.get(name, 0) for name in after}
    return {name: n for name, n in sorted(delta.items(), key=lambda kv: -kv[1]) if n > 0}


def _tools(stats: dict[str, Any]) -> int:
    return sum(stats.get("tool_calls", {}).values())


def mcp_calls(bench: Bench) -> dict[str, Any]:
    cfg = bench.config
    cold, warm = bench.shared["cold"], bench.shared["efficiency"]
    original = bench.shared.get("original")
    n_cold, n_warm = cold["run"].specs, warm["run"].specs
    fetched = sum(_context_fetched(bench.stack, job["job_id"]) for job in cold["run"].jobs)
    model_reads = warm["llm"]["tool_calls_emitted"].get("get_file_contents", 0)
    result = {
        "fleet_tool_calls_per_spec": _ratio(_tools(warm["mcp"]), n_warm),
        "fleet_requests_per_spec": _ratio(warm["mcp"]["requests"], n_warm),
        "fleet_tool_calls_by_name": warm["mcp"]["tool_calls"],
        "model_file_reads_per_spec": _ratio(model_reads, n_warm),
        "model_file_reads_answered_by_memo": _ratio(
            max(0, model_reads - warm["mcp"]["tool_calls"].get("get_file_contents", 0)), model_reads
        ),
        "cold_batch_specs": n_cold, "worker_processes": cfg.processes,
        "cold_tree_calls": cold["mcp"]["tool_calls"].get("get_repository_tree", 0),
        "cold_context_fetches": fetched,
        "cold_tool_calls_per_spec": _ratio(_tools(cold["mcp"]), n_cold),
        "warm_tree_calls": warm["mcp"]["tool_calls"].get("get_repository_tree", 0),
    }  # fmt: skip
    result["context_once_per_process"] = fetched <= cfg.processes and result["warm_tree_calls"] == 0
    if original is not None:
        n = original["specs"]
        result["original_tool_calls_per_spec"] = _ratio(_tools(original["mcp"]), n)
        result["original_requests_per_spec"] = _ratio(original["mcp"]["requests"], n)
        result["original_tool_calls_by_name"] = original["mcp"]["tool_calls"]
        result["reduction"] = _ratio(
            result["original_tool_calls_per_spec"], result["fleet_tool_calls_per_spec"]
        )
    for who in ("fleet", "original"):  # the real GitLab MCP server allows 60 requests/min per client IP
        if f"{who}_requests_per_spec" in result:
            result[f"{who}_specs_per_min_at_60_rpm"] = _ratio(60, result[f"{who}_requests_per_spec"])
    result["met"] = result["context_once_per_process"]
    return result


def _context_fetched(stack: Stack, job_id: str) -> int:
    """1 when the job's log says it fetched the repository context (0: served from the cache)."""
    with stack.client() as client:
        for _, entry in client.xrange(keys.job_log(job_id), count=20):
            if entry.get("k") == "info" and entry.get("d") and "fetched" in entry["d"]:
                return int(bool(json.loads(entry["d"]).get("fetched")))
    return 0


def log_streaming(bench: Bench) -> dict[str, Any]:
    warm = bench.shared["efficiency"]
    run: BatchRun = warm["run"]
    n = run.specs
    redis_calls = warm["redis"]
    xlens = log_xlens(bench.stack, [job["job_id"] for job in run.jobs])
    tokens = [int(job.get("completion_tokens") or 0) for job in run.jobs]
    chunks_per_job = _ratio(sum(tokens), n)
    entries = _mean([float(x) for x in xlens])
    top = {name: _ratio(count, n) for name, count in list(redis_calls.items())[:12]}
    return {
        "redis_commands_per_job": _ratio(sum(redis_calls.values()), n),
        "top_commands_per_job": top,
        "log_entries_per_job": entries,
        "xadd_per_job": _ratio(redis_calls.get("xadd", 0), n),
        "completion_tokens_per_job": chunks_per_job,
        "tokens_per_log_entry": _ratio(chunks_per_job, entries),
        "met": entries * 5 <= chunks_per_job,
    }


# -- figure 2: the original way ------------------------------------------------------------


def baseline(bench: Bench) -> dict[str, Any]:
    """The original script, one process per spec, sequentially; extrapolated to the batch size."""
    cfg, stack = bench.config, bench.stack
    stack.stop_workers()  # the original ran alone on the machine
    every = sorted(bench.specs("efficiency", cfg.n_efficiency).glob("*.json"))
    specs = every[:: max(1, len(every) // cfg.baseline_specs)][: cfg.baseline_specs]
    out = bench.work_dir / "out" / "original"
    stack.reset_stats()
    times = []
    for spec in specs:
        env = {**os.environ, **stack.env(cfg.latency_s), "SPEC_JSON_PATH": str(spec), "OUTPUT_DIR": str(out)}
        started = time.time()
        done = subprocess.run([sys.executable, "-m", "bench.original"], env=env, cwd=PROJECT_ROOT,
                              capture_output=True, text=True, timeout=ORIGINAL_TIMEOUT_S, check=False)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"original script failed on {spec.name}:\n{done.stderr[-2000:]}")
        times.append(time.time() - started)
    llm = stack.llm_stats()
    bench.shared["original"] = {"specs": len(specs), "mcp": stack.mcp_stats(), "llm": llm}
    per_spec = _mean(times)
    t_original = per_spec * cfg.n_efficiency
    fleet = bench.shared["efficiency"]["run"]
    speedup = _ratio(t_original, fleet.elapsed_s)
    target = round(SPEEDUP_TARGET_FRACTION * cfg.concurrency, 2)
    return {
        "specs_run": len(specs), "per_spec_s": per_spec, "rounds_per_spec": _ratio(llm["completions"], len(specs)),
        "extrapolated_to": cfg.n_efficiency, "t_original_s": round(t_original, 3),
        "t_fleet_s": round(fleet.elapsed_s, 3), "speedup": speedup, "target": target, "met": speedup >= target,
        "prompt_tokens_per_spec": _ratio(llm["prompt_tokens"], len(specs)),
        "fleet_prompt_tokens_per_spec": _ratio(bench.shared["efficiency"]["llm"]["prompt_tokens"], fleet.specs),
    }  # fmt: skip


# -- figure 3: capacity with an instant model ------------------------------------------------


def capacity(bench: Bench) -> dict[str, Any]:
    cfg, stack = bench.config, bench.stack
    stack.start_workers(cfg.capacity_processes, cfg.capacity_threads, 0.0)
    bench.warm_up(0.0, cfg.capacity_processes * cfg.capacity_threads)
    cpu_before = stack.cpu_snapshot()
    run = bench.batch("capacity", cfg.n_capacity, 0.0)
    cpu = {role: round(after - cpu_before[role], 2) for role, after in stack.cpu_snapshot().items()}
    rate = _ratio(run.specs, run.elapsed_s)
    samples = _profiled_batch(bench)
    idle = samples.pop(profile.IDLE, 0)
    total = sum(samples.values()) or 1
    worker_ms = 1000 * cpu["worker"] / run.specs
    stack.start_workers(cfg.capacity_processes, cfg.capacity_threads, 0.0,
                        WRITER_GROUNDING="false", WRITER_FORMAT="false")  # fmt: skip
    bench.warm_up(0.0, cfg.capacity_processes * cfg.capacity_threads)
    bare = bench.batch("no-validation", cfg.n_no_validation, 0.0)
    fleet_cpu = sum(v for k, v in cpu.items() if k in ("worker", "redis", "bench (enqueue + collector)"))
    return {
        "specs": run.specs, "processes": cfg.capacity_processes, "threads": cfg.capacity_threads,
        "elapsed_s": round(run.elapsed_s, 3), "specs_per_s": rate, "target": CAPACITY_TARGET,
        "met": rate >= CAPACITY_TARGET, "cores": os.cpu_count(),
        "cpu_s_per_spec_by_process": {role: round(v / run.specs, 4) for role, v in cpu.items()},
        "fleet_cpu_ms_per_spec": round(1000 * fleet_cpu / run.specs, 1),
        "fleet_only_bound_specs_per_s": _ratio(run.specs * (os.cpu_count() or 1), fleet_cpu),
        "profile_samples": total, "profile_idle_samples_dropped": idle,
        "profile_tool": "py-spy" if total > 1 else "none (pip install py-spy)",
        "profile_split_pct": {layer: round(100 * n / total, 1) for layer, n in samples.most_common()},
        "worker_cpu_ms_per_spec_by_layer": {layer: round(worker_ms * n / total, 1) for layer, n in samples.most_common()},
        "profile_top_frames": bench.shared.get("top_frames", []),
        "no_validation_specs_per_s": _ratio(bare.specs, bare.elapsed_s),
    }  # fmt: skip


def _profiled_batch(bench: Bench) -> Counter[str]:
    """A second capacity batch with py-spy on every worker process (kept apart: it costs CPU)."""
    out = bench.work_dir / "profile"
    out.mkdir(parents=True, exist_ok=True)
    recordings = [profile.start_recording(w.process.pid, out / f"worker-{i}.txt")
                  for i, w in enumerate(bench.stack.workers)]  # fmt: skip
    try:
        time.sleep(0.5)  # py-spy attaches
        bench.batch("profiled", bench.config.n_profile, 0.0)
    finally:
        samples: Counter[str] = Counter()
        raw = ""
        for recording in recordings:
            if recording is not None:
                samples += profile.stop_recording(recording)
                raw += recording.output.read_text(errors="replace") if recording.output.exists() else ""
    bench.shared["top_frames"] = profile.top_frames(raw, limit=12)
    return samples


# -- figure 5: memory ----------------------------------------------------------------------


def memory(bench: Bench) -> dict[str, Any]:
    cfg, stack = bench.config, bench.stack
    (worker,) = stack.start_workers(1, cfg.memory_threads, cfg.latency_s)
    idle_kb = proc_status_kb(worker.process.pid, "VmRSS")
    bench.warm_up(cfg.latency_s, cfg.memory_threads)
    run = bench.batch("memory", cfg.n_memory, cfg.latency_s)
    peak_mb = round(proc_status_kb(worker.process.pid, "VmHWM") / 1024, 1)
    return {
        "threads": cfg.memory_threads, "specs": run.specs, "model_latency_s": cfg.latency_s,
        "idle_rss_mb": round(idle_kb / 1024, 1), "peak_rss_mb": peak_mb, "target_mb": MEMORY_TARGET_MB,
        "met": peak_mb <= MEMORY_TARGET_MB,
        "efficiency_workers_peak_rss_mb": [round(kb / 1024, 1) for kb in bench.shared.get("efficiency", {}).get("rss_kb", [])],
    }  # fmt: skip


# -- figure 8: tokens ----------------------------------------------------------------------


def tokens(bench: Bench) -> dict[str, Any]:
    """What a spec costs at a provider, the fleet against the original way, and how much of a
    fleet-wide tokens-per-minute budget the fleet turns into specs."""
    cfg, stack = bench.config, bench.stack
    fleet = token_figures.job_tokens(bench.shared["efficiency"]["run"].jobs)
    original = bench.shared["original"]
    original_figures = token_figures.llm_tokens(original["llm"], original["specs"])
    stack.start_workers(cfg.processes, cfg.threads, 0.0, FLEET_LLM_TPM=str(cfg.budget_tpm),
                        FLEET_RATE_WINDOW_S=str(cfg.budget_window_s))  # fmt: skip
    bench.warm_up(0.0, cfg.concurrency)
    run = bench.batch("budget", cfg.n_budget, 0.0)
    spent = token_figures.job_tokens(run.jobs)
    per_spec = spent["prompt_per_spec"] + spent["completion_per_spec"]
    budget = token_figures.budget_figures(
        run.specs, run.elapsed_s, cfg.budget_tpm, cfg.budget_window_s, per_spec
    )
    return token_figures.summary(fleet, original_figures, budget)


# -- figure 7: scaling ---------------------------------------------------------------------


def scaling(bench: Bench) -> dict[str, Any]:
    cfg, stack = bench.config, bench.stack
    points = []
    for concurrency in cfg.scaling:
        processes = 1 if concurrency == 1 else cfg.processes
        threads = max(1, concurrency // processes)
        stack.start_workers(processes, threads, cfg.latency_s)
        bench.warm_up(cfg.latency_s, max(processes * 2, concurrency))
        n = max(4, cfg.scaling_waves * concurrency)
        run = bench.batch(f"scale-{concurrency}", n, cfg.latency_s)
        rate = _ratio(run.specs, run.elapsed_s)
        points.append({"concurrency": concurrency, "processes": processes, "threads": threads, "specs": n,
                       "elapsed_s": round(run.elapsed_s, 3), "specs_per_s": rate,
                       "job_run_s_mean": _mean(run.job_durations())})  # fmt: skip
    # linear = C specs every `t_alone` (figure 1's mean of the sprint's specs alone), else C x the C=1 rate
    t_alone = bench.shared.get("t_alone_s") or 0.0
    base = 1 / t_alone if t_alone else points[0]["specs_per_s"] / points[0]["concurrency"]
    for point in points:
        point["share_of_linear"] = _ratio(point["specs_per_s"], base * point["concurrency"])
    return {"model_latency_s": cfg.latency_s, "linear_per_slot_specs_per_s": round(base, 3), "points": points,
            "met": True}  # fmt: skip
