"""From the model's final answer to a .robot text, or to diagnostics for a repair turn (rule 6).

The answer is stripped of markdown fences and chatter, then parsed with Robot Framework's own
parser: statement errors, error tokens, unknown section headers, text before the first section
and a suite without test cases are all reported with their line numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from robot.api import get_model
from robot.api.parsing import ModelVisitor, Token

_FENCE_RE = re.compile(r"^```[ \t]*([\w+-]*)[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
_SECTION_RE = re.compile(r"^\*{1,3}\s*[A-Za-z]", re.MULTILINE)
_ROBOT_LANGS = {"robot", "robotframework", "robot-framework", "rf"}
VALID_SECTIONS = "Settings, Variables, Test Cases, Tasks, Keywords, Comments"


@dataclass(frozen=True)
class Validation:
    text: str
    diagnostics: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.diagnostics


def extract_robot_text(answer: str) -> str:
    """The suite inside an answer: the fenced block if any (robot-tagged first), else the answer
    from its first section header, with a trailing prose paragraph removed."""
    text = answer.replace("\r\n", "\n")
    blocks = _FENCE_RE.findall(text)
    if blocks:
        tagged = [body for lang, body in blocks if lang.lower() in _ROBOT_LANGS]
        candidates = tagged or [body for _, body in blocks]
        text = max(candidates, key=lambda body: len(_SECTION_RE.findall(body)) * 10_000 + len(body))
    else:
        first = _SECTION_RE.search(text)
        if first is not None:
            text = text[first.start() :]
        text = _drop_trailing_prose(text)
    return text.strip() + "\n" if text.strip() else ""


def _drop_trailing_prose(text: str) -> str:
    """Remove a last paragraph that reads like chatter ("Let me know if ...") rather than Robot data."""
    paragraphs = text.rstrip().split("\n\n")
    if len(paragraphs) < 2:
        return text
    last = paragraphs[-1].strip().splitlines()
    looks_like_prose = all(
        line
        and not line[0].isspace()
        and "  " not in line
        and "\t" not in line
        and not line.startswith(("*", "#"))
        for line in last
    ) and last[-1].rstrip().endswith((".", "!", "?", ":"))
    return "\n\n".join(paragraphs[:-1]) + "\n" if looks_like_prose else text


class _ErrorCollector(ModelVisitor):
    def __init__(self) -> None:
        self.errors: dict[tuple[int, str], None] = {}
        self.test_count = 0

    def visit_InvalidSection(self, node: object) -> None:
        header = getattr(node, "header", None)
        name = header.get_value(Token.INVALID_HEADER) if header is not None else None
        lineno = getattr(node, "lineno", 0)
        self._add(lineno, f"Unrecognized section header {name or ''!r}. Valid sections: {VALID_SECTIONS}.")
        self.generic_visit(node)

    def visit_ImplicitCommentSection(self, node: object) -> None:
        for statement in getattr(node, "body", ()):
            if any(token.type not in (Token.EOL, Token.SEPARATOR) for token in statement.tokens):
                self._add(
                    statement.lineno, "Text before the first section header; the file must start with one."
                )
                return

    def visit_TestCase(self, node: object) -> None:
        self.test_count += 1
        self.generic_visit(node)

    def visit_Statement(self, node: object) -> None:
        for error in getattr(node, "errors", ()) or ():
            self._add(node.lineno, error)  # type: ignore[attr-defined]
        for token in node.tokens:  # type: ignore[attr-defined]
            if token.type in (Token.ERROR, Token.FATAL_ERROR) and token.error:
                self._add(token.lineno, token.error)

    def generic_visit(self, node: object) -> None:
        for error in getattr(node, "errors", ()) or ():
            self._add(getattr(node, "lineno", 0), error)
        super().generic_visit(node)

    def _add(self, lineno: int, message: str) -> None:
        self.errors.setdefault((lineno, " ".join(message.split())), None)


def validate_suite(text: str) -> Validation:
    if not text.strip():
        return Validation(text, ("The answer is empty: reply with the complete .robot file.",))
    collector = _ErrorCollector()
    collector.visit(get_model(text))
    diagnostics = [f"line {line}: {message}" for line, message in sorted(collector.errors)]
    if collector.test_count == 0:
        diagnostics.append(
            "The suite has no test cases: add a *** Test Cases *** section with at least one test."
        )
    return Validation(text, tuple(diagnostics))


def check_answer(answer: str) -> Validation:
    return validate_suite(extract_robot_text(answer))
