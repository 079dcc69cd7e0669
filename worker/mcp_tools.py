"""The production `Toolset`: an MCP client session over streamable HTTP (mcp 2.x SDK).

SDK and transport exceptions are translated here and nowhere else:
- a JSON-RPC error answering a call (the real GitLab server's `-32603 File not found: ...`) and an
  `is_error` result are tool failures: text for the model;
- an HTTP 401/403 is `ToolServerRejected` (permanent: the token or its header is wrong);
- an HTTP 429/5xx, a refused or lost connection, a session the server forgot are
  `ToolServerUnavailable` (retryable), after a short in-place retry honouring Retry-After.
The SDK turns non-2xx answers into a generic JSON-RPC error, so an httpx response hook on our own
client records the real status and Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from worker.agent.tools import ToolOutcome, ToolSpec
from worker.errors import ToolServerRejected, ToolServerUnavailable

logger = logging.getLogger(__name__)

SDK_HTTP_FAILURE_MESSAGES = frozenset({"Server returned an error response", "Session terminated"})
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 120.0
CALL_RETRIES = 2
MAX_RETRY_AFTER_S = 10.0
STATUS_MEMORY_S = 5.0


@dataclass
class _HttpStatus:
    """The last non-2xx answer of the MCP server, as seen by the httpx response hook."""

    status: int = 0
    retry_after: float | None = None
    at: float = 0.0

    async def hook(self, response: httpx2.Response) -> None:
        if response.status_code >= 400:
            self.status = response.status_code
            self.retry_after = _seconds(response.headers.get("retry-after"))
            self.at = time.monotonic()

    def recent(self) -> int:
        return self.status if time.monotonic() - self.at < STATUS_MEMORY_S else 0


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


class McpToolset:
    """Lists and calls tools on one connected MCP client; safe for concurrent calls."""

    def __init__(self, client: Client, status: _HttpStatus, url: str) -> None:
        self._client = client
        self._status = status
        self._url = url

    async def list_tools(self) -> list[ToolSpec]:
        tools: list[ToolSpec] = []
        cursor: str | None = None
        for _ in range(100):
            try:
                page = await self._client.list_tools(cursor=cursor)
            except Exception as exc:
                raise self._translate(exc, "listing tools") from exc
            tools += [ToolSpec(t.name, t.description or "", dict(t.input_schema or {})) for t in page.tools]
            cursor = page.next_cursor
            if not cursor:
                break
        return tools

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        for attempt in range(CALL_RETRIES + 1):
            try:
                result = await self._client.call_tool(name, arguments, read_timeout_seconds=READ_TIMEOUT_S)
            except MCPError as exc:
                if exc.message not in SDK_HTTP_FAILURE_MESSAGES and not self._status.recent():
                    return ToolOutcome(f"Error: {exc.message}", is_error=True)
                failure = self._translate(exc, f"calling {name}")
            except Exception as exc:
                failure = self._translate(exc, f"calling {name}")
            else:
                return ToolOutcome(_result_text(result.content), is_error=bool(result.is_error))
            if isinstance(failure, ToolServerRejected) or attempt == CALL_RETRIES:
                raise failure
            delay = min(failure.retry_after or 0.5 * 2**attempt, MAX_RETRY_AFTER_S)
            logger.warning("MCP %s failed (%s); retrying in %.1fs", name, failure.message, delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _translate(self, exc: BaseException, doing: str) -> ToolServerRejected | ToolServerUnavailable:
        return translate_failure(exc, self._status, self._url, doing)


def translate_failure(
    exc: BaseException, status: _HttpStatus, url: str, doing: str
) -> ToolServerRejected | ToolServerUnavailable:
    code = status.recent()
    if code in (401, 403):
        return ToolServerRejected(
            f"MCP server {url} refused the credentials ({code}) while {doing}: "
            "check GITLAB_MCP_TOKEN and GITLAB_MCP_AUTH_HEADER"
        )
    if code:
        reason = f"answered HTTP {code}"
        return ToolServerUnavailable(
            f"MCP server {url} {reason} while {doing}", retry_after=status.retry_after
        )
    return ToolServerUnavailable(f"MCP server {url} unreachable while {doing}: {_describe(exc)}")


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"


def _result_text(content: list[Any]) -> str:
    parts = []
    for block in content:
        text = getattr(block, "text", None)
        if isinstance(text, str):
            parts.append(text)
        else:
            parts.append(f"[{getattr(block, 'type', 'content')} omitted]")
    return "\n".join(parts)


@contextlib.asynccontextmanager
async def connect_mcp(url: str, headers: dict[str, str]) -> AsyncIterator[McpToolset]:
    """One MCP session; raises `ToolServerRejected`/`ToolServerUnavailable` when it cannot open."""
    status = _HttpStatus()
    http = httpx2.AsyncClient(
        headers=headers,
        timeout=httpx2.Timeout(CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S),
        event_hooks={"response": [status.hook]},
    )
    stack = contextlib.AsyncExitStack()
    try:
        await stack.enter_async_context(http)
        client = await stack.enter_async_context(
            Client(streamable_http_client(url, http_client=http), cache=None)
        )
    except Exception as exc:
        await stack.aclose()
        raise translate_failure(exc, status, url, "connecting") from exc
    try:
        yield McpToolset(client, status, url)
    finally:
        with contextlib.suppress(Exception):
            await stack.aclose()
