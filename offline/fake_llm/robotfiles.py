"""Reads the repository's Robot files and writes keyword calls that Robot accepts.

Robot Framework's own parser reads the similar test (`robot.api.get_model`) and the resources
(`robot.running.ResourceFile.from_string`, whose `ArgumentSpec` says how many arguments a keyword
accepts), so every keyword call the writer emits has an accepted number of arguments.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from robot.api import get_model
from robot.api.parsing import ModelVisitor
from robot.running import ResourceFile

from offline.fake_llm.words import words

log = logging.getLogger(__name__)

SEP = "    "
COPIED_SETTINGS = ("Suite Setup", "Suite Teardown", "Test Setup", "Test Teardown")
BUILTIN_VARIABLES = frozenset(
    {"curdir", "empty", "true", "false", "none", "null", "space", "tempdir", "execdir", "outputdir"}
)


@dataclass(frozen=True)
class Keyword:
    """A user keyword and the arguments it accepts."""

    name: str
    positional: tuple[str, ...]
    required: int
    named_required: tuple[str, ...] = ()

    @property
    def words(self) -> frozenset[str]:
        return frozenset(words(self.name))


@dataclass
class SuiteSettings:
    """What the writer copies from the similar test."""

    resources: list[str] = field(default_factory=list)
    lines: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Knowledge:
    """Everything the writer read: the similar test's settings, keywords, defined variables."""

    settings: SuiteSettings = field(default_factory=SuiteSettings)
    keywords: list[Keyword] = field(default_factory=list)
    variables: set[str] = field(default_factory=set)


class _SettingsReader(ModelVisitor):
    def __init__(self) -> None:
        self.settings = SuiteSettings()

    def visit_ResourceImport(self, node: Any) -> None:
        if node.name:
            self.settings.resources.append(node.name)

    def generic_visit(self, node: Any) -> None:
        tokens = getattr(node, "data_tokens", None)
        if tokens and tokens[0].value in COPIED_SETTINGS:
            self.settings.lines.append((tokens[0].value, SEP.join(t.value for t in tokens[1:])))
        super().generic_visit(node)


def read_settings(text: str) -> SuiteSettings:
    """Resource imports and setup/teardown settings of a suite file."""
    reader = _SettingsReader()
    reader.visit(get_model(text))
    return reader.settings


def resource_imports(text: str) -> list[str]:
    return read_settings(text).resources


def read_resource(text: str) -> tuple[list[Keyword], set[str]]:
    """The keywords (with argument specs) and variable names a resource file defines."""
    try:
        resource = ResourceFile.from_string(text)
    except Exception:  # a resource robot cannot read is skipped, like a careful writer would
        log.warning("unreadable resource skipped", exc_info=True)
        return [], set()
    keywords = []
    for keyword in resource.keywords:
        spec = keyword.args
        positional = tuple(spec.positional_only) + tuple(spec.positional_or_named)
        named = tuple(n for n in spec.named_only if n not in spec.defaults)
        keywords.append(Keyword(keyword.name, positional, spec.minargs, named))
    variables = {_norm_var(v.name) for v in resource.variables}
    return keywords, variables


def _norm_var(name: str) -> str:
    inner = name.strip()
    if len(inner) > 3 and inner[0] in "$@&%" and inner[1] == "{" and inner.endswith("}"):
        inner = inner[2:-1]
    return re.sub(r"[\s_]", "", inner.lower())


def uses_only(line: str, variables: set[str]) -> bool:
    """Whether every variable `line` references is defined (or built in)."""
    known = variables | BUILTIN_VARIABLES
    for name in re.findall(r"[$@&%]\{([^}]*)\}", line):
        norm = _norm_var(name)
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


def best_keyword(step: str, keywords: Sequence[Keyword]) -> Keyword | None:
    """The keyword sharing most words with `step` (quoted values ignored), if it covers half its name."""
    step_words = set(words(re.sub(r'"[^"]*"', " ", step)))
    best: tuple[Any, ...] | None = None
    for keyword in keywords:
        kw_words = keyword.words
        overlap = len(step_words & kw_words)
        if not kw_words or overlap == 0 or overlap / len(kw_words) < 0.5:
            continue
        rank = (overlap, overlap / len(kw_words), -len(keyword.name), keyword.name)
        if best is None or rank > best[0]:
            best = (rank, keyword)
    return best[1] if best else None


def quoted_values(step: str) -> list[str]:
    return [a or b for a, b in re.findall(r'"([^"]*)"|(?<!\w)\'([^\']*)\'(?!\w)', step)]


def flat_data(data: Any) -> dict[str, str]:
    """Scalar spec data by normalised name (one level of nesting flattened)."""
    found: dict[str, str] = {}
    if not isinstance(data, Mapping):
        return found
    for key, value in data.items():
        if isinstance(value, Mapping):
            for sub_key, sub_value in value.items():
                if isinstance(sub_value, str | int | float | bool):
                    found.setdefault(_norm_var(str(sub_key)), str(sub_value))
        elif isinstance(value, str | int | float | bool):
            found[_norm_var(str(key))] = str(value)
    return found


def call_line(keyword: Keyword, step: str, data: Mapping[str, str]) -> str:
    """`Keyword    arg1    arg2` with exactly the required arguments filled."""
    quoted = quoted_values(step)
    cells = [keyword.name]
    for name in keyword.positional[: keyword.required]:
        if quoted:
            cells.append(escape(quoted.pop(0)))
        else:
            cells.append(escape(data.get(_norm_var(name), f"<{name}>")))
    for name in keyword.named_required:
        cells.append(f"{name}={escape(data.get(_norm_var(name), f'<{name}>'))}")
    return SEP.join(cells)


def step_line(step: str, keywords: Sequence[Keyword], data: Mapping[str, str]) -> str:
    keyword = best_keyword(step, keywords)
    if keyword is None:
        return f"Log{SEP}{escape(step)}"
    return call_line(keyword, step, data)
