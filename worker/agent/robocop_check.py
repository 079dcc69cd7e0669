"""Robocop 9 (linter and formatter) on a generated suite held as a string.

Robocop's own runners are driven in memory: the text is parsed with Robot Framework's
`get_model` and handed to `RobocopLinter.run_check` / `RobocopFormatter.format_until_stable`
as a `SourceFile` with a virtual path, so nothing is written to disk. Configuration files
(robocop.toml, pyproject.toml) are ignored, so results do not depend on the working directory.

Loading the rules costs ~80 ms (and robocop's import ~0.4 s), so linters (one per
threshold/select/ignore combination) and the formatter are built lazily and kept. Robocop is
not thread-safe: checkers and formatters are stateful visitors, and loading the rules purges
and re-imports `robocop.linter.rules.*` in `sys.modules`. Every call into robocop therefore
holds one module lock; a call takes a few milliseconds, so serialising them costs little.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from functools import lru_cache
from io import StringIO
from pathlib import Path
from typing import TYPE_CHECKING

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
"""Robocop's severities, lowest first."""

_VIRTUAL_PATH = Path("<generated>") / "suite.robot"
"""Path shown to robocop. Its directory does not exist, so the BOM check (which opens the path)
reads nothing and no file in the working directory can leak in."""

_LINTER_CACHE_SIZE = 16
_ROBOCOP_LOCK = threading.Lock()


@dataclass(frozen=True)
class LintIssue:
    line: int
    # 1-based line in the linted text.
    rule_id: str
    # Robocop's rule id, e.g. "DUP01".
    severity: str
    # "E" | "W" | "I".
    message: str


def lint_suite(
    text: str,
    *,
    threshold: str = DEFAULT_SEVERITY,
    select: tuple[str, ...] = (),
    ignore: tuple[str, ...] = (),
) -> list[LintIssue]:
    """Robocop's checks on `text` (a .robot suite), issues at or above `threshold`, optionally
    restricted (select) or reduced (ignore) by rule ids/names.

    Issues are sorted by line. Raises ValueError only for a threshold that is not I, W or E (a
    caller's mistake); any failure of robocop on the text is logged and gives an empty list.
    """
    severity = _normalise_threshold(threshold)
    try:
        with _ROBOCOP_LOCK:
            linter = _linter(severity, tuple(select), tuple(ignore))
            diagnostics = linter.run_check(_source_file(text, linter.config_manager.default_config))
            issues = [_to_issue(diagnostic) for diagnostic in diagnostics]
    except Exception as exc:  # robocop or RF failing on odd input must not end the writer's run
        logger.warning(
            "robocop could not lint the suite (%s: %s); no issues reported", type(exc).__name__, exc
        )
        return []
    return sorted(issues, key=lambda issue: (issue.line, issue.rule_id))


def format_suite(text: str) -> str:
    """The suite formatted by Robocop's formatter with its default formatters (4-space separators
    etc.); returns the text unchanged if formatting fails for any reason (log a warning).

    Text with no section header is not a suite (Robot would read it all as a comment) and is
    returned unchanged rather than respaced.
    """
    try:
        with _ROBOCOP_LOCK:
            formatter = _formatter()
            source_file = _source_file(text, formatter.config)
            if not _has_section_header(source_file.model):
                return text
            changed, _, new_model, _ = formatter.format_until_stable(source_file)
    except Exception as exc:  # same contract as lint_suite: a formatter failure leaves the text as it was
        logger.warning("robocop could not format the suite (%s: %s); left unchanged", type(exc).__name__, exc)
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


@lru_cache(maxsize=_LINTER_CACHE_SIZE)
def _linter(threshold: str, select: tuple[str, ...], ignore: tuple[str, ...]) -> RobocopLinter:
    """A linter with its rules loaded for one option set; call with the lock held."""
    from robocop.config.manager import ConfigManager
    from robocop.config.schema import RawCacheConfig, RawConfig, RawLinterConfig
    from robocop.linter.rules import RuleSeverity
    from robocop.linter.runner import RobocopLinter

    linter_config = RawLinterConfig(
        select=list(select) or None,
        ignore=list(ignore) or None,
        threshold=RuleSeverity(threshold),
        return_result=True,
        silent=True,
    )
    raw = RawConfig(linter=linter_config, cache=RawCacheConfig(enabled=False), silent=True)
    linter = RobocopLinter(ConfigManager(overwrite_config=raw, ignore_file_config=True))
    # Resolving now loads the rules, so the first lint is not the one paying for it.
    linter.config_resolver.resolve_config(linter.config_manager.default_config)
    return linter


@lru_cache(maxsize=1)
def _formatter() -> RobocopFormatter:
    """The formatter with robocop's default formatters loaded; call with the lock held."""
    from robocop.config.manager import ConfigManager
    from robocop.config.schema import RawCacheConfig, RawConfig, RawFormatterConfig
    from robocop.formatter.runner import RobocopFormatter

    formatter_config = RawFormatterConfig(overwrite=False, return_result=True)
    raw = RawConfig(formatter=formatter_config, cache=RawCacheConfig(enabled=False), silent=True)
    formatter = RobocopFormatter(ConfigManager(overwrite_config=raw, ignore_file_config=True))
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
