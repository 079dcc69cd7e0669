"""Secrets out of everything that is stored or logged: known secret values are replaced by `***`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from worker.settings import Settings

MASK = "***"
MIN_SECRET_CHARS = 6


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
    """A logging filter that masks secrets in every record's final message."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self._redact = redactor_for(settings)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self._redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True
