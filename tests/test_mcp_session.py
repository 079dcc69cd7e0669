"""The MCP session owner against the real offline server: auth, missing convention, a server that
goes away and comes back, the HTTP failures translated into the error tree; and, with the knobs that
make the stand-in behave as the real GitLab MCP server (its tree pages, error texts, sessions that
expire, a tool list that changes), complete trees, right diagnoses, quiet logs."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import httpx2
import pytest

from producer.local_redis import free_port
from producer.procs import Child, robot_fleet_command, start_child
from tests.conftest import EXAMPLES
from worker.adapters.mcp_tools import SDK_TRANSPORT_LOGGER, McpSession
from worker.agent.context import fetch_context
from worker.agent.tools import GuardedTools, ToolPolicy
from worker.errors import ConfigError, ConventionMissing, ToolServerRejected, ToolServerUnavailable

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


@pytest.mark.parametrize("texts", [(), ("--real-errors", "--sessions")], ids=["stand-in-texts", "real-texts"])
def test_missing_convention_names_the_file_and_ref(tmp_path: Path, texts: tuple[str, ...]) -> None:
    repo = tmp_path / "repo"
    (repo / "tests").mkdir(parents=True)
    (repo / "tests" / "a.robot").write_text("*** Test Cases ***\nT\n    Log    x\n")
    port = free_port()
    server = serve(tmp_path, port, repo, *texts)
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


# --- against the stand-in behaving as the real server ---------------------------------------------

IDLE_S = 1.0
BULK = 130


@pytest.fixture(scope="module")
def real_like(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, set[str]]]:
    """examples/framework plus a directory of 130 files, served with the real server's tree pages,
    texts, sessions (forgotten after 1 s idle) and tool discovery; its URL and the expected paths."""
    base = tmp_path_factory.mktemp("real-like")
    repo = base / "repo"
    shutil.copytree(EXAMPLES / "framework", repo)
    for number in range(BULK):
        (repo / "testdata" / "bulk").mkdir(parents=True, exist_ok=True)
        (repo / "testdata" / "bulk" / f"item_{number:03d}.txt").write_text(f"item {number}\n")
    expected = {path.relative_to(repo).as_posix() for path in repo.rglob("*") if path.is_file()}
    port = free_port()
    knobs = ("--gitlab-quirks", "--real-errors", "--session-timeout", str(IDLE_S), "--discover-tools")
    server = serve(base, port, repo, *knobs)
    yield f"http://127.0.0.1:{port}/mcp", expected
    server.stop()


def server_stats(url: str) -> dict[str, object]:
    return httpx.get(url.removesuffix("/mcp") + "/stats", timeout=5).json()


def test_tree_with_a_directory_over_100_entries_is_complete(real_like: tuple[str, set[str]]) -> None:
    url, expected = real_like

    async def paths() -> tuple[str, ...]:
        async with McpSession(url, {}) as session:
            tools = GuardedTools(session, await session.list_tools(), ToolPolicy(project_id="42", ref="main"))
            return (await fetch_context(tools, "42", "main")).paths

    found = asyncio.run(paths())
    assert len(expected) > 150 and set(found) == expected


@pytest.mark.parametrize(
    ("project", "ref", "message"),
    [
        ("99999", "main", r"project '99999' not found on the MCP server .*check GITLAB_PROJECT_ID"),
        ("no/such", "main", r"project 'no/such' not found on the MCP server .*check GITLAB_PROJECT_ID"),
        ("42", "nope", r"ref 'nope' not found in project '42': check GITLAB_REF"),
    ],
)
def test_wrong_setting_with_the_real_texts_names_the_setting_quietly(
    real_like: tuple[str, set[str]], caplog: pytest.LogCaptureFixture, project: str, ref: str, message: str
) -> None:
    caplog.set_level(logging.INFO)
    with pytest.raises(ConfigError, match=message):
        asyncio.run(read_convention(real_like[0], {}, project=project, ref=ref))
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert not loud, [r.getMessage() for r in loud]


def test_forgotten_session_is_reopened_and_the_call_sent_again(real_like: tuple[str, set[str]]) -> None:
    url = real_like[0]
    sent: list[str] = []

    async def remember(request: httpx2.Request) -> None:
        body = json.loads(request.content) if request.method == "POST" and request.content else {}
        sent.append(f"{request.method} {body.get('method', '')}".strip())

    async def scenario() -> tuple[bool, bool, int]:
        async with McpSession(url, {}, request_hooks=[remember]) as session:
            arguments = {"project_id": "42", "file_path": "doc/convention.md", "ref": "main"}
            first = await session.call_tool("get_file_contents", arguments)
            await asyncio.sleep(IDLE_S + 0.3)  # the server forgets the idle session
            again = await session.call_tool("get_file_contents", arguments)
            return first.is_error, again.is_error, session.connects

    before = server_stats(url)["sessions"]
    assert asyncio.run(scenario()) == (False, False, 2)
    after = server_stats(url)["sessions"]
    assert isinstance(before, dict) and isinstance(after, dict)
    assert after["expired"] - before["expired"] == 1
    assert after["active"] == 0 and after["closed"] - before["closed"] == 1  # the second one: DELETE
    # the discover probe was refused once; the new session started with initialize at once
    assert sent.count("POST server/discover") == 1 and sent.count("POST initialize") == 2
    assert sent.count("POST tools/call") == 3  # the one the server refused was sent again


def test_tool_list_change_moves_the_listing_epoch(real_like: tuple[str, set[str]]) -> None:
    async def scenario() -> tuple[set[str], set[str], int, int]:
        async with McpSession(real_like[0], {}) as session:
            before = {tool.name for tool in await session.list_tools()}
            epoch = session.listing_epoch
            await session.call_tool("discover_tools", {"category": "search"})
            for _ in range(250):  # the notification comes on the GET stream, maybe after the answer
                if session.listing_epoch != epoch:
                    break
                await asyncio.sleep(0.02)
            after = {tool.name for tool in await session.list_tools()}
            return before, after, epoch, session.listing_epoch

    before, after, epoch, later = asyncio.run(scenario())
    assert "search_project_code" not in before and after - before == {"search_project_code"}
    assert later == epoch + 1


def test_answer_for_a_reader_gone_is_one_debug_line(caplog: pytest.LogCaptureFixture) -> None:

    sdk = logging.getLogger(SDK_TRANSPORT_LOGGER)
    caplog.set_level(logging.DEBUG, logger=SDK_TRANSPORT_LOGGER)
    try:
        raise anyio.ClosedResourceError
    except anyio.ClosedResourceError:
        sdk.exception("Error parsing SSE message")
    try:
        raise ValueError("not JSON")
    except ValueError:
        sdk.exception("Error parsing SSE message")
    quiet, loud = caplog.records
    assert (quiet.levelno, quiet.exc_info, quiet.getMessage()) == (
        logging.DEBUG,
        None,
        "Error parsing SSE message: ClosedResourceError (reader gone)",
    )
    assert loud.levelno == logging.ERROR and loud.exc_info is not None  # a real parse error stays loud
