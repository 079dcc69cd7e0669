"""The `.robot` suite the scripted writer answers with.

One test per scenario (else per test case, else per acceptance criterion, else one for the title),
named `<ID> <Name In Title Case>`, tagged with the id, the area and smoke/regression; each step is
a call of the resources' best matching keyword with its required arguments, or a `Log` of the step.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from offline.fake_llm.robotfiles import (
    SEP,
    Keyword,
    Knowledge,
    best_keyword,
    escape,
    flat_data,
    step_line,
    uses_only,
)

SMOKE_PRIORITIES = frozenset({"critical", "blocker", "highest", "high", "p0", "p1"})
UNKNOWN_KEYWORD = "Verify Everything Went Fine"
BROKEN_HEADER = "*** Test Steps ***"
DRAFT_CHATTER = "Here is the generated test suite:"
NAME_WORDS = 10


@dataclass(frozen=True)
class Case:
    """One test case to write."""

    name: str
    steps: tuple[str, ...]
    tags: tuple[str, ...]
    doc: str


def spec_id(spec: Mapping[str, Any]) -> str:
    return str(spec.get("id") or spec.get("key") or "SPEC")


def title_case(text: str, limit: int = NAME_WORDS) -> str:
    return string.capwords(" ".join(str(text).split()[:limit]))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _step_texts(item: Any) -> list[str]:
    """A step given as text, or as {action, expected} (either may be missing)."""
    if isinstance(item, Mapping):
        keys = ("action", "step", "description", "name", "expected", "result")
        return [str(item[k]) for k in keys if isinstance(item.get(k), str) and item[k].strip()]
    return [str(item)] if str(item).strip() else []


def _clauses(criterion: Any) -> list[str]:
    """`Given a When b Then c` -> ["Given a", "When b", "Then c"]; dicts by their keys."""
    if isinstance(criterion, Mapping):
        return [f"{k.title()} {criterion[k]}" for k in ("given", "when", "then") if criterion.get(k)] or (
            _step_texts(criterion)
        )
    parts = re.split(r"(?i)\s*\b(?=(?:given|when|then|and|but)\b)", str(criterion))
    return [part.strip(" ,;") for part in parts if part.strip(" ,;")]


def _tags(spec: Mapping[str, Any], extra: Iterable[Any]) -> tuple[str, ...]:
    rf = spec.get("rf") if isinstance(spec.get("rf"), Mapping) else {}
    all_tags = {str(t).lower() for t in [*_as_list(spec.get("tags")), *_as_list(rf.get("tags")), *extra]}
    priority = str(spec.get("priority", "")).lower()
    kind = "smoke" if "smoke" in all_tags or priority in SMOKE_PRIORITIES else "regression"
    area = spec.get("area")
    return tuple(t for t in (spec_id(spec), str(area) if area else "", kind) if t)


def cases(spec: Mapping[str, Any]) -> list[Case]:
    """The tests to write, from the first of scenarios, test_cases, acceptance_criteria, title."""
    ident = spec_id(spec)
    found: list[Case] = []
    for source in ("scenarios", "test_cases"):
        for item in _as_list(spec.get(source)):
            item = item if isinstance(item, Mapping) else {"name": str(item), "steps": [str(item)]}
            steps = [s for step in _as_list(item.get("steps")) for s in _step_texts(step)]
            steps += [str(e) for e in _as_list(item.get("expected")) if str(e).strip()]
            name = str(item.get("name") or item.get("title") or spec.get("title") or ident)
            doc = str(item.get("description") or item.get("expected") or name)
            found.append(
                Case(f"{ident} {title_case(name)}", tuple(steps), _tags(spec, item.get("tags") or []), doc)
            )
        if found:
            return found
    for criterion in _as_list(spec.get("acceptance_criteria")):
        steps = _clauses(criterion)
        text = " ".join(steps) if isinstance(criterion, Mapping) else str(criterion)
        found.append(Case(f"{ident} {title_case(text)}", tuple(steps), _tags(spec, []), text))
    if not found:
        title = str(spec.get("title") or ident)
        found.append(Case(f"{ident} {title_case(title)}", (title,), _tags(spec, []), title))
    return found


def _unique(names: Iterable[str]) -> list[str]:
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name.lower()] = seen.get(name.lower(), 0) + 1
        unique.append(name if seen[name.lower()] == 1 else f"{name} {seen[name.lower()]}")
    return unique


def _settings(spec: Mapping[str, Any], knowledge: Knowledge) -> list[str]:
    lines = [
        "*** Settings ***",
        f"Documentation{SEP}{escape(spec_id(spec) + ' ' + str(spec.get('title', '')))}",
    ]
    if spec.get("story"):
        lines.append(f"...{SEP}{escape(str(spec['story']))}")
    lines += [f"Resource{SEP}{path}" for path in knowledge.settings.resources]
    for name, value in knowledge.settings.lines:
        if value and uses_only(value, knowledge.variables):
            lines.append(f"{name}{SEP}{value}")
    return lines


def _test(case: Case, name: str, pre: Sequence[str], keywords: Sequence[Keyword], data: Any) -> list[str]:
    lines = [
        name,
        f"{SEP}[Documentation]{SEP}{escape(case.doc)}",
        f"{SEP}[Tags]{SEP}{SEP.join(map(escape, case.tags))}",
    ]
    steps = [*pre, *case.steps] or [case.name]
    lines += [f"{SEP}{step_line(step, keywords, data)}" for step in steps]
    return lines


def build_suite(spec: Mapping[str, Any], knowledge: Knowledge, draft: str = "none") -> str:
    """The suite text; a `draft` other than "none" breaks it the way a sloppy model would: "syntax",
    "unknown_keyword", "wrong_args" (a keyword called without its required arguments) or
    "missing_resource" (an import of a resource file that does not exist)."""
    data = flat_data(spec.get("data"))
    keywords = knowledge.keywords
    pre = [str(p) for p in _as_list(spec.get("preconditions")) if best_keyword(str(p), keywords)]
    lines = [*_settings(spec, knowledge), "", "*** Test Cases ***"]
    tests = cases(spec)
    for index, (case, name) in enumerate(zip(tests, _unique(c.name for c in tests), strict=True)):
        body = _test(case, escape(name), pre, keywords, data)
        if draft == "unknown_keyword" and index == 0:
            body.insert(3, f"{SEP}{_unknown_keyword(keywords)}")
        needy = next((k for k in keywords if k.required > 0), None)
        if draft == "wrong_args" and index == 0 and needy is not None:
            body.insert(3, f"{SEP}{needy.name}")
        lines += [*body, ""]
    text = "\n".join(lines).rstrip() + "\n"
    if draft == "missing_resource":
        text = text.replace("*** Settings ***\n", f"*** Settings ***\nResource{SEP}{MISSING_RESOURCE}\n", 1)
    if draft == "syntax":
        text = f"{DRAFT_CHATTER}\n" + text.replace("*** Test Cases ***", BROKEN_HEADER)
    return text


MISSING_RESOURCE = "resources/shared_steps.resource"


def _unknown_keyword(keywords: Sequence[Keyword]) -> str:
    names = {k.name.lower() for k in keywords}
    name = UNKNOWN_KEYWORD
    while name.lower() in names:
        name += " Again"
    return name
