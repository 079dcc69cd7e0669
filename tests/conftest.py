"""Session fixtures: a private redis-server on a free port (never the machine's 127.0.0.1:6379) and
the offline stand-ins (MCP server, scripted model) as real child processes over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from producer.local_redis import LocalRedis, free_port
from producer.procs import Child, robot_fleet_command, start_child

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT / "examples"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    server = LocalRedis(directory=tmp_path_factory.mktemp("redis"))
    assert server.port != 6379
    with server:
        yield server


@pytest.fixture
def redis_client(redis_server: LocalRedis) -> Iterator[redis.Redis]:
    """A client on the private server, flushed before each test."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushall()
    yield client
    client.close()


@dataclass
class StandIn:
    """An offline server running as a child process for the whole test session."""

    child: Child
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.base}/stats", timeout=5).json()

    def reset(self) -> None:
        httpx.post(f"{self.base}/stats/reset", timeout=5).raise_for_status()


def start_stand_in(name: str, args: list[str], log_dir: Path) -> StandIn:
    port = free_port()
    child = start_child(
        name, robot_fleet_command(*args, "--port", str(port)), log_dir, ready_port=("127.0.0.1", port)
    )
    return StandIn(child, port)


@pytest.fixture(scope="session")
def mcp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    """The offline GitLab MCP server on examples/framework, project 42, ref main."""
    server = start_stand_in(
        "mcp-server",
        ["mcp-serve", "--repo", str(EXAMPLES / "framework"), "--project-id", "42", "--log-level", "WARNING"],
        tmp_path_factory.mktemp("mcp-logs"),
    )
    yield server
    server.child.stop()


@pytest.fixture(scope="session")
def fake_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    """The scripted model with default knobs; tests set theirs per request (model-name query)."""
    server = start_stand_in(
        "fake-llm", ["fake-llm", "--log-level", "warning"], tmp_path_factory.mktemp("llm-logs")
    )
    yield server
    server.child.stop()


def writer_env(mcp: StandIn, llm: StandIn, *, knobs: str = "", **overrides: str) -> dict[str, str]:
    """Environment for a `robot-fleet write` child against the stand-ins; knobs go in the model name."""
    env = {
        "OPENAI_API_KEY": "sk-test-not-a-secret",
        "OPENAI_BASE_URL": f"{llm.base}/v1",
        "OPENAI_MODEL_WRITER": f"fake-writer?{knobs}" if knobs else "fake-writer",
        "OPENAI_MAX_RETRIES": "2",
        "GITLAB_MCP_URL": f"{mcp.base}/mcp",
        "GITLAB_PROJECT_ID": "42",
        "GITLAB_REF": "main",
    }
    env.update(overrides)
    return env
