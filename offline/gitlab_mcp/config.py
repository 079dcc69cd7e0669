"""Settings of the offline GitLab MCP server: one frozen dataclass, its defaults as named constants."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9001
DEFAULT_PROJECT_ID = "42"
DEFAULT_PROJECT_PATH = "qa/shop-tests"
DEFAULT_REF = "main"
DEFAULT_AUTH_HEADER = "Authorization"
DEFAULT_WEB_BASE = "https://gitlab.example.com"
MCP_PATH = "/mcp"
RATE_WINDOW_S = 60.0


@dataclass(frozen=True)
class ServerConfig:
    """Everything `build_app` needs; the CLI fills it from its options."""

    repo: Path
    """The local checkout served as the project's repository (read-only)."""
    project_id: str = DEFAULT_PROJECT_ID
    """The numeric project id the server answers for (as a string)."""
    project_path: str = DEFAULT_PROJECT_PATH
    """The project's plain `group/name` path, accepted in place of the id."""
    ref: str = DEFAULT_REF
    """The only ref that exists; it is also the project's default branch."""
    token: str | None = field(default=None, repr=False)
    """When set, every /mcp request must carry it; `None` means no auth."""
    auth_header: str = DEFAULT_AUTH_HEADER
    """Header carrying the token: `Authorization: Bearer <t>`, any other name carries `<t>` raw."""
    rpm: int | None = None
    """Requests per `rate_window` per client IP on /mcp; `None` means unlimited."""
    rate_window: float = RATE_WINDOW_S
    """Seconds of the `rpm` limiter's fixed window, and of the sliding window `/stats` reports."""
    tool_latency: float = 0.0
    """Seconds slept in every tool call (benchmarks)."""
    gitlab_quirks: bool = False
    """Mirror the real server's tree-pagination traps (see `paging`)."""
    real_errors: bool = False
    """Answer with the real server's error texts, which do not say what is missing (see `texts`)."""
    sessions: bool = False
    """Stateful sessions as the real server: `Mcp-Session-Id`, SSE answers, no `server/discover`."""
    session_timeout: float | None = None
    """Seconds after its last POST that a session is forgotten (then answered 404); needs `sessions`."""
    discover_tools: bool = False
    """List `search_project_code` only once `discover_tools` activated it, as the real server."""
    host: str = DEFAULT_HOST
    """Bind address; also decides the SDK's DNS-rebinding protection (on for loopback)."""
    port: int = DEFAULT_PORT
    """Bind port."""
    web_base: str = DEFAULT_WEB_BASE
    """Base of the `web_url` fields in project JSON."""
    log_level: LogLevel = "INFO"
    """Level of the server's own logs (the SDK's and uvicorn's)."""

    @property
    def numeric_project_id(self) -> int | str:
        """The id as GitLab prints it in JSON: an int when it is one."""
        return int(self.project_id) if self.project_id.isdigit() else self.project_id
