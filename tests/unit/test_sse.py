"""The model adapter reads the stream's events itself (no pydantic object per chunk)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from worker.adapters.llm import _sse_chunks
from worker.errors import ModelUnavailable


async def _lines(*lines: str) -> AsyncIterator[str]:
    for line in lines:
        yield line


def chunks(*lines: str) -> list[dict]:
    async def collect() -> list[dict]:
        return [chunk async for chunk in _sse_chunks(_lines(*lines))]

    return asyncio.run(collect())


def test_events_are_parsed_up_to_done_ignoring_comments_and_event_names() -> None:
    got = chunks(": keep-alive", "", 'data: {"a": 1}', "", "event: message", 'data: {"b":', "data: 2}", "",
                 "data: [DONE]", "", 'data: {"after": true}', "")  # fmt: skip
    assert got == [{"a": 1}, {"b": 2}]


def test_an_error_event_in_the_stream_is_retryable_with_its_message() -> None:
    with pytest.raises(ModelUnavailable, match="overloaded"):
        chunks('data: {"a": 1}', "", 'data: {"error": {"message": "server overloaded"}}', "")
