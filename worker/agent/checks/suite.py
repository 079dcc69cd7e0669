"""A candidate suite parsed once for every stage: Robot's parsing model, its running model, its lines.

Diagnostics name the line and quote the statement (`line 12: ... — in: Sleep    1s`): the text
checked is the formatted one, whose line numbers may differ from the model's own draft, and the
quoted statement lets any writer find what is meant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from io import StringIO

from robot.api import get_model
from robot.api.parsing import ModelVisitor, Token
from robot.parsing.model import File
from robot.running import TestSuite

QUOTE_CHARS = 120


@dataclass(frozen=True)
class TestInfo:
    name: str
    line: int
    tags: tuple[str, ...]
    """In the order written: the test's own `[Tags]`, else the suite's `Test Tags`."""
    has_doc: bool


@dataclass(frozen=True)
class ParsedSuite:
    text: str
    target_path: str
    model: File = field(repr=False)
    suite: TestSuite = field(repr=False)
    tests: tuple[TestInfo, ...] = ()

    @classmethod
    def parse(cls, text: str, target_path: str) -> ParsedSuite:
        model = get_model(StringIO(text), data_only=False)
        suite = TestSuite.from_model(model)  # comments and empty lines are no steps: one parse serves both
        reader = _TestReader()
        reader.visit(model)
        return cls(text, target_path, model, suite, tuple(reader.tests(suite)))

    def quote(self, line: int) -> str:
        lines = self.text.splitlines()
        if not 0 < line <= len(lines):
            return ""
        statement = "    ".join(
            part.strip() for part in lines[line - 1].strip().split("    ") if part.strip()
        )
        return statement if len(statement) <= QUOTE_CHARS else statement[: QUOTE_CHARS - 1] + "…"

    def at(self, line: int, message: str) -> str:
        """A diagnostic for `line` (0: the suite as a whole) quoting its statement."""
        if line <= 0:
            return message
        quoted = self.quote(line)
        return f"line {line}: {message}" + (f" — in: {quoted}" if quoted else "")


class _TestReader(ModelVisitor):
    def __init__(self) -> None:
        self.suite_tags: tuple[str, ...] = ()
        self._own: dict[int, tuple[tuple[str, ...] | None, bool]] = {}

    def visit_TestTags(self, node: object) -> None:
        self.suite_tags = tuple(node.values)  # type: ignore[attr-defined]

    def visit_ForceTags(self, node: object) -> None:
        self.suite_tags = tuple(node.values)  # type: ignore[attr-defined]

    def visit_TestCase(self, node: object) -> None:
        tags: tuple[str, ...] | None = None
        has_doc = False
        for item in node.body:  # type: ignore[attr-defined]
            kind = getattr(item, "type", None)  # blocks (FOR, IF) have none
            if kind == Token.TAGS:
                tags = (tags or ()) + tuple(item.values)
            elif kind == Token.DOCUMENTATION and item.value.strip():
                has_doc = True
        self._own[node.lineno] = (tags, has_doc)  # type: ignore[attr-defined]

    def tests(self, suite: TestSuite) -> list[TestInfo]:
        found = []
        for test in suite.tests:
            own, has_doc = self._own.get(test.lineno or 0, (None, False))
            tags = tuple(own) + tuple(t for t in self.suite_tags if t not in own) if own else self.suite_tags
            found.append(TestInfo(test.name, test.lineno or 0, tags, has_doc))
        return found
