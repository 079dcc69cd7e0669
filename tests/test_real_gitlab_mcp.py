"""The CI tier against the real GitLab MCP server: `@zereight/mcp-gitlab` 2.1.64 from npm (pinned by
package-lock.json, installed by `npm ci` in .ci/run), in read-only streamable-HTTP mode, over the
GitLab REST v4 double (`robot-fleet gitlab-rest-double`) serving examples/framework plus generated
directories, one of them 130 files deep. Without node or node_modules the module is skipped, and
says why.

Every server is a child process on a free port, shared by the module where it can be, and stopped
when the module ends. The real server's rate-limit window is fixed at 60 s (index.js:
`windowMs: 60_000`), so the rate-limit test waits out one window; its session timeout is set to 2 s.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest

from producer.local_redis import LocalRedis, free_port
from producer.procs import Child, robot_fleet_command, start_child
from tests.conftest import EXAMPLES, REPO_ROOT, StandIn, writer_env
from tests.fleet_harness import Fleet, spec_dir
from worker.adapters.mcp_tools import McpSession
from worker.agent.context import fetch_context
from worker.agent.tools import GuardedTools, ToolPolicy

PINNED = "2.1.64"
PACKAGE = REPO_ROOT / "node_modules" / "@zereight" / "mcp-gitlab"
SERVER_JS = PACKAGE / "build" / "index.js"


def _why_not() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed, so the real GitLab MCP server cannot run (CI installs node and npm)"
    if not SERVER_JS.exists():
        return "node_modules/@zereight/mcp-gitlab is missing: run `npm ci` (.ci/run does)"
    version = json.loads((PACKAGE / "package.json").read_text())["version"]
    if version != PINNED:
        return f"node_modules has @zereight/mcp-gitlab {version}, not the pinned {PINNED}: run `npm ci`"
    return None


if (REASON := _why_not()) is not None:
    warnings.warn(f"real GitLab MCP server tests skipped: {REASON}", stacklevel=1)
    pytest.skip(REASON, allow_module_level=True)

pytestmark = [pytest.mark.integration, pytest.mark.real_mcp]

GITLAB_TOKEN = "glpat-ci-gitlab-token-0123456789"  # the MCP server's token for GitLab (the double's)
MCP_TOKEN = "mcp-ci-client-token-0123456789"  # the fleet's token for the MCP server
GENERATED = {"testdata/bulk": 130, **{f"testdata/archive/{part}": 37 for part in "abcd"}}
WINDOW_S = 60  # the real server's rate-limit window, not configurable
SERVER_RPM = 15  # below the ~22 requests of one `write`, so one write crosses it
FLEET_RPM = 12
WRITE_SPEC = EXAMPLES / "specs" / "SHOP-130_spec.json"


# --- the servers ---------------------------------------------------------------------------------


def start_double(name: str, log_dir: Path, repo: Path, generated: dict[str, int]) -> StandIn:
    port = free_port()
    options = [f"--generate-dir={path}={count}" for path, count in generated.items()]
    command = robot_fleet_command("gitlab-rest-double", "--repo", str(repo), "--port", str(port), *options)
    child = start_child(
        name, command, log_dir, env={"GITLAB_DOUBLE_TOKEN": GITLAB_TOKEN}, ready_port=("127.0.0.1", port)
    )
    return StandIn(child, port)


def start_real(name: str, log_dir: Path, double: StandIn, **settings: str) -> StandIn:
    """The real server as the README says to run it, over `double`; `settings` add or replace its
    environment variables."""
    port = free_port()
    env = {
        "STREAMABLE_HTTP": "true",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "GITLAB_API_URL": f"{double.base}/api/v4",
        "GITLAB_PERSONAL_ACCESS_TOKEN": GITLAB_TOKEN,
        "STREAMABLE_HTTP_AUTH_TOKEN": MCP_TOKEN,
        "GITLAB_PERMISSION_MODE": "readonly",
        "GITLAB_DISABLE_VERSION_CHECK": "true",  # it would ask the npm registry at start
        "MAX_REQUESTS_PER_MINUTE": "1000",
        "GITLAB_PROJECT_ID": "",  # a default project would hide a wrong GITLAB_PROJECT_ID of ours
        **settings,
    }
    child = start_child(name, ["node", str(SERVER_JS)], log_dir, env=env, ready_port=("127.0.0.1", port))
    return StandIn(child, port)


def metrics(server: StandIn) -> dict[str, Any]:
    """The real server's own counters (`requestsProcessed`: POST and GET /mcp it served)."""
    return httpx.get(f"{server.base}/metrics.json", timeout=5).json()


def rest_stats(double: StandIn, reset: bool = False) -> dict[str, Any]:
    if reset:
        httpx.post(f"{double.base}/stats/reset", timeout=5).raise_for_status()
    return httpx.get(f"{double.base}/stats", timeout=5).json()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., StandIn]]:
    """Start servers on demand; every one is stopped when the module ends."""
    log_dir = tmp_path_factory.mktemp("real-mcp-logs")
    started: list[Child] = []

    def start(kind: str, name: str, *args: Any, **settings: str) -> StandIn:
        server = (
            start_double(name, log_dir, *args)
            if kind == "double"
            else start_real(name, log_dir, *args, **settings)
        )
        started.append(server.child)
        return server

    yield start
    for child in reversed(started):
        child.stop()


@pytest.fixture(scope="module")
def double(servers: Callable[..., StandIn]) -> StandIn:
    return servers("double", "gitlab-double", EXAMPLES / "framework", GENERATED)


@pytest.fixture(scope="module")
def real(servers: Callable[..., StandIn], double: StandIn) -> StandIn:
    return servers("real", "gitlab-mcp", double)


def expected_paths() -> set[str]:
    root = EXAMPLES / "framework"
    paths = {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}
    for directory, count in GENERATED.items():
        paths |= {f"{directory}/item_{number:04d}.txt" for number in range(count)}
    return paths


def write(env: dict[str, str], out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "producer.cli", "write", str(WRITE_SPEC), "-o", str(out), "-q", *extra],
        env={**os.environ, **env, "COLUMNS": "400"}, capture_output=True, text=True, timeout=240,
    )  # fmt: skip


# --- the tests -----------------------------------------------------------------------------------


def test_tree_with_a_130_entry_directory_is_complete(real: StandIn) -> None:
    async def fetch() -> tuple[tuple[str, ...], int]:
        async with McpSession(real.base + "/mcp", {"Authorization": f"Bearer {MCP_TOKEN}"}) as session:
            tools = GuardedTools(session, await session.list_tools(), ToolPolicy(project_id="42", ref="main"))
            context = await fetch_context(tools, "42", "main")
            return context.paths, context.mcp_calls

    paths, calls = asyncio.run(fetch())
    expected = expected_paths()
    print(f"\nreal server tree: {len(paths)} paths found / {len(expected)} expected, {calls} MCP calls")
    assert len(expected) >= 300 and set(paths) == expected


def test_write_reads_only_existing_files_and_changes_nothing(
    real: StandIn, double: StandIn, fake_llm: StandIn, tmp_path: Path
) -> None:
    rest_stats(double, reset=True)
    before = metrics(real)["requestsProcessed"]
    done = write(writer_env(real, fake_llm, GITLAB_MCP_TOKEN=MCP_TOKEN), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    written = (tmp_path / "tests" / "auth" / "logout.robot").read_text(encoding="utf-8")
    rest = rest_stats(double)
    requests = metrics(real)["requestsProcessed"] - before
    print(f"\nwrite: {rest['routes'].get('file', 0)} file reads, {rest['not_found'].get('file', 0)} 404, "
          f"{requests} /mcp requests")  # fmt: skip
    assert rest["not_found"].get("file", 0) == 0 and rest["routes"].get("write", 0) == 0
    assert not rest["unknown_routes"]
    for secret in (MCP_TOKEN, GITLAB_TOKEN):
        assert secret not in done.stdout + done.stderr + written


@pytest.fixture(scope="module")
def real_without_convention(
    servers: Callable[..., StandIn], tmp_path_factory: pytest.TempPathFactory
) -> StandIn:
    repo = tmp_path_factory.mktemp("no-convention") / "repo"
    shutil.copytree(EXAMPLES / "framework", repo)
    (repo / "doc" / "convention.md").unlink()
    return servers(
        "real", "gitlab-mcp-no-convention", servers("double", "gitlab-double-no-convention", repo, {})
    )


WRONG_SETTINGS = {
    "wrong-token": (
        {"GITLAB_MCP_TOKEN": "not-the-token-0123456789"},
        "failed (mcp_rejected)",
        "GITLAB_MCP_TOKEN",
    ),
    "wrong-project": ({"GITLAB_PROJECT_ID": "99999"}, "failed (config)", "GITLAB_PROJECT_ID"),
    "wrong-project-path": ({"GITLAB_PROJECT_ID": "no/such"}, "failed (config)", "GITLAB_PROJECT_ID"),
    "wrong-ref": ({"GITLAB_REF": "nope"}, "failed (config)", "GITLAB_REF"),
    "missing-convention": ({}, "failed (convention_missing)", "doc/convention.md at ref main is missing"),
}


def test_each_wrong_setting_is_one_line_naming_it(
    real: StandIn, real_without_convention: StandIn, fake_llm: StandIn, tmp_path: Path
) -> None:
    def attempt(case: str) -> tuple[str, subprocess.CompletedProcess[str]]:
        settings, _, _ = WRONG_SETTINGS[case]
        server = real_without_convention if case == "missing-convention" else real
        env = writer_env(server, fake_llm, **{"GITLAB_MCP_TOKEN": MCP_TOKEN, **settings})
        return case, write(env, tmp_path / case)

    with ThreadPoolExecutor(len(WRONG_SETTINGS)) as pool:
        outcomes = dict(pool.map(attempt, WRONG_SETTINGS))
    for case, done in outcomes.items():
        _, kind, names = WRONG_SETTINGS[case]
        lines = done.stderr.strip().splitlines()
        print(f"\n{case}: {done.stderr.strip()}")
        expected = 2 if kind == "failed (config)" else 1  # a wrong setting is a configuration error
        assert done.returncode == expected, (case, done.stdout, done.stderr)
        assert len(lines) == 1 and lines[0].startswith(kind) and names in lines[0], (case, done.stderr)
        assert "Traceback" not in done.stdout + done.stderr
        assert not list((tmp_path / case).rglob("*.robot"))


def test_session_expiry_is_ridden_over_and_sessions_are_closed(
    servers: Callable[..., StandIn], double: StandIn
) -> None:
    # the real server expires sessions only when clients bring their own GitLab token
    remote = servers("real", "gitlab-mcp-remote-auth", double, REMOTE_AUTHORIZATION="true", SESSION_TIMEOUT_SECONDS="2",
                     STREAMABLE_HTTP_AUTH_TOKEN="", GITLAB_PERSONAL_ACCESS_TOKEN="")  # fmt: skip
    sent: list[str] = []

    async def remember(request: httpx2.Request) -> None:
        body = json.loads(request.content) if request.method == "POST" and request.content else {}
        sent.append(f"{request.method} {body.get('method', '')}".strip())

    async def scenario() -> tuple[bool, bool, int]:
        async with McpSession(
            remote.base + "/mcp", {"Private-Token": GITLAB_TOKEN}, request_hooks=[remember]
        ) as s:
            arguments = {"project_id": "42", "file_path": "doc/convention.md", "ref": "main"}
            first = await s.call_tool("get_file_contents", arguments)
            await asyncio.sleep(3)
            again = await s.call_tool("get_file_contents", arguments)
            return first.is_error, again.is_error, s.connects

    assert asyncio.run(scenario()) == (False, False, 2)
    assert sent.count("POST server/discover") == 1 and sent.count("POST initialize") == 2
    assert metrics(remote)["activeSessions"] == 0  # the second session was closed with DELETE


def test_tool_list_change_is_noticed(real: StandIn) -> None:
    async def scenario() -> tuple[set[str], set[str], bool]:
        async with McpSession(real.base + "/mcp", {"Authorization": f"Bearer {MCP_TOKEN}"}) as session:
            before = {tool.name for tool in await session.list_tools()}
            epoch = session.listing_epoch
            await session.call_tool("discover_tools", {"category": "search"})
            for _ in range(250):
                if session.listing_epoch != epoch:
                    break
                await asyncio.sleep(0.02)
            after = {tool.name for tool in await session.list_tools()}
            return before, after, session.listing_epoch != epoch

    before, after, noticed = asyncio.run(scenario())
    assert "search_project_code" not in before and "search_project_code" in after and noticed
    assert not {"push_files", "create_or_update_file", "create_merge_request"} & (before | after)


def test_example_sprint_with_a_worker(
    real: StandIn, double: StandIn, fake_llm: StandIn, redis_server: LocalRedis,
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
) -> None:  # fmt: skip
    url = redis_server.url.rsplit("/", 1)[0] + "/9"
    fleet = Fleet(writer_env(real, fake_llm, GITLAB_MCP_TOKEN=MCP_TOKEN, REDIS_URL=url), url,
                  tmp_path_factory.mktemp("real-fleet"))  # fmt: skip
    fleet.redis.flushdb()
    specs = sorted((EXAMPLES / "specs").glob("*.json"))
    try:
        worker = fleet.start_worker("worker-real-mcp", "--pool", "threads", "--concurrency", "8")
        rest_stats(double, reset=True)
        before = metrics(real)
        done = fleet.cli("run", str(EXAMPLES / "specs"), "--output-dir", str(tmp_path / "out"), timeout=240)
        after = metrics(real)
        jobs = fleet.jobs(fleet.latest_batch())
        worker.stop()
        sessions_left = metrics(real)["activeSessions"] - before["activeSessions"]
    finally:
        fleet.stop_all()
    rest = rest_stats(double)
    reads, probes = rest["routes"].get("file", 0), rest["not_found"].get("file", 0)
    requests = after["requestsProcessed"] - before["requestsProcessed"]
    print(f"\nsprint of {len(specs)}: {reads} file reads ({reads / len(specs):.2f}/spec), {probes} 404 probes, "
          f"{requests} /mcp requests ({requests / len(specs):.2f}/spec), "
          f"{after['rejectedByRateLimit'] - before['rejectedByRateLimit']} rejected, "
          f"sessions left open after the worker stopped: {sessions_left}")  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert len(jobs) == len(specs) and {job["state"] for job in jobs} == {"collected"}
    assert probes == 0 and rest["routes"].get("write", 0) == 0


@pytest.mark.timeout(300)
def test_server_rate_limit_with_and_without_a_fleet_budget(
    servers: Callable[..., StandIn], double: StandIn, fake_llm: StandIn, redis_server: LocalRedis,
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
) -> None:  # fmt: skip
    """Two real servers at SERVER_RPM requests per minute. Without FLEET_MCP_RPM a `write` is refused
    by the server (429) and fails saying a retry can help; with FLEET_MCP_RPM below the server's
    limit, a worker's batch waits for the budget instead: no rejection, and no tool timeout although
    the wait (most of a minute) is far longer than TOOL_TIMEOUT_S."""
    limited = {"MAX_REQUESTS_PER_MINUTE": str(SERVER_RPM)}
    bare = servers("real", "gitlab-mcp-limited", double, **limited)
    budgeted = servers("real", "gitlab-mcp-limited-budget", double, **limited)
    url = redis_server.url.rsplit("/", 1)[0] + "/10"
    env = writer_env(budgeted, fake_llm, GITLAB_MCP_TOKEN=MCP_TOKEN, REDIS_URL=url, FLEET_MCP_RPM=str(FLEET_RPM),
                     FLEET_RATE_WINDOW_S=str(WINDOW_S), TOOL_TIMEOUT_S="5")  # fmt: skip
    fleet = Fleet(env, url, tmp_path_factory.mktemp("real-fleet-budget"))
    fleet.redis.flushdb()
    specs = spec_dir(tmp_path, sorted((EXAMPLES / "specs").glob("*.json"))[:3])
    try:
        fleet.start_worker("worker-real-mcp-budget", "--pool", "threads", "--concurrency", "3")
        with ThreadPoolExecutor(2) as pool:
            without = pool.submit(
                write, writer_env(bare, fake_llm, GITLAB_MCP_TOKEN=MCP_TOKEN), tmp_path / "bare"
            )
            started = time.monotonic()
            done = fleet.cli("run", str(specs), "--output-dir", str(tmp_path / "out"), timeout=280)
            took = time.monotonic() - started
            refused = without.result()
        jobs = fleet.jobs(fleet.latest_batch())
    finally:
        fleet.stop_all()
    rejected_bare, rejected_budgeted = (
        metrics(bare)["rejectedByRateLimit"],
        metrics(budgeted)["rejectedByRateLimit"],
    )
    timeouts = sum(int(job.get("degraded") or 0) for job in jobs)
    print(f"\nrate limit {SERVER_RPM}/min: without FLEET_MCP_RPM {rejected_bare} rejected ({refused.stderr.strip()}); "
          f"with FLEET_MCP_RPM={FLEET_RPM}: {rejected_budgeted} rejected, {timeouts} tool timeouts, {took:.0f}s")  # fmt: skip
    assert rejected_bare > 0 and refused.returncode == 1
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith("failed (mcp_unavailable)") and "HTTP 429" in line and "retry" in line
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert rejected_budgeted == 0 and timeouts == 0 and {job["attempt"] for job in jobs} == {"1"}
    assert {job["state"] for job in jobs} == {"collected"} and took > WINDOW_S / 2  # it did wait
