"""The suite the writer builds before it is rendered: tests made of steps."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from offline.fake_llm.robotfiles import SEP


@dataclass(frozen=True)
class Step:
    """One keyword call of a test."""

    keyword: str
    cells: tuple[str, ...] = ()
    arg_names: tuple[str, ...] = ()
    literal_cells: tuple[int, ...] = ()
    # indexes of the cells that hold a value taken from the spec's text
    assign: str = ""
    check: bool = False
    actor: str | None = None
    # who is logged in after this step ("" nobody), None when it does not change
    creators: frozenset[str] = frozenset()

    def line(self) -> str:
        head = [f"${{{self.assign}}}="] if self.assign else []
        return SEP.join([*head, self.keyword, *self.cells])

    def with_cell(self, index: int, cell: str) -> Step:
        cells = list(self.cells)
        cells[index] = cell
        return replace(self, cells=tuple(cells))


@dataclass
class Test:
    """One test case: its name, documentation, tags, steps and the spec text it came from."""

    name: str
    doc: str
    tags: tuple[str, ...]
    steps: list[Step] = field(default_factory=list)
    texts: tuple[str, ...] = ()
    documented: bool = True

    def lines(self) -> list[str]:
        lines = [self.name]
        if self.documented:
            lines.append(f"{SEP}[Documentation]{SEP}{self.doc}")
        lines.append(f"{SEP}[Tags]{SEP}{SEP.join(self.tags)}")
        lines += [f"{SEP}{step.line()}" for step in self.steps]
        return lines


@dataclass
class SuiteDraft:
    """The whole suite: its settings lines and tests; `broken_header` renames the test section."""

    settings: list[str]
    tests: list[Test]
    chatter: str = ""
    broken_header: str = ""

    def render(self) -> str:
        lines = [*self.settings, "", self.broken_header or "*** Test Cases ***"]
        for test in self.tests:
            lines += [*test.lines(), ""]
        text = "\n".join(lines).rstrip() + "\n"
        return f"{self.chatter}\n{text}" if self.chatter else text
