"""A job's attempt is recorded whatever fails, including the process's shared services (the MCP
server down when the worker first connects): never left `queued` for `run` to wait on forever."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
import redis

from producer.local_redis import LocalRedis
from worker import keys
from worker.adapters.services import Services
from worker.adapters.store import Store
from worker.errors import InternalError, ToolServerUnavailable
from worker.fleet.jobs import JobOutcome, WillRetry, execute_job
from worker.fleet.logsink import Progress
from worker.fleet.retry import RetryPolicy
from worker.records import BatchRecord, NewJob

pytestmark = pytest.mark.integration


def run_job(url: str, get_services: Callable[[], Awaitable[Services]], policy: RetryPolicy) -> JobOutcome:
    """One attempt of a fresh one-job batch `b:S-1` on the real Redis at `url`."""

    async def scenario() -> JobOutcome:
        store = Store.from_url(url)
        try:
            job = NewJob("b:S-1", "b", "S-1", "S-1.json", "t/S-1.robot", "0" * 64, '{"id": "S-1"}')
            await store.create_batch(BatchRecord("b", created_at=1.0, output_dir="/tmp/x"), [job])
            return await execute_job(store, get_services, "b:S-1", worker_name="w", progress=Progress(),
                                     lease_s=60, policy=policy)  # fmt: skip
        finally:
            await store.close()

    return asyncio.run(scenario())


@pytest.mark.parametrize(("retries", "state"), [(5, "retrying"), (0, "failed")])
def test_services_failing_to_connect_are_recorded_on_the_attempt(
    redis_server: LocalRedis, redis_client: redis.Redis, retries: int, state: str
) -> None:
    async def unreachable() -> Services:
        raise ToolServerUnavailable("MCP server http://mcp:9001/mcp unreachable while connecting")

    policy = RetryPolicy(max_retries=retries, base_s=2.0)
    if state == "failed":
        with pytest.raises(ToolServerUnavailable):
            run_job(redis_server.url, unreachable, policy)
    else:
        outcome = run_job(redis_server.url, unreachable, policy)
        assert isinstance(outcome, WillRetry) and isinstance(outcome.error, ToolServerUnavailable)
        assert 1.0 <= outcome.countdown <= 2.0
        assert redis_client.zscore(keys.dispatched(), "b:S-1") is not None, "its retry is on its way"
    record = redis_client.hgetall(keys.job("b:S-1"))
    assert (record["state"], record["attempt"], record["error_kind"]) == (state, "1", "mcp_unavailable")
    assert "unreachable while connecting" in record["error_message"]
    assert redis_client.zscore(keys.leases(), "b:S-1") is None, "a waiting retry holds no lease"


def test_an_unexpected_exception_fails_the_job_instead_of_leaving_it_running(
    redis_server: LocalRedis, redis_client: redis.Redis
) -> None:
    async def broken() -> Services:
        raise KeyError("a bug")

    with pytest.raises(InternalError, match="KeyError"):
        run_job(redis_server.url, broken, RetryPolicy())
    record = redis_client.hgetall(keys.job("b:S-1"))
    assert (record["state"], record["error_kind"]) == ("failed", "internal")
    assert redis_client.zscore(keys.leases(), "b:S-1") is None
    assert redis_client.zscore(keys.dispatched(), "b:S-1") is None
