"""The `.robot` suite the scripted writer answers with.

One test per scenario (else per test case, else per acceptance criterion, else one for the title),
named `<ID> <Name In Title Case>`, documented, tagged `<ID> <area> <the spec's own tags>
<smoke|regression>`; its steps come from `writer.Writer`. Settings follow the similar test: the
suite documentation, its resource imports (plus any resource whose keyword the suite uses and
those imports do not reach), its suite setup and teardown.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from offline.fake_llm import drafts
from offline.fake_llm.clauses import (
    Clause,
    criterion_clauses,
    gherkin_parts,
    precondition_clauses,
    scenario_clauses,
    test_case_clauses,
)
from offline.fake_llm.model import Step, SuiteDraft, Test
from offline.fake_llm.phrases import PLACEHOLDER, UNFINISHED
from offline.fake_llm.robotfiles import SEP, Knowledge, escape, flat_data, uses_only
from offline.fake_llm.writer import LOG, Writer

SMOKE_PRIORITIES = frozenset({"critical", "blocker", "highest", "high", "p0", "p1"})
KINDS = ("smoke", "regression")
NAME_WORDS = 10
ARTICLES = frozenset({"the", "a", "an"})
NO_DOC = "Written from the spec."
TRAILING = frozenset({"and", "or", "with", "the", "a", "an", "of", "to", "for", "in", "by", "is"})
UNSAFE_NAME = re.compile(r"[\"=${}#|\\<>\[\]*]")


@dataclass(frozen=True)
class Case:
    """One test case to write."""

    name: str
    doc: str
    tags: tuple[str, ...]
    clauses: tuple[Clause, ...]
    text: str
    # all the spec text it comes from, for a later test that refers to it
    texts: tuple[str, ...]
    # its steps as the spec writes them


def spec_id(spec: Mapping[str, Any]) -> str:
    return str(spec.get("id") or spec.get("key") or "SPEC")


def title_case(text: str, limit: int = NAME_WORDS) -> str:
    """Each word capitalised, codes kept as written (`XX-0000`, `SPRING25`); a name cut at
    `limit` words does not end on `and` or `the`."""
    found = [w[:1].upper() + w[1:] for w in str(text).split()[:limit]]
    while len(found) > 1 and found[-1].lower() in TRAILING:
        found.pop()
    return " ".join(found)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def target_area(spec: Mapping[str, Any]) -> str:
    """The folder under `tests/` of the target path, else the spec's area."""
    rf = _mapping(spec.get("rf"))
    target = str(rf.get("target_path") or rf.get("output_path") or "").replace("\\", "/").lstrip("./")
    parts = target.split("/")
    if len(parts) > 2 and parts[0] == "tests":
        return parts[1]
    return str(spec.get("area") or "")


def _own_tags(spec: Mapping[str, Any]) -> list[str]:
    rf, jira = _mapping(spec.get("rf")), _mapping(spec.get("jira"))
    sources = (rf.get("tags"), spec.get("tags"), spec.get("labels"), jira.get("labels"))
    found = [tag for source in sources for tag in _as_list(source) if isinstance(tag, str | int | float)]
    return [str(tag).strip() for tag in found if str(tag).strip()]


def tags(spec: Mapping[str, Any], item_tags: Iterable[Any] = ()) -> tuple[str, ...]:
    """Id, area, the spec's own tags as written, then exactly one of smoke/regression: the test's
    own choice, else the spec's, else from the priority."""
    ident, area = spec_id(spec), target_area(spec)
    own = [str(t).strip() for t in item_tags if isinstance(t, str | int | float) and str(t).strip()]
    own += _own_tags(spec)
    chosen = [t.lower() for t in own if t.lower() in KINDS]
    priority = str(spec.get("priority", "")).lower()
    kind = chosen[0] if chosen else ("smoke" if priority in SMOKE_PRIORITIES else "regression")
    found: list[str] = []
    for tag in [ident, area, *own]:
        if tag and tag.lower() not in KINDS and tag.lower() not in {t.lower() for t in found}:
            found.append(tag)
    return (*found, kind)


def cases(spec: Mapping[str, Any]) -> list[Case]:
    """The tests to write, from the first of scenarios, test_cases, acceptance_criteria, title."""
    pre = tuple(precondition_clauses(_as_list(spec.get("preconditions"))))
    for source in ("scenarios", "test_cases"):
        found = [_item_case(spec, item, pre, source) for item in _as_list(spec.get(source))]
        if found:
            return found
    found = [_criterion_case(spec, criterion, pre) for criterion in _as_list(spec.get("acceptance_criteria"))]
    if found:
        return found
    title = str(spec.get("title") or spec_id(spec))
    return [
        Case(_name(spec, title), _doc(title), tags(spec), (*pre, Clause(title, "action")), title, (title,))
    ]


def _item_case(spec: Mapping[str, Any], item: Any, pre: tuple[Clause, ...], source: str) -> Case:
    item = item if isinstance(item, Mapping) else {"name": str(item), "steps": [str(item)]}
    steps = _as_list(item.get("steps"))
    expected = [str(e) for e in _as_list(item.get("expected")) if str(e).strip()]
    if source == "test_cases" or any(isinstance(step, Mapping) for step in steps):
        body = test_case_clauses(steps) + scenario_clauses([], expected)
    else:
        body = scenario_clauses([str(s) for s in steps if str(s).strip()], expected)
    texts = tuple(_step_texts(steps))
    name = str(item.get("name") or item.get("title") or spec.get("title") or spec_id(spec))
    doc = str(item.get("description") or " ".join(expected) or name)
    text = " ".join([name, *texts, *expected])
    return Case(
        _name(spec, name), _doc(doc), tags(spec, _as_list(item.get("tags"))), (*pre, *body), text, texts
    )


def _step_texts(steps: Sequence[Any]) -> list[str]:
    texts = []
    for step in steps:
        if isinstance(step, Mapping):
            texts += [str(v) for k, v in step.items() if k != "name" and isinstance(v, str) and v.strip()]
        elif str(step).strip():
            texts.append(str(step))
    return texts


def _criterion_case(spec: Mapping[str, Any], criterion: Any, pre: tuple[Clause, ...]) -> Case:
    parts = gherkin_parts(criterion)
    text = " ".join(t for _, t in parts) if isinstance(criterion, Mapping) else str(criterion)
    named = [t for k, t in parts if k != "given"] or [t for _, t in parts] or [text]
    words = [w for w in " ".join(named).split() if w.lower() not in ARTICLES]
    body = (*pre, *criterion_clauses(criterion))
    return Case(_name(spec, " ".join(words)), _doc(text), tags(spec), body, text, tuple(t for _, t in parts))


def _name(spec: Mapping[str, Any], text: str) -> str:
    clean = UNSAFE_NAME.sub(" ", UNFINISHED.sub("", PLACEHOLDER.sub(r"\1", text)))
    return f"{spec_id(spec)} {title_case(clean)}".strip()


def _doc(text: str) -> str:
    """Spec prose as written, without what would read as a placeholder (`<name>`, `TODO`)."""
    cleaned = UNFINISHED.sub("", PLACEHOLDER.sub(r"\1", text))
    return escape(cleaned) if cleaned.strip() else NO_DOC


def _unique(names: Iterable[str]) -> list[str]:
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name.lower()] = seen.get(name.lower(), 0) + 1
        unique.append(name if seen[name.lower()] == 1 else f"{name} {seen[name.lower()]}")
    return unique


def _settings(spec: Mapping[str, Any], knowledge: Knowledge, tests: Sequence[Test]) -> list[str]:
    lines = [
        "*** Settings ***",
        f"Documentation{SEP}{escape(spec_id(spec) + ' ' + str(spec.get('title', '')))}",
    ]
    if spec.get("story"):
        lines.append(f"...{SEP}{escape(str(spec['story']))}")
    lines += [
        f"Resource{SEP}{path}" for path in [*knowledge.settings.resources, *_extra_imports(knowledge, tests)]
    ]
    for name, value in knowledge.settings.lines:
        if value and uses_only(value, knowledge.variables):
            lines.append(f"{name}{SEP}{value}")
    return lines


def _extra_imports(knowledge: Knowledge, tests: Sequence[Test]) -> list[str]:
    """Resources whose keywords the suite calls that the similar test's imports do not reach."""
    reachable = set(knowledge.reachable)
    sources = {k.name.lower(): k.source for k in reversed(knowledge.keywords) if k.source}
    extra: list[str] = []
    for test in tests:
        for step in test.steps:
            source = sources.get(step.keyword.lower(), "")
            if source and source not in reachable and source not in extra:
                extra.append(source)
                reachable |= _closure(knowledge, source)
    return extra


def _closure(knowledge: Knowledge, path: str) -> set[str]:
    found, queue = set(), [path]
    while queue:
        current = queue.pop()
        if current not in found:
            found.add(current)
            queue += knowledge.imports.get(current, [])
    return found


def _tests(spec: Mapping[str, Any], knowledge: Knowledge, attempts: Mapping[int, int]) -> list[Test]:
    writer = Writer(knowledge, flat_data(spec.get("data")), knowledge.assigned)
    found = cases(spec)
    names = _unique(c.name for c in found)
    tests = []
    for index, (case, name) in enumerate(zip(found, names, strict=True)):
        steps = writer.write(case.clauses, case.text, attempts.get(index, 0))
        steps = steps or [Step(LOG, (case.doc,))]
        tests.append(Test(escape(name), case.doc, tuple(map(escape, case.tags)), steps, case.texts))
    return tests


def used_keywords(spec: Mapping[str, Any], knowledge: Knowledge) -> set[str]:
    """The keywords the clean suite calls."""
    return {step.keyword for test in _tests(spec, knowledge, {}) for step in test.steps}


def build_suite(
    spec: Mapping[str, Any], knowledge: Knowledge, draft: str = "none", repairs: Sequence[str] = ()
) -> str:
    """The suite text. A `draft` other than "none" breaks the first answer one realistic way
    (see `drafts.py`); each defect stays until a repair request names its marker, and a repair
    request naming a test of a clean answer makes the writer try that test again differently."""
    clean = _tests(spec, knowledge, {})
    suite = SuiteDraft(_settings(spec, knowledge, clean), clean)
    defects = drafts.defects(draft, copy.deepcopy(suite), knowledge)
    active, attempts = drafts.after_repairs(defects, [t.name for t in clean], repairs)
    if attempts:
        tests = _tests(spec, knowledge, attempts)
        suite = SuiteDraft(_settings(spec, knowledge, tests), tests)
    for defect in active:
        drafts.inflict(defect.kind, suite, knowledge)
    return suite.render()
