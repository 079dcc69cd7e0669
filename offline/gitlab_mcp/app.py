"""The ASGI app: the SDK's streamable-HTTP MCP endpoint at `/mcp`, guarded, plus test routes.

Transport choice: `stateless_http=True, json_response=True`. Every POST is served on its own with
a plain JSON answer and no `Mcp-Session-Id`, so nothing is held per client: thousands of
concurrent clients cost no session table, and a client keeps working across a server restart
(there is no session to lose). `mcp.Client` in its default "auto" mode talks the 2026-07-28
per-request protocol to it; "legacy" mode (initialize handshake) works too.

The guard (`McpGuard`, pure ASGI, in front of `/mcp` only) runs in this order:
1. counts the request (`requests`);
2. rate limit, when `rpm` is set: a fixed window (`rate_window`, one minute by default) per client
   IP, as express-rate-limit's memory store does in the real server; over the limit → 429, `Retry-After` (seconds), the
   `RateLimit-*` headers and `{"error": "Too many requests, please try again later."}`;
3. auth, when a token is set: `Authorization: Bearer <token>`, or the raw token in any other
   configured header (e.g. `Private-Token`); otherwise 401 with
   `{"error": "invalid_token", "error_description": ...}` (and `WWW-Authenticate: Bearer ...` in the
   Authorization case), as the MCP TypeScript SDK's bearer middleware answers.

`GET /stats`, `POST /stats/reset` and `GET /healthz` need no token and are not rate limited: they
are for tests and benchmarks on localhost, not part of the GitLab surface.

`--sessions` serves the real server's transport instead: stateful, `Mcp-Session-Id` issued at
`initialize`, answers as SSE streams, `server/discover` (or anything but `initialize`) without a
session refused with 400 `Bad Request: Server not initialized` as the TypeScript SDK does, and an
unknown, closed or expired session id answered 404 `{"error": "Session not found"}` before the rate
limit and auth, as the real server's `rejectUnknownStatefulSession` does (`sessions`, with
`--session-timeout`). `/stats` then has `sessions`: opened, closed (DELETE), expired, not_found,
not_initialized (requests refused for want of a session), active.
"""

from __future__ import annotations

import hmac
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from offline.gitlab_mcp.config import MCP_PATH, RATE_WINDOW_S, ServerConfig
from offline.gitlab_mcp.repo import RepoView
from offline.gitlab_mcp.sessions import SessionState, SessionTable
from offline.gitlab_mcp.stats import Stats
from offline.gitlab_mcp.tools import build_server

RATE_LIMIT_MESSAGE = "Too many requests, please try again later."
SESSION_HEADER = "mcp-session-id"
NOT_INITIALIZED = {
    "jsonrpc": "2.0",
    "error": {"code": -32000, "message": "Bad Request: Server not initialized"},
    "id": None,
}
PRUNE_ABOVE_KEYS = 10_000
DEFAULT_SDK_IDLE_TIMEOUT_S = 3600.0
# the SDK's own reaping of sessions nobody closed, as the real server's one-hour default


@dataclass
class _Window:
    reset_at: float
    hits: int


class RateLimiter:
    """Fixed windows per key; `hit` is synchronous, so it is atomic on the event loop."""

    def __init__(
        self, limit: int, window_s: float = RATE_WINDOW_S, clock: Callable[[], float] = time.monotonic
    ):
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._windows: dict[str, _Window] = {}

    def hit(self, key: str) -> tuple[bool, int, float]:
        """Count a request: (allowed, remaining, seconds until the window resets)."""
        now = self.clock()
        window = self._windows.get(key)
        if window is None or window.reset_at <= now:
            if len(self._windows) > PRUNE_ABOVE_KEYS:
                self._windows = {k: w for k, w in self._windows.items() if w.reset_at > now}
            window = self._windows[key] = _Window(reset_at=now + self.window_s, hits=0)
        window.hits += 1
        return window.hits <= self.limit, max(0, self.limit - window.hits), window.reset_at - now


def _json_response(status: int, body: dict[str, str], headers: dict[str, str]) -> Response:
    return Response(json.dumps(body), status_code=status, headers=headers, media_type="application/json")


class McpGuard:
    """Counting, rate limiting and token auth in front of the MCP endpoint."""

    def __init__(
        self, app: ASGIApp, config: ServerConfig, stats: Stats, sessions: SessionTable | None = None
    ) -> None:
        self.app = app
        self.config = config
        self.stats = stats
        self.sessions = sessions
        self.limiter = RateLimiter(config.rpm, config.rate_window) if config.rpm else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == MCP_PATH or path.startswith(MCP_PATH + "/")):
            await self.app(scope, receive, send)
            return
        self.stats.request()
        headers = Headers(scope=scope)
        refusal = (
            self._unknown_session(scope, headers) or self._rate_limited(scope) or self._unauthorized(headers)
        )
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        if self.sessions is None:
            await self.app(scope, receive, send)
        else:
            await self._in_session(scope, receive, send, headers.get(SESSION_HEADER))

    def _unknown_session(self, scope: Scope, headers: Headers) -> Response | None:
        session_id = headers.get(SESSION_HEADER)
        if self.sessions is None or not session_id:
            return None
        activity = scope.get("method") in ("POST", "DELETE")
        if self.sessions.check(session_id, activity=activity) is SessionState.LIVE:
            return None
        return _json_response(404, {"error": "Session not found"}, {})

    async def _in_session(self, scope: Scope, receive: Receive, send: Send, session_id: str | None) -> None:
        assert self.sessions is not None
        if scope.get("method") == "POST" and not session_id:
            body, replay = await _buffered(receive)
            if not _is_initialize(body):
                self.sessions.refused_uninitialized()
                response = Response(json.dumps(NOT_INITIALIZED), 400, media_type="application/json")
                await response(scope, replay, send)
                return
            receive = replay
        sessions = self.sessions

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                issued = Headers(raw=message.get("headers", [])).get(SESSION_HEADER)
                if issued and not session_id:
                    sessions.opened(issued)
                if session_id and scope.get("method") == "DELETE":
                    sessions.closed(session_id)
            await send(message)

        await self.app(scope, receive, watch)

    def _rate_limited(self, scope: Scope) -> Response | None:
        if self.limiter is None:
            return None
        client = scope.get("client")
        allowed, remaining, reset_s = self.limiter.hit(client[0] if client else "unknown")
        if allowed:
            return None
        self.stats.add("rate_limited")
        retry_after = str(max(1, math.ceil(reset_s)))
        headers = {
            "Retry-After": retry_after,
            "RateLimit-Policy": f"{self.limiter.limit};w={max(1, math.ceil(self.limiter.window_s))}",
            "RateLimit-Limit": str(self.limiter.limit),
            "RateLimit-Remaining": str(remaining),
            "RateLimit-Reset": retry_after,
        }
        return _json_response(429, {"error": RATE_LIMIT_MESSAGE}, headers)

    def _unauthorized(self, headers: Headers) -> Response | None:
        expected = self.config.token
        if not expected:
            return None
        problem = self._token_problem(headers.get(self.config.auth_header), expected)
        if problem is None:
            return None
        self.stats.add("unauthorized")
        extra = {}
        if self.config.auth_header.lower() == "authorization":
            extra["WWW-Authenticate"] = f'Bearer error="invalid_token", error_description="{problem}"'
        return _json_response(401, {"error": "invalid_token", "error_description": problem}, extra)

    def _token_problem(self, value: str | None, expected: str) -> str | None:
        """Why the header value does not authenticate, or None when it does."""
        header = self.config.auth_header
        if value is None:
            return f"Missing {header} header"
        token = value.strip()
        if header.lower() == "authorization":
            scheme, _, token = token.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return "Invalid Authorization header format, expected 'Bearer TOKEN'"
        if not hmac.compare_digest(token.strip().encode(), expected.encode()):
            return "Invalid token"
        return None


async def _buffered(receive: Receive) -> tuple[bytes, Receive]:
    """The request body, and a `receive` that hands the same messages to the app again."""
    messages: list[Message] = []
    body = b""
    while True:
        message = await receive()
        messages.append(message)
        body += message.get("body", b"")
        if message["type"] != "http.request" or not message.get("more_body"):
            break

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return body, replay


def _is_initialize(body: bytes) -> bool:
    try:
        message = json.loads(body)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("method") == "initialize"


def _add_test_routes(
    server_routes: Callable[..., Callable[..., object]], stats: Stats, sessions: SessionTable | None
) -> None:
    def snapshot() -> dict[str, object]:
        body: dict[str, object] = stats.snapshot()
        if sessions is not None:
            body["sessions"] = sessions.snapshot()
        return body

    @server_routes("/stats", methods=["GET"])
    async def read_stats(request: Request) -> Response:
        return JSONResponse(snapshot())

    @server_routes("/stats/reset", methods=["POST"])
    async def reset_stats(request: Request) -> Response:
        stats.reset()
        if sessions is not None:
            sessions.reset()
        return JSONResponse(snapshot())

    @server_routes("/healthz", methods=["GET"])
    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})


def build_app(config: ServerConfig, stats: Stats | None = None) -> Starlette:
    """The whole server as a Starlette app (its lifespan runs the SDK's session manager)."""
    stats = stats if stats is not None else Stats(window_s=config.rate_window)
    sessions = SessionTable(config.session_timeout) if config.sessions else None
    server = build_server(config, RepoView(config.repo), stats)
    _add_test_routes(server.custom_route, stats, sessions)
    if sessions is None:
        app = server.streamable_http_app(
            streamable_http_path=MCP_PATH, stateless_http=True, json_response=True, host=config.host
        )
    else:
        app = server.streamable_http_app(
            streamable_http_path=MCP_PATH,
            session_idle_timeout=config.session_timeout or DEFAULT_SDK_IDLE_TIMEOUT_S,
            host=config.host,
        )
    app.add_middleware(McpGuard, config=config, stats=stats, sessions=sessions)
    return app
