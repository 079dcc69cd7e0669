"""Verification of one candidate suite: formatted first, then the stages in order.

    format      the repository's Robocop formatter (or the fleet's): what is checked is what is
                written, nothing after the checks changes it
    static      parse, imports, calls and argument counts, variables, placeholders, reuse, spec tags
    rules       the repository's `.robot-fleet.toml` and its Robocop configuration
    review      (when a reviewer is configured) the convention's prose and the spec's criteria
    execution   (opt-in) the suite run by Robot Framework in a private directory

Static and rules always run together (both cheap: their diagnostics go back in one repair turn);
the costly stages run only on a suite the cheap ones accept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from worker.agent.checks.calls import CallReport, resolve_calls, suite_calls
from worker.agent.checks.declared import declared_stage
from worker.agent.checks.execute import SuiteRunner
from worker.agent.checks.robocop import LintFailed, RobocopConfig, format_suite, lint_suite
from worker.agent.checks.robocop import diagnostics as lint_diagnostics
from worker.agent.checks.rules import Rules
from worker.agent.checks.scope import ReadFile, Scope, ScopeLoader
from worker.agent.checks.static import static_stage
from worker.agent.checks.suite import ParsedSuite
from worker.agent.checks.verdict import Checks, Outcome, Stage, StageResult, not_run, skipped
from worker.agent.output import validate_suite

LAYOUT_RULES = ("SPC14", "SPC16", "SPC17", "SPC19", "SPC20", "SPC21", "SPC22")
"""Robocop's whitespace and alignment rules: the formatter owns those, no repair turn for them."""

Suggest = Callable[[str], Awaitable[list[str]]]
"""The repository's keywords closest to a text (from its catalog)."""
Review = Callable[[ParsedSuite, CallReport], Awaitable[StageResult]]
EARLIER_FAILED = "an earlier stage failed"
REVIEW_OFF = "the review is off (WRITER_REVIEW=false)"
EXECUTE_OFF = "execution is off (WRITER_EXECUTE=false)"


@dataclass(frozen=True)
class VerifyConfig:
    format_output: bool = True
    lint: RobocopConfig | None = None
    """The fleet's defaults; the repository's own configuration replaces it."""
    execute: bool = False


@dataclass(frozen=True)
class Verification:
    text: str
    """The suite as checked: formatted, and what gets written."""
    checks: Checks

    @property
    def passed(self) -> bool:
        return self.checks.failed is None

    @property
    def diagnostics(self) -> list[str]:
        failed = [stage for stage in self.checks.stages if stage.outcome is Outcome.FAILED]
        return [line for stage in failed for line in stage.diagnostics]


@dataclass
class SpecFacts:
    spec_id: str
    target_path: str
    tags: tuple[str, ...]
    area: str | None
    text: str
    """The spec as text: what keyword suggestions are matched against."""


class Verifier:
    """Verifies candidates for one job. `read_file` reads the repository at the pinned ref."""

    def __init__(
        self,
        spec: SpecFacts,
        config: VerifyConfig,
        *,
        rules: Rules,
        repo_lint: RobocopConfig | None,
        lint_problem: str | None,
        read_file: ReadFile,
        tree: tuple[str, ...],
        suggest: Suggest,
        runner: SuiteRunner | None = None,
        review: Review | None = None,
    ) -> None:
        self._spec, self._config, self._rules = spec, config, rules
        self._lint = repo_lint or config.lint or RobocopConfig(ignore=LAYOUT_RULES)
        self._lint_problem = lint_problem
        self._read_file, self._tree = read_file, tree
        self._loader = ScopeLoader(read_file, tree)
        self._suggest, self._runner, self._review = suggest, runner, review

    async def verify(self, text: str) -> Verification:
        if self._config.format_output:
            formatted = await asyncio.to_thread(format_suite, text, self._lint)
            text = formatted if validate_suite(formatted).ok else text
        parsed = ParsedSuite.parse(text, self._spec.target_path)
        scope = await self._loader.load(parsed.suite.resource, self._spec.target_path)
        report = resolve_calls(parsed.suite, scope)
        idle = report.tests_without_resources([test.name for test in parsed.tests])
        suggestions = await self._suggestions(parsed) if idle or not report.uses_resources else []
        static = static_stage(
            parsed, scope, report, spec_tags=self._spec.tags,
            external_variables=self._rules.external_variables, suggestions=suggestions,
        )  # fmt: skip
        rules = await self._rules_stage(parsed, report)
        stages = [static, rules]
        if Outcome.FAILED in (static.outcome, rules.outcome):
            stages += self._later()
        else:
            stages += await self._costly(parsed, scope, report)
        return Verification(text, Checks(tuple(stages)))

    def _later(self) -> list[StageResult]:
        """The costly stages of a suite the cheap ones refused: not run, or off anyway."""
        review = not_run(Stage.REVIEW, EARLIER_FAILED) if self._review else skipped(Stage.REVIEW, REVIEW_OFF)
        runs = self._config.execute and self._runner is not None
        execution = (
            not_run(Stage.EXECUTION, EARLIER_FAILED) if runs else skipped(Stage.EXECUTION, EXECUTE_OFF)
        )
        return [review, execution]

    async def _suggestions(self, parsed: ParsedSuite) -> list[str]:
        steps = " ".join(f"{call.name} {' '.join(call.args)}" for call in suite_calls(parsed.suite))
        return await self._suggest(f"{steps} {self._spec.text}")

    async def _rules_stage(self, parsed: ParsedSuite, report: CallReport) -> StageResult:
        problem = self._lint_problem
        lint: list[str] = []
        try:
            issues = await asyncio.to_thread(lint_suite, parsed.text, self._lint)
            lint = lint_diagnostics([issue for issue in issues if issue.rule_id not in LAYOUT_RULES])
        except LintFailed as exc:
            problem = str(exc)
        stage = declared_stage(
            parsed, report, self._rules, spec_id=self._spec.spec_id, area=self._spec.area,
            lint=lint, lint_source=self._lint.label,
        )  # fmt: skip
        if problem is None:
            return stage
        note = f"Robocop did not lint the suite: {problem}"
        outcome = Outcome.FAILED if stage.outcome is Outcome.FAILED else Outcome.INCOMPLETE
        return replace(stage, outcome=outcome, diagnostics=(*stage.diagnostics, note))

    async def _costly(self, parsed: ParsedSuite, scope: Scope, report: CallReport) -> list[StageResult]:
        if self._review is None:
            review = skipped(Stage.REVIEW, REVIEW_OFF)
        else:
            review = await self._review(parsed, report)
        if review.outcome is Outcome.FAILED:
            return [review, not_run(Stage.EXECUTION, EARLIER_FAILED)]
        return [review, await self._execution(parsed, scope)]

    async def _execution(self, parsed: ParsedSuite, scope: Scope) -> StageResult:
        if not self._config.execute or self._runner is None:
            return skipped(Stage.EXECUTION, EXECUTE_OFF)
        if scope.unverified:
            libraries = ", ".join(f"`{name}`" for name in dict.fromkeys(scope.unverified))
            return not_run(Stage.EXECUTION, f"the suite needs {libraries}, which the workers cannot load")
        options = self._rules.file.run.options
        return await self._runner.run(parsed, scope, options, self._read_file, self._tree)
