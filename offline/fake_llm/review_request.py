"""A review request, recognised and read: by the structured answer it asks for, never by wording.

A request is a review request when its `response_format.type` is `json_schema` or `json_object`,
or when its `tool_choice` names a function: a writer never constrains its answer that way. Its
data is read from the marked sections of its first user message, by their `## ` headings
(docs/CONTRACTS-offline.md): `## Convention (...)`, `## Spec`, `## Acceptance criteria`,
`## Keywords the suite calls`, `## Suite`. The convention is free text that may hold `## `
headings of its own, so each section is found after the one before it, the later ones from the end.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from offline.fake_llm.history import find_spec
from offline.fake_llm.protocol import first_user_text

JSON_SCHEMA = "json_schema"
JSON_OBJECT = "json_object"
TOOL = "tool"
MODES = (JSON_SCHEMA, TOOL, JSON_OBJECT)
CONVENTION = re.compile(r"(?m)^## Convention\b.*$")
SPEC = re.compile(r"(?m)^## Spec[ \t]*$")
CRITERIA = re.compile(r"(?m)^## Acceptance criteria[ \t]*$")
KEYWORDS = re.compile(r"(?m)^## Keywords the suite calls[ \t]*$")
SUITE = re.compile(r"(?m)^## Suite[ \t]*$")
NUMBERED = re.compile(r"^\s*\d+[.)]\s+(\S.*?)\s*$")
SUITE_LINE = re.compile(r"^\s*(\d+)(?: {2}(.*))?$")
TEST_SECTION = re.compile(r"(?i)^\*+\s*(?:test cases?|tasks?)\s*\**\s*$")
CELL_SEPARATOR = re.compile(r" {2,}|\t| \| ")


@dataclass(frozen=True)
class SuiteTest:
    """One test of the suite under review: its name, the line of its name and its step lines."""

    name: str
    line: int
    steps: tuple[str, ...] = ()
    step_line: int = 0
    """The line of its first step (0: none): where a reviewer points at what the test does."""


@dataclass(frozen=True)
class ReviewRequest:
    """What a review request asks and shows."""

    mode: str
    # json_schema | tool | json_object: how the answer must come back
    function: str = ""
    # the function `tool_choice` forces, in tool mode
    convention: str = ""
    spec: dict[str, Any] = field(default_factory=dict)
    criteria: tuple[str, ...] = ()
    # the numbered criteria; empty when the request lists none (the reviewer derives them)
    tests: tuple[SuiteTest, ...] = ()


def review_mode(body: Mapping[str, Any]) -> tuple[str, str] | None:
    """(mode, forced function) when `body` asks for a structured review answer, else None."""
    choice = body.get("tool_choice")
    function = choice.get("function") if isinstance(choice, Mapping) else None
    if isinstance(function, Mapping) and isinstance(function.get("name"), str) and function["name"]:
        return TOOL, function["name"]
    response_format = body.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, Mapping) else None
    if kind in (JSON_SCHEMA, JSON_OBJECT):
        return str(kind), ""
    return None


def read_review(body: Mapping[str, Any]) -> ReviewRequest | None:
    """The review request `body` makes, or None for a writer's request."""
    mode = review_mode(body)
    if mode is None:
        return None
    sections = _sections(first_user_text(body["messages"]))
    spec = find_spec(sections.get("spec", ""))
    return ReviewRequest(
        mode=mode[0],
        function=mode[1],
        convention=sections.get("convention", ""),
        spec=spec,
        criteria=tuple(_numbered(sections.get("criteria", ""))),
        tests=tuple(read_tests(sections.get("suite", ""))),
    )


def _sections(text: str) -> dict[str, str]:
    """Section name -> its text; a section whose heading is missing is absent."""
    found: dict[str, str] = {}
    end = len(text)
    # From the end: the suite's lines are numbered and the spec is one JSON block, so no later
    # heading can be imitated by data; the convention keeps whatever headings it has.
    for name, heading in (("suite", SUITE), ("keywords", KEYWORDS), ("criteria", CRITERIA), ("spec", SPEC)):
        matches = list(heading.finditer(text, 0, end))
        if matches:
            found[name] = text[matches[-1].end() : end]
            end = matches[-1].start()
    convention = CONVENTION.search(text, 0, end)
    if convention:
        found["convention"] = text[convention.end() : end]
    return found


def _numbered(text: str) -> list[str]:
    return [match.group(1) for line in text.splitlines() if (match := NUMBERED.match(line))]


def read_tests(numbered: str) -> list[SuiteTest]:
    """The tests of a suite shown with line numbers (`   7  text`): names and step lines."""
    tests: list[SuiteTest] = []
    in_tests = False
    for number, text in _suite_lines(numbered):
        if text.startswith("*"):
            in_tests = bool(TEST_SECTION.match(text.strip()))
        elif in_tests and text.strip() and not text.lstrip().startswith("#"):
            if not text[0].isspace():
                tests.append(SuiteTest(CELL_SEPARATOR.split(text.strip())[0], number))
            elif tests and not text.strip().startswith("["):
                last = tests[-1]
                tests[-1] = SuiteTest(
                    last.name, last.line, (*last.steps, text.strip()), last.step_line or number
                )
    return tests


def _suite_lines(numbered: str) -> Sequence[tuple[int, str]]:
    lines = []
    for raw in numbered.splitlines():
        match = SUITE_LINE.match(raw)
        if match:
            lines.append((int(match.group(1)), match.group(2) or ""))
    return lines
