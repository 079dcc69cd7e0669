"""What verification concluded about a suite: each stage's outcome, and the verdict they add up to.

    stage outcome   passed       ran and found nothing wrong
                    failed       ran and found problems (its diagnostics go back for repair)
                    incomplete   ran, found nothing wrong, but part of it could not be checked
                                 (a library the worker cannot load, a dynamic variable file)
                    not_run      could not run at all (an earlier stage failed, the runner broke)
                    skipped      turned off by a setting

    verdict         verified     every enabled stage passed
                    failing      a stage failed after the repair budget
                    unreviewed   the review stage did not give an answer (nothing failed)
                    unverified   something could not be checked (nothing failed)

Honest by construction: a stage that did not run is never counted as passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    INCOMPLETE = "incomplete"
    NOT_RUN = "not_run"
    SKIPPED = "skipped"


class Verdict(StrEnum):
    VERIFIED = "verified"
    FAILING = "failing"
    UNREVIEWED = "unreviewed"
    UNVERIFIED = "unverified"


class Stage(StrEnum):
    STATIC = "static"
    RULES = "rules"
    REVIEW = "review"
    EXECUTION = "execution"


@dataclass(frozen=True)
class StageResult:
    stage: Stage
    outcome: Outcome
    diagnostics: tuple[str, ...] = ()
    """Problems found (failed), or what could not be checked (incomplete, not_run)."""
    figures: dict[str, Any] = field(default_factory=dict)
    blocking: bool = False
    """A failure that makes the suite unusable (does not parse, calls that resolve nowhere): such a
    suite is never written."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "stage": str(self.stage),
            "outcome": str(self.outcome),
            "diagnostics": list(self.diagnostics),
            "figures": self.figures,
        }


def verdict_of(checks: Checks | None) -> Verdict:
    """A suite accepted without verification (WRITER_VERIFY=false) is unverified."""
    return checks.verdict if checks is not None else Verdict.UNVERIFIED


def not_run(stage: Stage, reason: str) -> StageResult:
    return StageResult(stage, Outcome.NOT_RUN, (reason,))


def skipped(stage: Stage, reason: str) -> StageResult:
    return StageResult(stage, Outcome.SKIPPED, (reason,))


@dataclass(frozen=True)
class Checks:
    """The stages of one verification, in order."""

    stages: tuple[StageResult, ...]

    @property
    def failed(self) -> StageResult | None:
        return next((stage for stage in self.stages if stage.outcome is Outcome.FAILED), None)

    @property
    def blocking(self) -> bool:
        return any(stage.blocking and stage.outcome is Outcome.FAILED for stage in self.stages)

    @property
    def verdict(self) -> Verdict:
        outcomes = {stage.stage: stage.outcome for stage in self.stages}
        if Outcome.FAILED in outcomes.values():
            return Verdict.FAILING
        if Outcome.PASSED not in outcomes.values():
            return Verdict.UNVERIFIED  # nothing ran: nothing was verified
        unchecked = (Outcome.INCOMPLETE, Outcome.NOT_RUN)
        if outcomes.get(Stage.REVIEW) in unchecked:
            return Verdict.UNREVIEWED
        if any(outcome in unchecked for outcome in outcomes.values()):
            return Verdict.UNVERIFIED
        return Verdict.VERIFIED

    def stage(self, stage: Stage) -> StageResult | None:
        return next((result for result in self.stages if result.stage is stage), None)

    def figures(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for result in self.stages:
            merged.update(result.figures)
        return merged

    def outcomes(self) -> dict[str, str]:
        return {str(result.stage): str(result.outcome) for result in self.stages}

    def as_dict(self) -> dict[str, Any]:
        return {"verdict": str(self.verdict), "stages": [stage.as_dict() for stage in self.stages]}
