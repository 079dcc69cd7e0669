"""Machine-checkable rules recognised in the team's `doc/convention.md`, applied to a suite.

Pragmatic by design: a rule is enforced only when the convention states it in words we recognise,
so a team whose convention says nothing about tags gets no tag checks. Recognised:
- a mandatory resource import (a `Resource    path` written on a line saying every suite / must /
  mandatory);
- mandatory suite `Documentation`; mandatory test `[Documentation]` and `[Tags]`;
- test names starting with the ticket id, and the ticket id among the tags;
- forbidden keywords (e.g. `Sleep` in a "never / do not use / forbidden" passage).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from robot.api import get_model
from robot.running import TestSuite
from robot.utils import normalize

_RESOURCE_RE = re.compile(r"Resource\s{2,}([\w./${}-]+\.resource)")
_MANDATORY_RE = re.compile(r"\b(every|mandatory|must|always|required)\b", re.IGNORECASE)
_FORBIDDEN_HEADING_RE = re.compile(
    r"\b(never|forbidden|do not use|don't use|not allowed|banned)\b", re.IGNORECASE
)
_CODE_RE = re.compile(r"`([A-Z][A-Za-z ]{2,40})`")
SOURCE = "doc/convention.md"


@dataclass(frozen=True)
class Rules:
    required_resources: tuple[str, ...] = ()
    suite_documentation: bool = False
    test_documentation: bool = False
    test_tags: bool = False
    ticket_in_name: bool = False
    ticket_in_tags: bool = False
    forbidden_keywords: tuple[str, ...] = field(default_factory=tuple)


@lru_cache(maxsize=16)
def rules_from(convention: str) -> Rules:
    """The rules this convention states (cached: every job of a process reads the same text)."""
    lines = convention.splitlines()
    text = " ".join(convention.split()).lower()
    required = [
        m.group(1) for line in lines if _MANDATORY_RE.search(line) for m in _RESOURCE_RE.finditer(line)
    ]
    return Rules(
        required_resources=tuple(dict.fromkeys(required)),
        suite_documentation=bool(re.search(r"`documentation`[^.\n]*mandatory", convention, re.IGNORECASE)),
        test_documentation="[documentation]" in text
        and bool(re.search(r"every test[^.]*\[documentation\]", text)),
        test_tags=bool(re.search(r"every test[^.]*\[tags\]", text)),
        ticket_in_name=bool(re.search(r"test case name[^.]*starts? with the[^.]*ticket id", text)),
        ticket_in_tags=bool(re.search(r"\[tags\][^.]*contains?[^.]*ticket id", text)),
        forbidden_keywords=_forbidden(lines),
    )


def _forbidden(lines: list[str]) -> tuple[str, ...]:
    """Keywords named in code spans inside a passage that forbids things (a heading or its list)."""
    found: list[str] = []
    in_passage = False
    for line in lines:
        if line.startswith("#"):
            in_passage = bool(_FORBIDDEN_HEADING_RE.search(line))
            continue
        if in_passage and line.lstrip().startswith(("-", "*")):
            match = _CODE_RE.search(line)
            if match and " " not in match.group(1).strip():
                found.append(match.group(1).strip())
    return tuple(dict.fromkeys(found))


def check_conventions(text: str, rules: Rules, spec_id: str) -> list[str]:
    suite = TestSuite.from_model(get_model(text))
    problems: list[str] = []
    imported = {normalize(item.name) for item in suite.resource.imports if item.type == "RESOURCE"}
    for path in rules.required_resources:
        if normalize(path) not in imported:
            problems.append(f"line 1: the suite must import `Resource    {path}` ({SOURCE}).")
    if rules.suite_documentation and not suite.doc.strip():
        problems.append(f"line 1: the suite needs a `Documentation` setting ({SOURCE}).")
    for test in suite.tests:
        problems += _test_problems(test, rules, spec_id)
    problems += _forbidden_calls(suite, rules)
    return problems


def _test_problems(test: object, rules: Rules, spec_id: str) -> list[str]:
    where = f"line {test.lineno}: test {test.name!r}"  # type: ignore[attr-defined]
    problems = []
    if rules.ticket_in_name and not test.name.startswith(spec_id):  # type: ignore[attr-defined]
        problems.append(f"{where} must start with the ticket id {spec_id} ({SOURCE}).")
    if rules.test_documentation and not test.doc.strip():  # type: ignore[attr-defined]
        problems.append(f"{where} needs [Documentation] ({SOURCE}).")
    tags = list(test.tags)  # type: ignore[attr-defined]
    if rules.test_tags and not tags:
        problems.append(f"{where} needs [Tags] ({SOURCE}).")
    elif rules.ticket_in_tags and spec_id not in tags:
        problems.append(f"{where} needs the ticket id {spec_id} in its [Tags] ({SOURCE}).")
    return problems


def _forbidden_calls(suite: TestSuite, rules: Rules) -> list[str]:
    if not rules.forbidden_keywords:
        return []
    banned = {normalize(name, ignore="_"): name for name in rules.forbidden_keywords}
    problems = []
    for test in suite.tests:
        for step in test.body:
            name = getattr(step, "name", None)
            if name and normalize(name, ignore="_") in banned:
                problems.append(
                    f"line {step.lineno}: {banned[normalize(name, ignore='_')]!r} is forbidden ({SOURCE})."
                )
    return problems
