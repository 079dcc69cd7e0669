"""The MCP session owner against the real offline server: auth, missing convention, a server that
goes away and comes back, and the HTTP failures translated into the error tree."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from producer.local_redis import free_port
from producer.procs import Child, robot_fleet_command, start_child
from tests.conftest import EXAMPLES
from worker.agent.context import fetch_context
from worker.agent.tools import GuardedTools, ToolPolicy
from worker.errors import ConfigError, ConventionMissing, ToolServerRejected, ToolServerUnavailable
from worker.mcp_tools import McpSession

pytestmark = pytest.mark.integration

TOKEN = "glpat-test-token-0123456789"


def serve(tmp_path: Path, port: int, repo: Path = EXAMPLES / "framework", *extra: str) -> Child:
    args = robot_fleet_command(
        "mcp-serve", "--repo", str(repo), "--port", str(port), "--log-level", "WARNING", *extra
    )
    return start_child(f"mcp-{port}", args, tmp_path, ready_port=("127.0.0.1", port))


async def read_convention(
    url: str, headers: dict[str, str], wait: float = 5.0, project: str = "42", ref: str = "main"
) -> str:
    async with McpSession(url, headers, connect_wait_s=wait) as session:
        tools = GuardedTools(session, await session.list_tools(), ToolPolicy(project_id=project, ref=ref))
        return (await fetch_context(tools, project, ref)).convention


@pytest.mark.parametrize(
    ("header", "value"),
    [("Authorization", f"Bearer {TOKEN}"), ("Private-Token", TOKEN)],
    ids=["bearer", "private-token"],
)
def test_token_in_the_configured_header_is_accepted(tmp_path: Path, header: str, value: str) -> None:
    port = free_port()
    server = serve(tmp_path, port, EXAMPLES / "framework", "--token", TOKEN, "--auth-header", header)
    try:
        convention = asyncio.run(read_convention(f"http://127.0.0.1:{port}/mcp", {header: value}))
        assert "convention" in convention.lower()
        with pytest.raises(ToolServerRejected, match=r"refused the credentials.*GITLAB_MCP_TOKEN"):
            asyncio.run(read_convention(f"http://127.0.0.1:{port}/mcp", {header: "wrong"}))
    finally:
        server.stop()


def test_missing_convention_names_the_file_and_ref(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "tests").mkdir(parents=True)
    (repo / "tests" / "a.robot").write_text("*** Test Cases ***\nT\n    Log    x\n")
    port = free_port()
    server = serve(tmp_path, port, repo)
    try:
        with pytest.raises(ConventionMissing, match=r"doc/convention\.md at ref main is missing"):
            asyncio.run(read_convention(f"http://127.0.0.1:{port}/mcp", {}))
    finally:
        server.stop()


def test_unreachable_server_is_retryable_after_the_wait(tmp_path: Path) -> None:
    with pytest.raises(ToolServerUnavailable, match="unreachable while connecting"):
        asyncio.run(read_convention(f"http://127.0.0.1:{free_port()}/mcp", {}, wait=1.0))


def test_session_reconnects_after_the_server_restarts(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    server = serve(tmp_path, port)

    async def scenario() -> tuple[int, str, int]:
        nonlocal server
        async with McpSession(url, {}, connect_wait_s=20) as session:
            first = await session.call_tool(
                "get_file_contents", {"project_id": "42", "file_path": "doc/convention.md"}
            )
            assert not first.is_error
            server.stop()
            restart = asyncio.get_running_loop().run_in_executor(None, lambda: serve(tmp_path, port))
            await asyncio.sleep(0.5)
            during = await session.call_tool(
                "get_file_contents", {"project_id": "42", "file_path": "doc/convention.md"}
            )
            server = await restart
            after = await session.call_tool(
                "get_file_contents", {"project_id": "42", "file_path": "doc/convention.md"}
            )
            return session.connects, after.text, int(during.is_error)

    try:
        connects, text, _ = asyncio.run(scenario())
        assert connects >= 2
        assert "convention" in text.lower()
    finally:
        server.stop()


def test_rate_limited_server_is_retryable_with_retry_after(tmp_path: Path) -> None:
    port = free_port()
    server = serve(tmp_path, port, EXAMPLES / "framework", "--rpm", "3")

    async def hammer() -> None:
        async with McpSession(f"http://127.0.0.1:{port}/mcp", {}) as session:
            for _ in range(10):
                await session.call_tool("get_file_contents", {"project_id": "42", "file_path": "README.md"})

    try:
        with pytest.raises(ToolServerUnavailable) as info:
            asyncio.run(hammer())
        assert "HTTP 429" in info.value.message
        assert info.value.retry_after is not None and info.value.retry_after > 0
    finally:
        server.stop()


def test_wrong_project_or_ref_is_a_configuration_error_naming_the_setting(tmp_path: Path) -> None:
    port = free_port()
    server = serve(tmp_path, port)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        with pytest.raises(
            ConfigError, match=r"project 'qa/other' not found on the MCP server.*GITLAB_PROJECT_ID"
        ):
            asyncio.run(read_convention(url, {}, project="qa/other"))
        with pytest.raises(ConfigError, match=r"ref 'release-9' not found.*GITLAB_REF"):
            asyncio.run(read_convention(url, {}, ref="release-9"))
    finally:
        server.stop()
