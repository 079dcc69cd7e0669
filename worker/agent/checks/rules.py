"""The repository's declared rules: `.robot-fleet.toml`, machine-readable, in any team's language.

A convention is prose, often not in English; no rule is guessed from it. What the fleet enforces
is what this file states, and nothing else (a rule the file does not state is not enforced). The
file lives at the repository root and is read through MCP at the pinned ref; unknown keys and
wrong types are errors naming the file and the key. Placeholders in strings: `{ticket}` (the spec
id), `{folder}` (the first folder under `suites.root` of the suite's path), `{area}` (the spec's
`area` field, else `{folder}`). Every rule is documented in the README, with an example.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import tomllib
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from worker.errors import ConfigError

RULES_PATH = ".robot-fleet.toml"
PLACEHOLDERS = ("ticket", "folder", "area")
SUITE_SOURCE = "<suite>"
"""How a source glob names the suite's own keywords."""
DEFAULT_RUN_OPTIONS = ("--pythonpath", ".")


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class SuitesRules(_Table):
    root: str = "tests"
    """The folder whose first sub-folder is `{folder}`."""


class KeywordRules(_Table):
    allowed_sources: list[str] = Field(default_factory=list)
    """Tests may call only keywords from these sources (globs over resource paths, library names,
    `<suite>`); empty: any source."""
    forbidden_sources: list[str] = Field(default_factory=list)
    """Tests may not call keywords from these sources."""
    forbidden: list[str] = Field(default_factory=list)
    """Keywords no generated suite may call anywhere (names, Robot's matching: case, spaces and
    underscores ignored)."""


class TagRules(_Table):
    required: list[str] = Field(default_factory=list)
    """Tags every test has."""
    first: str | None = None
    """The first tag of every test (its own `[Tags]`, else `Test Tags`)."""
    one_of: list[list[str]] = Field(default_factory=list)
    """Groups of tags of which every test has exactly one."""


class DocumentationRules(_Table):
    suite: bool = False
    tests: bool = False


class ImportRules(_Table):
    required: list[str] = Field(default_factory=list)
    """Resource paths every suite imports, as written in the `Resource` setting."""


class NameRules(_Table):
    tests: str | None = None
    """A regular expression every test name matches (Python `re.search`)."""

    @field_validator("tests")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(expand(value, dict.fromkeys(PLACEHOLDERS, "X")))
            except re.error as exc:
                raise ValueError(f"not a regular expression ({exc})") from exc
        return value


class VariableRules(_Table):
    external: list[str] = Field(default_factory=list)
    """Variables given to robot from outside (command line, CI): they count as defined."""


class RunRules(_Table):
    options: list[str] = Field(default_factory=lambda: list(DEFAULT_RUN_OPTIONS))
    """Robot's command-line options when the execution stage runs a suite (from the repository root)."""


class RulesFile(_Table):
    version: int = 1
    suites: SuitesRules = SuitesRules()
    keywords: KeywordRules = KeywordRules()
    tags: TagRules = TagRules()
    documentation: DocumentationRules = DocumentationRules()
    imports: ImportRules = ImportRules()
    names: NameRules = NameRules()
    variables: VariableRules = VariableRules()
    run: RunRules = RunRules()


@dataclass(frozen=True)
class Rules:
    """The rules in force for one repository and ref; `source` is None when it has no rules file."""

    file: RulesFile
    source: str | None = None

    @property
    def external_variables(self) -> set[str]:
        """Variables the rules file declares or its run options set (`--variable NAME:value`)."""
        names = set(self.file.variables.external)
        options = self.file.run.options
        for flag, value in pairwise(options):
            if flag in ("--variable", "-v"):
                names.add(value.split(":", 1)[0])
        return names

    def describe(self) -> list[str]:
        """One line per rule in force, for the prompt and `robot-fleet rules`."""
        return describe(self.file)


NO_RULES = Rules(RulesFile())


def load_rules(text: str | None) -> Rules:
    """Parse the rules file (None: the repository has none); raise `ConfigError` naming the key."""
    if text is None:
        return NO_RULES
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{RULES_PATH}: not valid TOML ({exc})") from exc
    try:
        parsed = RulesFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{RULES_PATH}: {_first_error(exc)}") from exc
    if parsed.version != 1:
        raise ConfigError(f"{RULES_PATH}: version {parsed.version} is not supported (this fleet reads 1)")
    return Rules(parsed, RULES_PATH)


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"unknown key `{key}` (see the README's rules file section)"
    return f"key `{key}`: {error['msg'].lower()} (got {error.get('input')!r})"


def expand(template: str, values: dict[str, str], *, regex: bool = False) -> str:
    for name, value in values.items():
        template = template.replace("{" + name + "}", re.escape(value) if regex else value)
    return template


def placeholders(spec_id: str, target_path: str, area: str | None, root: str) -> dict[str, str]:
    parts = target_path.split("/")
    root_parts = [part for part in root.strip("/").split("/") if part]
    folder = ""
    if parts[: len(root_parts)] == root_parts and len(parts) > len(root_parts) + 1:
        folder = parts[len(root_parts)]
    return {"ticket": spec_id, "folder": folder, "area": area or folder}


def source_matches(source: str, globs: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(source, pattern) for pattern in globs)


def describe(file: RulesFile) -> list[str]:
    lines: list[str] = []
    keywords, tags = file.keywords, file.tags
    if keywords.allowed_sources:
        lines.append(f"tests call keywords only from: {', '.join(keywords.allowed_sources)}")
    if keywords.forbidden_sources:
        lines.append(f"tests never call keywords from: {', '.join(keywords.forbidden_sources)}")
    if keywords.forbidden:
        lines.append(f"forbidden keywords: {', '.join(keywords.forbidden)}")
    if tags.required:
        lines.append(f"every test has the tags: {', '.join(tags.required)}")
    if tags.first:
        lines.append(f"the first tag of every test is: {tags.first}")
    for group in tags.one_of:
        lines.append(f"every test has exactly one of the tags: {', '.join(group)}")
    if file.documentation.suite:
        lines.append("the suite has a Documentation setting")
    if file.documentation.tests:
        lines.append("every test has [Documentation]")
    if file.imports.required:
        lines.append(f"every suite imports: {', '.join(file.imports.required)}")
    if file.names.tests:
        lines.append(f"test names match the regular expression: {file.names.tests}")
    if file.variables.external:
        lines.append(f"variables given from outside: {', '.join(file.variables.external)}")
    lines.append(f"suites are run with: robot {shlex.join(file.run.options)}")
    return lines


def as_dict(rules: Rules) -> dict[str, Any]:
    return {"source": rules.source, **rules.file.model_dump()}
