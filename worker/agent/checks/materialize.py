"""What a suite needs from the repository to run, and a private directory holding exactly that.

From the suite outwards: the files its imports reach (resources, variable files, the repository's
Python libraries — `scope.py` found them), the Python modules those libraries import, the
`__init__.robot` files of the folders above the suite, variable files the run options name, and the
data files any of them reference (a cell or a Python string that names a path of the repository
tree, `${CURDIR}` resolved). Everything is read through the same per-process file memo as the rest
of the job, so a file reaches the MCP server once per process per ref.
"""

from __future__ import annotations

import ast
import posixpath
from collections.abc import Collection, Iterable
from pathlib import Path

from robot.api.parsing import ModelVisitor, Token
from robot.parsing.model import File

from worker.agent.checks.scope import ReadFile

MAX_FILES = 400
_PATH_CHARS = frozenset("/\\.")


class _Cells(ModelVisitor):
    def __init__(self) -> None:
        self.values: list[str] = []

    def visit_Statement(self, node: object) -> None:
        self.values += [t.value for t in node.tokens if t.type in (Token.ARGUMENT, Token.NAME)]  # type: ignore[attr-defined]


def cells(model: File) -> list[str]:
    visitor = _Cells()
    visitor.visit(model)
    return visitor.values


def referenced(values: Iterable[str], directory: str, tree: Collection[str], folders: set[str]) -> set[str]:
    """Repository files named by `values` (cells or strings of a file in `directory`)."""
    found: set[str] = set()
    for value in values:
        if not _PATH_CHARS & set(value):
            continue
        text = value.replace("${CURDIR}", directory or ".").replace("${/}", "/").replace("${EXECDIR}", ".")
        if "${" in text or "://" in text:
            continue
        text = text.replace("\\", "/").strip()
        for candidate in {posixpath.normpath(posixpath.join(directory, text)), posixpath.normpath(text)}:
            if candidate in tree:
                found.add(candidate)
            elif candidate in folders:
                found |= {path for path in tree if path.startswith(candidate + "/")}
    return found


def python_needs(text: str, path: str, tree: Collection[str], folders: set[str]) -> set[str]:
    """Repository modules a Python file imports, and files its string literals name."""
    try:
        module = ast.parse(text)
    except (SyntaxError, ValueError):
        return set()
    names: set[str] = set()
    strings: list[str] = []
    for node in ast.walk(module):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) < 300:
            strings.append(node.value)
    found = referenced(strings, posixpath.dirname(path), tree, folders)
    names |= {name.rsplit(".", depth)[0] for name in names for depth in range(1, name.count(".") + 1)}
    for name in names:
        stem = name.replace(".", "/")
        base = posixpath.dirname(path)
        for candidate in (f"{stem}.py", f"{stem}/__init__.py", posixpath.join(base, f"{stem}.py")):
            if candidate in tree:
                found.add(candidate)
    return found


def folders_of(tree: Collection[str]) -> set[str]:
    return {
        posixpath.join(*path.split("/")[:depth]) for path in tree for depth in range(1, path.count("/") + 1)
    }


async def closure(
    scan: dict[str, File], files: Iterable[str], read_file: ReadFile, tree: Collection[str], skip: str
) -> dict[str, str]:
    """Every repository file the suite needs, with its text: the imported `files`, the data files
    the parsed Robot files `scan` (path -> model) reference, and what the Python files import and
    name. `skip` is the suite's own path (its text is the candidate, not the repository's)."""
    folders = folders_of(tree)
    pending = list(files)
    for path, model in scan.items():
        pending += referenced(cells(model), posixpath.dirname(path), tree, folders)
    texts: dict[str, str] = {}
    while pending and len(texts) < MAX_FILES:
        path = pending.pop()
        if path in texts or path == skip:
            continue
        text = await read_file(path)
        if text is None:
            continue
        texts[path] = text
        if path.endswith(".py"):
            pending += python_needs(text, path, tree, folders)
    return texts


def write_tree(root: Path, files: dict[str, str]) -> None:
    for path, text in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
