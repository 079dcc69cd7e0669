"""Secrets out of everything that is stored or logged: known secret values are replaced by `***`.

Three ways out are covered: what the fleet writes itself (the store redacts job errors and logs),
log records (`RedactingFilter`: the message and any formatted exception or stack), and exceptions
handed to Celery (`redacting_task_class`): Celery stores a failed or retried task's exception and
traceback in the result backend, sends them to Flower in task events and logs them, and a provider
may echo the API key in its error message, which then sits in the whole exception chain.
"""

from __future__ import annotations

import contextlib
import logging
import traceback
from collections.abc import Callable, Iterable
from typing import Any

from worker.settings import Settings

MASK = "***"
MIN_SECRET_CHARS = 6
_SCRUBBED_ATTRIBUTES = ("message", "excs")
# `message`: RobotFleetError, openai's errors, Celery's Retry; `excs`: Retry's repr of its cause


def redactor(secrets: Iterable[str]) -> Callable[[str], str]:
    values = sorted({s for s in secrets if s and len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True)

    def redact(text: str) -> str:
        for value in values:
            if value in text:
                text = text.replace(value, MASK)
        return text

    return redact


def secret_values(settings: Settings) -> list[str]:
    values = [settings.openai_api_key.get_secret_value()]
    if settings.gitlab_mcp_token is not None:
        values.append(settings.gitlab_mcp_token.get_secret_value())
    return values


def redactor_for(settings: Settings) -> Callable[[str], str]:
    return redactor(secret_values(settings))


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in every record's final message, exception and stack."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self._redact = redactor_for(settings)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self._redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            # formatters reuse a record's exc_text once it is set, so they print this one
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self._redact(record.stack_info)
        return True


def _scrub_value(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list | tuple):
        return type(value)(_scrub_value(item, redact) for item in value)
    return value


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and every exception reachable from it: causes, contexts, group members and
    a Celery Retry's `exc`."""
    found: list[BaseException] = []
    pending: list[object] = [exc]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or any(current is seen for seen in found):
            continue
        found.append(current)
        pending += [current.__cause__, current.__context__, getattr(current, "exc", None)]
        pending += list(getattr(current, "exceptions", ()) or ())
    return found


def _leaks(exc: BaseException, redact: Callable[[str], str]) -> bool:
    text = "".join(traceback.format_exception(exc))
    return redact(text) != text


def scrub_exception(exc: BaseException, redact: Callable[[str], str]) -> BaseException:
    """Mask secrets in `exc` and its whole chain, in place (messages, args, notes, diagnostics), so
    its repr, its str and its formatted traceback carry none. Returns `exc`; or, when some member
    still shows a secret (an exception with its own `__str__`), `exc` cut from its chain; or, as a
    last resort, a plain RuntimeError with the masked text, to raise instead."""
    for member in _chain(exc):
        with contextlib.suppress(AttributeError, TypeError):
            member.args = _scrub_value(member.args, redact)
        for name in _SCRUBBED_ATTRIBUTES:
            value = getattr(member, name, None)
            if isinstance(value, str):
                with contextlib.suppress(AttributeError, TypeError):
                    setattr(member, name, redact(value))
        for name in ("diagnostics", "__notes__"):
            value = getattr(member, name, None)
            if isinstance(value, list):
                value[:] = _scrub_value(value, redact)
    if not _leaks(exc, redact):
        return exc
    exc.__cause__, exc.__context__, exc.__suppress_context__ = None, None, True
    if not _leaks(exc, redact):
        return exc
    return RuntimeError(redact(f"{type(exc).__name__}: {exc}"))


def redacting_task_class(base: type[Any], settings: Settings) -> type[Any]:
    """`base` (an app's Task class) whose calls raise only scrubbed exceptions: what Celery then
    stores, sends to Flower and logs about a failure or a retry carries no secret."""
    redact = redactor_for(settings)

    class RedactingTask(base):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            try:
                return super().__call__(*args, **kwargs)
            except BaseException as exc:
                safe = scrub_exception(exc, redact)
                if safe is exc:
                    raise
                raise safe from None

    RedactingTask.__qualname__ = RedactingTask.__name__ = f"Redacting{base.__name__}"
    return RedactingTask
