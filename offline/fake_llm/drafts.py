"""Broken first drafts, and repairs that fix only what the diagnostics point at.

Each defect has markers: text a diagnostic about it would contain. A defect is fixed in the next
answer once any repair request since the broken answer mentions one of its markers
(case-insensitive, not inside a longer word); a defect nobody mentions stays. A repair request
naming a test that was clean in the answer it repairs (a failing test reported by execution)
makes the writer try that test again with the next-best keywords.

| draft | what is broken | markers |
| syntax | chatter before the suite, `*** Test Steps ***` header | `section header`, `Test Steps` |
| unknown_keyword | first test calls `Verify Everything Went Fine` | that name |
| wrong_args | first test calls a keyword without its required arguments | the keyword's name |
| missing_resource | imports `resources/shared_steps.resource` | that path |
| fails_when_run | one assertion of the first test expects a wrong value | the first test's name |
| log_only | every step is `Log    <step text>` | any repository keyword's name |
| placeholder | one argument of the first test is `<argument_name>` | `<argument_name>` |
| undefined_variable | the first test logs `${BROWSER_HEADLESS}` | `BROWSER_HEADLESS` |
| rule_breaking | first test: `Sleep    1s`, no [Documentation], kind tag first | `Sleep` / `Documentation` / `Tags`, `tag` |
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from offline.fake_llm.model import Step, SuiteDraft, Test
from offline.fake_llm.robotfiles import SEP, Knowledge, escape, norm_var
from offline.fake_llm.writer import LOG, log_cell

RULE_BREAKING = ("sleep", "no_documentation", "tag_order")
UNKNOWN_KEYWORD = "Verify Everything Went Fine"
BROKEN_HEADER = "*** Test Steps ***"
DRAFT_CHATTER = "Here is the generated test suite:"
MISSING_RESOURCE = "resources/shared_steps.resource"
UNDEFINED_VARIABLE = "BROWSER_HEADLESS"
KINDS = ("smoke", "regression")
NUMBER = re.compile(r"^(?P<name>\w+=)?(?P<number>\d+(?:\.\d+)?)$")
SUITE = -1
ALL_TESTS = -2


@dataclass(frozen=True)
class Defect:
    """One way a draft is broken, and the text that names it."""

    kind: str
    markers: tuple[str, ...]
    test: int
    # the index of the test it breaks; SUITE for the suite, ALL_TESTS for every test


def mentions(text: str, marker: str) -> bool:
    """`marker` in `text`, case-insensitive, not part of a longer word."""
    if not marker:
        return False
    pattern = re.escape(marker)
    if marker[0].isalnum():
        pattern = r"(?<![A-Za-z0-9_])" + pattern
    if marker[-1].isalnum():
        pattern += r"(?![A-Za-z0-9_])"
    return re.search(pattern, text, re.IGNORECASE) is not None


def defects(draft: str, suite: SuiteDraft, knowledge: Knowledge) -> list[Defect]:
    """The defects `draft` gives the first answer (inflicted on `suite`, a copy, to learn markers)."""
    kinds = RULE_BREAKING if draft == "rule_breaking" else () if draft == "none" else (draft,)
    return [inflict(kind, suite, knowledge) for kind in kinds]


def after_repairs(
    found: Sequence[Defect], test_names: Sequence[str], repairs: Sequence[str]
) -> tuple[list[Defect], dict[int, int]]:
    """The defects still there after `repairs`, and how many times each test was named while clean."""
    active = list(found)
    attempts: dict[int, int] = {}
    for request in repairs:
        broken = {d.test for d in active}
        for index, name in enumerate(test_names):
            clean = index not in broken and ALL_TESTS not in broken
            if clean and mentions(request, name):
                attempts[index] = attempts.get(index, 0) + 1
        active = [d for d in active if not any(mentions(request, m) for m in d.markers)]
    return active, attempts


def inflict(kind: str, suite: SuiteDraft, knowledge: Knowledge) -> Defect:
    """Break `suite` the `kind` way; the defect says how to recognise a diagnostic about it."""
    if kind == "syntax":
        suite.chatter, suite.broken_header = DRAFT_CHATTER, BROKEN_HEADER
        return Defect(kind, ("section header", "Test Steps"), SUITE)
    if kind == "missing_resource":
        suite.settings.insert(1, f"Resource{SEP}{MISSING_RESOURCE}")
        return Defect(kind, (MISSING_RESOURCE,), SUITE)
    if kind == "log_only":
        for test in suite.tests:
            test.steps = [Step(LOG, (log_cell(text),)) for text in test.texts] or [Step(LOG, (test.doc,))]
        return Defect(kind, tuple(sorted({k.name for k in knowledge.keywords})), ALL_TESTS)
    test = suite.tests[0]
    markers = FIRST_TEST[kind](test, knowledge)
    return Defect(kind, markers, 0)


def _unknown_keyword(test: Test, knowledge: Knowledge) -> tuple[str, ...]:
    names = {k.name.lower() for k in knowledge.keywords}
    name = UNKNOWN_KEYWORD
    while name.lower() in names:
        name += " Again"
    test.steps.insert(0, Step(name))
    return (name,)


def _wrong_args(test: Test, knowledge: Knowledge) -> tuple[str, ...]:
    public = {k.name: k for k in knowledge.keywords if not k.private}
    used = [public[s.keyword] for s in test.steps if s.keyword in public]
    needy = next((k for k in [*used, *public.values()] if any(a.required for a in k.args)), None)
    if needy is None:
        return _unknown_keyword(test, knowledge)
    test.steps.insert(0, Step(needy.name))
    return (needy.name,)


def _fails_when_run(test: Test, knowledge: Knowledge) -> tuple[str, ...]:
    """The first positive assertion with a value from the spec expects another value."""
    steps = test.steps
    places = [
        (i, c)
        for i, step in enumerate(steps)
        if step.check and " not " not in f" {step.keyword.lower()} "
        for c in step.literal_cells
    ]
    numeric = [(i, c) for i, c in places if NUMBER.match(steps[i].cells[c])]
    if numeric or places:
        i, c = (numeric or places)[0]
        steps[i] = steps[i].with_cell(c, _wrong(steps[i].cells[c]))
    else:
        steps.append(Step("Should Be Equal", ("${TEST NAME}", escape(f"{test.name} draft")), check=True))
    return (test.name,)


def _wrong(cell: str) -> str:
    match = NUMBER.match(cell)
    if not match:
        return f"{cell} (draft)"
    number = match.group("number")
    decimals = len(number.split(".")[1]) if "." in number else 0
    bumped = f"{float(number) + 1:.{decimals}f}"
    return f"{match.group('name') or ''}{bumped}"


def _placeholder(test: Test, knowledge: Knowledge) -> tuple[str, ...]:
    steps = test.steps
    for i, step in enumerate(steps):
        for c in step.literal_cells or range(len(step.cells)):
            name = step.arg_names[c] if c < len(step.arg_names) and step.arg_names[c] else "value"
            cell = f"<{name}>"
            steps[i] = step.with_cell(c, f"{name}={cell}" if step.cells[c].startswith(f"{name}=") else cell)
            return (cell,)
    steps.insert(0, Step(LOG, ("<message>",)))
    return ("<message>",)


def _undefined_variable(test: Test, knowledge: Knowledge) -> tuple[str, ...]:
    name = UNDEFINED_VARIABLE
    while norm_var(name) in knowledge.variables or norm_var(name) in knowledge.variable_names:
        name += "_MODE"
    test.steps.insert(0, Step(LOG, (f"Headless browser: ${{{name}}}",)))
    return (name,)


def _sleep(test: Test, knowledge: Knowledge) -> tuple[str, ...]:
    steps = test.steps
    steps.insert(min(1, len(steps)), Step("Sleep", ("1s",)))
    return ("Sleep",)


def _no_documentation(test: Test, knowledge: Knowledge) -> tuple[str, ...]:
    test.documented = False
    return ("Documentation",)


def _tag_order(test: Test, knowledge: Knowledge) -> tuple[str, ...]:
    tags = list(test.tags)
    kinds = [t for t in tags if t.lower() in KINDS]
    test.tags = (*kinds, *[t for t in tags if t.lower() not in KINDS])
    return ("Tags", "tag")


FIRST_TEST = {
    "unknown_keyword": _unknown_keyword,
    "wrong_args": _wrong_args,
    "fails_when_run": _fails_when_run,
    "placeholder": _placeholder,
    "undefined_variable": _undefined_variable,
    "sleep": _sleep,
    "no_documentation": _no_documentation,
    "tag_order": _tag_order,
}
