"""A job's attempt is recorded whatever fails, including the process's shared services (the MCP
server down when the worker first connects): never left `queued` for `run` to wait on forever."""

from __future__ import annotations

import asyncio

import pytest
import redis

from producer.local_redis import LocalRedis
from worker import keys
from worker.errors import InternalError, ToolServerUnavailable
from worker.jobs import Services, execute_job
from worker.logsink import Progress
from worker.store import Store

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("last_try", "state"), [(False, "retrying"), (True, "failed")])
def test_services_failing_to_connect_are_recorded_on_the_attempt(
    redis_server: LocalRedis, redis_client: redis.Redis, last_try: bool, state: str
) -> None:
    async def unreachable() -> Services:
        raise ToolServerUnavailable("MCP server http://mcp:9001/mcp unreachable while connecting")

    async def scenario() -> None:
        store = Store.from_url(redis_server.url)
        try:
            await store.create_batch(
                {"batch_id": "b", "created_at": 1.0, "output_dir": "/tmp/x"},
                [
                    (
                        {
                            "job_id": "b:S-1",
                            "batch_id": "b",
                            "spec_id": "S-1",
                            "state": "queued",
                            "attempt": 0,
                        },
                        '{"id": "S-1"}',
                    )
                ],
            )
            return await execute_job(store, unreachable, "b:S-1", worker_name="w", last_try=last_try,
                                     progress=Progress(), lease_s=60, countdown=lambda error: 7.0)  # fmt: skip
        finally:
            await store.close()

    if last_try:
        with pytest.raises(ToolServerUnavailable):
            asyncio.run(scenario())
    else:
        outcome = asyncio.run(scenario())
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

    async def scenario() -> None:
        store = Store.from_url(redis_server.url)
        try:
            await store.create_batch(
                {"batch_id": "b", "created_at": 1.0, "output_dir": "/tmp/x"},
                [
                    (
                        {
                            "job_id": "b:S-2",
                            "batch_id": "b",
                            "spec_id": "S-2",
                            "state": "queued",
                            "attempt": 0,
                        },
                        "{}",
                    )
                ],
            )
            await execute_job(store, broken, "b:S-2", worker_name="w", last_try=False, progress=Progress(),
                              lease_s=60, countdown=lambda error: 7.0)  # fmt: skip
        finally:
            await store.close()

    with pytest.raises(InternalError, match="KeyError"):
        asyncio.run(scenario())
    record = redis_client.hgetall(keys.job("b:S-2"))
    assert (record["state"], record["error_kind"]) == ("failed", "internal")
    assert redis_client.zscore(keys.leases(), "b:S-2") is None
