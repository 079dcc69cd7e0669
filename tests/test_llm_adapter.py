"""The openai adapter over a real socket: a stream that breaks off mid-answer is a retryable
`ModelUnavailable`, not an untranslated transport exception."""

from __future__ import annotations

import asyncio
import json

import pytest

from worker.adapters.llm import OpenAIChatModel
from worker.errors import ModelUnavailable
from worker.settings import Settings

pytestmark = pytest.mark.integration

CHUNK = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
         "choices": [{"index": 0, "delta": {"role": "assistant", "content": "*** Settings"}, "finish_reason": None}]}  # fmt: skip


async def _half_a_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    body = f"data: {json.dumps(CHUNK)}\n\n".encode()
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    writer.write(head + f"{len(body):x}\r\n".encode() + body + b"\r\n")
    await writer.drain()
    writer.transport.abort()  # the connection drops mid-answer


def test_stream_broken_mid_answer_is_retryable() -> None:
    from worker.adapters.llm import build_client

    async def scenario() -> list[dict]:
        server = await asyncio.start_server(_half_a_stream, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        settings = Settings(
            openai_api_key="k", openai_base_url=f"http://127.0.0.1:{port}/v1", openai_max_retries=0
        )
        model = OpenAIChatModel(build_client(settings), "m", None)
        received: list[dict] = []
        try:
            async for chunk in model.stream_turn([{"role": "user", "content": "hi"}], []):
                received.append(chunk)
        finally:
            server.close()
        return received

    with pytest.raises(ModelUnavailable, match=r"(stream broke off|unreachable)") as info:
        asyncio.run(scenario())
    assert info.value.retryable
