"""Context by code: what a writer would read first, read by the worker and given up front.

The most similar existing tests (the spec's target folder first, then its area, then by the words
of their paths) and the files they import (resources and variable files, breadth first), read
through the per-process file memo, within a character budget. The same target folder gives the
same files in the same order, so specs of one folder share a longer cacheable prompt prefix.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache

from robot.api import get_model
from robot.api.parsing import ModelVisitor

from worker.agent.checks.scope import candidates

ReadFile = Callable[[str], Awaitable[str | None]]

UPFRONT_MAX_CHARS = 40_000
SIMILAR_TESTS = 1
_WORD_RE = re.compile(r"[^\W\d_]{3,}")


@dataclass(frozen=True)
class GivenFile:
    path: str
    text: str


def similar_tests(
    paths: tuple[str, ...], target: str, words_of_spec: set[str], count: int = SIMILAR_TESTS
) -> list[str]:
    """The existing suites most like the one to write: same folder, then same first folder, then
    most path words in common with the spec; the target itself never."""
    folder = posixpath.dirname(target)
    top = target.split("/")[:2]
    tests = [p for p in paths if p.endswith(".robot") and p != target and not p.endswith("__init__.robot")]

    def rank(path: str) -> tuple[int, int, int, str]:
        same_folder = posixpath.dirname(path) == folder
        same_area = path.split("/")[:2] == top
        shared = len(words_of_spec & set(_WORD_RE.findall(path.lower())))
        return (-int(same_folder), -int(same_area), -shared, path)

    return sorted(tests, key=rank)[:count]


class _Imports(ModelVisitor):
    def __init__(self) -> None:
        self.names: list[str] = []

    def visit_ResourceImport(self, node: object) -> None:
        if node.name:  # type: ignore[attr-defined]
            self.names.append(node.name)  # type: ignore[attr-defined]

    def visit_VariablesImport(self, node: object) -> None:
        if node.name:  # type: ignore[attr-defined]
            self.names.append(node.name)  # type: ignore[attr-defined]


@lru_cache(maxsize=256)
def _imports(text: str) -> tuple[str, ...]:
    """The Resource and Variables imports of a file, parsed once per distinct text (every job of a
    batch is given the same few files)."""
    visitor = _Imports()
    try:
        visitor.visit(get_model(text))
    except Exception:  # a file Robot cannot read imports nothing we could follow
        return ()
    return tuple(visitor.names)


async def upfront_files(
    read_file: ReadFile, paths: tuple[str, ...], target: str, spec_text: str, budget: int = UPFRONT_MAX_CHARS
) -> list[GivenFile]:
    """The similar tests and what they import, read breadth first as long as the budget allows, and
    given deepest first: what everything imports (common resources, variable files) leads, what is
    particular to the folder follows, the similar test comes last — so the prompts of specs of
    other folders share the longest possible prefix."""
    tree = set(paths)
    words = set(_WORD_RE.findall(spec_text.lower()))
    queue = [(path, 0) for path in similar_tests(paths, target, words)]
    given: list[tuple[int, GivenFile]] = []
    seen: set[str] = set()
    used = 0
    while queue:
        path, depth = queue.pop(0)
        if path in seen:
            continue
        seen.add(path)
        text = await read_file(path)
        if text is None or used + len(text) > budget:
            continue
        given.append((depth, GivenFile(path, text)))
        used += len(text)
        if path.endswith((".robot", ".resource")):
            for name in _imports(text):
                found = next((c for c in candidates(name, posixpath.dirname(path)) if c in tree), None)
                if found is not None:
                    queue.append((found, depth + 1))
    return [file for _, file in sorted(given, key=lambda item: (-item[0], item[1].path))]
