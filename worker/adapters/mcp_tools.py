"""The production `Toolset`: one MCP session over streamable HTTP (mcp 2.x), owned by one task.

The SDK's client runs anyio task groups whose cancel scopes must exit in the task that entered
them, and a call that fails on a dead connection cancels that task. So one owner task enters the
client and holds it; callers in any task use it concurrently; when the connection breaks, the owner
rebuilds it with exponential backoff while callers wait (bounded) and retry in place.

SDK and transport exceptions are translated here and nowhere else:
- a JSON-RPC error answering a call (the real GitLab server's `-32603 File not found: ...`) and an
  `is_error` result are tool failures: text for the model;
- HTTP 401/403 is `ToolServerRejected` (permanent: the token or its header is wrong);
- HTTP 429/5xx, a refused or lost connection are `ToolServerUnavailable` (retryable);
- HTTP 404 on a request that carried our `Mcp-Session-Id` means the server forgot the session (it
  expired after `SESSION_TIMEOUT_SECONDS` idle, or the server restarted): the owner opens a new
  session (a new `initialize`) and the call is sent again at once.
The SDK reports non-2xx answers as a generic JSON-RPC error; an httpx response hook writes the real
status into a per-call context variable (each request is sent in a copy of the caller's context).

Also here, because they are facts about servers met in production (zereight/gitlab-mcp 2.1.x):
- the session is closed with HTTP DELETE when the owner stops (the SDK's `terminate_on_close`): the
  server holds at most `MAX_SESSIONS` of them;
- `notifications/tools/list_changed` is counted in `listing_epoch`, so owners of a tool listing
  know to list again;
- a server that answers the SDK's `server/discover` probe with an error (the TypeScript SDK 1.x
  answers 400 `Server not initialized`) is a handshake-era server: this session's later
  connections start with `initialize` (`mode="legacy"`) instead of probing again;
- the SDK logs a traceback ("Error parsing SSE message ... ClosedResourceError") when an answer
  arrives for a call whose reader is already gone (a cancelled call, a session being closed).
  That is not an error of ours or the server's: `QuietClosedStreams` turns it into one DEBUG line
  (and the SDK's warning about a DELETE the server refused at close into INFO).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2
import mcp_types
from mcp import Client
from mcp.client.session import IncomingMessage
from mcp.client.streamable_http import MCP_SESSION_ID, streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from worker.agent.tools import BUDGET_WAIT, ToolOutcome, ToolSpec
from worker.errors import RobotFleetError, ToolServerRejected, ToolServerUnavailable, retry_after_seconds

logger = logging.getLogger(__name__)

RequestHook = Callable[[httpx2.Request], Awaitable[None]]

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 120.0
CALL_ATTEMPTS = 3
RECONNECT_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)
DEFAULT_CONNECT_WAIT_S = 30.0
MAX_RETRY_AFTER_S = 10.0


SDK_TRANSPORT_LOGGER = "mcp.client.streamable_http"
CLOSED_STREAM_ERRORS = (anyio.ClosedResourceError, anyio.BrokenResourceError)


class QuietClosedStreams(logging.Filter):
    """Quiets two SDK logs that are not the user's business. An answer that found its reader gone
    becomes one DEBUG line without traceback. A failed DELETE of our session at close becomes INFO
    (DEBUG when the server had forgotten the session already: 404): the job's own outcome is the
    line the user needs, and the server reaps the session when it expires. Anything else passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        message = record.getMessage()
        if isinstance(exc, CLOSED_STREAM_ERRORS):
            record.msg, record.args = f"{message}: {type(exc).__name__} (reader gone)", None
            record.exc_info, record.exc_text = None, None
            return _demote(record, logging.DEBUG)
        if message.startswith("Session termination failed"):
            return _demote(record, logging.DEBUG if message.endswith(": 404") else logging.INFO)
        return True


def _demote(record: logging.LogRecord, level: int) -> bool:
    record.levelno, record.levelname = level, logging.getLevelName(level)
    return logging.getLogger(record.name).isEnabledFor(level)


def quiet_sdk_logs() -> None:
    """Install `QuietClosedStreams` on the SDK's transport logger (once)."""
    sdk = logging.getLogger(SDK_TRANSPORT_LOGGER)
    if not any(isinstance(existing, QuietClosedStreams) for existing in sdk.filters):
        sdk.addFilter(QuietClosedStreams())


quiet_sdk_logs()


@dataclass
class _HttpStatus:
    status: int = 0
    retry_after: float | None = None
    session_lost: bool = False


_http_status: contextvars.ContextVar[_HttpStatus | None] = contextvars.ContextVar(
    "mcp_http_status", default=None
)


async def _record_status(response: httpx2.Response) -> None:
    holder = _http_status.get()
    if holder is not None and response.status_code >= 400:
        holder.status = response.status_code
        holder.retry_after = retry_after_seconds(response.headers.get("retry-after"))
        holder.session_lost = response.status_code == 404 and MCP_SESSION_ID in response.request.headers


def translate_failure(exc: BaseException, status: _HttpStatus, url: str, doing: str) -> RobotFleetError:
    if isinstance(exc, RobotFleetError):
        return exc
    if status.status in (401, 403):
        return ToolServerRejected(
            f"MCP server {url} refused the credentials (HTTP {status.status}) while {doing}: "
            "check GITLAB_MCP_TOKEN and GITLAB_MCP_AUTH_HEADER"
        )
    if status.session_lost:
        return ToolServerUnavailable(
            f"MCP server {url} kept forgetting the session (HTTP 404 Session not found) while {doing}"
        )
    if status.status:
        return ToolServerUnavailable(
            f"MCP server {url} answered HTTP {status.status} while {doing}", retry_after=status.retry_after
        )
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return ToolServerUnavailable(f"MCP server {url} unreachable while {doing}: {type(exc).__name__}: {exc}")


def _is_tool_error(exc: MCPError, status: _HttpStatus) -> bool:
    """A JSON-RPC error the server sent about the call itself (not a transport failure)."""
    return (
        not status.status and exc.code not in (-32000,) and exc.message != "Server returned an error response"
    )


class McpSession:
    """A `Toolset` on one owned, self-healing MCP connection. Use as an async context manager."""

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        *,
        connect_wait_s: float = DEFAULT_CONNECT_WAIT_S,
        request_hooks: Sequence[RequestHook] = (),
    ) -> None:
        self.url = url
        self._headers = headers
        self._request_hooks = list(request_hooks)  # e.g. the fleet-wide rate limiter's
        self._connect_wait_s = connect_wait_s
        self._client: Client | None = None
        self._generation = 0
        self._changed = asyncio.Event()
        self._broken = asyncio.Event()
        self._closing = False
        self._fatal: RobotFleetError | None = None
        self._last_error: RobotFleetError | None = None
        self._owner: asyncio.Task[None] | None = None
        self._mode = "auto"  # "legacy" once the server turned out to predate `server/discover`
        self._list_changes = 0
        self._session_forgotten = False
        self._down_since: float | None = None
        """When the server stopped answering (a connection attempt failed), while it has not since."""
        self.connects = 0
        self.answered_at = 0.0
        """When the server last answered a request (monotonic; a tool error is an answer too): the
        fleet's pause on MCP counts a job as proof the server works only when it answered during it."""

    @property
    def listing_epoch(self) -> int:
        """Changes whenever a tool listing may be stale: at each (re)connection and each
        `notifications/tools/list_changed` (the real server's tool list can change at run time)."""
        return self.connects + self._list_changes

    async def __aenter__(self) -> McpSession:
        self._owner = asyncio.create_task(self._own(), name="mcp-session-owner")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing = True
        self._broken.set()
        if self._owner is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._owner, timeout=5)

    async def _own(self) -> None:
        failures = 0
        while not self._closing:
            status = _HttpStatus()
            _http_status.set(status)
            try:
                async with self._connected() as client:
                    failures = 0
                    self._publish(client, None)
                    await self._broken.wait()
            except Exception as exc:
                error = translate_failure(exc, status, self.url, "connecting")
                self._publish(None, error)
                if isinstance(error, ToolServerRejected):
                    self._fatal = error
                    return
            else:
                self._publish(None, None)
            if self._closing:
                return
            if self._session_forgotten:
                self._session_forgotten = False
                logger.info("MCP server %s forgot our session (HTTP 404): opening a new one", self.url)
                continue  # the server is up: a new session can start at once
            delay = RECONNECT_BACKOFF_S[min(failures, len(RECONNECT_BACKOFF_S) - 1)]
            failures += 1
            logger.warning("MCP session to %s lost; reconnecting in %.1fs", self.url, delay)
            await asyncio.sleep(delay)

    @contextlib.asynccontextmanager
    async def _connected(self) -> AsyncIterator[Client]:
        http = httpx2.AsyncClient(
            headers=self._headers,
            timeout=httpx2.Timeout(CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S),
            event_hooks={"request": list(self._request_hooks), "response": [_record_status]},
        )
        transport = streamable_http_client(self.url, http_client=http)
        client = Client(transport, cache=None, mode=self._mode, message_handler=self._on_message)
        async with http, client:
            if self._mode == "auto" and client.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS:
                self._mode = "legacy"  # the probe failed once: never spend a request on it again
            self.connects += 1
            yield client

    async def _on_message(self, message: IncomingMessage) -> None:
        if isinstance(message, mcp_types.ToolListChangedNotification):
            self._list_changes += 1
            logger.info("MCP server %s changed its tool list", self.url)

    def _publish(self, client: Client | None, error: RobotFleetError | None) -> None:
        self._client = client
        if client is not None:
            self._generation += 1
            self._broken.clear()
            self._down_since = None
        elif error is not None and self._down_since is None:
            self._down_since = time.monotonic()
        self._last_error = error
        self._changed.set()
        self._changed = asyncio.Event()

    async def _ready(self) -> tuple[Client, int]:
        """The live client, once connected; waits up to `connect_wait_s` for a reconnection, then
        raises the connection's error: a server down that long is an outage (the job fails, retryable,
        and the fleet may pause), not a slow answer. The wait counts from when the server stopped
        answering, not from the call: once it has been down that long, every call fails at once
        instead of each waiting as long again. The wait is not the server's time, so it is not
        counted against a tool call's timeout (as a fleet-wide budget's wait is not: `BUDGET_WAIT`)."""
        deadline = min(time.monotonic(), self._down_since or time.monotonic()) + self._connect_wait_s
        caller = BUDGET_WAIT.get()
        loop = asyncio.get_running_loop()
        try:
            while True:
                if self._fatal is not None:
                    raise self._fatal
                if self._client is not None:
                    return self._client, self._generation
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self._owner is not None and self._owner.done()):
                    raise self._last_error or ToolServerUnavailable(f"MCP server {self.url} not connected")
                if caller is not None and caller.since is None:
                    caller.since = loop.time()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout=remaining)
        finally:
            if caller is not None and caller.since is not None:
                caller.waited_s += loop.time() - caller.since
                caller.since = None

    def _mark_broken(self, generation: int, *, forgotten: bool = False) -> None:
        if generation == self._generation and self._client is not None:
            self._client = None
            self._session_forgotten = forgotten
            self._broken.set()

    async def _request(self, doing: str, call: Any) -> Any:
        """Run `call(client)` with in-place retries across reconnections."""
        failure: RobotFleetError | None = None
        for attempt in range(CALL_ATTEMPTS):
            client, generation = await self._ready()
            status = _HttpStatus()
            _http_status.set(status)
            try:
                answer = await call(client)
                self.answered_at = time.monotonic()
                return answer
            except MCPError as exc:
                if _is_tool_error(exc, status):
                    self.answered_at = time.monotonic()
                    raise
                failure = translate_failure(exc, status, self.url, doing)
            except Exception as exc:
                failure = translate_failure(exc, status, self.url, doing)
            if isinstance(failure, ToolServerRejected):
                raise failure
            if not status.status or status.session_lost:
                self._mark_broken(generation, forgotten=status.session_lost)
            if status.session_lost:
                continue  # a new session can answer at once: no backoff
            retry_after = failure.retry_after if isinstance(failure, ToolServerUnavailable) else None
            if retry_after is not None and retry_after > MAX_RETRY_AFTER_S:
                raise failure  # waiting here would not help; the job's own retry honours it
            if attempt < CALL_ATTEMPTS - 1:
                await asyncio.sleep(retry_after or 0.2 * 2**attempt)
        assert failure is not None
        raise failure

    async def list_tools(self) -> list[ToolSpec]:
        async def listing(client: Client) -> list[ToolSpec]:
            tools: list[ToolSpec] = []
            cursor: str | None = None
            for _ in range(100):
                page = await client.list_tools(cursor=cursor)
                tools += [
                    ToolSpec(t.name, t.description or "", dict(t.input_schema or {})) for t in page.tools
                ]
                if not (cursor := page.next_cursor):
                    break
            return tools

        tools: list[ToolSpec] = await self._request("listing tools", listing)
        return tools

    async def probe(self, name: str, arguments: dict[str, Any], timeout_s: float) -> None:
        """One small call: returns once the server answers it (a tool error, or refused credentials,
        is an answer: jobs will say so); raises `ToolServerUnavailable` while it does not within
        `timeout_s` (down, or slower than a tool call may be)."""
        try:
            async with asyncio.timeout(timeout_s):
                await self.call_tool(name, arguments)
        except ToolServerRejected:
            return
        except TimeoutError as exc:
            raise ToolServerUnavailable(
                f"MCP server {self.url} did not answer {name} within {timeout_s:g}s"
            ) from exc

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        async def call(client: Client) -> ToolOutcome:
            result = await client.call_tool(name, arguments, read_timeout_seconds=READ_TIMEOUT_S)
            return ToolOutcome(_result_text(result.content), is_error=bool(result.is_error))

        try:
            outcome: ToolOutcome = await self._request(f"calling {name}", call)
            return outcome
        except MCPError as exc:
            return ToolOutcome(f"Error: {exc.message}", is_error=True)


def _result_text(content: list[Any]) -> str:
    parts = []
    for block in content:
        text = getattr(block, "text", None)
        parts.append(text if isinstance(text, str) else f"[{getattr(block, 'type', 'content')} omitted]")
    return "\n".join(parts)
