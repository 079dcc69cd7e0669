"""Reads the repository's Robot files and variable files the way the writer needs them.

Robot Framework's own parser reads the similar test (`robot.api.get_model`) and the resources
(`robot.running.ResourceFile.from_string`, whose `ArgumentSpec` says which arguments a keyword
accepts, with their defaults); Python variable files are read with `ast`, never imported.
"""

from __future__ import annotations

import ast
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from robot.api import get_model
from robot.api.parsing import ModelVisitor
from robot.running import ResourceFile

log = logging.getLogger(__name__)

SEP = "    "
PARSE_CACHE = 512
COPIED_SETTINGS = ("Suite Setup", "Suite Teardown", "Test Setup", "Test Teardown")
PRIVATE_TAG = "robot:private"
BUILTIN_VARIABLES = frozenset(
    {
        "curdir",
        "empty",
        "true",
        "false",
        "none",
        "null",
        "space",
        "tempdir",
        "execdir",
        "outputdir",
        "testname",
        "suitename",
    }
)
_SIMPLE_VARIABLE = re.compile(r"^\$\{([A-Za-z_][\w ]*)\}$")
_SIMPLE_NAME = re.compile(r"[^a-z0-9_]")


@dataclass(frozen=True)
class Arg:
    """One declared argument: its name, its default (None when required) and its kind."""

    name: str
    default: str | None = None
    kind: str = "positional"
    # positional | varargs | named (named-only) | kwargs

    @property
    def required(self) -> bool:
        return self.default is None and self.kind in ("positional", "named")


@dataclass(frozen=True)
class Keyword:
    """A user keyword as a careful writer sees it."""

    name: str
    args: tuple[Arg, ...] = ()
    doc: str = ""
    private: bool = False
    returns: str = ""
    # the variable its RETURN gives back when it is a plain ${name}; "-" for any other value
    source: str = ""

    @property
    def positional(self) -> tuple[Arg, ...]:
        return tuple(a for a in self.args if a.kind == "positional")

    @property
    def required(self) -> int:
        return sum(1 for a in self.positional if a.required)


@dataclass
class SuiteSettings:
    """What the writer copies from the similar test, and what a file imports."""

    resources: list[str] = field(default_factory=list)
    variables: list[str] = field(default_factory=list)
    lines: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Knowledge:
    """Everything the writer read: the similar test's settings, keywords, defined variables."""

    settings: SuiteSettings = field(default_factory=SuiteSettings)
    similar: str = ""
    keywords: list[Keyword] = field(default_factory=list)
    variables: set[str] = field(default_factory=set)
    # normalised names of every variable the resources and variable files define
    variable_names: dict[str, str] = field(default_factory=dict)
    # normalised -> as written (upper case names of variable files and resources)
    seed_values: set[str] = field(default_factory=set)
    # lower-cased strings and keys found in variable files (seed data)
    imports: dict[str, list[str]] = field(default_factory=dict)
    # resource path -> resource paths it imports
    reachable: set[str] = field(default_factory=set)
    # the resource paths the similar test's imports reach
    assigned: dict[str, str] = field(default_factory=dict)
    # keyword name (lower case) -> the variable the similar test assigns its result to


class _SettingsReader(ModelVisitor):
    def __init__(self) -> None:
        self.settings = SuiteSettings()

    def visit_ResourceImport(self, node: Any) -> None:
        if node.name:
            self.settings.resources.append(node.name)

    def visit_VariablesImport(self, node: Any) -> None:
        if node.name:
            self.settings.variables.append(node.name)

    def generic_visit(self, node: Any) -> None:
        tokens = getattr(node, "data_tokens", None)
        if tokens and tokens[0].value in COPIED_SETTINGS:
            self.settings.lines.append((tokens[0].value, SEP.join(t.value for t in tokens[1:])))
        super().generic_visit(node)


def read_settings(text: str) -> SuiteSettings:
    """Resource and variable imports, setup/teardown settings of a suite or resource file."""
    resources, variables, lines = _read_settings(text)
    return SuiteSettings(list(resources), list(variables), list(lines))


# The writer reads the same files on every turn of every conversation: each text is parsed once.
@lru_cache(maxsize=PARSE_CACHE)
def _read_settings(text: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[str, str], ...]]:
    reader = _SettingsReader()
    reader.visit(get_model(text))
    found = reader.settings
    return tuple(found.resources), tuple(found.variables), tuple(found.lines)


class _AssignmentReader(ModelVisitor):
    def __init__(self) -> None:
        self.assigned: dict[str, str] = {}

    def visit_KeywordCall(self, node: Any) -> None:  # robot's visitor naming
        match = _SIMPLE_VARIABLE.match(node.assign[0].rstrip("= ")) if node.keyword and node.assign else None
        if match:
            name = _SIMPLE_NAME.sub("_", match.group(1).strip().lower())
            self.assigned.setdefault(node.keyword.lower(), name)


def read_assignments(text: str) -> dict[str, str]:
    """Keyword (lower case) -> the variable a suite assigns its result to (`${products}=`)."""
    return dict(_read_assignments(text))


@lru_cache(maxsize=PARSE_CACHE)
def _read_assignments(text: str) -> tuple[tuple[str, str], ...]:
    reader = _AssignmentReader()
    reader.visit(get_model(text))
    return tuple((k, v) for k, v in reader.assigned.items() if v)


def resource_imports(text: str) -> list[str]:
    return read_settings(text).resources


def read_resource(text: str, source: str = "") -> tuple[list[Keyword], dict[str, str]]:
    """The keywords (with argument specs) a resource file defines, and its variables
    (normalised name -> name as written)."""
    keywords, variables = _read_resource(text, source)
    return list(keywords), dict(variables)


@lru_cache(maxsize=PARSE_CACHE)
def _read_resource(text: str, source: str) -> tuple[tuple[Keyword, ...], tuple[tuple[str, str], ...]]:
    try:
        resource = ResourceFile.from_string(text)
    except Exception:  # a resource robot cannot read is skipped, like a careful writer would
        log.warning("unreadable resource skipped", exc_info=True)
        return (), ()
    keywords = tuple(_keyword(keyword, source) for keyword in resource.keywords)
    variables = tuple((norm_var(v.name), v.name.strip()[2:-1]) for v in resource.variables)
    return keywords, variables


def _keyword(keyword: Any, source: str) -> Keyword:
    spec = keyword.args
    defaults = {name: str(value) for name, value in spec.defaults.items()}
    args = [Arg(n, defaults.get(n)) for n in (*spec.positional_only, *spec.positional_or_named)]
    if spec.var_positional:
        args.append(Arg(spec.var_positional, "", "varargs"))
    args += [Arg(n, defaults.get(n), "named") for n in spec.named_only]
    if spec.var_named:
        args.append(Arg(spec.var_named, "", "kwargs"))
    private = any(str(tag).lower() == PRIVATE_TAG for tag in keyword.tags)
    return Keyword(keyword.name, tuple(args), str(keyword.doc or ""), private, _returned(keyword), source)


def _returned(keyword: Any) -> str:
    """`order_id` for `RETURN ${order_id}`, "-" for any other returned value, "" for none."""
    stack = list(keyword.body)
    while stack:
        item = stack.pop(0)
        values = getattr(item, "values", None)
        if type(item).__name__ == "Return" and values:
            match = _SIMPLE_VARIABLE.match(str(values[0])) if len(values) == 1 else None
            return match.group(1).replace(" ", "_").lower() if match else "-"
        stack += list(getattr(item, "body", None) or [])
    return ""


def read_variable_file(text: str) -> tuple[dict[str, str], set[str]]:
    """Module-level names of a Python variable file (normalised -> as written) and its seed data
    (every string and dictionary key, lower case), read with `ast`, never executed."""
    names, seeds = _read_variable_file(text)
    return dict(names), set(seeds)


@lru_cache(maxsize=PARSE_CACHE)
def _read_variable_file(text: str) -> tuple[tuple[tuple[str, str], ...], frozenset[str]]:
    try:
        tree = ast.parse(text)
    except SyntaxError:
        log.warning("unreadable variable file skipped")
        return (), frozenset()
    names: dict[str, str] = {}
    seeds: set[str] = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        for target in targets:
            if isinstance(target, ast.Name) and not target.id.startswith("_"):
                names[norm_var(target.id)] = target.id
        if isinstance(node, ast.Assign):
            seeds |= _strings(node.value)
    return tuple(names.items()), frozenset(seeds)


def _strings(node: ast.AST) -> set[str]:
    return {
        str(child.value).lower()
        for child in ast.walk(node)
        if isinstance(child, ast.Constant) and isinstance(child.value, str | int | float)
    }


def norm_var(name: str) -> str:
    """A variable or argument name as Robot compares them: no decoration, case, spaces or `_`."""
    inner = name.strip()
    if len(inner) > 3 and inner[0] in "$@&%" and inner[1] == "{" and inner.endswith("}"):
        inner = inner[2:-1]
    return re.sub(r"[\s_]", "", inner.lower())


def uses_only(line: str, variables: set[str]) -> bool:
    """Whether every variable `line` references is defined (or built in)."""
    known = variables | BUILTIN_VARIABLES
    for name in re.findall(r"[$@&%]\{([^}]*)\}", line):
        norm = norm_var(name)
        if norm not in known and not norm.isdigit():
            return False
    return True


def escape(value: str) -> str:
    """A cell value Robot reads literally: no variables, no separators, no comment start."""
    text = " ".join(str(value).split())
    if not text:
        return "${EMPTY}"
    text = text.replace("\\", "\\\\")
    text = re.sub(r"([$@&%])\{", r"\\\1{", text)
    text = text.replace("=", "\\=")
    if text.startswith("#"):
        text = "\\" + text
    return text


def flat_data(data: Any) -> dict[str, str]:
    """Scalar spec data by normalised name (one level of nesting flattened)."""
    found: dict[str, str] = {}
    if not isinstance(data, Mapping):
        return found
    for key, value in data.items():
        if isinstance(value, Mapping):
            for sub_key, sub_value in value.items():
                if isinstance(sub_value, str | int | float | bool):
                    found.setdefault(norm_var(str(sub_key)), str(sub_value))
        elif isinstance(value, str | int | float | bool):
            found[norm_var(str(key))] = str(value)
    return found
