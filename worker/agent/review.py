"""Stage 3, review: the team's prose convention (any language) and the spec's acceptance criteria,
judged by a model in a separate conversation that answers a validated schema.

One request, no tools, a fresh conversation (never the writer's): the convention, the spec, its
criteria numbered (or a request to derive them when it names none), the signatures of the keywords
the suite calls, and the suite with line numbers. The answer is structured — the provider's JSON
schema response format where it is offered, else one forced function call, else strict JSON with
one retry (JSON mode) — and validated with pydantic. It is data, never instructions: fields outside the
schema are ignored (and logged), a violation whose rule is not quoted from the convention is
dropped, a covering test the suite does not have covers nothing. No usable answer means the review
is `not_run` with its reason (verdict `unreviewed`), never a pass.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from robot.utils import normalize

from worker.agent.checks.calls import CallReport
from worker.agent.checks.suite import ParsedSuite
from worker.agent.checks.verdict import Outcome, Stage, StageResult, not_run
from worker.agent.events import Event, EventKind, EventSink
from worker.agent.model import ChatModel
from worker.agent.prompt import review_messages
from worker.agent.stream import AssembledTurn, TurnAssembler, Usage
from worker.errors import ModelRequestRejected, ModelUnavailable

logger = logging.getLogger(__name__)

REVIEW_TOOL = "submit_review"
REVIEW_ATTEMPTS = 3
"""A review the provider fails transiently (5xx, 429, connection) is asked again this often."""
REVIEW_BACKOFF_S = (1.0, 3.0)
MAX_RETRY_AFTER_S = 15.0
MODES = ("json_schema", "tool", "json")
CRITERIA_FIELDS = ("acceptance_criteria", "acceptanceCriteria", "criteria")
SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["violations", "criteria", "criteria_derived"],
    "properties": {
        "violations": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["rule", "line", "fix"],
            "properties": {
                "rule": {"type": "string", "description": "The convention's rule, quoted word for word."},
                "line": {"type": ["integer", "null"], "description": "The suite's line that breaks it."},
                "fix": {"type": "string", "description": "What to change."},
            }}},
        "criteria": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["criterion", "covered_by"],
            "properties": {
                "criterion": {"type": "string", "description": "The acceptance criterion."},
                "covered_by": {"type": ["string", "null"], "description": "The test covering it, or null."},
            }}},
        "criteria_derived": {"type": "boolean", "description": "True when the spec names no criteria."},
    },
}  # fmt: skip


class Violation(BaseModel):
    model_config = ConfigDict(extra="ignore")
    rule: str
    line: int | None = None
    fix: str = ""


class CriterionReview(BaseModel):
    model_config = ConfigDict(extra="ignore")
    criterion: str
    covered_by: str | None = None


class ReviewAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")
    violations: list[Violation]
    criteria: list[CriterionReview]
    criteria_derived: bool = False


class ReviewUnavailable(Exception):
    """No usable answer: the review did not happen (its reason is recorded)."""


@dataclass
class ReviewTally:
    """What the job's reviews cost, apart from the writer's tokens."""

    usage: Usage = field(default_factory=Usage)
    reviews: int = 0


_WORKING_MODE: dict[str, str] = {}
"""Per process and reviewer model: the structured-output mode the provider accepted."""


@dataclass
class Reviewer:
    model: ChatModel
    convention: str
    spec: dict[str, Any]
    sink: EventSink
    tally: ReviewTally
    mode: str = "auto"
    outage_retryable: bool = False
    """The provider still unavailable after the in-place tries: True raises `ModelUnavailable` (the
    job's attempt fails and is retried like any model call, resuming at the review); False records
    the review as not run and the verdict `unreviewed` (the last attempt, or `robot-fleet write`)."""

    async def __call__(self, parsed: ParsedSuite, report: CallReport) -> StageResult:
        criteria = spec_criteria(self.spec)
        messages = review_messages(self.convention, self.spec, criteria, _signatures(report), parsed.text)
        self.sink.emit(Event(EventKind.INFO, "review: asking the reviewer"))
        try:
            answer = await self._ask(messages)
        except ReviewUnavailable as exc:
            self.sink.emit(Event(EventKind.INFO, f"review unavailable: {exc}"))
            return not_run(Stage.REVIEW, f"review unavailable: {exc}")
        return judge(answer, parsed, criteria, self.convention)

    async def _ask(self, messages: list[dict[str, Any]]) -> ReviewAnswer:
        modes = [_WORKING_MODE.get(self.model.name, MODES[0])] if self.mode == "auto" else [self.mode]
        if self.mode == "auto":
            modes += [mode for mode in MODES if mode not in modes]
        rejected = ""
        for mode in modes:
            try:
                answer = await self._patiently(mode, messages)
            except ModelRequestRejected as exc:
                rejected = exc.message  # this provider does not take the format: the next one
                logger.info("reviewer %s refused the %s format: %s", self.model.name, mode, exc.message)
                continue
            _WORKING_MODE[self.model.name] = mode
            return answer
        raise ReviewUnavailable(f"the provider accepted no structured format ({rejected})")

    async def _patiently(self, mode: str, messages: list[dict[str, Any]]) -> ReviewAnswer:
        """One mode, asked again when the provider fails transiently (after the client's own retries)."""
        for attempt in range(REVIEW_ATTEMPTS):
            try:
                return await self._in_mode(mode, messages)
            except ModelUnavailable as exc:
                if attempt == REVIEW_ATTEMPTS - 1:
                    if self.outage_retryable:
                        raise
                    raise ReviewUnavailable(exc.message) from exc
                wait = min(max(exc.retry_after or 0.0, REVIEW_BACKOFF_S[attempt]), MAX_RETRY_AFTER_S)
                logger.info("reviewer unavailable (%s); asking again in %.1fs", exc.message, wait)
                await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    async def _in_mode(self, mode: str, messages: list[dict[str, Any]]) -> ReviewAnswer:
        tools, extra = _request(mode)
        turn = await self._turn(messages, tools, extra)
        text = turn.tool_calls[0].arguments if mode == "tool" and turn.tool_calls else turn.text
        try:
            return parse_answer(turn, text)
        except ReviewUnavailable as exc:
            if mode != "json":
                raise
            retry = [*messages, {"role": "assistant", "content": text},
                     {"role": "user", "content": f"That is not the JSON object asked for ({exc}). "
                      "Answer with the JSON object only."}]  # fmt: skip
            turn = await self._turn(retry, [], extra)
            return parse_answer(turn, turn.text)

    async def _turn(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
                    extra: dict[str, Any]) -> AssembledTurn:  # fmt: skip
        emit: Callable[[str], None] = lambda text: self.sink.emit(Event(EventKind.REVIEW, text))  # noqa: E731
        assembler = TurnAssembler(on_text=emit, on_thinking=emit)
        async for chunk in self.model.stream_turn(messages, tools, extra):
            assembler.add(chunk)
            for choice in chunk.get("choices") or ():  # a tool call's arguments are the review
                for call in (choice.get("delta") or {}).get("tool_calls") or ():
                    if isinstance((call.get("function") or {}).get("arguments"), str):
                        emit(call["function"]["arguments"])
        turn = assembler.finish()
        self.tally.reviews += 1
        if turn.usage is not None:
            self.tally.usage = self.tally.usage + turn.usage
        return turn


def _request(mode: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    if mode == "json_schema":
        schema = {"name": "suite_review", "strict": True, "schema": SCHEMA}
        return [], {"response_format": {"type": "json_schema", "json_schema": schema}}
    if mode == "tool":
        tool = {"type": "function", "function": {"name": REVIEW_TOOL, "description": "Submit the review.",
                                                 "parameters": SCHEMA, "strict": True}}  # fmt: skip
        return [tool], {"tool_choice": {"type": "function", "function": {"name": REVIEW_TOOL}}}
    return [], {"response_format": {"type": "json_object"}}


def parse_answer(turn: AssembledTurn, text: str) -> ReviewAnswer:
    if turn.refusal:
        raise ReviewUnavailable(f"the reviewer refused: {turn.refusal.strip()[:200]}")
    body = _json_body(text)
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ReviewUnavailable(f"malformed answer, not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ReviewUnavailable("malformed answer: not a JSON object")
    try:
        answer = ReviewAnswer.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise ReviewUnavailable(f"malformed answer: {where}: {error['msg'].lower()}") from exc
    extra = sorted(set(data) - set(ReviewAnswer.model_fields))
    if extra:
        logger.warning("review answer carried fields outside the schema, ignored: %s", ", ".join(extra))
    return answer


def _json_body(text: str) -> str:
    fenced = re.search(r"```(?:json)?\s*\n(.*?)```", text, re.DOTALL)
    body = fenced.group(1) if fenced else text
    start, end = body.find("{"), body.rfind("}")
    return body[start : end + 1] if start >= 0 and end > start else body.strip()


def spec_criteria(spec: dict[str, Any]) -> list[str]:
    """The acceptance criteria the spec names, as text; empty when it names none."""
    for name in CRITERIA_FIELDS:
        value = spec.get(name)
        if isinstance(value, list) and value:
            return [_criterion_text(item) for item in value if _criterion_text(item)]
    return []


def _criterion_text(item: Any) -> str:
    if isinstance(item, dict):
        parts = [f"{key.title()} {item[key]}" for key in ("given", "when", "then") if item.get(key)]
        return " ".join(parts) or json.dumps(item, ensure_ascii=False)
    return " ".join(str(item).split())


def _signatures(report: CallReport) -> list[str]:
    seen: dict[str, str] = {}
    for _, keyword in report.calls:
        if keyword is not None and keyword.kind != "builtin":
            seen.setdefault(keyword.name, f"{keyword.name}    {keyword.spec}    ({keyword.source})")
    return list(seen.values())


def _flat(text: str) -> str:
    """Text compared without markdown and quote marks (a quote often drops them): deleted, not spaced."""
    return " ".join(re.sub(r"[*`\"'«»“”‘’]", "", text).lower().split())


def quoted_from(rule: str, convention: str) -> bool:
    """Whether `rule` is quoted from the convention (pieces around an ellipsis each found in it)."""
    haystack = _flat(convention)
    pieces = [_flat(piece) for piece in re.split(r"\.\.\.|…", rule)]
    pieces = [piece for piece in pieces if piece]
    return bool(pieces) and all(piece in haystack for piece in pieces)


def judge(answer: ReviewAnswer, parsed: ParsedSuite, criteria: list[str], convention: str) -> StageResult:
    """The stage's outcome from the schema's fields alone, each checked against what it claims."""
    problems: list[str] = []
    violations = [v for v in answer.violations if quoted_from(v.rule, convention)]
    for ignored in (v for v in answer.violations if v not in violations):
        logger.warning("review named a rule that is not in the convention, ignored: %r", ignored.rule[:200])
    lines = len(parsed.text.splitlines())
    for violation in violations:
        line = violation.line if violation.line and 0 < violation.line <= lines else 0
        fix = f" Fix: {violation.fix.strip()}" if violation.fix.strip() else ""
        problems.append(
            parsed.at(line, f'review: breaks the convention\'s rule "{violation.rule.strip()}".{fix}')
        )
    tests = {normalize(test.name): test.name for test in parsed.tests}
    reviewed = answer.criteria[: len(criteria)] if criteria else answer.criteria
    if criteria and len(reviewed) < len(criteria):
        return not_run(
            Stage.REVIEW, f"review unavailable: it assessed {len(reviewed)} of {len(criteria)} criteria"
        )
    if not reviewed:
        return not_run(Stage.REVIEW, "review unavailable: it named no acceptance criterion")
    covered = 0
    for number, item in enumerate(reviewed, start=1):
        text = criteria[number - 1] if criteria and number <= len(criteria) else item.criterion
        test = tests.get(normalize(item.covered_by or ""))
        if test is not None:
            covered += 1
            continue
        named = f" (it names `{item.covered_by}`, which the suite does not have)" if item.covered_by else ""
        problems.append(
            f'review: acceptance criterion {number} "{text}" is covered by no test{named}: add one.'
        )
    figures = {"review_violations": len(violations), "criteria_covered": covered,
               "criteria_total": len(reviewed), "criteria_derived": not criteria}  # fmt: skip
    return StageResult(Stage.REVIEW, Outcome.FAILED if problems else Outcome.PASSED, tuple(problems), figures)
