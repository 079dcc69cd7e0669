"""Figure 8, tokens: what a sprint costs at a provider, side by side with the original way.

From the efficiency batch (warm workers, the example specs spread over N jobs) and the original
script's run of the same specs, both against the scripted model, which caches prompt prefixes as
providers do (longest common prefix, 128-token blocks, from 1,024 tokens). Billed-equivalent
prompt tokens count cached tokens at `CACHED_DISCOUNT` (OpenAI bills them at a tenth). The fleet's
figures include its reviewer's tokens: that is spent too. Then a batch under a fleet-wide
`FLEET_LLM_TPM` budget: specs per minute achieved against the ideal, budget / tokens per spec.
"""

from __future__ import annotations

from typing import Any

CACHED_DISCOUNT = 0.1
BILLED_RATIO_TARGET = 3.0
CACHED_SHARE_TARGET = 0.7
BUDGET_UTILISATION_TARGET = 0.9


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else 0.0


def job_tokens(jobs: list[dict[str, str]]) -> dict[str, float]:
    """Per spec: prompt (all, uncached, cached), completion, billed-equivalent, rounds; writer and
    reviewer together."""
    n = len(jobs) or 1

    def total(*names: str) -> int:
        return sum(int(job.get(name) or 0) for job in jobs for name in names)

    prompt = total("prompt_tokens", "review_prompt_tokens")
    cached = total("cached_tokens", "review_cached_tokens")
    completion = total("completion_tokens", "review_completion_tokens")
    return {
        "prompt_per_spec": round(prompt / n, 1),
        "uncached_per_spec": round((prompt - cached) / n, 1),
        "cached_per_spec": round(cached / n, 1),
        "completion_per_spec": round(completion / n, 1),
        "billed_prompt_per_spec": round((prompt - cached + CACHED_DISCOUNT * cached) / n, 1),
        "rounds_per_spec": round(total("rounds") / n, 2),
        "reviews_per_spec": round(total("reviews") / n, 2),
        "review_prompt_per_spec": round(total("review_prompt_tokens") / n, 1),
        "cached_share": _ratio(cached, prompt),
    }


def llm_tokens(stats: dict[str, Any], specs: int) -> dict[str, float]:
    """The same figures from the scripted model's own counters (the original way has no job records)."""
    prompt = int(stats.get("prompt_tokens") or 0)
    cached = int(stats.get("cached_tokens") or 0)
    completion = int(stats.get("completion_tokens") or 0)
    n = specs or 1
    return {
        "prompt_per_spec": round(prompt / n, 1),
        "uncached_per_spec": round((prompt - cached) / n, 1),
        "cached_per_spec": round(cached / n, 1),
        "completion_per_spec": round(completion / n, 1),
        "billed_prompt_per_spec": round((prompt - cached + CACHED_DISCOUNT * cached) / n, 1),
        "rounds_per_spec": round(int(stats.get("completions") or 0) / n, 2),
        "cached_share": _ratio(cached, prompt),
    }


def budget_figures(
    specs: int, elapsed_s: float, tpm: int, window_s: float, tokens_per_spec: float
) -> dict[str, Any]:
    """Specs per minute under a tokens-per-window budget, and the share of the ideal it reaches."""
    per_minute = 60.0 * specs / elapsed_s if elapsed_s else 0.0
    ideal = 60.0 * tpm / window_s / tokens_per_spec if tokens_per_spec else 0.0
    return {
        "tpm_budget": tpm, "window_s": window_s, "specs": specs, "elapsed_s": round(elapsed_s, 2),
        "specs_per_min": round(per_minute, 2), "ideal_specs_per_min": round(ideal, 2),
        "budget_utilisation": _ratio(per_minute, ideal),
    }  # fmt: skip


def summary(fleet: dict[str, float], original: dict[str, float], budget: dict[str, Any]) -> dict[str, Any]:
    ratio = _ratio(original["billed_prompt_per_spec"], fleet["billed_prompt_per_spec"])
    met = {
        "billed_ratio_vs_original": ratio >= BILLED_RATIO_TARGET,
        "cached_share": fleet["cached_share"] >= CACHED_SHARE_TARGET,
        "budget_utilisation": budget["budget_utilisation"] >= BUDGET_UTILISATION_TARGET,
    }
    return {
        "fleet": fleet, "original": original, "budget": budget, "cached_discount": CACHED_DISCOUNT,
        "billed_ratio_vs_original": ratio, "cached_share": fleet["cached_share"],
        "budget_utilisation": budget["budget_utilisation"],
        "targets": {"billed_ratio_vs_original": BILLED_RATIO_TARGET, "cached_share": CACHED_SHARE_TARGET,
                    "budget_utilisation": BUDGET_UTILISATION_TARGET},
        "met_by_target": met, "met": all(met.values()),
    }  # fmt: skip
