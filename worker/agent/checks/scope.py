"""What a suite can see: the keywords and variables of everything it imports, read from the repository.

Built on Robot Framework's own machinery: resources are read with `ResourceFile.from_string` (and
`get_model` for their statements), installed libraries with libdoc (`LibraryDocumentation`). The
repository's own Python libraries and variable files are never imported in the worker: their
keywords and variables are read from their source with `ast` (`pylib.py`).

Imports are looked up as Robot does (relative to the importing file, then to the repository root,
which is on the pythonpath) against the repository tree the worker already holds, so a candidate
that does not exist costs no request. What cannot be known here is recorded, never guessed:
a library that cannot be loaded on the worker, a dynamic variable file.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
import threading
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from robot.api import get_model
from robot.errors import DataError
from robot.libdocpkg import LibraryDocumentation
from robot.parsing.model import File
from robot.running.resourcemodel import ResourceFile
from robot.utils import normalize

from worker.agent.checks import pylib
from worker.agent.checks.variables import global_definitions

logger = logging.getLogger(__name__)

ReadFile = Callable[[str], Awaitable[str | None]]
"""Reads a repository file by path (relative to the repository root); None when it does not exist."""

MAX_IMPORTS = 64
_LIBDOC_LOCK = threading.Lock()


class Kind:
    """Where a keyword comes from, for the figures: the reuse share counts RESOURCE calls."""

    SUITE = "suite"
    RESOURCE = "resource"
    LIBRARY = "library"
    BUILTIN = "builtin"


@dataclass
class Keyword:
    name: str
    source: str
    """The resource's repository path, the library's name, or "suite"."""
    kind: str
    spec: Any
    """Robot's `ArgumentSpec`."""
    keyword: Any = None
    """Robot's user keyword (embedded arguments, tags), None for library keywords."""
    private: bool = False
    key: str = ""
    """Its name as Robot compares names (case, spaces, underscores ignored); "" for embedded ones."""

    def __post_init__(self) -> None:
        if not self.embedded:
            self.key = normalize(self.name, ignore="_")

    @property
    def embedded(self) -> bool:
        return self.keyword is not None and bool(getattr(self.keyword, "embedded", None))

    def matches(self, name: str) -> bool:
        if self.embedded:
            return bool(self.keyword.matches(name))
        return bool(self.key == normalize(name, ignore="_"))


@dataclass
class Scope:
    """Keywords by source, in Robot's search order (suite, resources, libraries), and variables."""

    keywords: list[Keyword] = field(default_factory=list)
    sources: dict[str, list[Keyword]] = field(default_factory=dict)
    resources: dict[str, File] = field(default_factory=dict)
    """Each imported resource's parsing model, by repository path (the suite's variables analysis)."""
    variables: set[str] = field(default_factory=set)
    """Normalised names defined by variable files, and for the run by the imported resources
    (their Variables sections, and what their keywords set for the suite, test or run)."""
    dynamic_variables: list[str] = field(default_factory=list)
    """Variable files whose variables cannot be read without running them."""
    inits: dict[str, File] = field(default_factory=dict)
    """The `__init__.robot` files above the suite (their setups set variables the suite may use)."""
    imported_files: list[str] = field(default_factory=list)
    """Every repository file the suite needs (resources, variable files, Python libraries)."""
    unverified: list[str] = field(default_factory=list)
    """Libraries the worker cannot load: calls that might come from them cannot be checked."""
    problems: list[tuple[int, str]] = field(default_factory=list)
    by_key: dict[str, list[Keyword]] = field(default_factory=dict)
    """Keywords by normalised name, in search order (embedded ones are in `embedded`)."""
    embedded: list[Keyword] = field(default_factory=list)

    def add(self, alias: str, keywords: list[Keyword] | tuple[Keyword, ...]) -> None:
        self.sources.setdefault(normalize(alias, ignore="_"), []).extend(keywords)
        self.keywords.extend(keywords)
        for keyword in keywords:
            if keyword.embedded:
                self.embedded.append(keyword)
            else:
                self.by_key.setdefault(keyword.key, []).append(keyword)

    def find(self, name: str) -> Keyword | None:
        """The first keyword, in Robot's search order, that `name` calls."""
        exact = self.by_key.get(normalize(name, ignore="_"))
        candidates: list[Keyword] = [*(exact or ())[:1], *(kw for kw in self.embedded if kw.matches(name))]
        if len(candidates) > 1:
            return min(candidates, key=self.keywords.index)
        return candidates[0] if candidates else None

    @property
    def resource_keywords(self) -> list[Keyword]:
        return [keyword for keyword in self.keywords if keyword.kind == Kind.RESOURCE]


_LIBRARIES: dict[str, tuple[Keyword, ...]] = {}
_UNLOADABLE: dict[str, float] = {}
UNLOADABLE_TTL_S = 300.0
"""A library that failed to load is tried again after this long (it may be installed meanwhile, and
a failure must never stick for the life of the worker)."""


def library_keywords(name: str) -> tuple[Keyword, ...] | None:
    """An installed library's keywords, or None when it cannot be imported here (logged once)."""
    if (found := _LIBRARIES.get(name)) is not None:
        return found
    if time.monotonic() - _UNLOADABLE.get(name, -UNLOADABLE_TTL_S) < UNLOADABLE_TTL_S:
        return None
    with _LIBDOC_LOCK:  # libdoc imports modules: one at a time
        if (found := _LIBRARIES.get(name)) is not None:
            return found
        try:
            doc = LibraryDocumentation(name)
        except DataError as exc:
            _UNLOADABLE[name] = time.monotonic()
            logger.warning(
                "library %s cannot be loaded on this worker: %s", name, " ".join(str(exc).split())[:300]
            )
            return None
        kind = Kind.BUILTIN if doc.name == "BuiltIn" else Kind.LIBRARY
        found = _LIBRARIES[name] = tuple(Keyword(kw.name, doc.name, kind, kw.args) for kw in doc.keywords)
        return found


@lru_cache(maxsize=256)
def parse_resource(text: str) -> tuple[ResourceFile, File]:
    """Parsed once per distinct text: every job of a batch imports the same resources (read only)."""
    return ResourceFile.from_string(text), get_model(text, data_only=False)


def user_keywords(resource: ResourceFile, source: str, kind: str) -> tuple[Keyword, ...]:
    return tuple(
        Keyword(kw.name, source, kind, kw.args, kw, private="robot:private" in kw.tags)
        for kw in resource.keywords
    )


@lru_cache(maxsize=256)
def resource_definitions(text: str) -> frozenset[str]:
    """The variables a resource file defines for whoever imports it (computed once per text)."""
    return frozenset(global_definitions([parse_resource(text)[1]]))


@lru_cache(maxsize=256)
def resource_keywords(text: str, source: str) -> tuple[Keyword, ...]:
    """A resource file's keywords, built once per distinct text and path (every job imports the same)."""
    return user_keywords(parse_resource(text)[0], source, Kind.RESOURCE)


def init_files(target_path: str, tree: Collection[str]) -> list[str]:
    """`__init__.robot` files of the folders from the root down to the suite's, outermost first."""
    parts = target_path.split("/")[:-1]
    found = []
    for depth in range(len(parts) + 1):
        candidate = posixpath.join(*parts[:depth], "__init__.robot") if depth else "__init__.robot"
        if candidate in tree:
            found.append(candidate)
    return found


@lru_cache(maxsize=4096)
def candidates(name: str, directory: str) -> tuple[str, ...]:
    """Robot's lookup of an imported file: relative to the importing file, then to the root."""
    if "${" in name.replace("${CURDIR}", ""):
        return ()
    name = name.replace("${CURDIR}", directory or ".").replace("\\", "/")
    found = [posixpath.normpath(posixpath.join(directory, name)), posixpath.normpath(name)]
    return tuple(path for path in dict.fromkeys(found) if not path.startswith(("..", "/")))


class ScopeLoader:
    """Loads the imports of suites of one repository; `paths` is its tree (None: unknown, probe)."""

    def __init__(self, read_file: ReadFile, paths: Collection[str] | None = None) -> None:
        self._read_file = read_file
        self._paths = frozenset(paths) if paths is not None else None

    async def load(self, suite: ResourceFile, target_path: str) -> Scope:
        scope = Scope()
        scope.add("BuiltIn", list(library_keywords("BuiltIn") or ()))
        alias = posixpath.splitext(posixpath.basename(target_path))[0]
        scope.add(alias, user_keywords(suite, "suite", Kind.SUITE))
        await self._imports(suite, posixpath.dirname(target_path), scope, seen=set(), importer=None)
        for path in init_files(target_path, self._paths or ()):
            if (text := await self._read_file(path)) is not None:
                scope.inits[path] = get_model(text, data_only=False)
        return scope

    async def find(self, name: str, directory: str) -> str | None:
        for candidate in candidates(name, directory):
            if self._paths is not None:
                if candidate in self._paths:
                    return candidate
            elif await self._read_file(candidate) is not None:
                return candidate
        return None

    async def _imports(
        self, resource: ResourceFile, directory: str, scope: Scope, seen: set[str], importer: str | None
    ) -> None:
        """`importer` is the resource's path, None for the suite itself (whose lines are reported)."""
        for item in resource.imports:
            if len(seen) >= MAX_IMPORTS:
                return
            line = 0 if importer else item.lineno or 0
            where = f" (imported by `{importer}`)" if importer else ""
            if item.type == "LIBRARY":
                await self._library(item.name, directory, scope, seen)
            elif item.type == "VARIABLES":
                if not await self._variables(item.name, directory, scope, seen):
                    scope.problems.append(
                        (line, f"Variable file `{item.name}`{where} does not exist in the repository.")
                    )
            elif item.type == "RESOURCE":
                path = await self.find(item.name, directory)
                if path is None:
                    scope.problems.append(
                        (line, f"Resource `{item.name}`{where} does not exist in the repository.")
                    )
                elif path not in seen:
                    seen.add(path)
                    await self._resource(path, scope, seen)

    async def _resource(self, path: str, scope: Scope, seen: set[str]) -> None:
        scope.imported_files.append(path)
        text = await self._read_file(path) or ""
        try:
            nested, model = parse_resource(text)
        except DataError as exc:
            scope.problems.append((0, f"Resource `{path}` cannot be read by Robot Framework: {exc}"))
            return
        scope.resources[path] = model
        scope.variables |= resource_definitions(text)
        scope.add(posixpath.splitext(posixpath.basename(path))[0], resource_keywords(text, path))
        await self._imports(nested, posixpath.dirname(path), scope, seen, importer=path)

    async def _library(self, name: str, directory: str, scope: Scope, seen: set[str]) -> None:
        if "${" in name:
            scope.unverified.append(name)
            return
        path = await self._python_file(name, directory)
        if path is not None:
            if path not in seen:
                seen.add(path)
                scope.imported_files.append(path)
                library = pylib.read_library(await self._read_file(path) or "", path)
                if library.dynamic:
                    scope.unverified.append(name)
                alias = posixpath.splitext(posixpath.basename(path))[0]
                scope.add(alias, [Keyword(kw.name, path, Kind.LIBRARY, kw.spec) for kw in library.keywords])
            return
        loaded = _LIBRARIES.get(name)  # known already: no thread hop (libdoc imports, so it runs in one)
        keywords = loaded if loaded is not None else await asyncio.to_thread(library_keywords, name)
        if keywords is None:
            scope.unverified.append(name)
        else:
            scope.add(name, list(keywords))

    async def _python_file(self, name: str, directory: str) -> str | None:
        """A library given as a repository path, or as a module the repository holds."""
        if name.endswith((".py", "/")) or "/" in name:
            return await self.find(name.rstrip("/"), directory)
        module = name.replace(".", "/")
        for candidate in (f"{module}.py", f"{module}/__init__.py"):
            found = await self.find(candidate, "")
            if found is not None:
                return found
        return None

    async def _variables(self, name: str, directory: str, scope: Scope, seen: set[str]) -> bool:
        """Read a variable file's names; False when the file does not exist."""
        path = await self.find(name, directory)
        if path is None:
            return False
        if path in seen:
            return True
        seen.add(path)
        scope.imported_files.append(path)
        found = pylib.read_variables(await self._read_file(path) or "", path)
        if found is None:
            scope.dynamic_variables.append(path)
        else:
            scope.variables |= {normalize(variable, ignore="_") for variable in found}
        return True
