"""Stage 2, declared rules: the repository's `.robot-fleet.toml` and its own Robocop configuration.

Only what the repository declares is enforced (`rules.py` for the file; Robocop with the
repository's `robocop.toml` / `pyproject.toml` / `.robocop`, or the fleet's defaults when it has
none). Each diagnostic names the rule's source so a writer — or a person — knows where it comes from.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from robot.utils import normalize

from worker.agent.checks.calls import CallReport
from worker.agent.checks.rules import SUITE_SOURCE, Rules, expand, placeholders, source_matches
from worker.agent.checks.scope import Kind
from worker.agent.checks.suite import ParsedSuite, TestInfo
from worker.agent.checks.verdict import Outcome, Stage, StageResult


def declared_stage(
    parsed: ParsedSuite,
    report: CallReport,
    rules: Rules,
    *,
    spec_id: str,
    area: str | None,
    lint: Sequence[str] = (),
    lint_source: str = "",
) -> StageResult:
    values = placeholders(spec_id, parsed.target_path, area, rules.file.suites.root)
    where = rules.source or ""
    problems = [
        *(f"{line} ({lint_source})" for line in lint),
        *_keyword_rules(parsed, report, rules, where),
        *_import_rules(parsed, rules, where),
    ]
    if rules.file.documentation.suite and not parsed.suite.doc.strip():
        problems.append(f"the suite has no `Documentation` setting ({where}: documentation.suite).")
    for test in parsed.tests:
        problems += _test_rules(parsed, test, rules, values, where)
    figures = {"rule_violations": len(problems)}
    return StageResult(Stage.RULES, Outcome.FAILED if problems else Outcome.PASSED, tuple(problems), figures)


def _source_of(kind: str, source: str) -> str:
    return SUITE_SOURCE if kind == Kind.SUITE else source


def _keyword_rules(parsed: ParsedSuite, report: CallReport, rules: Rules, where: str) -> list[str]:
    keywords = rules.file.keywords
    problems: list[str] = []
    banned = {normalize(name, ignore="_"): name for name in keywords.forbidden}
    for call, keyword in report.calls:
        name = keyword.name if keyword is not None else call.name
        if normalize(name, ignore="_") in banned:
            problems.append(parsed.at(call.line, f"`{name}` is forbidden ({where}: keywords.forbidden)."))
        if keyword is None or not call.in_test:
            continue
        source = _source_of(keyword.kind, keyword.source)
        if keywords.allowed_sources and not source_matches(source, keywords.allowed_sources):
            allowed = ", ".join(keywords.allowed_sources)
            problems.append(
                parsed.at(call.line, f"tests may call keywords only from {allowed}; `{name}` comes from "
                          f"`{source}` ({where}: keywords.allowed_sources).")
            )  # fmt: skip
        elif source_matches(source, keywords.forbidden_sources):
            problems.append(
                parsed.at(call.line, f"tests may not call keywords from `{source}` such as `{name}` "
                          f"({where}: keywords.forbidden_sources).")
            )  # fmt: skip
    return problems


def _import_rules(parsed: ParsedSuite, rules: Rules, where: str) -> list[str]:
    imported = {normalize(item.name) for item in parsed.suite.resource.imports if item.type == "RESOURCE"}
    return [
        f"the suite must import `Resource    {path}` ({where}: imports.required)."
        for path in rules.file.imports.required
        if normalize(path) not in imported
    ]


def _test_rules(
    parsed: ParsedSuite, test: TestInfo, rules: Rules, values: dict[str, str], where: str
) -> list[str]:
    file = rules.file
    problems: list[str] = []
    named = f"test `{test.name}`"
    tags = [normalize(tag, ignore="_") for tag in test.tags]
    if file.documentation.tests and not test.has_doc:
        problems.append(f"{named} has no [Documentation] ({where}: documentation.tests).")
    for template in file.tags.required:
        tag = expand(template, values)
        if tag and normalize(tag, ignore="_") not in tags:
            problems.append(f"{named} lacks the tag `{tag}` ({where}: tags.required).")
    first = expand(file.tags.first, values) if file.tags.first else ""
    if first and (not tags or tags[0] != normalize(first, ignore="_")):
        got = f"`{test.tags[0]}`" if test.tags else "no tag"
        problems.append(f"{named} must have `{first}` as its first tag, has {got} ({where}: tags.first).")
    for group in file.tags.one_of:
        present = [tag for tag in group if normalize(tag, ignore="_") in tags]
        if len(present) != 1:
            problems.append(
                f"{named} must have exactly one of {', '.join(f'`{t}`' for t in group)}, has "
                f"{len(present)} ({where}: tags.one_of)."
            )
    if file.names.tests and not re.search(expand(file.names.tests, values, regex=True), test.name):
        problems.append(f"{named} does not match `{file.names.tests}` ({where}: names.tests).")
    return [parsed.at(test.line, problem) for problem in problems]
