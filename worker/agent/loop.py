"""The writer loop: model turns and tool calls until a valid suite, within every bound (rules 3-8).

Each turn ends in one of three small outcomes — run tools, final answer, needs repair — matched
below. Tool failures are data for the model; only infrastructure failures (retryable) and the
exhaustion of a budget (permanent, named) leave the loop. With a journal, every completed round is
kept, and a new attempt replays them and goes on from the last one (`worker.agent.journal`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from worker.agent.catalog import CatalogEntry
from worker.agent.checks.pipeline import Verification
from worker.agent.checks.verdict import Checks
from worker.agent.context import RepoContext
from worker.agent.events import Event, EventKind, EventSink
from worker.agent.journal import (
    Journal,
    JournalEntry,
    checks_of,
    checks_state,
    fingerprint,
    usage_of,
    usage_state,
    verification_of,
    verification_state,
)
from worker.agent.model import ChatModel
from worker.agent.output import Validation, check_answer
from worker.agent.prompt import PROMPT_VERSION, initial_messages, repair_message
from worker.agent.review import ReviewTally
from worker.agent.stream import AssembledTurn, ToolCall, TurnAssembler, Usage
from worker.agent.tools import GuardedTools, ToolOutcome
from worker.agent.upfront import GivenFile
from worker.errors import NoAnswer, RepairsExhausted, RobotFleetError, RoundsExhausted
from worker.spec import Spec

TOOL_SUMMARY_CHARS = 160


@dataclass(frozen=True)
class WriterLimits:
    max_rounds: int = 16
    max_repairs: int = 2
    timeout_s: float = 600.0


SuiteCheck = Callable[[str], Awaitable[Verification]]
"""Verifies a parsed suite against the target repository (its stages); None skips verification."""


@dataclass(frozen=True)
class Given:
    """What the worker read for the writer before its first turn (context by code, not by rounds)."""

    catalog: tuple[CatalogEntry, ...] = ()
    files: tuple[GivenFile, ...] = ()


@dataclass(frozen=True)
class WriterResult:
    robot_text: str
    rounds: int
    repairs: int
    tool_calls: dict[str, int]
    usage: Usage
    diagnostics: tuple[str, ...]
    """Every diagnostic sent back to the model in repair turns, in order."""
    duration_s: float
    checks: Checks | None = None
    """The verification of the suite returned (None: verification off)."""
    first_checks: Checks | None = None
    """The verification of the first draft, before any repair."""
    degraded: tuple[str, ...] = ()
    """Tool calls that failed for infrastructure reasons (retried, or reported to the model)."""
    review_usage: Usage = field(default_factory=Usage)
    """The reviewer's tokens, apart from the writer's `usage`."""
    reviews: int = 0
    resumed_from: int = 0
    """The rounds replayed from the journal (0: this attempt started from the first round)."""
    saved_usage: Usage = field(default_factory=Usage)
    """The tokens of the replayed rounds (writer's and reviewer's), not spent again."""


@dataclass(frozen=True)
class RunTools:
    calls: tuple[ToolCall, ...]


@dataclass(frozen=True)
class FinalAnswer:
    validation: Validation


@dataclass(frozen=True)
class NeedsRepair:
    validation: Validation


TurnOutcome = RunTools | FinalAnswer | NeedsRepair


@dataclass
class _Run:
    spec: Spec
    model: ChatModel
    tools: GuardedTools
    sink: EventSink
    limits: WriterLimits
    messages: list[dict[str, Any]]
    check: SuiteCheck | None = None
    started: float = field(default_factory=time.monotonic)
    rounds: int = 0
    repairs: int = 0
    usage: Usage = field(default_factory=Usage)
    tool_calls: Counter[str] = field(default_factory=Counter)
    diagnostics: list[str] = field(default_factory=list)
    first_checks: Checks | None = None
    usable: Verification | None = None
    """The last draft that failed only non-blocking checks: written as failing if nothing better comes."""
    tally: ReviewTally = field(default_factory=ReviewTally)
    journal: Journal | None = None
    fingerprint: str = ""
    resumed_from: int = 0
    saved_usage: Usage = field(default_factory=Usage)


async def write_suite(
    spec: Spec,
    context: RepoContext,
    model: ChatModel,
    tools: GuardedTools,
    sink: EventSink,
    limits: WriterLimits,
    check: SuiteCheck | None = None,
    given: Given | None = None,
    *,
    journal: Journal | None = None,
    tally: ReviewTally | None = None,
) -> WriterResult:
    """Run the writer for one spec; raise a `RobotFleetError` when it cannot produce a usable suite.

    A suite that parses is then verified by `check`; failed stages' diagnostics feed the same
    bounded repair turns. When the budget runs out, a suite whose failure is blocking (calls that
    resolve nowhere) raises `RepairsExhausted`; any other is returned with its failing checks.
    The wall-clock budget is enforced by the caller around the whole job. `tally` counts the
    reviews `check` asks for (restored with the rest by a replay).
    """
    catalog, files = (given.catalog, given.files) if given is not None else ((), ())
    messages = initial_messages(context, spec, catalog, files)
    run = _Run(spec, model, tools, sink, limits, messages, check, tally=tally or ReviewTally())
    if journal is not None:
        await _resume(run, journal)
    return await _loop(run)


async def _loop(run: _Run) -> WriterResult:
    while run.rounds < run.limits.max_rounds:
        run.rounds += 1
        run.sink.emit(Event(EventKind.ROUND, f"round {run.rounds}", {"round": run.rounds}))
        started = len(run.messages)
        turn = await _stream_turn(run)
        match _classify(turn):
            case RunTools(calls):
                await _run_tools(run, turn.text, calls)
            case FinalAnswer(validation):
                if run.check is None:
                    return _result(run, validation.text, None)
                verification = await run.check(validation.text)
                run.first_checks = run.first_checks or verification.checks
                _emit_checks(run, verification.checks)
                if verification.passed:
                    return _result(run, verification.text, verification.checks)
                if not verification.checks.blocking:
                    run.usable = verification
                found = Validation(verification.text, tuple(verification.diagnostics))
                if (done := _repair_or_stop(run, turn.text, found)) is not None:
                    return done
            case NeedsRepair(validation):
                if (done := _repair_or_stop(run, turn.text, validation)) is not None:
                    return done
        await _keep(run, started)
    if run.usable is not None:  # the rounds ran out during repairs: the last usable draft stands
        return _result(run, run.usable.text, run.usable.checks)
    raise RoundsExhausted(
        f"{run.spec.spec_id}: no valid final answer within {run.limits.max_rounds} rounds",
        diagnostics=run.diagnostics,
    )


def _repair_or_stop(run: _Run, answer: str, validation: Validation) -> WriterResult | None:
    """Ask for a repair (None), or, with the budget spent, end on the last usable draft (written as
    failing) or raise when there is none."""
    if run.repairs < run.limits.max_repairs:
        _ask_for_repair(run, answer, validation)
        return None
    _report_final(run, validation)
    if run.usable is not None:
        return _result(run, run.usable.text, run.usable.checks)
    error = NoAnswer if not validation.text else RepairsExhausted
    raise error(
        f"{run.spec.spec_id}: answer still invalid after {run.repairs} repair turns: "
        f"{'; '.join(validation.diagnostics[:3])}",
        diagnostics=run.diagnostics,
    )


async def _stream_turn(run: _Run) -> AssembledTurn:
    assembler = TurnAssembler(
        on_text=lambda text: run.sink.emit(Event(EventKind.TEXT, text)),
        on_thinking=lambda text: run.sink.emit(Event(EventKind.THINKING, text)),
    )
    async for chunk in run.model.stream_turn(run.messages, run.tools.openai_tools()):
        assembler.add(chunk)
    turn = assembler.finish()
    if turn.usage is not None:
        run.usage = run.usage + turn.usage
        run.sink.emit(Event(EventKind.USAGE, "", _usage_dict(run.usage)))
    return turn


def _classify(turn: AssembledTurn) -> TurnOutcome:
    if turn.tool_calls:
        return RunTools(turn.tool_calls)
    validation = check_answer(turn.text)
    return FinalAnswer(validation) if validation.ok else NeedsRepair(validation)


async def _run_tools(run: _Run, text: str, calls: tuple[ToolCall, ...]) -> None:
    run.messages.append(
        {
            "role": "assistant",
            "content": text or None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in calls
            ],
        }
    )
    for call in calls:
        run.tool_calls[call.name] += 1
        run.sink.emit(Event(EventKind.TOOL_CALL, f"{call.name} {call.arguments}", _call_dict(call)))
    outcomes = await _call_concurrently(run.tools, calls)
    for call, outcome in zip(calls, outcomes, strict=True):
        run.messages.append({"role": "tool", "tool_call_id": call.id, "content": outcome.text})
        summary = outcome.text[:TOOL_SUMMARY_CHARS].replace("\n", " ")
        data = {"id": call.id, "name": call.name, "is_error": outcome.is_error, "chars": len(outcome.text)}
        run.sink.emit(Event(EventKind.TOOL_RESULT, f"{call.name}: {summary}", data))


async def _call_concurrently(tools: GuardedTools, calls: tuple[ToolCall, ...]) -> list[ToolOutcome]:
    """All calls of a turn at once; an infrastructure failure cancels the others and leaves."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(tools.call(call.name, call.arguments)) for call in calls]
    except* RobotFleetError as failures:
        raise failures.exceptions[0] from None
    return [task.result() for task in tasks]


def _ask_for_repair(run: _Run, answer: str, validation: Validation) -> None:
    run.diagnostics.extend(validation.diagnostics)
    run.repairs += 1
    data = {
        "diagnostics": list(validation.diagnostics),
        "repair": run.repairs,
        "max_repairs": run.limits.max_repairs,
    }
    run.sink.emit(Event(EventKind.DIAGNOSTICS, "\n".join(validation.diagnostics), data))
    run.messages.append({"role": "assistant", "content": answer})
    run.messages.append({"role": "user", "content": repair_message(list(validation.diagnostics))})


def _report_final(run: _Run, validation: Validation) -> None:
    """The diagnostics no repair turn is left for: logged, and kept with the job."""
    run.diagnostics.extend(validation.diagnostics)
    data = {
        "diagnostics": list(validation.diagnostics),
        "repair": None,
        "max_repairs": run.limits.max_repairs,
    }
    run.sink.emit(Event(EventKind.DIAGNOSTICS, "\n".join(validation.diagnostics), data))


def _emit_checks(run: _Run, checks: Checks) -> None:
    summary = ", ".join(f"{stage} {outcome}" for stage, outcome in checks.outcomes().items())
    run.sink.emit(Event(EventKind.CHECKS, f"{checks.verdict}: {summary}", checks.as_dict()))


def _result(run: _Run, robot_text: str, checks: Checks | None) -> WriterResult:
    return WriterResult(
        checks=checks,
        first_checks=run.first_checks,
        degraded=tuple(run.tools.degraded),
        robot_text=robot_text,
        rounds=run.rounds,
        repairs=run.repairs,
        tool_calls=dict(run.tool_calls),
        usage=run.usage,
        diagnostics=tuple(run.diagnostics),
        duration_s=time.monotonic() - run.started,
        resumed_from=run.resumed_from,
        saved_usage=run.saved_usage,
    )


async def _resume(run: _Run, journal: Journal) -> None:
    """Replay the rounds journaled for this conversation; the loop goes on from the last one."""
    run.journal = journal
    run.fingerprint = fingerprint(
        model=run.model.name, prompt_version=PROMPT_VERSION, spec_sha256=run.spec.sha256,
        messages=run.messages, tools=run.tools.openai_tools(),
    )  # fmt: skip
    last: JournalEntry | None = None
    for entry in await journal.start(run.fingerprint):
        if entry.round != run.rounds + 1 or entry.round > run.limits.max_rounds:
            break  # never past a gap, nor past this attempt's round budget
        run.messages.extend(entry.messages)
        run.rounds = entry.round
        run.sink.emit(Event(EventKind.ROUND, f"round {entry.round} (replayed from the journal)",
                            {"round": entry.round, "replayed": True}))  # fmt: skip
        last = entry
    if last is None:
        return
    _restore(run, last.state)
    run.resumed_from = run.rounds
    run.saved_usage = run.usage + run.tally.usage
    saved = run.saved_usage.prompt_tokens + run.saved_usage.completion_tokens
    run.sink.emit(Event(EventKind.INFO, f"resumed after round {run.rounds}: {saved:,} tokens not spent again",
                        {"resumed_from": run.rounds, "saved_tokens": saved}))  # fmt: skip
    run.sink.emit(Event(EventKind.USAGE, "", _usage_dict(run.usage)))
    await journal.resumed(run.rounds, saved)


async def _keep(run: _Run, started: int) -> None:
    """Journal the round that just completed (its messages from `started` on)."""
    if run.journal is not None:
        entry = JournalEntry(run.rounds, tuple(run.messages[started:]), _snapshot(run))
        await run.journal.append(run.fingerprint, entry)


def _snapshot(run: _Run) -> dict[str, Any]:
    return {
        "repairs": run.repairs, "usage": usage_state(run.usage), "tool_calls": dict(run.tool_calls),
        "diagnostics": list(run.diagnostics), "first_checks": checks_state(run.first_checks),
        "usable": verification_state(run.usable), "degraded": list(run.tools.degraded),
        "review_usage": usage_state(run.tally.usage), "reviews": run.tally.reviews,
    }  # fmt: skip


def _restore(run: _Run, state: dict[str, Any]) -> None:
    run.repairs = int(state.get("repairs", 0))
    run.usage = usage_of(state.get("usage"))
    run.tool_calls = Counter({str(k): int(v) for k, v in (state.get("tool_calls") or {}).items()})
    run.diagnostics = [str(line) for line in state.get("diagnostics") or []]
    run.first_checks = checks_of(state.get("first_checks"))
    run.usable = verification_of(state.get("usable"))
    run.tools.degraded.extend(str(call) for call in state.get("degraded") or [])
    run.tally.usage = usage_of(state.get("review_usage"))
    run.tally.reviews = int(state.get("reviews", 0))


def _call_dict(call: ToolCall) -> dict[str, Any]:
    try:
        arguments: Any = json.loads(call.arguments) if call.arguments.strip() else {}
    except ValueError:
        arguments = call.arguments
    return {"id": call.id, "name": call.name, "arguments": arguments}


def _usage_dict(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "cached_tokens": usage.cached_tokens,
    }
