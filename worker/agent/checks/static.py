"""Stage 1, static: what can be known about a suite without running it or asking anyone.

Blocking (such a suite is never written): an import that does not exist, a call that resolves
nowhere, a call with an argument count the keyword does not accept.
Failing (written as `failing` when the repair budget runs out): an undefined variable, a placeholder
argument (`<email>`, TODO/FIXME/XXX), a suite that calls none of the repository's keywords although
it has some, a call of another file's private keyword (`robot:private`), a test without the spec's
tags.
Incomplete (never `verified`): calls that could only come from a library the worker cannot load,
and variables that could only come from a variable file that must run to say what it defines.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from robot.api.parsing import ModelVisitor, Token
from robot.utils import normalize

from worker.agent.checks.calls import CallReport
from worker.agent.checks.scope import Scope
from worker.agent.checks.suite import ParsedSuite
from worker.agent.checks.variables import global_definitions, norm, undefined_variables
from worker.agent.checks.verdict import Outcome, Stage, StageResult

PLACEHOLDER_RE = re.compile(r"<[A-Za-z_][\w .:-]{0,40}>")
UNFINISHED_RE = re.compile(r"\b(TODO|FIXME|XXX|TBD)\b")
_UNFINISHED_TOKENS = frozenset({Token.ARGUMENT, Token.COMMENT, Token.NAME, Token.TESTCASE_NAME})

SuggestKeywords = Sequence[str]
"""The repository's keyword names closest to what the suite and its spec talk about."""


def static_stage(
    parsed: ParsedSuite,
    scope: Scope,
    report: CallReport,
    *,
    spec_tags: Sequence[str],
    external_variables: set[str],
    suggestions: SuggestKeywords = (),
) -> StageResult:
    blocking = [parsed.at(line, message) for line, message in [*scope.problems, *report.diagnostics]]
    problems = [
        *_private_calls(parsed, report),
        *_undefined(parsed, scope, external_variables),
        *(placeholders := _placeholders(parsed)),
        *_reuse(parsed, report, scope, suggestions),
        *_missing_tags(parsed, spec_tags),
    ]
    figures = {**report.figures(), "placeholders": len(placeholders)}
    if blocking or problems:
        return StageResult(Stage.STATIC, Outcome.FAILED, (*blocking, *problems), figures, bool(blocking))
    unchecked = _unchecked(report, scope)
    return StageResult(Stage.STATIC, Outcome.INCOMPLETE if unchecked else Outcome.PASSED, unchecked, figures)


def _private_calls(parsed: ParsedSuite, report: CallReport) -> list[str]:
    return [
        parsed.at(
            call.line,
            f"`{keyword.name}` is private to `{keyword.source}` (robot:private): call a public keyword "
            "of the repository instead.",
        )
        for call, keyword in report.calls
        if keyword is not None and keyword.private
    ]


def _undefined(parsed: ParsedSuite, scope: Scope, external: set[str]) -> list[str]:
    defined = scope.variables | {norm(name) for name in external}
    defined |= global_definitions(
        [parsed.model, *scope.inits.values()]
    )  # the resources' are in scope.variables
    if scope.dynamic_variables:
        return []  # reported as unchecked: those files say what they define only when run
    return [
        parsed.at(
            use.line,
            f"variable `{use.name}` is not defined: not in the suite's or its resources' Variables, "
            "its variable files, the keyword's arguments or an earlier assignment.",
        )
        for use in undefined_variables(parsed.model, defined)
    ]


class _Cells(ModelVisitor):
    def __init__(self) -> None:
        self.found: list[tuple[int, str]] = []

    def visit_Statement(self, node: object) -> None:
        for token in node.tokens:  # type: ignore[attr-defined]
            if token.type == Token.ARGUMENT:
                self.found += [(token.lineno, m.group()) for m in PLACEHOLDER_RE.finditer(token.value)]
            if token.type in _UNFINISHED_TOKENS or token.type == Token.DOCUMENTATION:
                self.found += [(token.lineno, m.group()) for m in UNFINISHED_RE.finditer(token.value)]


def _placeholders(parsed: ParsedSuite) -> list[str]:
    cells = _Cells()
    cells.visit(parsed.model)
    return [
        parsed.at(line, f"placeholder `{text}`: write the real value (from the spec, the test data, a "
                  "variable or an earlier step's result).")
        for line, text in dict.fromkeys(cells.found)
    ]  # fmt: skip


def _reuse(parsed: ParsedSuite, report: CallReport, scope: Scope, suggestions: SuggestKeywords) -> list[str]:
    """Every test calls some of the repository's keywords, when it has any."""
    if not (suggestions or scope.resource_keywords):
        return []
    names = list(suggestions) or [kw.name for kw in scope.resource_keywords if not kw.private][:5]
    listed = ", ".join(f"`{name}`" for name in names)
    idle = report.tests_without_resources([test.name for test in parsed.tests])
    if not report.uses_resources:
        return [
            f"the suite calls none of the repository's keywords; use them for its steps. Closest: {listed}."
        ]
    lines = {test.name: test.line for test in parsed.tests}
    return [
        parsed.at(lines[name], f"test `{name}` calls none of the repository's keywords; use them for its "
                  f"steps. Closest: {listed}.")
        for name in idle
    ]  # fmt: skip


def _missing_tags(parsed: ParsedSuite, spec_tags: Sequence[str]) -> list[str]:
    wanted = {normalize(tag, ignore="_"): tag for tag in spec_tags}
    problems = []
    for test in parsed.tests:
        have = {normalize(tag, ignore="_") for tag in test.tags}
        missing = [tag for key, tag in wanted.items() if key not in have]
        if missing:
            listed = ", ".join(f"`{tag}`" for tag in missing)
            problems.append(parsed.at(test.line, f"test `{test.name}` lacks the spec's tags {listed}."))
    return problems


def _unchecked(report: CallReport, scope: Scope) -> tuple[str, ...]:
    notes = []
    if report.unverified:
        calls = ", ".join(f"`{call.name}`" for call in report.unverified[:5])
        libraries = ", ".join(f"`{name}`" for name in dict.fromkeys(scope.unverified)) or "a library"
        notes.append(
            f"{len(report.unverified)} calls ({calls}) could only come from {libraries}, which the workers "
            "cannot load: install it on the workers to check them."
        )
    if scope.dynamic_variables:
        files = ", ".join(f"`{path}`" for path in scope.dynamic_variables)
        notes.append(f"variables were not checked: {files} defines them only when it runs.")
    return tuple(notes)
