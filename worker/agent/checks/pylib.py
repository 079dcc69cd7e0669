"""The repository's Python libraries and variable files, read from their source, never imported.

The worker does not run repository code (only the opt-in execution stage does, in a subprocess), so
keywords and variables are read with `ast` the way Robot Framework would find them (once per
distinct text: every job of a batch imports the same files):
- a library module's public functions are keywords, or, when the module holds a class of its own
  name, that class's public methods; `@keyword("Name")` renames, `@not_keyword` hides,
  `ROBOT_AUTO_KEYWORDS = False` / `@library` keep only decorated ones; argument specs come from the
  signatures. A dynamic or hybrid library (`get_keyword_names`) cannot be read statically.
- a variable file's variables are its public module-level assignments (`__all__` respected, the
  `LIST__`/`DICT__` prefixes dropped); YAML and JSON files their top-level keys; a
  `get_variables` function makes it dynamic (unknown until run).
"""

from __future__ import annotations

import ast
import json
import logging
from dataclasses import dataclass, field
from functools import lru_cache

from robot.running.arguments import ArgumentSpec
from robot.utils import printable_name

logger = logging.getLogger(__name__)

DYNAMIC_API = ("get_keyword_names", "getKeywordNames")
DYNAMIC_VARIABLES = ("get_variables", "getVariables")


@dataclass(frozen=True)
class PyKeyword:
    name: str
    spec: ArgumentSpec


@dataclass
class PyLibrary:
    keywords: list[PyKeyword] = field(default_factory=list)
    dynamic: bool = False
    """Keywords decided at run time: calls that resolve nowhere else stay unverified."""


@lru_cache(maxsize=256)
def read_library(text: str, path: str) -> PyLibrary:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError) as exc:
        logger.info("%s: not readable as Python (%s); its keywords are unknown", path, exc)
        return PyLibrary(dynamic=True)
    module = path.rsplit("/", 1)[-1].removesuffix(".py")
    if module == "__init__":
        module = path.rsplit("/", 2)[-2] if "/" in path else module
    owner: ast.Module | ast.ClassDef = tree
    auto = _auto_keywords(tree.body)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == module:
            owner = node
            auto = _auto_keywords(node.body) and not _decorated(node, "library")
    functions = [node for node in owner.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]
    if any(function.name in DYNAMIC_API for function in functions):
        return PyLibrary(dynamic=True)
    keywords = [
        PyKeyword(name, _spec(function, method=owner is not tree))
        for function in functions
        if (name := _keyword_name(function, auto)) is not None
    ]
    return PyLibrary(keywords)


def _auto_keywords(body: list[ast.stmt]) -> bool:
    for node in body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "ROBOT_AUTO_KEYWORDS" for target in node.targets
        ):
            return not (isinstance(node.value, ast.Constant) and node.value.value is False)
    return True


def _decorator_name(decorator: ast.expr) -> str:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    if isinstance(target, ast.Attribute):
        return target.attr
    return target.id if isinstance(target, ast.Name) else ""


def _decorated(node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef, name: str) -> bool:
    return any(_decorator_name(decorator) == name for decorator in node.decorator_list)


def _keyword_name(function: ast.FunctionDef | ast.AsyncFunctionDef, auto: bool) -> str | None:
    if _decorated(function, "not_keyword"):
        return None
    for decorator in function.decorator_list:
        if _decorator_name(decorator) != "keyword":
            continue
        if isinstance(decorator, ast.Call):
            given: ast.expr | None = decorator.args[0] if decorator.args else None
            given = given or next((k.value for k in decorator.keywords if k.arg == "name"), None)
            if isinstance(given, ast.Constant) and isinstance(given.value, str):
                return given.value
        return str(printable_name(function.name, code_style=True))
    if not auto or function.name.startswith("_"):
        return None
    return str(printable_name(function.name, code_style=True))


def _spec(function: ast.FunctionDef | ast.AsyncFunctionDef, *, method: bool) -> ArgumentSpec:
    arguments = function.args
    positional = [arg.arg for arg in arguments.posonlyargs + arguments.args]
    if method and positional and not _decorated(function, "staticmethod"):
        positional = positional[1:]
    defaults: dict[str, object] = {}
    for name, default in zip(reversed(positional), reversed(arguments.defaults), strict=False):
        defaults[name] = _literal(default)
    for arg, kw_default in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True):
        if kw_default is not None:
            defaults[arg.arg] = _literal(kw_default)
    return ArgumentSpec(
        name=function.name,
        positional_or_named=positional,
        var_positional=arguments.vararg.arg if arguments.vararg else None,
        named_only=[arg.arg for arg in arguments.kwonlyargs],
        var_named=arguments.kwarg.arg if arguments.kwarg else None,
        defaults=defaults,
    )


def _literal(node: ast.expr) -> object:
    try:
        return ast.literal_eval(node)
    except ValueError:
        return ast.unparse(node)


@lru_cache(maxsize=256)
def read_variables(text: str, path: str) -> frozenset[str] | None:
    """The variable names a variable file defines; None when they are only known by running it."""
    if path.endswith((".yaml", ".yml")):
        return _mapping_keys(text, yaml=True)
    if path.endswith(".json"):
        return _mapping_keys(text, yaml=False)
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    names: list[str] = []
    exported: set[str] | None = None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in DYNAMIC_VARIABLES:
            return None
        for target in _targets(node):
            if target == "__all__" and isinstance(node, ast.Assign):
                exported = _string_list(node.value)
            elif not target.startswith("_"):
                names.append(target)
    if exported is not None:
        names = [name for name in names if name in exported]
    return frozenset(name.removeprefix("LIST__").removeprefix("DICT__") for name in names)


def _targets(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.Assign):
        found: list[str] = []
        for target in node.targets:
            elements = target.elts if isinstance(target, ast.Tuple | ast.List) else [target]
            found += [element.id for element in elements if isinstance(element, ast.Name)]
        return found
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
        return [node.target.id]
    return []


def _string_list(node: ast.expr) -> set[str] | None:
    try:
        value = ast.literal_eval(node)
    except ValueError:
        return None
    return {str(item) for item in value} if isinstance(value, list | tuple) else None


def _mapping_keys(text: str, *, yaml: bool) -> frozenset[str] | None:
    try:
        if yaml:
            import yaml as pyyaml  # optional: only teams with YAML variable files need it

            data = pyyaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception:  # unreadable here: the variables are unknown, not absent
        return None
    return frozenset(str(key) for key in data) if isinstance(data, dict) else None
