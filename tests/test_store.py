"""The store's lifecycle scripts on a real Redis: only the current attempt writes; duplicates and
finished jobs are refused; secrets are redacted before they land."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest
import redis

from producer.local_redis import LocalRedis
from worker import keys
from worker.adapters.store import Claim, Store
from worker.redact import redactor

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


LEASE_S = 60.0


def test_only_the_latest_attempt_can_record_its_result(store_url: str, redis_client: redis.Redis) -> None:
    async def scenario(store: Store) -> tuple[object, ...]:
        await make_job(store)
        first = await store.claim("b1:S-1", "w1", 0.2)
        busy = await store.claim("b1:S-1", "w2", LEASE_S)  # duplicate delivery while w1's lease is live
        await asyncio.sleep(0.3)
        second = await store.claim("b1:S-1", "w2", LEASE_S)  # w1's lease ran out (w1 died): w2 takes over
        stale = await store.finish("b1:S-1", "b1", 1, {"robot_text": "old"}, {"rounds": 1})
        current = await store.finish("b1:S-1", "b1", 2, {"robot_text": "new"}, {"rounds": 2})
        again = await store.claim("b1:S-1", "w3", LEASE_S)  # duplicate delivery after success
        return first, busy, second, stale, current, again

    first, busy, second, stale, current, again = run(store_url, scenario)
    assert first == Claim(1, '{"id": "S-1"}') and busy == "running"
    assert isinstance(second, Claim) and second.attempt == 2
    assert (stale, current, again) == (False, True, "succeeded")
    assert json.loads(redis_client.get(keys.job_result("b1:S-1")))["robot_text"] == "new"
    assert redis_client.xlen(keys.batch_results("b1")) == 1
    assert redis_client.zcard(keys.leases()) == 0, "a finished job holds no lease"


def test_sweep_requeues_only_jobs_whose_lease_ran_out(store_url: str, redis_client: redis.Redis) -> None:
    from worker.adapters.store import RENEW_SCRIPT, SWEEP_SCRIPT

    async def scenario(store: Store) -> None:
        await store.create_batch(
            {"batch_id": "b1", "created_at": 1.0, "output_dir": "/tmp/x"},
            [({"job_id": f"b1:S-{n}", "batch_id": "b1", "spec_id": f"S-{n}", "state": "queued", "attempt": 0},
              "{}") for n in range(6)],
        )  # fmt: skip
        await store.claim("b1:S-0", "dead", 0.2)  # its worker died: never renewed
        await store.claim("b1:S-1", "alive", 0.2)
        await store.claim("b1:S-2", "alive", 0.2)
        await store.fail("b1:S-2", 1, final=False, kind="model_unavailable", message="x", fields={})
        await store.claim("b1:S-3", "alive", 0.2)
        await store.fail("b1:S-3", 1, final=True, kind="model_rejected", message="x", fields={})
        await store.claim("b1:S-5", "dead", 0.2)  # a job whose workers keep dying
        await store.redis.hset(keys.job("b1:S-5"), "requeued", 3)

    run(store_url, scenario)
    renew = redis_client.register_script(RENEW_SCRIPT)
    # a dead worker had received S-4 (still queued) and leased it on receipt
    renew(keys=[keys.leases()], args=[0.2, keys.job(""), "b1:S-4"])
    time.sleep(0.3)
    # the worker holding S-1 is alive and renews what it holds (finished jobs get no lease back)
    renew(keys=[keys.leases()], args=[LEASE_S, keys.job(""), "b1:S-1", "b1:S-3"])
    sweep = redis_client.register_script(SWEEP_SCRIPT)
    found = sweep(keys=[keys.leases()], args=[100, keys.job(""), 3])
    assert sorted(found[::2]) == ["b1:S-0", "b1:S-4"] and sorted(found[1::2]) == ["S-0", "S-4"]
    states = {n: redis_client.hget(keys.job(f"b1:S-{n}"), "state") for n in range(6)}
    # S-2 waits for its retry holding no lease: a queue backlog must not look like a dead worker
    assert states == {0: "queued", 1: "running", 2: "retrying", 3: "failed", 4: "queued", 5: "failed"}
    assert redis_client.hget(keys.job("b1:S-5"), "error_kind") == "worker_lost"
    assert redis_client.zrange(keys.leases(), 0, -1) == ["b1:S-1"]
    assert sweep(keys=[keys.leases()], args=[100, keys.job(""), 3]) == []


def test_retry_request_makes_a_new_attempt_and_old_failure_cannot_overwrite(
    store_url: str, redis_client: redis.Redis
) -> None:
    async def scenario(store: Store) -> tuple[object, ...]:
        await make_job(store)
        await store.claim("b1:S-1", "w1", LEASE_S)
        await store.fail(
            "b1:S-1", 1, final=True, kind="model_rejected", message=f"bad key {SECRET}", fields={}
        )
        refused = await store.claim("b1:S-1", "w1", LEASE_S)
        retried = await store.request_retry("b1:S-1")
        claim = await store.claim("b1:S-1", "w2", LEASE_S)
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
        await store.claim("b1:S-1", "w1", LEASE_S)
        await store.fail(
            "b1:S-1", 1, final=False, kind="model_unavailable", message=f"401 for key {SECRET}", fields={}
        )
        await store.append_log("b1:S-1", [{"k": "text", "t": f"echo {SECRET}"}])

    run(store_url, scenario)
    dump = json.dumps([redis_client.hgetall(keys.job("b1:S-1")), redis_client.xrange(keys.job_log("b1:S-1"))])
    assert SECRET not in dump and "***" in dump


def test_unknown_job_claim_is_none(store_url: str) -> None:
    assert run(store_url, lambda store: store.claim("nope", "w", LEASE_S)) is None
