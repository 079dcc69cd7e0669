"""Every keyword call of a suite resolved against its scope, with Robot Framework's own rules.

A call resolves to the suite's own keywords, an imported resource, then a library (BuiltIn
included); `Library.Keyword` names pick their owner; BDD prefixes are tried off; embedded arguments
use the keyword's own `matches`; argument counts use `ArgumentSpec.resolve` (Robot's message).
A call that resolves nowhere is an error, unless a library the worker cannot load is in scope:
then it is `unverified` — never excused, never counted as resolved.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from robot.errors import DataError
from robot.running import TestSuite
from robot.utils import normalize

from worker.agent.checks.scope import Keyword, Kind, Scope

BDD_PREFIXES = ("given ", "when ", "then ", "and ", "but ")
CLOSEST_NAMES = 3


@dataclass(frozen=True)
class Call:
    line: int
    name: str
    args: tuple[str, ...]
    in_test: bool
    """Written in a test (body, setup, teardown) or the suite's setup/teardown, not a local keyword."""
    owner: str = ""
    """The test or suite-local keyword it is written in ("" for the suite's setup and teardown)."""


@dataclass
class CallReport:
    calls: list[tuple[Call, Keyword | None]] = field(default_factory=list)
    by_kind: Counter[str] = field(default_factory=Counter)
    unverified: list[Call] = field(default_factory=list)
    diagnostics: list[tuple[int, str]] = field(default_factory=list)

    @property
    def resolved(self) -> int:
        return sum(self.by_kind.values())

    @property
    def uses_resources(self) -> bool:
        """Some call names a keyword of the repository's resources (even with wrong arguments)."""
        return any(keyword is not None and keyword.kind == Kind.RESOURCE for _, keyword in self.calls)

    def tests_without_resources(self, tests: list[str]) -> list[str]:
        """Tests that call no keyword of the repository's resources, directly or through the suite's
        own keywords (a test of `Log` lines tests nothing, whatever the suite's setup calls)."""
        reaching = {normalize(call.owner) for call, kw in self.calls if not call.in_test and _is_resource(kw)}
        local_calls = [
            (normalize(call.owner), kw) for call, kw in self.calls if not call.in_test and kw is not None
        ]
        changed = True
        while changed:  # a local keyword calling a local keyword that reaches the repository
            changed = False
            for owner, keyword in local_calls:
                if (
                    keyword.kind == Kind.SUITE
                    and normalize(keyword.name) in reaching
                    and owner not in reaching
                ):
                    reaching.add(owner)
                    changed = True
        using = {
            normalize(call.owner)
            for call, keyword in self.calls
            if call.in_test and call.owner and keyword is not None
            and (_is_resource(keyword) or (keyword.kind == Kind.SUITE and normalize(keyword.name) in reaching))
        }  # fmt: skip
        return [name for name in tests if normalize(name) not in using]

    def figures(self) -> dict[str, Any]:
        total = len(self.calls)
        return {
            "calls": total,
            "calls_resolved": self.resolved,
            "calls_unverified": len(self.unverified),
            "calls_by_source": {kind: self.by_kind.get(kind, 0) for kind in KINDS},
            "reuse_share": round(self.by_kind.get(Kind.RESOURCE, 0) / total, 3) if total else 0.0,
        }


KINDS = (Kind.RESOURCE, Kind.SUITE, Kind.LIBRARY, Kind.BUILTIN)


def suite_calls(suite: TestSuite) -> Iterator[Call]:
    for fixture in (suite.setup, suite.teardown):
        if fixture and fixture.name:
            yield from _walk([fixture], in_test=True, owner="")
    for test in suite.tests:
        yield from _walk([test.setup, *test.body, test.teardown], in_test=True, owner=test.name)
    for keyword in suite.resource.keywords:
        yield from _walk([keyword.setup, *keyword.body, keyword.teardown], in_test=False, owner=keyword.name)


def _walk(body: Any, *, in_test: bool, owner: str) -> Iterator[Call]:
    for item in body:
        if item is None or (not getattr(item, "name", None) and not hasattr(item, "body")):
            continue
        if getattr(item, "type", None) in ("KEYWORD", "SETUP", "TEARDOWN") and item.name:
            yield Call(item.lineno or 0, item.name, tuple(item.args), in_test, owner)
        if hasattr(item, "body"):
            yield from _walk(item.body, in_test=in_test, owner=owner)


def _is_resource(keyword: Keyword | None) -> bool:
    return keyword is not None and keyword.kind == Kind.RESOURCE


def resolve_calls(suite: TestSuite, scope: Scope) -> CallReport:
    report = CallReport()
    names = sorted({kw.name for kw in scope.keywords if kw.kind != Kind.BUILTIN and not kw.private})
    for call in suite_calls(suite):
        keyword = None if "${" in call.name or "@{" in call.name else resolve(call.name, scope)
        report.calls.append((call, keyword))
        if keyword is None:
            if scope.unverified or "${" in call.name:
                report.unverified.append(call)
            else:
                report.diagnostics.append((call.line, unknown_message(call.name, names)))
            continue
        problem = argument_problem(keyword, call.args)
        if problem:
            report.diagnostics.append((call.line, problem))
        else:
            report.by_kind[keyword.kind] += 1
    return report


def resolve(name: str, scope: Scope) -> Keyword | None:
    candidates = [name]
    lowered = name.lower()
    for prefix in BDD_PREFIXES:
        if lowered.startswith(prefix):
            candidates.append(name[len(prefix) :])
    for candidate in candidates:
        found = scope.find(candidate)
        if found is not None:
            return found
        owner, _, short = candidate.rpartition(".")
        if owner:  # `Library.Keyword`, `resource.Keyword`
            pool = scope.sources.get(normalize(owner, ignore="_"), [])
            found = next((kw for kw in pool if kw.matches(short)), None)
            if found is not None:
                return found
    return None


def argument_problem(keyword: Keyword, args: tuple[str, ...]) -> str | None:
    if keyword.keyword is not None and getattr(keyword.keyword, "embedded", None):
        return None
    if any(arg.startswith(("@{", "&{")) for arg in args):
        return None  # expanded at run time: the count cannot be known here
    try:
        keyword.spec.resolve(list(args))
    except DataError as exc:
        declared = str(keyword.spec) or "no arguments"
        return f"{exc} It declares: {declared}."
    return None


def unknown_message(name: str, names: list[str]) -> str:
    closest = difflib.get_close_matches(name, names, n=CLOSEST_NAMES, cutoff=0.6)
    hint = f" Closest existing keywords: {', '.join(f'`{c}`' for c in closest)}." if closest else ""
    return f"No keyword named `{name}` in the suite, its resources or its libraries.{hint}"
