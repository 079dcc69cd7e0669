"""Durable rounds on the scripted model and an in-memory journal: an attempt that dies mid-job is
continued by the next one from its last completed round, asking the model only for the rest."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.unit.fakes import DictToolset, ScriptedModel, Turn, call_turn, text_turn
from worker.agent.checks.pipeline import VerifyConfig
from worker.agent.context import ContextCache
from worker.agent.events import EventKind, ListSink
from worker.agent.journal import JournalEntry
from worker.agent.loop import WriterLimits, WriterResult
from worker.agent.tools import ToolPolicy
from worker.agent.writer import WriterConfig, generate
from worker.errors import ModelUnavailable
from worker.spec import parse_spec

GOOD = "*** Settings ***\nDocumentation    Generated\n\n*** Test Cases ***\nA-1 Works\n    Log    ok\n"
BROKEN = "*** Test Steps ***\nA-1 Works\n    Log    ok\n"
FILES = {"doc/convention.md": "# Convention\nTag every test.", "tests/a.robot": GOOD,
         **{f"resources/r{n}.resource": f"*** Variables ***\n${{V{n}}}    {n}\n" for n in range(4)}}  # fmt: skip
TURNS: list[Turn] = [
    *(call_turn(("get_file_contents", {"file_path": f"resources/r{n}.resource"})) for n in range(4)),
    text_turn(BROKEN),  # round 5: a draft that does not parse, sent back for repair
    text_turn(GOOD),
]


@dataclass
class MemoryJournal:
    fingerprints: list[str] = field(default_factory=list)
    entries: list[JournalEntry] = field(default_factory=list)
    resumes: list[tuple[int, int]] = field(default_factory=list)

    async def start(self, fingerprint: str) -> list[JournalEntry]:
        if self.fingerprints[-1:] != [fingerprint]:
            self.fingerprints.append(fingerprint)
            self.entries = []
        return list(self.entries)

    async def append(self, fingerprint: str, entry: JournalEntry) -> None:
        assert fingerprint == self.fingerprints[-1]
        self.entries.append(entry)

    async def resumed(self, from_round: int, saved_tokens: int) -> None:
        self.resumes.append((from_round, saved_tokens))


def dies_at(request: int, turns: list[Turn]) -> list[Turn]:
    """The turns, the `request`-th of which fails as a provider outage would (the attempt ends)."""

    def failing(_messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        raise ModelUnavailable("model server answered 503")

    return [*turns[: request - 1], failing]


def attempt(turns: list[Turn], journal: MemoryJournal | None, *, model_name: str = "scripted",
            sink: ListSink | None = None) -> tuple[WriterResult | None, ScriptedModel]:  # fmt: skip
    model = ScriptedModel(turns, name=model_name)
    config = WriterConfig(ToolPolicy(project_id="42", ref="main"), WriterLimits(), review=False,
                          checks=VerifyConfig(format_output=False))  # fmt: skip
    spec = parse_spec(b'{"id": "A-1", "title": "works"}', source="A-1.json", max_bytes=10_000)
    toolset = DictToolset(dict(FILES))

    async def go() -> WriterResult:
        return await generate(spec, config, model=model, toolset=toolset, listing=await toolset.list_tools(),
                              cache=ContextCache(), sink=sink or ListSink(), journal=journal)  # fmt: skip

    try:
        return asyncio.run(go()), model
    except ModelUnavailable:
        return None, model


def test_an_attempt_that_died_at_round_4_is_continued_from_round_3_asking_only_the_rest() -> None:
    clean, uninterrupted = attempt(TURNS, MemoryJournal())
    journal = MemoryJournal()
    died, first = attempt(dies_at(4, TURNS), journal)
    assert died is None and len(first.requests) == 4 and [e.round for e in journal.entries] == [1, 2, 3]

    sink = ListSink()
    resumed, second = attempt(TURNS[3:], journal, sink=sink)
    assert resumed is not None and clean is not None
    assert len(second.requests) == len(uninterrupted.requests) - 3, "rounds 1-3 are not asked again"
    assert second.requests == uninterrupted.requests[3:], "the model sees the conversation it would have"
    assert resumed.robot_text == clean.robot_text and resumed.rounds == clean.rounds == 6
    assert (resumed.repairs, resumed.tool_calls, resumed.usage) == (
        clean.repairs,
        clean.tool_calls,
        clean.usage,
    )
    assert resumed.resumed_from == 3 and journal.resumes == [(3, 0)]
    replayed = [e.data for e in sink.of(EventKind.ROUND) if e.data.get("replayed")]
    assert [data["round"] for data in replayed] == [1, 2, 3], "the log marks the replayed rounds"


def test_a_repair_round_is_journaled_with_its_counters_and_replayed_whole() -> None:
    journal = MemoryJournal()
    attempt(dies_at(6, TURNS), journal)
    assert [e.round for e in journal.entries] == [1, 2, 3, 4, 5]
    resumed, second = attempt(TURNS[5:], journal)
    assert resumed is not None and resumed.repairs == 1 and len(resumed.diagnostics) >= 1
    assert len(second.requests) == 1 and second.requests[0][-1]["role"] == "user", "the repair request"


def test_a_journal_of_other_inputs_is_not_replayed() -> None:
    journal = MemoryJournal()
    attempt(dies_at(4, TURNS), journal)
    resumed, model = attempt(TURNS, journal, model_name="another-model")
    assert resumed is not None and resumed.resumed_from == 0 and len(model.requests) == 6
    assert len(journal.fingerprints) == 2 and [e.round for e in journal.entries] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("journal", [None, MemoryJournal()])
def test_without_a_journal_or_with_an_empty_one_every_round_is_asked(journal: MemoryJournal | None) -> None:
    result, model = attempt(TURNS, journal)
    assert result is not None and result.resumed_from == 0 and len(model.requests) == 6
