"""From a spec's scenarios, test cases, acceptance criteria and preconditions to clauses with a role.

A precondition or `Given` is a state to establish (role "given"); a step phrased as an action or a
`When` is an action; a step phrased as a check (`Verify ...`), an expected result or a `Then` is a
check. An action whose expected result says it fails (`Registration fails with ...`) is written as
one check of the failure (`failing_action` holds the action), as a careful writer does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from offline.fake_llm.phrases import FAILURES, QUOTED, is_check
from offline.fake_llm.words import raw_words, stem

GHERKIN = re.compile(r"\b(Given|When|Then|And|But)\b")
GHERKIN_ANY_CASE = re.compile(r"(?i)\b(given|when|then)\b")
GHERKIN_LANGUAGES: dict[str, dict[str, tuple[str, ...]]] = {
    # Gherkin's own step keywords (gherkin-languages.json) for a few languages a sprint is written in
    "es": {"given": ("Dado que", "Dada", "Dados", "Dadas", "Dado"), "when": ("Cuando",), "then": ("Entonces",),
           "and": ("Y", "E"), "but": ("Pero",)},
    "fr": {"given": ("Étant donné que", "Étant donné", "Etant donné que", "Etant donné", "Sachant que", "Soit"),
           "when": ("Lorsque", "Quand"), "then": ("Alors",), "and": ("Et",), "but": ("Mais",)},
    "de": {"given": ("Angenommen", "Gegeben seien", "Gegeben sei"), "when": ("Wenn",), "then": ("Dann",),
           "and": ("Und",), "but": ("Aber",)},
    "pt": {"given": ("Dado que", "Dada", "Dados", "Dado"), "when": ("Quando",), "then": ("Então", "Entao"),
           "and": ("E",), "but": ("Mas",)},
    "it": {"given": ("Dato", "Data", "Dati", "Date"), "when": ("Quando",), "then": ("Allora",), "and": ("E",),
           "but": ("Ma",)},
    "nl": {"given": ("Gegeven", "Stel"), "when": ("Als", "Wanneer"), "then": ("Dan",), "and": ("En",),
           "but": ("Maar",)},
}  # fmt: skip
"""A criterion written in one of these languages starts with its `given` (or `when`) keyword; its
`and` words (`Y`, `Et`, `E`) are ordinary words in English text, so they split only such a criterion."""
SUBJECT = re.compile(r'^\s*"([^"]+)"\s+\w')
STEP_KEYS = ("action", "step", "description", "name")
EXPECTED_KEYS = ("expected", "result", "expected_result")


@dataclass(frozen=True)
class Clause:
    """One thing a test must do or check."""

    text: str
    role: str
    # given | action | check
    optional: bool = False
    # a scenario's overall expectation: written only when a keyword states it exactly
    failing_action: str = ""
    context: str = ""
    # what `it` / `they` refer to: the action before
    subject: str = ""
    # the quoted actor a `When` starts with ("bob" opens ...)


def fails(text: str) -> bool:
    return bool({stem(w) for w in raw_words(_unquoted(text))} & FAILURES)


def _unquoted(text: str) -> str:
    return QUOTED.sub(" ", text)


def _text(item: Any, keys: Sequence[str]) -> str:
    if isinstance(item, Mapping):
        return next((str(item[k]) for k in keys if isinstance(item.get(k), str) and item[k].strip()), "")
    return str(item).strip() if isinstance(item, str) else ""


def step_clauses(action: str, expected: str) -> list[Clause]:
    """An action and its expected result."""
    if not action:
        return [Clause(expected, "check", context=expected)] if expected else []
    if not expected:
        return [Clause(action, "check" if is_check(action) else "action")]
    if is_check(action):
        return [Clause(f"{action}. {expected}", "check")]
    if fails(expected):
        first, *rest = split_top(expected, (", ",))
        return [
            Clause(first, "check", failing_action=action),
            *(Clause(part, "check", context=action) for part in rest),
        ]
    return [Clause(action, "action"), Clause(expected, "check", context=action)]


def test_case_clauses(steps: Sequence[Any]) -> list[Clause]:
    found: list[Clause] = []
    for step in steps:
        if isinstance(step, Mapping):
            found += step_clauses(_text(step, STEP_KEYS), _text(step, EXPECTED_KEYS))
        elif str(step).strip():
            found += scenario_clauses([str(step)])
    return found


def scenario_clauses(steps: Sequence[str], expected: Sequence[str] = ()) -> list[Clause]:
    """Plain steps; an action followed by a check that it fails becomes one check."""
    found: list[Clause] = []
    index = 0
    while index < len(steps):
        text = steps[index]
        after = steps[index + 1] if index + 1 < len(steps) else ""
        if not is_check(text) and after and is_check(after) and fails(after):
            found.append(Clause(after, "check", failing_action=text))
            index += 2
            continue
        previous = steps[index - 1] if index else ""
        found.append(Clause(text, "check" if is_check(text) else "action", context=previous))
        index += 1
    found += [Clause(text, "check", optional=True, context=steps[-1] if steps else "") for text in expected]
    return found


def precondition_clauses(preconditions: Sequence[Any]) -> list[Clause]:
    return [Clause(str(p), "given") for p in preconditions if str(p).strip()]


def gherkin_parts(criterion: Any) -> list[tuple[str, str]]:
    """`Given a When b Then c And d` -> [("given", "a"), ("when", "b"), ("then", "c"), ("and", "d")]."""
    if isinstance(criterion, Mapping):
        return [(k, str(criterion[k])) for k in ("given", "when", "then") if criterion.get(k)]
    text = str(criterion)
    native = _native_keywords(text)
    pattern = native[0] if native else GHERKIN if GHERKIN.search(text) else GHERKIN_ANY_CASE
    pieces = pattern.split(text)
    parts = [("then", pieces[0].strip(" ,;"))] if pieces[0].strip(" ,;") else []
    for keyword, body in zip(pieces[1::2], pieces[2::2], strict=True):
        if body.strip(" ,;"):
            parts.append((native[1][keyword] if native else keyword.lower(), body.strip(" ,;")))
    return parts


def _native_keywords(text: str) -> tuple[re.Pattern[str], dict[str, str]] | None:
    """The splitting pattern and keyword roles of the Gherkin language the criterion starts in."""
    for keywords in GHERKIN_LANGUAGES.values():
        role_of = {word: role for role, words in keywords.items() for word in words}
        opening = [word for role in ("given", "when") for word in keywords[role]]
        if any(re.match(rf"\s*{re.escape(word)}\b", text) for word in opening):
            alternatives = "|".join(re.escape(word) for word in sorted(role_of, key=len, reverse=True))
            return re.compile(rf"(?<!\w)({alternatives})(?!\w)"), role_of
    return None


def criterion_clauses(criterion: Any) -> list[Clause]:
    found: list[Clause] = []
    role = "given"
    context = subject = ""
    parts = gherkin_parts(criterion)
    for index, (keyword, text) in enumerate(parts):
        role = {"given": "given", "when": "action", "then": "check"}.get(keyword, role)
        if role == "action":
            context, subject = text, _subject(text)
            after = parts[index + 1] if index + 1 < len(parts) else ("", "")
            if after[0] == "then" and fails(after[1]):
                continue
        if role == "check" and keyword == "then" and context and fails(text):
            found.append(Clause(text, "check", failing_action=context, context=context, subject=subject))
            continue
        found.append(Clause(text, role, context=context if role == "check" else "", subject=subject))
    return found


def _subject(text: str) -> str:
    match = SUBJECT.match(text)
    return match.group(1) if match else ""


def split_top(text: str, separators: Sequence[str] = (" and ", ", ")) -> list[str]:
    """`text` cut at separators outside quotes and parentheses."""
    masked = list(text)
    for match in QUOTED.finditer(text):
        masked[match.start() : match.end()] = "_" * (match.end() - match.start())
    depth = 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth > 0:
            masked[i] = "_"
    flat = "".join(masked)
    pattern = "|".join(re.escape(s) for s in separators)
    parts, start = [], 0
    for match in re.finditer(pattern, flat):
        parts.append(text[start : match.start()])
        start = match.end()
    parts.append(text[start:])
    return [p.strip(" ,;.") for p in parts if p.strip(" ,;.")]
