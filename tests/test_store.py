"""The store's lifecycle scripts on a real Redis: only the current attempt writes; duplicates and
finished jobs are refused; secrets are redacted before they land."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
import redis

from producer.local_redis import LocalRedis
from worker import keys
from worker.redact import redactor
from worker.store import Claim, Store

pytestmark = pytest.mark.integration

SECRET = "sk-live-0123456789abcdef"


@pytest.fixture
def store_url(redis_server: LocalRedis, redis_client: redis.Redis) -> Iterator[str]:
    yield redis_server.url


def run(url: str, scenario) -> object:
    async def go() -> object:
        store = Store.from_url(url, redactor([SECRET]))
        try:
            return await scenario(store)
        finally:
            await store.close()

    return asyncio.run(go())


async def make_job(store: Store, job_id: str = "b1:S-1") -> None:
    await store.create_batch(
        {"batch_id": "b1", "created_at": 1.0, "output_dir": "/tmp/x"},
        [
            (
                {"job_id": job_id, "batch_id": "b1", "spec_id": "S-1", "state": "queued", "attempt": 0},
                '{"id": "S-1"}',
            )
        ],
    )


def test_only_the_latest_attempt_can_record_its_result(store_url: str, redis_client: redis.Redis) -> None:
    async def scenario(store: Store) -> tuple[object, ...]:
        await make_job(store)
        first = await store.claim("b1:S-1", "w1")
        second = await store.claim("b1:S-1", "w2")  # redelivery while the first still runs
        stale = await store.finish("b1:S-1", "b1", 1, {"robot_text": "old"}, {"rounds": 1})
        current = await store.finish("b1:S-1", "b1", 2, {"robot_text": "new"}, {"rounds": 2})
        again = await store.claim("b1:S-1", "w3")  # duplicate delivery after success
        return first, second, stale, current, again

    first, second, stale, current, again = run(store_url, scenario)
    assert first == Claim(1, '{"id": "S-1"}') and isinstance(second, Claim) and second.attempt == 2
    assert (stale, current, again) == (False, True, "succeeded")
    assert json.loads(redis_client.get(keys.job_result("b1:S-1")))["robot_text"] == "new"
    assert redis_client.xlen(keys.batch_results("b1")) == 1


def test_retry_request_makes_a_new_attempt_and_old_failure_cannot_overwrite(
    store_url: str, redis_client: redis.Redis
) -> None:
    async def scenario(store: Store) -> tuple[object, ...]:
        await make_job(store)
        await store.claim("b1:S-1", "w1")
        await store.fail(
            "b1:S-1", 1, final=True, kind="model_rejected", message=f"bad key {SECRET}", fields={}
        )
        refused = await store.claim("b1:S-1", "w1")
        retried = await store.request_retry("b1:S-1")
        claim = await store.claim("b1:S-1", "w2")
        late = await store.fail("b1:S-1", 1, final=True, kind="x", message="late", fields={})
        return refused, retried, claim, late

    refused, retried, claim, late = run(store_url, scenario)
    assert refused == "failed" and retried is True and isinstance(claim, Claim) and claim.attempt == 2
    assert late is False
    record = redis_client.hgetall(keys.job("b1:S-1"))
    assert record["state"] == "running" and record["attempt"] == "2"


def test_failure_messages_and_logs_are_redacted(store_url: str, redis_client: redis.Redis) -> None:
    async def scenario(store: Store) -> None:
        await make_job(store)
        await store.claim("b1:S-1", "w1")
        await store.fail(
            "b1:S-1", 1, final=False, kind="model_unavailable", message=f"401 for key {SECRET}", fields={}
        )
        await store.append_log("b1:S-1", [{"k": "text", "t": f"echo {SECRET}"}])

    run(store_url, scenario)
    dump = json.dumps([redis_client.hgetall(keys.job("b1:S-1")), redis_client.xrange(keys.job_log("b1:S-1"))])
    assert SECRET not in dump and "***" in dump


def test_unknown_job_claim_is_none(store_url: str) -> None:
    assert run(store_url, lambda store: store.claim("nope", "w")) is None
