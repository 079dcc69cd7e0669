"""Issue 6, item 9: fleet-wide rate limits. Four worker processes behind one model server and one MCP
server, limiting to R and R_MCP requests per window (429 beyond), with the fleet's budgets set to the
same (and model tokens to TPM): the batch needs several windows, and the servers' own counters (the
most requests and tokens seen in any sliding window, the 429s) show the fleet never went over.

A real fleet (private redis-server, db 6; four Celery worker processes; the `run` CLI) against this
module's own MCP server and scripted model, so their limits never reach the other tests. The window
is 10 s instead of a minute to keep the test short (FLEET_RATE_WINDOW_S, the servers' --rate-window).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from producer.local_redis import LocalRedis
from tests.conftest import EXAMPLES, StandIn, start_stand_in, writer_env
from tests.fleet_harness import Fleet, spec_dir
from worker.agent.output import validate_suite

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

R = 15  # model requests per window: the server's limit and the fleet's budget (a spec takes ~2)
R_MCP = 40  # MCP requests per window, likewise (a worker's context costs ~15, a spec ~1)
TPM = 120_000  # model tokens per window, likewise (the fleet's estimate is the larger: it binds)
WINDOW_S = 10
WORKERS = 4
THREADS = 3
DB = 6
SPECS = sorted((EXAMPLES / "specs").glob("*.json"))[:12]
WAIT_LOGGED = "fleet-wide limit reached"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StandIn, StandIn]]:
    logs = tmp_path_factory.mktemp("rate-limited-servers")
    window = ["--rate-window", str(WINDOW_S)]
    mcp = start_stand_in(
        "mcp-rate-limited",
        ["mcp-serve", "--repo", str(EXAMPLES / "framework"), "--project-id", "42", *window, "--rpm", str(R_MCP),
         "--log-level", "WARNING"],
        logs,
    )  # fmt: skip
    llm = start_stand_in(
        "fake-llm-rate-limited",
        [
            "fake-llm",
            *window,
            "--rpm",
            str(R),
            "--tpm",
            str(TPM),
            "--latency",
            "0.05",
            "--log-level",
            "warning",
        ],
        logs,
    )
    yield mcp, llm
    llm.child.stop()
    mcp.child.stop()


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, redis_server: LocalRedis, servers: tuple[StandIn, StandIn]
) -> Iterator[Fleet]:
    mcp, llm = servers
    url = redis_server.url.rsplit("/", 1)[0] + f"/{DB}"
    budgets = {"FLEET_LLM_RPM": str(R), "FLEET_LLM_TPM": str(TPM), "FLEET_MCP_RPM": str(R_MCP),
               "FLEET_RATE_WINDOW_S": str(WINDOW_S)}  # fmt: skip
    env = writer_env(mcp, llm, REDIS_URL=url, **budgets)
    fleet = Fleet(env, url, tmp_path_factory.mktemp("fleet-rate-limits"))
    fleet.redis.flushdb()
    for n in range(WORKERS):  # separate processes, each with its own model client and MCP session
        fleet.start_worker(f"worker-rl-{n}", "--pool", "threads", "--concurrency", str(THREADS),
                           "--hostname", f"rl{n}@%h")  # fmt: skip
    yield fleet
    fleet.stop_all()
    fleet.redis.close()


def test_four_workers_share_one_budget_and_the_servers_never_see_more(
    fleet: Fleet, servers: tuple[StandIn, StandIn], tmp_path: Path, report: Callable[..., None]
) -> None:
    mcp, llm = servers
    mcp.reset()
    llm.reset()
    out = tmp_path / "out"
    started = time.monotonic()
    done = fleet.cli("run", str(spec_dir(tmp_path, SPECS)), "--batch", "t-rate-limits", "--output-dir",
                     str(out), timeout=150)  # fmt: skip
    batch_s = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    batch_id = fleet.batch_of(done.stdout)
    jobs = fleet.jobs(batch_id)
    assert len(jobs) == len(SPECS) == 12
    assert {job["state"] for job in jobs} == {"collected"}, [(j["spec_id"], j["state"]) for j in jobs]
    for job in jobs:
        assert validate_suite((out / job["target_path"]).read_text(encoding="utf-8")).ok, job["target_path"]

    llm_stats: dict[str, Any] = llm.stats()
    mcp_stats: dict[str, Any] = mcp.stats()
    llm_window, mcp_window = llm_stats["window"], mcp_stats["window"]
    assert llm_window["seconds"] == mcp_window["seconds"] == WINDOW_S
    # the servers' own counts: never more than R in any sliding window, never a 429
    assert llm_window["max_requests"] <= R, llm_window
    assert mcp_window["max_requests"] <= R_MCP, mcp_window
    assert 0 < llm_window["max_tokens"] <= TPM, llm_window
    http_429 = llm_stats["by_status"].get("429", 0) + mcp_stats["rate_limited"]
    assert http_429 == 0, (llm_stats["by_status"], mcp_stats["rate_limited"])
    # ...and the batch did need the limiter: more than one window's worth on each server
    assert llm_stats["requests"] > R and mcp_stats["requests"] > R_MCP
    assert llm_stats["prompt_tokens"] + llm_stats["completion_tokens"] > TPM
    waited = [child.name for child in fleet.children if WAIT_LOGGED in child.log_text()]
    assert len(waited) >= 2, "several worker processes waited on the shared budgets"
    assert sum(int(job["attempt"]) for job in jobs) == len(jobs), "no job needed a second attempt"

    report(9, f"fleet-wide limits: {WORKERS} worker processes, budget R per {WINDOW_S} s window (and tokens)",
           workers=WORKERS, budget=R, llm_requests=llm_stats["requests"],
           llm_max_in_window=llm_window["max_requests"], mcp_requests=mcp_stats["requests"],
           mcp_max_in_window=mcp_window["max_requests"], tpm_budget=TPM,
           llm_tokens=llm_stats["prompt_tokens"] + llm_stats["completion_tokens"],
           llm_max_tokens_in_window=llm_window["max_tokens"], workers_that_waited=len(waited),
           http_429=http_429, batch_s=round(batch_s, 1))  # fmt: skip
