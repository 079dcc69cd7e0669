"""`robot-fleet mcp-serve`: run the offline read-only GitLab MCP server with uvicorn."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from offline.gitlab_mcp.config import (
    DEFAULT_AUTH_HEADER,
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_PROJECT_ID,
    DEFAULT_PROJECT_PATH,
    DEFAULT_REF,
    MCP_PATH,
    RATE_WINDOW_S,
    ServerConfig,
)

TOKEN_ENV = "MCP_SERVER_TOKEN"
GRACEFUL_SHUTDOWN_S = 3
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

logger = logging.getLogger(__name__)


def serve(
    repo: Annotated[
        Path,
        typer.Option("--repo", exists=True, file_okay=False, dir_okay=True, help="Checkout to serve."),
    ],
    host: Annotated[str, typer.Option("--host", help="Bind address.")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option("--port", help="Bind port.")] = DEFAULT_PORT,
    project_id: Annotated[str, typer.Option("--project-id", help="Numeric project id.")] = DEFAULT_PROJECT_ID,
    project_path: Annotated[
        str, typer.Option("--project-path", help="Plain group/name project path.")
    ] = DEFAULT_PROJECT_PATH,
    ref: Annotated[str, typer.Option("--ref", help="The one ref (and default branch).")] = DEFAULT_REF,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar=TOKEN_ENV, show_default=False, help="Require this token on /mcp."),
    ] = None,
    auth_header: Annotated[
        str,
        typer.Option("--auth-header", help="Authorization takes 'Bearer TOKEN'; others the raw token."),
    ] = DEFAULT_AUTH_HEADER,
    rpm: Annotated[
        int | None, typer.Option("--rpm", min=1, help="Requests per --rate-window per client IP on /mcp.")
    ] = None,
    rate_window: Annotated[
        float,
        typer.Option(
            "--rate-window", min=0.001, help="Seconds of the --rpm window and of /stats' sliding window."
        ),
    ] = RATE_WINDOW_S,
    tool_latency: Annotated[
        float, typer.Option("--tool-latency", min=0.0, help="Seconds slept in every tool call.")
    ] = 0.0,
    gitlab_quirks: Annotated[
        bool,
        typer.Option(
            "--gitlab-quirks/--no-gitlab-quirks", help="Mirror the real server's tree paging traps."
        ),
    ] = False,
    real_errors: Annotated[
        bool,
        typer.Option(
            "--real-errors", help="The real server's error texts (they do not say what is missing)."
        ),
    ] = False,
    sessions: Annotated[
        bool,
        typer.Option(
            "--sessions", help="Stateful sessions as the real server (Mcp-Session-Id, SSE, no discover)."
        ),
    ] = False,
    session_timeout: Annotated[
        float | None,
        typer.Option(
            "--session-timeout",
            min=0.001,
            help="Forget a session this long after its last POST (implies --sessions).",
        ),
    ] = None,
    discover_tools: Annotated[
        bool,
        typer.Option("--discover-tools", help="No search_project_code until discover_tools activates it."),
    ] = False,
    log_level: Annotated[str, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
) -> None:
    """Serve a local checkout as a read-only GitLab project over MCP (streamable HTTP at /mcp)."""
    import uvicorn  # imported here so `robot-fleet --help` and other commands start fast

    from offline.gitlab_mcp.app import build_app

    level = log_level.upper()
    if level not in LOG_LEVELS:
        raise typer.BadParameter(f"expected one of {', '.join(LOG_LEVELS)}", param_hint="--log-level")
    config = ServerConfig(
        repo=repo,
        project_id=project_id,
        project_path=project_path,
        ref=ref,
        token=token or None,
        auth_header=auth_header,
        rpm=rpm,
        rate_window=rate_window,
        tool_latency=tool_latency,
        gitlab_quirks=gitlab_quirks,
        real_errors=real_errors,
        sessions=sessions or session_timeout is not None,
        session_timeout=session_timeout,
        discover_tools=discover_tools,
        host=host,
        port=port,
        log_level=level,  # type: ignore[arg-type]  # checked against LOG_LEVELS above
    )
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logger.info(
        "serving %s as project %s (%s) ref %s at http://%s:%d%s (auth %s, rpm %s per %ss, quirks %s, "
        "sessions %s)",
        config.repo,
        project_id,
        project_path,
        ref,
        host,
        port,
        MCP_PATH,
        auth_header if config.token else "off",
        rpm or "off",
        rate_window,
        "on" if gitlab_quirks else "off",
        f"timeout {session_timeout}s" if session_timeout else "on" if sessions else "off",
    )
    uvicorn.run(
        build_app(config),
        host=host,
        port=port,
        log_level=level.lower(),
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
