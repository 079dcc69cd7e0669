"""Grounding: every keyword call of a generated suite checked against the repository it targets.

Built on Robot Framework's own machinery, no parser of ours: the suite and the resources it imports
(fetched through MCP, transitively, cached per process) are read with `ResourceFile.from_string`,
installed libraries with libdoc (`LibraryDocumentation`), argument counts with
`ArgumentSpec.resolve`, embedded arguments with the keyword's own `matches`.

A call resolves to the suite's own keywords, an imported resource, BuiltIn or an imported library
that is installed where the worker runs. A library that is not installed is "unverified": calls
that could come from it are counted as such, not reported as errors. Diagnostics name the line,
the keyword and the closest existing names, for the model's repair turn.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import posixpath
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from robot.api import get_model
from robot.errors import DataError
from robot.libdocpkg import LibraryDocumentation
from robot.running import TestSuite
from robot.running.resourcemodel import ResourceFile
from robot.utils import normalize

logger = logging.getLogger(__name__)

ReadFile = Callable[[str], Awaitable[str | None]]
"""Reads a repository file by path (relative to the repository root); None when it does not exist."""

BDD_PREFIXES = ("given ", "when ", "then ", "and ", "but ")
MAX_RESOURCES = 64
CLOSEST_NAMES = 3
_LIBDOC_LOCK = threading.Lock()


@dataclass(frozen=True)
class Grounding:
    calls: int
    resolved: int
    unverified: int
    diagnostics: tuple[str, ...]
    unverified_libraries: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.diagnostics

    def summary(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "resolved": self.resolved,
            "unverified": self.unverified,
            "unverified_libraries": list(self.unverified_libraries),
        }


@dataclass
class _Keyword:
    name: str
    source: str
    spec: Any
    keyword: Any = None

    def matches(self, name: str) -> bool:
        if self.keyword is not None and getattr(self.keyword, "embedded", None):
            return bool(self.keyword.matches(name))
        return normalize(self.name, ignore="_") == normalize(name, ignore="_")


@dataclass
class _Scope:
    keywords: list[_Keyword] = field(default_factory=list)
    sources: dict[str, list[_Keyword]] = field(default_factory=dict)
    unverified: list[str] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)

    def add(self, source: str, keywords: list[_Keyword]) -> None:
        self.sources.setdefault(normalize(source, ignore="_"), []).extend(keywords)
        self.keywords.extend(keywords)


@lru_cache(maxsize=128)
def _library_keywords(name: str) -> tuple[_Keyword, ...] | None:
    """An installed library's keywords, or None when it cannot be imported here."""
    with _LIBDOC_LOCK:  # libdoc imports modules: one at a time
        try:
            doc = LibraryDocumentation(name)
        except DataError:
            return None
    return tuple(_Keyword(kw.name, doc.name, kw.args) for kw in doc.keywords)


@lru_cache(maxsize=256)
def _parse_resource(text: str) -> ResourceFile:
    """Parsed once per distinct text: every job of a batch imports the same resources (read only)."""
    return ResourceFile.from_string(text)


def _resource_keywords(resource: ResourceFile, source: str) -> list[_Keyword]:
    return [_Keyword(kw.name, source, kw.args, kw) for kw in resource.keywords]


class Grounder:
    """Checks suites for one target repository; `read_file` fetches its files (through MCP)."""

    def __init__(self, read_file: ReadFile) -> None:
        self._read_file = read_file

    async def check(self, text: str, target_path: str) -> Grounding:
        suite = TestSuite.from_model(get_model(text))
        scope = _Scope()
        scope.add("BuiltIn", list(_library_keywords("BuiltIn") or ()))
        scope.add(
            posixpath.splitext(posixpath.basename(target_path))[0],
            _resource_keywords(suite.resource, "suite"),
        )
        await self._load_imports(suite.resource, posixpath.dirname(target_path), scope, seen=set())
        return _check_calls(suite, scope)

    async def _load_imports(
        self, resource: ResourceFile, directory: str, scope: _Scope, seen: set[str]
    ) -> None:
        for item in resource.imports:
            if item.type == "LIBRARY":
                await self._load_library(item.name, scope)
            elif item.type == "RESOURCE":
                path = await self._find_resource(item.name, directory)
                if path is None:
                    scope.problems.append(
                        (item.lineno or 0, f"Resource {item.name!r} does not exist in the repository.")
                    )
                elif path not in seen and len(seen) < MAX_RESOURCES:
                    seen.add(path)
                    nested = _parse_resource(await self._read_file(path) or "")
                    scope.add(
                        posixpath.splitext(posixpath.basename(path))[0], _resource_keywords(nested, path)
                    )
                    await self._load_imports(nested, posixpath.dirname(path), scope, seen)

    async def _load_library(self, name: str, scope: _Scope) -> None:
        if "${" in name or name.endswith((".py", "/")) or "/" in name:
            scope.unverified.append(name)  # a library file of the repository: never imported here
            return
        keywords = await asyncio.to_thread(_library_keywords, name)
        if keywords is None:
            scope.unverified.append(name)
        else:
            scope.add(name, list(keywords))

    async def _find_resource(self, name: str, directory: str) -> str | None:
        """Robot's lookup: relative to the importing file, then to the root (the pythonpath)."""
        if "${" in name.replace("${CURDIR}", ""):
            return None
        name = name.replace("${CURDIR}", directory or ".")
        for candidate in dict.fromkeys(
            [posixpath.normpath(posixpath.join(directory, name)), posixpath.normpath(name)]
        ):
            if candidate.startswith("..") or candidate.startswith("/"):
                continue
            if await self._read_file(candidate) is not None:
                return candidate
        return None


def _calls(suite: TestSuite) -> Iterator[tuple[int, str, tuple[str, ...]]]:
    bodies: list[Any] = []
    for fixture in (suite.setup, suite.teardown):
        if fixture and fixture.name:
            bodies.append([fixture])
    for test in suite.tests:
        bodies += [[test.setup], test.body, [test.teardown]]
    for keyword in suite.resource.keywords:
        bodies += [[keyword.setup], keyword.body, [keyword.teardown]]
    for body in bodies:
        yield from _walk(body)


def _walk(body: Any) -> Iterator[tuple[int, str, tuple[str, ...]]]:
    for item in body:
        if item is None or (not getattr(item, "name", None) and not hasattr(item, "body")):
            continue
        if getattr(item, "type", None) in ("KEYWORD", "SETUP", "TEARDOWN") and item.name:
            yield item.lineno or 0, item.name, tuple(item.args)
        if hasattr(item, "body"):
            yield from _walk(item.body)


def _check_calls(suite: TestSuite, scope: _Scope) -> Grounding:
    diagnostics = [f"line {line}: {message}" for line, message in scope.problems]
    calls = resolved = unverified = 0
    names = sorted({kw.name for kw in scope.keywords if kw.source != "BuiltIn"})
    for line, name, args in _calls(suite):
        calls += 1
        if "${" in name or "@{" in name:
            unverified += 1
            continue
        keyword = _resolve(name, scope)
        if keyword is None:
            if scope.unverified:
                unverified += 1
            else:
                diagnostics.append(_unknown(line, name, names))
            continue
        problem = _argument_problem(keyword, args)
        if problem:
            diagnostics.append(f"line {line}: {problem}")
        else:
            resolved += 1
    return Grounding(calls, resolved, unverified, tuple(diagnostics), tuple(dict.fromkeys(scope.unverified)))


def _resolve(name: str, scope: _Scope) -> _Keyword | None:
    candidates = [name]
    lowered = name.lower()
    for prefix in BDD_PREFIXES:
        if lowered.startswith(prefix):
            candidates.append(name[len(prefix) :])
    for candidate in candidates:
        owner, _, short = candidate.rpartition(".")
        pool = scope.sources.get(normalize(owner, ignore="_"), []) if owner else scope.keywords
        found = next((kw for kw in pool if kw.matches(short if owner else candidate)), None)
        if found is not None:
            return found
    return None


def _argument_problem(keyword: _Keyword, args: tuple[str, ...]) -> str | None:
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


def _unknown(line: int, name: str, names: list[str]) -> str:
    closest = difflib.get_close_matches(name, names, n=CLOSEST_NAMES, cutoff=0.6)
    hint = f" Closest existing keywords: {', '.join(repr(c) for c in closest)}." if closest else ""
    return f"line {line}: No keyword named {name!r} in the suite, its resources or its libraries.{hint}"
