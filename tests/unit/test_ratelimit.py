"""The fleet-wide rate limiter (worker/adapters/ratelimit.py) against a real redis-server: budgets shared by
several limiters (as by several worker processes), the waits, the httpx2 hooks counting every request
sent (the openai client's retries included), token estimates, and a Redis that cannot be reached."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator

import httpx2
import pytest
import redis

from producer.local_redis import LocalRedis, free_port
from tests.conftest import StandIn
from worker.adapters import ratelimit
from worker.adapters.llm import OpenAIChatModel, build_client
from worker.adapters.mcp_tools import McpSession
from worker.adapters.ratelimit import Budget, FleetLimiter, estimate_tokens, limits_uri
from worker.errors import ModelUnavailable, StoreUnavailable, ToolServerUnavailable
from worker.settings import Settings

DB = 14  # a db of its own on the session's server (the fleet tests use 1-13): never flush the others


@pytest.fixture
def url(redis_server: LocalRedis) -> Iterator[str]:
    url = redis_server.url.rsplit("/", 1)[0] + f"/{DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


def entries(url: str, budget: Budget) -> int:
    """Units charged to `budget` (the moving window's list in Redis)."""
    client = redis.Redis.from_url(url)
    try:
        keys = client.keys(f"rfleet:*{budget.name}*")
        assert len(keys) == 1, keys
        return int(client.llen(keys[0]))
    finally:
        client.close()


def busiest(times: list[float], window_s: float) -> int:
    """The most events in any interval of `window_s` seconds."""
    times = sorted(times)
    return max(
        (sum(1 for t in times[i:] if t - start < window_s) for i, start in enumerate(times)), default=0
    )


# --- budgets, estimates, settings


def test_budget_window_has_a_margin_and_whole_seconds() -> None:
    budget = Budget("llm-requests", 30, 10)
    assert (budget.capacity, budget.item.get_expiry(), budget.unit) == (30, 11, 1)
    assert Budget("x", 30, 0.5).item.get_expiry() == 2
    assert "30 requests per 10s" in budget.describe()


def test_token_budget_is_stored_in_units_rounded_against_the_caller() -> None:
    budget = Budget("llm-tokens", 200_000, 60, "tokens")
    assert budget.unit == 200 and budget.capacity == 1000
    assert budget.units(1) == 1 and budget.units(201) == 2  # costs rounded up
    assert budget.units(10_000_000) == budget.capacity  # clamped: it fits once the window is empty
    odd = Budget("llm-tokens", 1999, 60, "tokens")
    assert odd.unit * odd.capacity <= 1999  # the budget rounded down


def test_token_estimate_is_the_text_of_messages_and_tools_over_four_plus_the_completion() -> None:
    text = (
        'line "one"\nline two\t' * 200
    )  # quotes, newlines and tabs: escaped in JSON, one character in a prompt
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": text}]}).encode()
    expected = -(-(len("role") + len("user") + len("content") + len(text)) // 4)
    assert estimate_tokens(body) == expected + ratelimit.COMPLETION_ALLOWANCE_TOKENS
    assert len(body) // 4 > expected  # the body's size would have overcharged
    capped = json.dumps({"max_completion_tokens": 300, "messages": []}).encode()
    assert estimate_tokens(capped) == 300
    assert estimate_tokens(b"not json at all") == 4 + ratelimit.COMPLETION_ALLOWANCE_TOKENS


def test_limits_uri_keeps_the_redis_url() -> None:
    assert limits_uri("redis://:pw@h:6379/3") == "async+redis://:pw@h:6379/3"
    assert limits_uri("rediss://h/0") == "async+rediss://h/0"
    assert limits_uri("unix:///tmp/r.sock?db=2") == "async+redis+unix:///tmp/r.sock?db=2"


def test_settings_blank_budgets_mean_no_limiter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_LLM_RPM", "")
    monkeypatch.setenv("FLEET_LLM_TPM", " ")
    monkeypatch.setenv("FLEET_MCP_RPM", "")
    settings = Settings(_env_file=None)
    assert (settings.fleet_llm_rpm, settings.fleet_llm_tpm, settings.fleet_mcp_rpm) == (None, None, None)
    assert settings.fleet_rate_window_s == 60
    assert FleetLimiter.from_settings(settings) is None
    monkeypatch.setenv("FLEET_MCP_RPM", "90")
    monkeypatch.setenv("FLEET_RATE_WINDOW_S", "10")
    limiter = FleetLimiter.from_settings(Settings(_env_file=None))
    assert limiter is not None and limiter.mcp_requests is not None and limiter.llm_requests is None
    assert limiter.mcp_requests.describe() == "90 requests per 10s"
    assert limiter.mcp_hooks() and not limiter.model_hooks()


# --- against Redis


def test_limiters_sharing_a_budget_never_exceed_it_in_any_window(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    budget, window = 4, 1.0  # stored as 4 per 2 s: the window plus its margin, in whole seconds
    caplog.set_level(logging.INFO, logger="worker.adapters.ratelimit")

    async def scenario() -> tuple[list[float], list[FleetLimiter]]:
        limiters = [FleetLimiter(url, window_s=window, mcp_rpm=budget) for _ in range(3)]  # 3 "processes"
        sent: list[float] = []

        async def one(limiter: FleetLimiter) -> None:
            assert limiter.mcp_requests is not None
            await limiter.acquire([(limiter.mcp_requests, 1)])
            sent.append(time.time())

        await asyncio.gather(*(one(limiters[i % 3]) for i in range(8)))
        for limiter in limiters:
            await limiter.aclose()
        return sent, limiters

    started = time.time()
    sent, limiters = asyncio.run(scenario())
    assert len(sent) == 8
    assert busiest(sent, window) <= budget
    assert busiest(sent, 2.0 - 0.05) <= budget  # the stored window, less the hit-to-send delay
    assert time.time() - started >= 2.0  # 8 requests, 4 a window: the last 4 waited a window
    assert sum(limiter.waits for limiter in limiters) >= 4
    waits_logged = [r for r in caplog.records if "fleet-wide limit reached: mcp-requests" in r.message]
    assert 1 <= len(waits_logged) <= 3  # once per process at most every few seconds, not per request
    assert waits_logged[0].levelno == logging.INFO and "4 requests per 1s" in waits_logged[0].message


def test_a_waiting_acquire_is_cancellable(url: str) -> None:
    async def scenario() -> FleetLimiter:
        limiter = FleetLimiter(url, window_s=30, mcp_rpm=1)
        assert limiter.mcp_requests is not None
        await limiter.acquire([(limiter.mcp_requests, 1)])
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(limiter.acquire([(limiter.mcp_requests, 1)]), timeout=0.3)
        await limiter.aclose()
        return limiter

    limiter = asyncio.run(scenario())
    assert limiter.waiting == {"mcp-requests": 0} and limiter.waits == 1


def test_two_budgets_are_charged_together_and_the_full_one_first(url: str) -> None:
    async def scenario() -> FleetLimiter:
        limiter = FleetLimiter(url, window_s=30, llm_rpm=2, llm_tpm=100_000)
        assert limiter.llm_requests is not None and limiter.llm_tokens is not None
        charges = [(limiter.llm_requests, 1), (limiter.llm_tokens, 5000)]
        await limiter.acquire(charges)
        await limiter.acquire(charges)
        waiting = asyncio.ensure_future(limiter.acquire(charges))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        waiting.cancel()
        await limiter.aclose()
        return limiter

    limiter = asyncio.run(scenario())
    assert limiter.llm_requests is not None and limiter.llm_tokens is not None
    assert entries(url, limiter.llm_requests) == 2
    # the request that found no room spent no tokens: the full budget is tried first after a wait
    assert entries(url, limiter.llm_tokens) == 2 * limiter.llm_tokens.units(5000)


async def _answer_500(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            break
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            ),
            0,
        )
        await reader.readexactly(length)
        body = b'{"error": {"message": "boom"}}'
        writer.write(
            b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\nretry-after: 0\r\n"
            + f"content-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
    writer.close()


def test_the_model_hook_charges_every_request_sent_retries_included(url: str) -> None:
    async def scenario() -> FleetLimiter:
        server = await asyncio.start_server(_answer_500, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        settings = Settings(
            _env_file=None,
            openai_api_key="k",
            openai_base_url=f"http://127.0.0.1:{port}/v1",
            openai_max_retries=2,
            redis_url=url,
            fleet_llm_rpm=50,
            fleet_llm_tpm=1_000_000,
        )
        limiter = FleetLimiter.from_settings(settings)
        assert limiter is not None
        model = OpenAIChatModel(build_client(settings, limiter), "m", None)
        try:
            with pytest.raises(ModelUnavailable, match="500"):
                async for _ in model.stream_turn([{"role": "user", "content": "hi " * 1000}], []):
                    pass
        finally:
            server.close()
            await limiter.aclose()
        return limiter

    limiter = asyncio.run(scenario())
    assert limiter.llm_requests is not None and limiter.llm_tokens is not None
    assert entries(url, limiter.llm_requests) == 3  # the first try and the client's two retries
    per_request = limiter.llm_tokens.units(750 + ratelimit.COMPLETION_ALLOWANCE_TOKENS)
    assert entries(url, limiter.llm_tokens) >= 3 * per_request


def test_unreachable_redis_is_a_retryable_store_error_not_an_unlimited_request() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    seen: list[str] = []

    async def hit(request: httpx2.Request) -> httpx2.Response:
        seen.append(str(request.url))
        return httpx2.Response(200, json={})

    async def scenario() -> None:
        limiter = FleetLimiter(dead, window_s=60, llm_rpm=10)
        client = httpx2.AsyncClient(
            transport=httpx2.MockTransport(hit), event_hooks={"request": limiter.model_hooks()}
        )
        async with client:
            await client.post("http://model.invalid/v1/chat/completions", json={"messages": []})

    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="fleet rate limiter: Redis unreachable") as info:
        asyncio.run(scenario())
    assert info.value.retryable
    assert not seen, "nothing is sent unaccounted"
    assert time.monotonic() - started < 15


def test_the_mcp_hook_charges_every_request_the_session_sends(url: str, mcp_server: StandIn) -> None:
    async def scenario() -> FleetLimiter:
        limiter = FleetLimiter(url, window_s=60, mcp_rpm=500)
        mcp = f"{mcp_server.base}/mcp"
        async with McpSession(mcp, {}, request_hooks=limiter.mcp_hooks()) as session:
            await session.list_tools()
            await session.call_tool("get_file_contents", {"project_id": "42", "file_path": "README.md"})
        await limiter.aclose()
        return limiter

    before = mcp_server.stats()["requests"]
    limiter = asyncio.run(scenario())
    assert limiter.mcp_requests is not None
    seen_by_server = mcp_server.stats()["requests"] - before
    assert seen_by_server >= 2 and entries(url, limiter.mcp_requests) == seen_by_server


def test_mcp_with_redis_unreachable_fails_retryable_naming_the_limiter(mcp_server: StandIn) -> None:
    async def scenario() -> None:
        limiter = FleetLimiter(f"redis://127.0.0.1:{free_port()}/0", mcp_rpm=10)
        mcp = f"{mcp_server.base}/mcp"
        async with McpSession(mcp, {}, connect_wait_s=4, request_hooks=limiter.mcp_hooks()) as session:
            await session.list_tools()

    before = mcp_server.stats()["requests"]
    with pytest.raises(ToolServerUnavailable, match="fleet rate limiter: Redis unreachable") as info:
        asyncio.run(scenario())
    assert info.value.retryable
    assert mcp_server.stats()["requests"] == before, "nothing is sent unaccounted"


def test_the_completion_allowance_follows_what_the_model_really_writes() -> None:
    limiter = ratelimit.FleetLimiter("redis://127.0.0.1:1/0", llm_tpm=10_000)
    assert (
        limiter.completion_allowance() == ratelimit.COMPLETION_ALLOWANCE_TOKENS
    )  # nothing seen yet: the worst case
    for tokens in (120, 300, 80, 250, 90):
        limiter.observe_completion(tokens)
    assert limiter.completion_allowance() == 600  # twice the largest recent completion
    limiter.observe_completion(5000)
    assert (
        limiter.completion_allowance() == ratelimit.COMPLETION_ALLOWANCE_TOKENS
    )  # never above the fixed allowance
    body = json.dumps({"messages": [{"content": "x" * 3993}]}).encode()  # "content" + 3993: 4000 characters
    assert ratelimit.estimate_tokens(body, 600) == 1000 + 600
