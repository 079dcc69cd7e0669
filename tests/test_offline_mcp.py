"""The offline GitLab MCP server, driven over real HTTP by the real SDK client (`mcp.Client`)."""

from __future__ import annotations

import contextvars
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import mcp_types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from producer.local_redis import free_port
from producer.procs import Child, robot_fleet_command, start_child

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

PROJECT_ID = "42"
PROJECT_PATH = "qa/shop-tests"
INTERNAL_ERROR = -32603
CONNECTION_CLOSED = -32000
MANY_FILES = 260
IDLE_S = 1.0
REAL_PROJECT_NOT_FOUND = 'GitLab API error: 404 Not Found\n{"message":"404 Project Not Found"}'
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
READ_TOOLS = {
    "get_file_contents": {"project_id", "file_path", "path", "ref"},
    "get_repository_tree": {"project_id", "path", "ref", "recursive", "per_page", "page_token", "pagination"},
    "get_project": {"project_id"},
    "search_repositories": {"search", "page", "per_page"},
    "search_project_code": {"project_id", "search", "path", "ref", "per_page"},
}
WRITE_TOOLS = {
    "create_or_update_file": {
        "project_id": "42",
        "file_path": "a",
        "content": "x",
        "commit_message": "m",
        "branch": "b",
    },
    "push_files": {
        "project_id": "42",
        "branch": "b",
        "files": [{"file_path": "a", "content": "x"}],
        "commit_message": "m",
    },
    "create_merge_request": {"project_id": "42", "title": "t", "source_branch": "b", "target_branch": "main"},
    "create_branch": {"project_id": "42", "branch": "b", "ref": "main"},
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --- the served repository and the servers ------------------------------------------------------


@pytest.fixture(scope="module")
def repo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small Robot Framework checkout, plus the traps: binary, escaping symlink, .git, a big dir."""
    base = tmp_path_factory.mktemp("mcp")
    (base / "outside.txt").write_text("TOPSECRET outside the repository\n")
    repo = base / "repo"
    files = {
        "doc/convention.md": "# Conventions\nUse the Open Shop keyword.\n",
        "resources/common.resource": "*** Keywords ***\nOpen Shop\n    Open Browser    ${URL}\n",
        "tests/login.robot": "*** Test Cases ***\nValid Login\n    Open Shop\n",
        "tests/checkout/cart.robot": "*** Test Cases ***\nAdd To Cart\n    open shop\n",
        "README.md": "Shop tests\n",
        ".git/config": "[core]\nTOPSECRET = 1\n",
    }
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    (repo / "assets").mkdir()
    (repo / "assets/logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    (repo / "escape.txt").symlink_to(base / "outside.txt")
    (repo / "many").mkdir()
    for i in range(MANY_FILES):
        (repo / "many" / f"f{i:03d}.txt").write_text(f"file {i}\n")
    return repo


def visible_paths(repo: Path) -> set[str]:
    """What a recursive tree must list: everything but .git and the escaping symlink."""
    return {
        p.relative_to(repo).as_posix()
        for p in repo.rglob("*")
        if ".git" not in p.relative_to(repo).parts and p.name != "escape.txt"
    }


@dataclass
class Served:
    """One running `robot-fleet mcp-serve` child."""

    child: Child
    port: int
    args: tuple[str, ...]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/mcp"


def start_server(name: str, repo: Path, log_dir: Path, *extra: str, port: int | None = None) -> Served:
    port = port or free_port()
    args = ("mcp-serve", "--repo", str(repo), "--port", str(port), *extra)
    child = start_child(name, robot_fleet_command(*args), log_dir, ready_port=("127.0.0.1", port))
    return Served(child=child, port=port, args=args)


@pytest.fixture(scope="module")
def start(repo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Served]]:
    """Start servers on demand; every one is stopped when the module ends."""
    log_dir = tmp_path_factory.mktemp("mcp-logs")
    started: list[Served] = []

    def _start(name: str, *extra: str, port: int | None = None) -> Served:
        served = start_server(name, repo_dir, log_dir, *extra, port=port)
        started.append(served)
        return served

    yield _start
    for served in started:
        served.child.stop()


@pytest.fixture(scope="module")
def plain(start: Callable[..., Served]) -> Served:
    return start("mcp-plain")


@pytest.fixture(scope="module")
def quirky(start: Callable[..., Served]) -> Served:
    return start("mcp-quirks", "--gitlab-quirks")


@pytest.fixture(scope="module")
def real_like(start: Callable[..., Served]) -> Served:
    """As the real server behaves: its texts, its tree pages, its sessions (forgotten after 1 s idle)."""
    return start("mcp-real-like", "--gitlab-quirks", "--real-errors", "--session-timeout", str(IDLE_S))


# --- helpers -------------------------------------------------------------------------------------


@asynccontextmanager
async def connect(
    url: str, headers: dict[str, str] | None = None, mode: str = "auto"
) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers=headers or {}) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        yield client


async def call_json(client: Client, tool: str, arguments: dict[str, Any]) -> Any:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result
    assert len(result.content) == 1 and result.content[0].type == "text"
    return json.loads(result.content[0].text)


async def call_error(client: Client, tool: str, arguments: dict[str, Any]) -> MCPError:
    with pytest.raises(MCPError) as info:
        await client.call_tool(tool, arguments)
    return info.value


async def stats(served: Served, reset: bool = False) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=served.base) as http:
        response = await (http.post("/stats/reset") if reset else http.get("/stats"))
        response.raise_for_status()
        return response.json()


LIST_TOOLS = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}


async def open_session(http: httpx.AsyncClient) -> dict[str, str]:
    """`initialize` by hand; the headers that carry the new session."""
    hello = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    response = await http.post("/mcp", json=hello)
    assert response.status_code == 200, response.text
    return {"mcp-session-id": response.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}


def leaves(exc: BaseException) -> list[BaseException]:
    """The non-group exceptions inside (possibly nested) exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaves(sub)]
    return [exc]


async def walk_tree(client: Client, **arguments: Any) -> list[dict[str, str]]:
    """Follow keyset tokens to the last page."""
    entries: list[dict[str, str]] = []
    token: str | None = None
    for _ in range(100):
        page = await call_json(
            client,
            "get_repository_tree",
            {"project_id": PROJECT_ID, "pagination": "keyset", **arguments, "page_token": token},
        )
        entries.extend(page["items"])
        token = page["next_page_token"]
        if token is None:
            return entries
    raise AssertionError("pagination did not end")


# --- listing -------------------------------------------------------------------------------------


async def test_lists_read_and_write_tools_with_their_arguments(plain: Served) -> None:
    async with connect(plain.url) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    for name, arguments in READ_TOOLS.items():
        assert set(tools[name].input_schema["properties"]) == arguments, name
    for name, example in WRITE_TOOLS.items():
        assert set(example) <= set(tools[name].input_schema["properties"]), name
    assert tools["get_repository_tree"].input_schema["required"] == ["project_id"]
    assert tools["push_files"].input_schema["required"] == ["project_id", "branch", "files", "commit_message"]


# --- read tools: success shapes ------------------------------------------------------------------


async def test_get_file_contents_returns_decoded_text_json(plain: Served) -> None:
    async with connect(plain.url) as client:
        body = await call_json(
            client,
            "get_file_contents",
            {"project_id": PROJECT_ID, "file_path": "doc/convention.md", "ref": "main"},
        )
        by_alias = await call_json(
            client, "get_file_contents", {"project_id": 42, "path": "doc/convention.md"}
        )
    assert body["content"] == "# Conventions\nUse the Open Shop keyword.\n"
    assert body["encoding"] == "utf8"
    assert body["file_name"] == "convention.md" and body["file_path"] == "doc/convention.md"
    assert body["size"] == len(body["content"].encode()) and body["ref"] == "main"
    assert {"content_sha256", "blob_id", "commit_id", "last_commit_id"} <= set(body)
    assert by_alias["content"] == body["content"]


async def test_get_file_contents_sends_binary_as_base64(plain: Served) -> None:
    async with connect(plain.url) as client:
        body = await call_json(
            client, "get_file_contents", {"project_id": PROJECT_ID, "file_path": "assets/logo.png"}
        )
    assert body["encoding"] == "base64"
    assert body["content"] == "iVBORw0KGgoAAP/+"
    assert body["size"] == 12


async def test_get_project_accepts_numeric_id_and_plain_path(plain: Served) -> None:
    async with connect(plain.url) as client:
        by_id = await call_json(client, "get_project", {"project_id": PROJECT_ID})
        by_path = await call_json(client, "get_project", {"project_id": PROJECT_PATH})
    assert by_id == by_path
    assert by_id["id"] == 42 and by_id["path_with_namespace"] == PROJECT_PATH
    assert by_id["name"] == "shop-tests" and by_id["default_branch"] == "main"
    assert by_id["web_url"].endswith("/qa/shop-tests") and "description" in by_id


async def test_search_repositories_finds_the_one_project(plain: Served) -> None:
    async with connect(plain.url) as client:
        found = await call_json(client, "search_repositories", {"search": "SHOP"})
        missing = await call_json(client, "search_repositories", {"search": "billing"})
    assert [project["path_with_namespace"] for project in found] == [PROJECT_PATH]
    assert missing == []


async def test_search_project_code_matches_lines_case_insensitively(plain: Served) -> None:
    async with connect(plain.url) as client:
        hits = await call_json(
            client, "search_project_code", {"project_id": PROJECT_ID, "search": "OPEN SHOP"}
        )
        scoped = await call_json(
            client, "search_project_code", {"project_id": PROJECT_ID, "search": "open shop", "path": "tests"}
        )
    assert {(hit["path"], hit["startline"]) for hit in hits} == {
        ("doc/convention.md", 2),
        ("resources/common.resource", 2),
        ("tests/login.robot", 3),
        ("tests/checkout/cart.robot", 3),
    }
    assert set(hits[0]) >= {"path", "filename", "startline", "data", "ref", "project_id"}
    assert hits[0]["ref"] == "main" and hits[0]["project_id"] == 42
    assert {hit["path"] for hit in scoped} == {"tests/login.robot", "tests/checkout/cart.robot"}


async def test_search_never_reaches_git_dir_or_escaping_symlink(plain: Served) -> None:
    async with connect(plain.url) as client:
        hits = await call_json(
            client, "search_project_code", {"project_id": PROJECT_ID, "search": "TOPSECRET"}
        )
    assert hits == []


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        ("get_file_contents", {"file_path": "doc/missing.md"}, "File not found: doc/missing.md"),
        ("get_file_contents", {"file_path": "doc"}, "File not found: doc"),
        ("get_file_contents", {"file_path": "../outside.txt"}, "File not found: ../outside.txt"),
        ("get_file_contents", {"file_path": "/etc/passwd"}, "File not found: /etc/passwd"),
        ("get_file_contents", {"file_path": "escape.txt"}, "File not found: escape.txt"),
        ("get_file_contents", {"file_path": ".git/config"}, "File not found: .git/config"),
        (
            "get_file_contents",
            {"file_path": "README.md", "ref": "dev"},
            "GitLab API error: 404 Commit Not Found",
        ),
        ("get_repository_tree", {"path": ".."}, "GitLab API error: 404 Tree Not Found"),
        ("get_repository_tree", {"ref": "dev"}, "GitLab API error: 404 Commit Not Found"),
    ],
)
async def test_failures_arrive_as_json_rpc_errors(
    plain: Served, tool: str, arguments: dict[str, Any], message: str
) -> None:
    async with connect(plain.url) as client:
        error = await call_error(client, tool, {"project_id": PROJECT_ID, **arguments})
    assert (error.code, error.message) == (INTERNAL_ERROR, message)


async def test_foreign_and_encoded_projects_are_not_found_and_counted(plain: Served) -> None:
    await stats(plain, reset=True)
    async with connect(plain.url) as client:
        encoded = await call_error(client, "get_project", {"project_id": "qa%2Fshop-tests"})
        foreign = await call_error(client, "get_file_contents", {"project_id": "7", "file_path": "README.md"})
    for error in (encoded, foreign):
        assert (error.code, error.message) == (INTERNAL_ERROR, "GitLab API error: 404 Project Not Found")
    assert (await stats(plain))["foreign_project_calls"] == 2


async def test_write_tools_are_refused_and_counted(plain: Served) -> None:
    await stats(plain, reset=True)
    async with connect(plain.url) as client:
        for name, arguments in WRITE_TOOLS.items():
            error = await call_error(client, name, arguments)
            assert (error.code, error.message) == (INTERNAL_ERROR, "403 Forbidden: this server is read-only")
    counters = await stats(plain)
    assert counters["write_attempts"] == len(WRITE_TOOLS)
    assert counters["tool_calls"] == dict.fromkeys(WRITE_TOOLS, 1)


async def test_reads_without_ref_count_a_default_branch_lookup(plain: Served) -> None:
    await stats(plain, reset=True)
    async with connect(plain.url) as client:
        await call_json(client, "get_file_contents", {"project_id": PROJECT_ID, "file_path": "README.md"})
        await call_json(
            client, "get_file_contents", {"project_id": PROJECT_ID, "file_path": "README.md", "ref": "main"}
        )
    counters = await stats(plain)
    assert counters["default_branch_lookups"] == 1
    assert counters["tool_calls"] == {"get_file_contents": 2}


async def test_counters_hold_under_concurrent_clients(plain: Served) -> None:
    await stats(plain, reset=True)

    async def one_client() -> None:
        async with connect(plain.url) as client:
            for _ in range(5):
                await call_json(client, "get_project", {"project_id": PROJECT_ID})

    async with anyio.create_task_group() as group:
        for _ in range(10):
            group.start_soon(one_client)
    assert (await stats(plain))["tool_calls"] == {"get_project": 50}


# --- tree pagination -----------------------------------------------------------------------------


async def test_keyset_pages_cover_the_tree_exactly_once(plain: Served, repo_dir: Path) -> None:
    async with connect(plain.url) as client:
        entries = await walk_tree(client, recursive=True, per_page=100)
        small_pages = await walk_tree(client, path="many", per_page=7)
    paths = [entry["path"] for entry in entries]
    assert len(paths) == len(set(paths)) and set(paths) == visible_paths(repo_dir)
    assert paths == sorted(paths)
    assert len(small_pages) == MANY_FILES and len({e["path"] for e in small_pages}) == MANY_FILES
    kinds = {entry["path"]: (entry["type"], entry["mode"]) for entry in entries}
    assert kinds["doc"] == ("tree", "040000") and kinds["doc/convention.md"] == ("blob", "100644")
    assert set(entries[0]) == {"id", "name", "type", "path", "mode"}


async def test_plain_tree_is_a_list_when_it_fits_and_paged_when_not(plain: Served) -> None:
    async with connect(plain.url) as client:
        small = await call_json(client, "get_repository_tree", {"project_id": PROJECT_ID, "path": "tests"})
        big = await call_json(client, "get_repository_tree", {"project_id": PROJECT_ID, "path": "many"})
    assert [entry["path"] for entry in small] == ["tests/checkout", "tests/login.robot"]
    assert len(big["items"]) == 20 and big["next_page_token"]


async def test_quirks_cut_the_plain_tree_silently(quirky: Served) -> None:
    async with connect(quirky.url) as client:
        first = await call_json(client, "get_repository_tree", {"project_id": PROJECT_ID, "recursive": True})
        again = await call_json(
            client, "get_repository_tree", {"project_id": PROJECT_ID, "recursive": True, "page_token": "Zm9v"}
        )
    assert isinstance(first, list) and len(first) == 20
    assert again == first


async def test_quirks_drop_the_keyset_token_at_per_page_100(quirky: Served) -> None:
    async with connect(quirky.url) as client:
        full_page = await call_json(
            client,
            "get_repository_tree",
            {"project_id": PROJECT_ID, "recursive": True, "pagination": "keyset", "per_page": 100},
        )
        smaller = await call_json(
            client,
            "get_repository_tree",
            {"project_id": PROJECT_ID, "recursive": True, "pagination": "keyset", "per_page": 50},
        )
    assert len(full_page["items"]) == 100 and full_page["next_page_token"] is None
    assert len(smaller["items"]) == 50 and smaller["next_page_token"]


async def test_quirks_read_on_from_the_last_entry_tree_record_id(quirky: Served, repo_dir: Path) -> None:
    # GitLab takes the id of the last entry read as the keyset page_token; the real server drops the
    # token GitLab sends (in a Link header), but a client can make it
    entries: list[dict[str, str]] = []
    async with connect(quirky.url) as client:
        for _ in range(10):
            arguments = {"project_id": PROJECT_ID, "recursive": True, "pagination": "keyset", "per_page": 100}
            if entries:
                arguments["page_token"] = entries[-1]["id"]
            page = await call_json(client, "get_repository_tree", arguments)
            assert page["next_page_token"] is None
            entries += page["items"]
            if len(page["items"]) < 100:
                break
    paths = [entry["path"] for entry in entries]
    assert len(paths) == len(set(paths)) and set(paths) == visible_paths(repo_dir)


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        (
            "get_file_contents",
            {"project_id": "7", "file_path": "README.md", "ref": "main"},
            "File not found: README.md",
        ),
        ("get_file_contents", {"project_id": "7", "file_path": "README.md"}, REAL_PROJECT_NOT_FOUND),
        ("get_file_contents", {"file_path": "README.md", "ref": "dev"}, "File not found: README.md"),
        ("get_repository_tree", {"project_id": "7"}, "Repository or path not found"),
        ("get_repository_tree", {"ref": "dev"}, "Repository or path not found"),
        ("get_repository_tree", {"path": "nope"}, "Repository or path not found"),
        ("get_project", {"project_id": "no/such"}, REAL_PROJECT_NOT_FOUND),
        ("create_branch", {"branch": "b", "ref": "main"}, "create_branch is not allowed in read-only mode"),
    ],
)
async def test_real_errors_do_not_say_what_is_missing(
    real_like: Served, tool: str, arguments: dict[str, Any], message: str
) -> None:
    async with connect(real_like.url, mode="legacy") as client:
        error = await call_error(client, tool, {"project_id": PROJECT_ID, **arguments})
    assert (error.code, error.message) == (INTERNAL_ERROR, message)


async def test_sessions_refuse_discover_before_initialize(real_like: Served) -> None:
    async with httpx.AsyncClient(headers=MCP_HEADERS) as http:
        probe = {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {}}
        response = await http.post(real_like.url, json=probe)
    assert response.status_code == 400
    assert response.json()["error"] == {"code": -32000, "message": "Bad Request: Server not initialized"}
    async with connect(real_like.url) as client:  # "auto" falls back to the initialize handshake
        assert client.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS
        assert (await call_json(client, "get_project", {"project_id": PROJECT_ID}))["id"] == 42


async def test_idle_session_is_forgotten_and_answered_404(real_like: Served) -> None:
    before = (await stats(real_like))["sessions"]
    async with httpx.AsyncClient(base_url=real_like.base, headers=MCP_HEADERS) as http:
        session = await open_session(http)
        assert (await http.post("/mcp", json=LIST_TOOLS, headers=session)).status_code == 200
        await anyio.sleep(IDLE_S + 0.3)
        forgotten = await http.post("/mcp", json=LIST_TOOLS, headers=session)
        assert (forgotten.status_code, forgotten.json()) == (404, {"error": "Session not found"})
        closed = await open_session(http)
        assert (await http.delete("/mcp", headers=closed)).status_code < 300
        after_delete = await http.post("/mcp", json=LIST_TOOLS, headers=closed)
        assert after_delete.status_code == 404
    after = (await stats(real_like))["sessions"]
    assert after["opened"] - before["opened"] == 2
    assert (after["expired"] - before["expired"], after["closed"] - before["closed"]) == (1, 1)


async def test_discover_tools_changes_the_tool_list_and_tells_the_session(
    start: Callable[..., Served],
) -> None:
    served = start("mcp-discovery", "--sessions", "--discover-tools")
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, mcp_types.ToolListChangedNotification):
            changed.set()

    async with (
        httpx2.AsyncClient() as http,
        Client(streamable_http_client(served.url, http_client=http), message_handler=on_message) as client,
    ):
        before = {tool.name for tool in (await client.list_tools()).tools}
        assert "search_project_code" not in before and "discover_tools" in before
        activated = await call_json(client, "discover_tools", {"category": "search"})
        assert activated == {"activated": "search", "addedTools": ["search_project_code"]}
        with anyio.fail_after(5):
            await changed.wait()
        after = {tool.name for tool in (await client.list_tools()).tools}
    assert after - before == {"search_project_code"}


# --- transport: auth, rate limit, restart, protocol modes ----------------------------------------


async def test_legacy_handshake_mode_works_too(plain: Served) -> None:
    async with connect(plain.url, mode="legacy") as client:
        project = await call_json(client, "get_project", {"project_id": PROJECT_ID})
    assert project["id"] == 42


@pytest.mark.parametrize(
    ("header", "good", "bad"),
    [
        ("Authorization", "Bearer s3cret", "Bearer wrong"),
        ("Private-Token", "s3cret", "wrong"),
    ],
)
async def test_token_is_required_on_every_request(
    start: Callable[..., Served], header: str, good: str, bad: str
) -> None:
    served = start(f"mcp-auth-{header}", "--token", "s3cret", "--auth-header", header)
    async with connect(served.url, {header: good}) as client:
        assert (await call_json(client, "get_project", {"project_id": PROJECT_ID}))["id"] == 42
    for headers in ({}, {header: bad}):
        # the SDK maps the 401 to MCPError(-32603, "Server returned an error response"), raised out of
        # __aenter__ wrapped in the transport's task-group ExceptionGroup(s)
        with pytest.raises(BaseExceptionGroup) as info:
            async with connect(served.url, headers):
                pass
        [error] = leaves(info.value)
        assert isinstance(error, MCPError) and error.code == INTERNAL_ERROR
        assert error.message == "Server returned an error response"
    async with httpx.AsyncClient() as http:
        response = await http.post(served.url, json={}, headers={header: bad})
    assert response.status_code == 401 and response.json()["error"] == "invalid_token"
    assert ("www-authenticate" in response.headers) == (header == "Authorization")
    assert (await stats(served))["unauthorized"] == 5


async def test_rate_limit_answers_429_with_retry_after(start: Callable[..., Served]) -> None:
    served = start("mcp-rpm", "--rpm", "5")
    status: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("status")

    async def remember(response: httpx2.Response) -> None:
        # request POSTs run in the caller's context copy: a mutable box there sees the status
        if (box := status.get(None)) is not None:
            box["status"] = response.status_code

    box: dict[str, Any] = {}
    async with (
        httpx2.AsyncClient(event_hooks={"response": [remember]}) as http,
        Client(streamable_http_client(served.url, http_client=http)) as client,
    ):
        status.set(box)
        with pytest.raises(MCPError) as info:
            for _ in range(10):
                await client.call_tool("get_project", {"project_id": PROJECT_ID})
    assert (info.value.code, info.value.message) == (INTERNAL_ERROR, "Server returned an error response")
    assert box["status"] == 429
    async with httpx.AsyncClient() as http:
        response = await http.post(served.url, json={})
    assert response.status_code == 429
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert response.json() == {"error": "Too many requests, please try again later."}
    counters = await stats(served)
    assert counters["requests"] - counters["rate_limited"] == 5
    assert counters["window"]["seconds"] == 60.0
    assert counters["window"]["max_requests"] == counters["requests"]


async def test_rate_window_sets_the_limiter_window_and_stats_report_the_busiest_interval(
    start: Callable[..., Served],
) -> None:
    served = start("mcp-window", "--rpm", "3", "--rate-window", "1")
    async with httpx.AsyncClient() as http:
        statuses = [(await http.post(served.url, json={})).status_code for _ in range(4)]
        assert 429 not in statuses[:3] and statuses[3] == 429
        refused = await http.post(served.url, json={})
        assert refused.headers["retry-after"] == "1" and refused.headers["ratelimit-policy"] == "3;w=1"
        await anyio.sleep(1.05)
        assert (await http.post(served.url, json={})).status_code != 429  # a new window
        counters = await stats(served)
        assert counters["requests"] == 6 and counters["rate_limited"] == 2
        assert counters["window"] == {"seconds": 1.0, "max_requests": 5}
        counters = await stats(served, reset=True)
        assert counters["window"] == {"seconds": 1.0, "max_requests": 0}
        for _ in range(2):
            await http.post(served.url, json={})
        assert (await stats(served))["window"]["max_requests"] == 2


async def test_client_session_survives_a_server_restart(start: Callable[..., Served]) -> None:
    served = start("mcp-restart", "--tool-latency", "0.2")
    async with connect(served.url) as client:
        began = time.monotonic()
        await call_json(client, "get_project", {"project_id": PROJECT_ID})
        assert time.monotonic() - began >= 0.2
        served.child.stop()
        again = start("mcp-restart-2", port=served.port)
        assert again.port == served.port
        assert (await call_json(client, "get_project", {"project_id": PROJECT_ID}))["id"] == 42
