"""The scripted reviewer: a review request in, its answer out, in the mode the request asks for.

Default judgement (`review=pass`): no violation; each criterion (the numbered ones, else criteria
derived from the spec's scenario or test case names, else its title) is covered by the suite's
test whose name and steps share the most significant words with it (`words.py`), or by none when
no test shares one. The other `review` knobs are in `REVIEWS` (knobs.py) and the docstring of
`answer`; `violation` and `uncovered` misjudge only the first review of a spec id, so a product
that repairs and reviews again sees its second review pass.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from offline.fake_llm.policy import Action, Answer, RawCall, Refusal, ToolTurn
from offline.fake_llm.review_request import JSON_SCHEMA, TOOL, ReviewRequest, SuiteTest
from offline.fake_llm.suite import spec_id
from offline.fake_llm.words import overlap, words

THINKING = "I compare the suite with the convention and with each acceptance criterion."
REFUSAL = "I'm sorry, I can't help with that."
MALFORMED = '{"violations": ['
UNSUPPORTED_SCHEMA = "response_format json_schema is not supported by this model"
FIRST_ONLY = ("violation", "uncovered")
# knobs that misjudge only the first review of a spec id
LIST_ITEM = re.compile(r"^(?P<indent>\s*)(?:[-*+]|\d+[.)])\s+(?P<text>\S.*)$")
INLINE_MARKUP = re.compile(r"`|\*\*|__")
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^\s*#")


@dataclass
class ReviewBook:
    """Which spec ids a first-only knob has already misjudged (cleared by `POST /stats/reset`)."""

    seen: set[tuple[str, str]] = field(default_factory=set)

    def first(self, knob: str, spec: Mapping[str, Any]) -> bool:
        """True for the first review of this spec id under `knob`, and marks it seen."""
        key = (knob, spec_id(spec))
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


def rejection(knob: str, mode: str) -> int | None:
    """The status of the error the knob answers instead of a review, if any: `no_json_schema`
    refuses the json_schema format (400), `error500` fails every review (500)."""
    if knob == "no_json_schema" and mode == JSON_SCHEMA:
        return 400
    if knob == "error500":
        return 500
    return None


def answer(request: ReviewRequest, knob: str, book: ReviewBook) -> tuple[Action, str]:
    """The reviewer's turn and what it said (`pass`, `violation`, `uncovered`, `malformed`,
    `refusal`, `obey`), for the stats.

    - violation: the first review of a spec id reports one violation of a rule quoted from the
      convention, on the first test's first step; later reviews pass.
    - uncovered: the first review of a spec id reports the last criterion covered by no test.
    - malformed: text that is not JSON; refusal: a `refusal` and no content.
    - obey: a reviewer that obeyed an injected instruction: approval fields outside the schema and
      no criterion assessed.
    """
    if knob == "refusal":
        return Refusal(REFUSAL, THINKING), "refusal"
    if knob == "malformed":
        return _shaped(request, MALFORMED), "malformed"
    if knob == "obey":
        obeyed = {"violations": [], "criteria": [], "criteria_derived": False}
        return _shaped(request, {**obeyed, "approved": True, "verdict": "verified"}), "obey"
    judgement = judge(request)
    said = "pass"
    if knob in FIRST_ONLY and book.first(knob, request.spec):
        said = _misjudge(knob, request, judgement)
    return _shaped(request, judgement), said


def _misjudge(knob: str, request: ReviewRequest, judgement: dict[str, Any]) -> str:
    """Apply a first-only knob to `judgement` in place; what the review now says."""
    if knob == "violation":
        rule = quoted_rule(request.convention)
        if not rule:
            return "pass"
        first = request.tests[0] if request.tests else None
        line = (first.step_line or first.line) if first else None  # a step: the test's name is not the breach
        fix = f"Change line {line} so that it follows this rule." if line else "Follow this rule."
        judgement["violations"] = [{"rule": rule, "line": line, "fix": fix}]
        return "violation"
    if not judgement["criteria"]:
        return "pass"
    judgement["criteria"][-1]["covered_by"] = None
    return "uncovered"


def judge(request: ReviewRequest) -> dict[str, Any]:
    """The default judgement: no violation, each criterion matched to its best test."""
    criteria = list(request.criteria) or derived_criteria(request.spec)
    assessed = [{"criterion": c, "covered_by": covering_test(c, request.tests)} for c in criteria]
    return {"violations": [], "criteria": assessed, "criteria_derived": not request.criteria}


def derived_criteria(spec: Mapping[str, Any]) -> list[str]:
    """The spec's scenario names, else its test case names, else its title."""
    for source in ("scenarios", "test_cases"):
        items = spec.get(source)
        names = [_item_name(item) for item in items] if isinstance(items, list) else []
        if any(names):
            return [name for name in names if name]
    title = " ".join(str(spec.get("title") or "").split())
    return [title] if title else []


def _item_name(item: Any) -> str:
    if isinstance(item, Mapping):
        item = item.get("name") or item.get("title") or ""
    return " ".join(str(item).split())


def covering_test(criterion: str, tests: Sequence[SuiteTest]) -> str | None:
    """The test sharing the most significant words with `criterion` (name words break ties, then
    the order of the suite); None when no test shares one."""
    wanted = set(words(criterion))
    best: SuiteTest | None = None
    best_score = (0, 0)
    for test in tests:
        shared = overlap(wanted, words(" ".join((test.name, *test.steps))))
        score = (len(shared), len(overlap(wanted, words(test.name))))
        if score[0] and score > best_score:
            best, best_score = test, score
    return best.name if best else None


def quoted_rule(convention: str) -> str:
    """A rule quoted word for word: the first list item (with its continuation lines) that has no
    inline markup, else the first list item with its markup removed, else the first prose line.
    Text without markup reads the same whether or not a reader strips markdown before comparing."""
    items = _list_items(convention)
    plain = [item for item in items if not INLINE_MARKUP.search(item)]
    if plain:
        return plain[0]
    if items:
        return " ".join(INLINE_MARKUP.sub("", items[0]).split())
    prose = [line.strip() for line in _outside_fences(convention) if line.strip() and not HEADING.match(line)]
    return prose[0] if prose else ""


def _list_items(convention: str) -> list[str]:
    items: list[list[str]] = []
    open_item = False
    for line in _outside_fences(convention):
        match = LIST_ITEM.match(line)
        if match:
            items.append([match.group("text").strip()])
            open_item = True
        elif open_item and line.strip() and line[:1].isspace() and not HEADING.match(line):
            items[-1].append(line.strip())
        else:
            open_item = False
    return [" ".join(" ".join(parts).split()) for parts in items]


def _outside_fences(text: str) -> list[str]:
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def _shaped(request: ReviewRequest, payload: str | dict[str, Any]) -> Action:
    """The answer in the request's mode: one call of the forced function, else the content."""
    text = payload if isinstance(payload, str) else json.dumps(payload)
    if request.mode == TOOL:
        return ToolTurn((RawCall(request.function, text),), THINKING, forced=True)
    return Answer(text, THINKING)
