"""Robocop 9 (linter and formatter) on a generated suite held as a string, configured the way the
repository configures it.

The repository's own configuration (`robocop.toml`, `robot.toml`, `pyproject.toml` `[tool.robocop]`,
or a legacy `.robocop` argument file), read through MCP at the pinned ref, is what a suite is linted
and formatted with; the fleet's defaults (errors only, Robot's default formatters with tag case
kept) apply only when the repository has none. Robocop reads configuration from files, so the
repository's text is written once per distinct content into a private temporary directory.

Robocop's runners are driven in memory: the text is parsed with `get_model` and handed to
`RobocopLinter.run_check` / `RobocopFormatter.format_until_stable` as a `SourceFile` with a virtual
path, so no file of the working directory can leak in. Loading the rules costs ~80 ms, so linters
and formatters are built once per configuration and kept. Robocop is not thread-safe (stateful
visitors; loading rules re-imports modules), so every call holds one module lock.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import shlex
import shutil
import tempfile
import threading
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from io import StringIO
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from robocop.config.schema import Config
    from robocop.formatter.runner import RobocopFormatter
    from robocop.linter.diagnostics import Diagnostic
    from robocop.linter.runner import RobocopLinter
    from robocop.source_file import SourceFile
    from robot.parsing.model import File

logger = logging.getLogger(__name__)

DEFAULT_SEVERITY = "E"
"""Errors only: warnings and infos are style advice, not reasons to repair a suite."""
SEVERITIES = ("I", "W", "E")
CONFIG_FILES = ("robocop.toml", "robot.toml", "pyproject.toml", ".robocop")
"""Where a repository configures Robocop, in the order Robocop itself looks (then the legacy file)."""
DEFAULT_FORMAT_CONFIGURE = ("NormalizeTags.normalize_case=False",)
"""The fleet's formatter keeps tags as written (`SHOP-101`, not `shop-101`): a convention may want them so."""
_VIRTUAL_PATH = Path("<generated>") / "suite.robot"
_CACHE_SIZE = 16
_ROBOCOP_LOCK = threading.Lock()
_LEGACY_OPTIONS = {"--include": "select", "-i": "select", "--exclude": "ignore", "-e": "ignore",
                   "--threshold": "threshold", "-t": "threshold", "--configure": "configure", "-c": "configure"}  # fmt: skip


class LintFailed(Exception):
    """Robocop could not lint the text: the rules stage did not run, whatever it would have said."""


@dataclass(frozen=True)
class LintIssue:
    line: int
    rule_id: str
    severity: str
    message: str


@dataclass(frozen=True)
class RobocopConfig:
    """How suites are linted and formatted. `source` is the repository file it came from (None: the
    fleet's defaults, with `threshold`/`select`/`ignore`); `toml` its content in robocop.toml form."""

    source: str | None = None
    toml: str = ""
    threshold: str = DEFAULT_SEVERITY
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"Robocop, {self.source}" if self.source else "Robocop"


def repository_config(files: dict[str, str]) -> RobocopConfig | None:
    """The repository's Robocop configuration from its root files (path -> text), or None."""
    for name in CONFIG_FILES:
        text = files.get(name)
        if text is None:
            continue
        table = _legacy_table(text) if name == ".robocop" else _toml_table(text, name)
        if table:
            return RobocopConfig(source=name, toml=_dump(table))
    return None


def _toml_table(text: str, name: str) -> dict[str, Any]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LintFailed(f"{name} is not valid TOML: {exc}") from exc
    table = data.get("tool", {}).get("robocop", {})
    return table or (data if name == "robocop.toml" else {})


def _legacy_table(text: str) -> dict[str, Any]:
    """Robocop 5's argument file, translated: --include/--exclude/--threshold/--configure."""
    from robocop.migrate_config import RENAMED_RULES

    lint: dict[str, Any] = {}
    words = shlex.split(text, comments=True)
    for flag, value in pairwise(words):
        key = _LEGACY_OPTIONS.get(flag)
        if key == "threshold":
            lint["threshold"] = value
        elif key == "configure":
            rule, _, rest = value.partition(":")
            param, _, setting = rest.partition(":")
            lint.setdefault("configure", []).append(f"{RENAMED_RULES.get(rule, rule)}.{param}={setting}")
        elif key is not None:
            names = [
                RENAMED_RULES.get(name.strip(), name.strip()) for name in value.split(",") if name.strip()
            ]
            lint.setdefault(key, []).extend(names)
    return {"lint": lint} if lint else {}


def _dump(table: dict[str, Any]) -> str:
    import tomli_w  # robocop's own dependency

    return tomli_w.dumps(table)


def lint_suite(text: str, config: RobocopConfig | None = None, **defaults: Any) -> list[LintIssue]:
    """Robocop's issues on `text`, sorted by line. The keyword arguments `threshold`, `select` and
    `ignore` build a defaults configuration. Raises ValueError for a threshold that is not I, W or E,
    and `LintFailed` when Robocop cannot lint the text with this configuration."""
    config = config or RobocopConfig(
        threshold=_normalise_threshold(defaults.get("threshold", DEFAULT_SEVERITY)),
        select=tuple(defaults.get("select", ())),
        ignore=tuple(defaults.get("ignore", ())),
    )
    try:
        with _ROBOCOP_LOCK:
            linter = _linter(config)
            found = linter.run_check(_source_file(text, linter.config_manager.default_config))
            issues = [_to_issue(diagnostic) for diagnostic in found]
    except (Exception, SystemExit) as exc:  # typer.Exit is robocop's way to refuse a configuration
        raise LintFailed(f"{config.label} could not lint the suite: {type(exc).__name__}: {exc}") from exc
    return sorted(issues, key=lambda issue: (issue.line, issue.rule_id))


def format_suite(text: str, config: RobocopConfig | None = None) -> str:
    """The suite formatted by Robocop's formatter; unchanged if formatting fails (logged) or the text
    has no section header (Robot would read it all as a comment)."""
    config = config or RobocopConfig()
    try:
        with _ROBOCOP_LOCK:
            formatter = _formatter(config)
            source_file = _source_file(text, formatter.config)
            if not _has_section_header(source_file.model):
                return text
            changed, _, new_model, _ = formatter.format_until_stable(source_file)
    except (Exception, SystemExit) as exc:
        logger.warning("%s could not format the suite (%s: %s); left unchanged", config.label,
                       type(exc).__name__, exc)  # fmt: skip
        return text
    return new_model.text if changed and new_model is not None else text


def diagnostics(issues: list[LintIssue]) -> list[str]:
    """Human/model-readable lines: 'line 12: [ERR01] message'."""
    return [f"line {issue.line}: [{issue.rule_id}] {issue.message}" for issue in issues]


def _normalise_threshold(threshold: str) -> str:
    severity = str(threshold).strip().upper()[:1]
    if severity not in SEVERITIES:
        raise ValueError(f"robocop threshold {threshold!r}: expected one of {', '.join(SEVERITIES)}")
    return severity


_CONFIG_DIR: Path | None = None


def _config_file(config: RobocopConfig) -> Path | None:
    """The repository's configuration as a file robocop can read (one per distinct content)."""
    global _CONFIG_DIR
    if config.source is None:
        return None
    if _CONFIG_DIR is None:
        _CONFIG_DIR = Path(tempfile.mkdtemp(prefix="robot-fleet-robocop-"))
        atexit.register(shutil.rmtree, _CONFIG_DIR, ignore_errors=True)
    folder = _CONFIG_DIR / hashlib.sha256(config.toml.encode()).hexdigest()[:16]
    folder.mkdir(exist_ok=True)
    path = folder / "robocop.toml"
    path.write_text(config.toml, encoding="utf-8")
    return path


@lru_cache(maxsize=_CACHE_SIZE)
def _linter(config: RobocopConfig) -> RobocopLinter:
    """A linter with its rules loaded for one configuration; call with the lock held."""
    from robocop.config.manager import ConfigManager
    from robocop.config.schema import RawCacheConfig, RawConfig, RawLinterConfig
    from robocop.linter.rules import RuleSeverity
    from robocop.linter.runner import RobocopLinter

    own = config.source is None
    linter_config = RawLinterConfig(
        select=list(config.select) or None if own else None,
        ignore=list(config.ignore) or None if own else None,
        threshold=RuleSeverity(config.threshold) if own else None,
        return_result=True,
        silent=True,
    )
    raw = RawConfig(linter=linter_config, cache=RawCacheConfig(enabled=False), silent=True)
    path = _config_file(config)
    manager = ConfigManager(config=path, overwrite_config=raw, ignore_file_config=path is None)
    linter = RobocopLinter(manager)
    linter.config_resolver.resolve_config(linter.config_manager.default_config)
    return linter


@lru_cache(maxsize=_CACHE_SIZE)
def _formatter(config: RobocopConfig) -> RobocopFormatter:
    """The formatter for one configuration (the defaults keep tag case); call with the lock held."""
    from robocop.config.manager import ConfigManager
    from robocop.config.schema import RawCacheConfig, RawConfig, RawFormatterConfig
    from robocop.formatter.runner import RobocopFormatter

    configure = list(DEFAULT_FORMAT_CONFIGURE) if config.source is None else None
    formatter_config = RawFormatterConfig(overwrite=False, return_result=True, configure=configure)
    raw = RawConfig(formatter=formatter_config, cache=RawCacheConfig(enabled=False), silent=True)
    path = _config_file(config)
    formatter = RobocopFormatter(
        ConfigManager(config=path, overwrite_config=raw, ignore_file_config=path is None)
    )
    formatter.config_resolver.resolve_config(formatter.config)
    return formatter


def _source_file(text: str, config: Config) -> SourceFile:
    """`text` as a robocop source file; a StringIO so a one-line text is never taken for a path."""
    from robocop.source_file import SourceFile
    from robot.api import get_model

    return SourceFile(path=_VIRTUAL_PATH, config=config, _model=get_model(StringIO(text)))


def _has_section_header(model: File) -> bool:
    return any(section.header is not None for section in model.sections)


def _to_issue(diagnostic: Diagnostic) -> LintIssue:
    return LintIssue(
        line=diagnostic.range.start.line,
        rule_id=diagnostic.rule.rule_id,
        severity=diagnostic.severity.value,
        message=diagnostic.message,
    )
