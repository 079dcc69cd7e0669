"""A job's attempt is recorded whatever fails, including the process's shared services (the MCP
server down when the worker first connects): never left `queued` for `run` to wait on forever."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
import redis

from producer.local_redis import LocalRedis
from worker import keys
from worker.adapters.store import Store
from worker.errors import InternalError, ToolServerUnavailable
from worker.fleet.jobs import JobOutcome, Services, execute_job
from worker.fleet.logsink import Progress

pytestmark = pytest.mark.integration


def run_job(url: str, get_services: Callable[[], Awaitable[Services]], last_try: bool) -> JobOutcome:
    """One attempt of a fresh one-job batch `b:S-1` on the real Redis at `url`."""

    async def scenario() -> JobOutcome:
        store = Store.from_url(url)
        try:
            job = {"job_id": "b:S-1", "batch_id": "b", "spec_id": "S-1", "state": "queued", "attempt": 0}
            await store.create_batch({"batch_id": "b", "created_at": 1.0, "output_dir": "/tmp/x"},
                                     [(job, '{"id": "S-1"}')])  # fmt: skip
            return await execute_job(store, get_services, "b:S-1", worker_name="w", last_try=last_try,
                                     progress=Progress(), lease_s=60, countdown=lambda error: 7.0)  # fmt: skip
        finally:
            await store.close()

    return asyncio.run(scenario())


@pytest.mark.parametrize(("last_try", "state"), [(False, "retrying"), (True, "failed")])
def test_services_failing_to_connect_are_recorded_on_the_attempt(
    redis_server: LocalRedis, redis_client: redis.Redis, last_try: bool, state: str
) -> None:
    async def unreachable() -> Services:
        raise ToolServerUnavailable("MCP server http://mcp:9001/mcp unreachable while connecting")

    if last_try:
        with pytest.raises(ToolServerUnavailable):
            run_job(redis_server.url, unreachable, last_try)
    else:
        outcome = run_job(redis_server.url, unreachable, last_try)
        assert isinstance(outcome.retry, ToolServerUnavailable) and outcome.countdown == 7.0
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
        run_job(redis_server.url, broken, last_try=False)
    record = redis_client.hgetall(keys.job("b:S-1"))
    assert (record["state"], record["error_kind"]) == ("failed", "internal")
    assert redis_client.zscore(keys.leases(), "b:S-1") is None
