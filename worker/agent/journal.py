"""Durable rounds (DESIGN, writer rule 10): each completed round of the writer is journaled, and a new
attempt of the same job with the same inputs continues from the last one instead of paying for
every round again.

A round is complete once its messages are all in the conversation: the assistant message with its
tool calls and one tool result per call, or a draft with the repair request its checks (review
included) sent back. Its entry holds those messages and the run's counters after it, so a replay
restores the conversation and the figures exactly; the round in flight when an attempt died is the
only one paid twice. The fingerprint covers everything the conversation depends on: the first
messages (spec, project, ref, convention, tree, rules, catalog, the files given up front), the tool
list, the model and the prompt version; a journal of another fingerprint is never replayed.

The loop sees the small `Journal` interface; the fleet's lives in Redis (`worker.adapters.journal`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from worker.agent.checks.pipeline import Verification
from worker.agent.checks.verdict import Checks, Outcome, Stage, StageResult
from worker.agent.stream import Usage

FINGERPRINT_VERSION = "1"


@dataclass(frozen=True)
class JournalEntry:
    """One completed round: the messages it added and the run's counters after it."""

    round: int
    messages: tuple[dict[str, Any], ...]
    state: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"round": self.round, "messages": list(self.messages), "state": self.state}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JournalEntry:
        return cls(int(data["round"]), tuple(data["messages"]), dict(data["state"]))


class Journal(Protocol):
    async def start(self, fingerprint: str) -> list[JournalEntry]:
        """The completed rounds to replay: none when there is no journal or it is of another
        fingerprint (which starts a fresh one)."""
        ...

    async def append(self, fingerprint: str, entry: JournalEntry) -> None:
        """Keep one more completed round. Best effort: a round that cannot be kept is redone by a
        later attempt, never a reason to stop this one."""
        ...

    async def resumed(self, from_round: int, saved_tokens: int) -> None:
        """This attempt replayed `from_round` rounds, which saved `saved_tokens` tokens."""
        ...


def fingerprint(
    *, model: str, prompt_version: str, spec_sha256: str, messages: Sequence[dict[str, Any]],
    tools: Sequence[dict[str, Any]],
) -> str:  # fmt: skip
    """What a conversation's rounds depend on, as one hash."""
    canonical = json.dumps(
        {"v": FINGERPRINT_VERSION, "model": model, "prompt_version": prompt_version, "spec": spec_sha256,
         "messages": list(messages), "tools": list(tools)},
        sort_keys=True, ensure_ascii=False, separators=(",", ":"),
    )  # fmt: skip
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def usage_state(usage: Usage) -> dict[str, int]:
    return {
        "prompt": usage.prompt_tokens,
        "completion": usage.completion_tokens,
        "cached": usage.cached_tokens,
    }


def usage_of(state: dict[str, Any] | None) -> Usage:
    state = state or {}
    return Usage(int(state.get("prompt", 0)), int(state.get("completion", 0)), int(state.get("cached", 0)))


def checks_state(checks: Checks | None) -> list[dict[str, Any]] | None:
    if checks is None:
        return None
    return [{"stage": str(s.stage), "outcome": str(s.outcome), "diagnostics": list(s.diagnostics),
             "figures": s.figures, "blocking": s.blocking} for s in checks.stages]  # fmt: skip


def checks_of(state: list[dict[str, Any]] | None) -> Checks | None:
    if state is None:
        return None
    return Checks(tuple(
        StageResult(Stage(item["stage"]), Outcome(item["outcome"]), tuple(item.get("diagnostics", ())),
                    dict(item.get("figures", {})), bool(item.get("blocking", False)))
        for item in state
    ))  # fmt: skip


def verification_state(verification: Verification | None) -> dict[str, Any] | None:
    if verification is None:
        return None
    return {"text": verification.text, "checks": checks_state(verification.checks)}


def verification_of(state: dict[str, Any] | None) -> Verification | None:
    if state is None:
        return None
    checks = checks_of(state.get("checks"))
    return Verification(str(state["text"]), checks) if checks is not None else None
