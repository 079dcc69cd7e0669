"""Every variable a suite uses must be defined somewhere in its scope (static stage).

Read from Robot Framework's parsing model, statement by statement in file order:
- defined for the whole suite: Robot's automatic variables, the `*** Variables ***` of the suite and
  its resources, the variable files it imports, variables the repository says come from the
  command line, and whatever any keyword in scope sets for the suite, test or run
  (`Set Suite Variable`, `Set Test Variable`, `Set Global Variable`, `VAR ... scope=SUITE`);
- defined from their statement on, inside one test or keyword: `[Arguments]` and embedded
  arguments, assignments, FOR loop variables, `EXCEPT ... AS`, local `VAR`, `Set Local Variable`.
Numbers (`${1}`), inline Python (`${{...}}`) and environment variables (`%{HOME}`) are not names.
Extended syntax (`${user.name}`, `${SPACE * 4}`, `${items}[0]`) resolves to its base, as Robot does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from robot.api.parsing import ModelVisitor, Token
from robot.parsing.model import File
from robot.utils import normalize
from robot.variables import search_variable

AUTOMATIC = (
    "TEST NAME", "TEST TAGS", "TEST DOCUMENTATION", "TEST STATUS", "TEST MESSAGE", "PREV TEST NAME",
    "PREV TEST STATUS", "PREV TEST MESSAGE", "SUITE NAME", "SUITE SOURCE", "SUITE DOCUMENTATION",
    "SUITE METADATA", "SUITE STATUS", "SUITE MESSAGE", "KEYWORD STATUS", "KEYWORD MESSAGE", "LOG LEVEL",
    "OUTPUT DIR", "OUTPUT FILE", "LOG FILE", "REPORT FILE", "DEBUG FILE", "OPTIONS", "CURDIR", "TEMPDIR",
    "EXECDIR", "/", ":", "\\n", "SPACE", "EMPTY", "True", "False", "None", "null",
)  # fmt: skip
SETTERS = ("setsuitevariable", "settestvariable", "settaskvariable", "setglobalvariable")
LOCAL_SETTERS = ("setlocalvariable",)
EXPRESSION_KEYWORDS = ("shouldbetrue", "shouldnotbetrue", "evaluate", "setvariableif", "skipif")
_NUMBER_RE = re.compile(r"^[+-]?(0[xob][0-9a-f_]+|[\d_]+(\.[\d_]*)?(e[+-]?\d+)?)$", re.IGNORECASE)
_EXTENDED_RE = re.compile(r"^(.+?)([^\s\w].*)$", re.DOTALL)
_EXPRESSION_VAR_RE = re.compile(r"(?<![\w\\$])\$([A-Za-z_]\w*)")
_USE_TOKENS = frozenset({Token.ARGUMENT, Token.NAME, Token.KEYWORD, Token.OPTION})
_CONDITION_HEADERS = ("IfHeader", "ElseIfHeader", "InlineIfHeader", "WhileHeader")


def norm(name: str) -> str:
    return str(normalize(name, ignore="_"))


BUILTIN_NAMES = frozenset(norm(name) for name in AUTOMATIC)


@dataclass(frozen=True)
class Use:
    line: int
    name: str
    """As written, e.g. `${user.name}`."""


def variables_in(value: str) -> Iterator[tuple[str, str]]:
    """(as written, base name) of each variable in a cell, nested ones included."""
    rest = value
    while True:
        match = search_variable(rest, ignore_errors=True)
        if not match.identifier:
            return
        if match.identifier in "$@&" and match.base is not None:
            base = match.base
            if "${" in base or "@{" in base:
                yield from variables_in(base)
            elif not base.startswith("{"):
                yield match.match, base
            for item in match.items:
                yield from variables_in(item)
        rest = match.after


def is_defined(base: str, defined: set[str]) -> bool:
    name = norm(base)
    if name in defined or _NUMBER_RE.match(base.strip()):
        return True
    extended = _EXTENDED_RE.match(base)
    return extended is not None and norm(extended.group(1)) in defined


def assigned_name(cell: str) -> str | None:
    match = search_variable(cell.rstrip("= ").lstrip("\\"), ignore_errors=True)
    return match.base if match.identifier in "$@&" and match.base and not match.items else None


def global_definitions(models: Iterable[File]) -> set[str]:
    """Names defined for the whole run by the `*** Variables ***` sections of `models` and by the
    suite-, test- and global-scope setters in their keywords and tests."""
    collector = _Globals()
    for model in models:
        collector.visit(model)
    return collector.names


class _Globals(ModelVisitor):
    def __init__(self) -> None:
        self.names: set[str] = set()

    def visit_Variable(self, node: object) -> None:  # a *** Variables *** entry
        self._add(node.name)  # type: ignore[attr-defined]

    def visit_Var(self, node: object) -> None:
        scope = (getattr(node, "scope", None) or "LOCAL").upper()
        if scope != "LOCAL":
            self._add(node.name)  # type: ignore[attr-defined]

    def visit_KeywordCall(self, node: object) -> None:
        args = node.args  # type: ignore[attr-defined]
        if norm(node.keyword or "") in SETTERS and args:  # type: ignore[attr-defined]
            self._add(args[0])

    def _fixture(self, node: object) -> None:  # Suite Setup, [Setup], ... calling a setter
        args = node.args  # type: ignore[attr-defined]
        if norm(node.name or "") in SETTERS and args:  # type: ignore[attr-defined]
            self._add(args[0])

    visit_SuiteSetup = visit_SuiteTeardown = visit_TestSetup = visit_TestTeardown = _fixture
    visit_Setup = visit_Teardown = _fixture

    def _add(self, cell: str | None) -> None:
        name = assigned_name(cell or "") or (cell.strip() if cell and "{" not in cell else None)
        if name:
            self.names.add(norm(name))


@dataclass
class _Block:
    defined: set[str]
    uses: list[Use] = field(default_factory=list)
    undefined: list[Use] = field(default_factory=list)


class _Uses(ModelVisitor):
    """Walks a suite in file order; tests and keywords each get their own local names."""

    def __init__(self, defined: set[str]) -> None:
        self.suite_defined = defined
        self.block = _Block(set(defined))
        self.undefined: list[Use] = []

    def _start(self, extra: Iterable[str] = ()) -> None:
        self.undefined += self.block.undefined
        self.block = _Block(self.suite_defined | {norm(name) for name in extra})

    def visit_TestCase(self, node: object) -> None:
        self._start()
        self.generic_visit(node)

    def visit_Keyword(self, node: object) -> None:
        name = node.name or ""  # type: ignore[attr-defined]
        self._start(base for _, base in variables_in(name))
        self.generic_visit(node)

    def visit_File(self, node: object) -> None:
        self.generic_visit(node)
        self._start()

    def visit_Arguments(self, node: object) -> None:
        for cell in node.values:  # type: ignore[attr-defined]
            name, _, default = cell.partition("=")
            self._check(node.lineno, default)  # type: ignore[attr-defined]
            if (base := assigned_name(name)) is not None:
                self.block.defined.add(norm(base))

    def visit_Statement(self, node: object) -> None:
        line = node.lineno  # type: ignore[attr-defined]
        for token in node.tokens:  # type: ignore[attr-defined]
            if token.type in _USE_TOKENS:
                self._check(line, token.value)
        kind = type(node).__name__
        condition = node.get_value(Token.ARGUMENT) if kind in _CONDITION_HEADERS else None  # type: ignore[attr-defined]
        if kind == "KeywordCall" and norm(node.keyword or "") in EXPRESSION_KEYWORDS:  # type: ignore[attr-defined]
            condition = (node.args or ("",))[0]  # type: ignore[attr-defined]
        for name in _EXPRESSION_VAR_RE.findall(condition or ""):
            if not is_defined(name, self.block.defined):
                self.block.undefined.append(Use(line, f"${name}"))
        self._define(node, kind)

    def _define(self, node: object, kind: str) -> None:
        names = [t.value for t in node.tokens if t.type in (Token.ASSIGN, Token.VARIABLE)]  # type: ignore[attr-defined]
        if kind == "KeywordCall" and norm(node.keyword or "") in SETTERS + LOCAL_SETTERS and node.args:  # type: ignore[attr-defined]
            names.append(node.args[0])  # type: ignore[attr-defined]
        for cell in names:
            if (base := assigned_name(cell)) is not None:
                self.block.defined.add(norm(base))

    def _check(self, line: int, value: str) -> None:
        for written, base in variables_in(value):
            if not is_defined(base, self.block.defined):
                self.block.undefined.append(Use(line, written))


def undefined_variables(model: File, defined: set[str]) -> list[Use]:
    """Uses in `model` of names that `defined` (the suite-wide names) and the local scope lack.
    Variable-section and assignment cells are definitions, checked only for what they use."""
    visitor = _Uses(defined | BUILTIN_NAMES)
    visitor.visit(model)
    seen: dict[tuple[int, str], Use] = {}
    for use in visitor.undefined:
        seen.setdefault((use.line, norm(use.name)), use)
    return list(seen.values())
