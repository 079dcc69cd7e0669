"""The store's lifecycle scripts on a real Redis, with real timing: only the current attempt writes;
duplicates and finished jobs are refused; leases that run out and messages lost before receipt are
swept back on their way; the journal belongs to the current attempt; secrets are redacted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest
import redis

from producer.local_redis import LocalRedis
from worker import keys
from worker.adapters.celery_config import QUEUE
from worker.adapters.store import Store
from worker.records import BatchRecord, Claimed, JobState, NewJob, Refused, Swept, Unknown
from worker.redact import redactor

pytestmark = pytest.mark.integration

SECRET = "sk-live-0123456789abcdef"
LEASE_S = 60.0
T = TypeVar("T")


@pytest.fixture
def store_url(redis_server: LocalRedis, redis_client: redis.Redis) -> Iterator[str]:
    yield redis_server.url


def run(url: str, scenario: Callable[[Store], Awaitable[T]]) -> T:
    async def go() -> T:
        store = Store.from_url(url, redactor([SECRET]))
        try:
            return await scenario(store)
        finally:
            await store.close()

    return asyncio.run(go())


async def make_jobs(store: Store, count: int = 1) -> list[str]:
    jobs = [NewJob(f"b1:S-{n}", "b1", f"S-{n}", f"S-{n}.json", f"t/S-{n}.robot", "0" * 64, '{"id": "S"}')
            for n in range(1, count + 1)]  # fmt: skip
    await store.create_batch(BatchRecord("b1", created_at=1.0, output_dir="/tmp/x"), jobs)
    return [job.job_id for job in jobs]


async def sweep(store: Store, grace_s: float = LEASE_S, max_requeues: int = 3, max_resends: int = 3) -> Swept:
    return await store.sweep(queue=QUEUE, grace_s=grace_s, max_requeues=max_requeues, max_resends=max_resends)


def test_only_the_latest_attempt_can_record_its_result(store_url: str, redis_client: redis.Redis) -> None:
    async def scenario(store: Store) -> tuple[object, ...]:
        await make_jobs(store)
        first = await store.claim("b1:S-1", "w1", 0.2)
        busy = await store.claim("b1:S-1", "w2", LEASE_S)  # duplicate delivery while w1's lease is live
        await asyncio.sleep(0.3)
        second = await store.claim("b1:S-1", "w2", LEASE_S)  # w1's lease ran out (w1 died): w2 takes over
        stale = await store.finish("b1:S-1", "b1", 1, {"robot_text": "old"}, {"rounds": 1})
        current = await store.finish("b1:S-1", "b1", 2, {"robot_text": "new"}, {"rounds": 2})
        again = await store.claim("b1:S-1", "w3", LEASE_S)  # duplicate delivery after success
        return first, busy, second, stale, current, again

    first, busy, second, stale, current, again = run(store_url, scenario)
    assert isinstance(first, Claimed) and first.attempt == 1 and busy == Refused(JobState.RUNNING)
    assert isinstance(second, Claimed) and second.attempt == 2
    assert (stale, current, again) == (False, True, Refused(JobState.SUCCEEDED))
    assert json.loads(redis_client.get(keys.job_result("b1:S-1")))["robot_text"] == "new"
    assert redis_client.xlen(keys.batch_results("b1")) == 1
    assert redis_client.zcard(keys.leases()) == 0, "a finished job holds no lease"
    assert redis_client.zcard(keys.dispatched()) == 0, "nor is it on its way anywhere"


def test_sweep_requeues_only_jobs_whose_lease_ran_out(store_url: str, redis_client: redis.Redis) -> None:
    async def scenario(store: Store) -> tuple[object, object]:
        await make_jobs(store, 6)
        await store.claim("b1:S-1", "dead", 0.2)  # its worker died: never renewed
        await store.claim("b1:S-2", "alive", 0.2)
        await store.claim("b1:S-3", "alive", 0.2)
        await store.fail("b1:S-3", 1, retry_in_s=30, kind="model_unavailable", message="x", fields={})
        await store.claim("b1:S-4", "alive", 0.2)
        await store.fail("b1:S-4", 1, retry_in_s=None, kind="model_rejected", message="x", fields={})
        await store.claim("b1:S-6", "dead", 0.2)  # a job whose workers keep dying
        await store.redis.hset(keys.job("b1:S-6"), "requeued", 3)
        await store.hold(["b1:S-5"], 0.2)  # a dead worker had received S-5 (still queued)
        await asyncio.sleep(0.3)
        # the worker holding S-2 is alive and renews what it holds (finished jobs get no lease back)
        await store.hold(["b1:S-2", "b1:S-4"], LEASE_S)
        return await sweep(store), await sweep(store)

    swept, again = run(store_url, scenario)
    assert sorted((r.job_id, r.spec_id, r.why) for r in swept.resend) == [
        ("b1:S-1", "S-1", "requeued"), ("b1:S-5", "S-5", "requeued")]  # fmt: skip
    assert swept.failed == ("b1:S-6",) and again.resend == () and again.failed == ()
    states = {n: redis_client.hget(keys.job(f"b1:S-{n}"), "state") for n in range(1, 7)}
    # S-3 waits for its retry holding no lease: a queue backlog must not look like a dead worker
    assert states == {1: "queued", 2: "running", 3: "retrying", 4: "failed", 5: "queued", 6: "failed"}
    assert redis_client.hget(keys.job("b1:S-6"), "error_kind") == "worker_lost"
    assert redis_client.zrange(keys.leases(), 0, -1) == ["b1:S-2"]
    assert set(redis_client.zrange(keys.dispatched(), 0, -1)) == {"b1:S-1", "b1:S-3", "b1:S-5"}


def test_a_message_lost_before_receipt_is_sent_again_once_a_later_one_or_an_empty_queue_shows_it(
    store_url: str, redis_client: redis.Redis
) -> None:
    async def scenario(store: Store) -> list[object]:
        await make_jobs(store, 3)
        await store.redis.rpush(keys.broker_queue(QUEUE), "a message still waiting")
        await store.hold(["b1:S-2"], LEASE_S)  # S-2 received; S-1, sent before it, never was
        early = await sweep(store, grace_s=0.3)  # within the grace: S-1's receipt may just lag
        await asyncio.sleep(0.4)
        marked = await sweep(store, grace_s=0.3)  # S-2 received a grace ago: S-1's message is gone
        await store.redis.delete(keys.broker_queue(QUEUE))
        emptied = await sweep(store, grace_s=0.3)  # the queue is empty: S-3's message is gone too
        await store.unsent([r for r in emptied.resend if r.job_id == "b1:S-3"])  # the broker refused it
        retaken = await sweep(store, grace_s=0.3)
        return [early, marked, emptied, retaken]

    early, marked, emptied, retaken = run(store_url, scenario)
    assert early.resend == ()
    assert [(r.job_id, r.why) for r in marked.resend] == [("b1:S-1", "resent")]
    assert [r.job_id for r in emptied.resend] == ["b1:S-3"], "S-1 was just sent again: within its grace"
    assert [r.job_id for r in retaken.resend] == ["b1:S-3"], "an unsent resend is taken at the next sweep"
    counts = {n: redis_client.hget(keys.job(f"b1:S-{n}"), "resent") for n in (1, 2, 3)}
    assert counts == {1: "1", 2: None, 3: "1"}, "the refused resend is not counted against the job"


def test_lost_messages_past_the_cap_fail_the_job_and_retries_keep_their_countdown(
    store_url: str, redis_client: redis.Redis
) -> None:
    async def scenario(store: Store) -> tuple[object, object]:
        await make_jobs(store, 2)
        await store.claim("b1:S-2", "w", LEASE_S)
        await store.fail("b1:S-2", 1, retry_in_s=30, kind="model_unavailable", message="503", fields={})
        await store.redis.hset(keys.job("b1:S-1"), "resent", 3)
        await asyncio.sleep(0.3)
        return await sweep(store, grace_s=0.2), await store.job("b1:S-2")

    swept, retrying = run(store_url, scenario)
    assert swept.failed == ("b1:S-1",)
    assert "lost 4 times" in redis_client.hget(keys.job("b1:S-1"), "error_message")
    [resend] = swept.resend
    assert resend.job_id == "b1:S-2" and 29 < resend.countdown <= 30, "what is left of its countdown"
    assert retrying is not None and retrying.state is JobState.RETRYING and retrying.retries == 1


def test_retry_request_makes_a_new_attempt_and_old_failure_cannot_overwrite(
    store_url: str, redis_client: redis.Redis
) -> None:
    async def scenario(store: Store) -> tuple[object, ...]:
        await make_jobs(store)
        await store.claim("b1:S-1", "w1", LEASE_S)
        await store.fail("b1:S-1", 1, retry_in_s=None, kind="model_rejected", message=f"bad key {SECRET}",
                         fields={})  # fmt: skip
        refused = await store.claim("b1:S-1", "w1", LEASE_S)
        retried = await store.request_retry("b1:S-1")
        dispatched = await store.redis.zscore(keys.dispatched(), "b1:S-1")
        claim = await store.claim("b1:S-1", "w2", LEASE_S)
        late = await store.fail("b1:S-1", 1, retry_in_s=None, kind="x", message="late", fields={})
        return refused, retried, dispatched, claim, late

    refused, retried, dispatched, claim, late = run(store_url, scenario)
    assert refused == Refused(JobState.FAILED) and retried is True and dispatched is not None
    assert isinstance(claim, Claimed) and claim.attempt == 2 and late is False
    record = redis_client.hgetall(keys.job("b1:S-1"))
    assert record["state"] == "running" and record["attempt"] == "2"


def test_journal_is_the_current_attempts_replaced_on_a_new_fingerprint_and_dropped_at_the_end(
    store_url: str, redis_client: redis.Redis
) -> None:
    async def scenario(store: Store) -> list[object]:
        await make_jobs(store)
        await store.claim("b1:S-1", "w1", LEASE_S)
        started = await store.journal_start("b1:S-1", 1, "fp-a")
        ok = [await store.journal_append("b1:S-1", 1, "fp-a", n, {"round": n, "text": f"tool said {SECRET}"})
              for n in (1, 2)]  # fmt: skip
        gap = await store.journal_append("b1:S-1", 1, "fp-a", 4, {"round": 4})
        await store.redis.zadd(keys.leases(), {"b1:S-1": 0})  # w1 died: its lease ran out
        await sweep(store)
        await store.claim("b1:S-1", "w2", LEASE_S)
        stale = await store.journal_append("b1:S-1", 1, "fp-a", 3, {"round": 3})  # w1 was only slow
        replay = await store.journal_start("b1:S-1", 2, "fp-a")
        other = await store.journal_start("b1:S-1", 2, "fp-b")  # the inputs changed: start afresh
        await store.journal_append("b1:S-1", 2, "fp-b", 1, {"round": 1})
        await store.finish("b1:S-1", "b1", 2, {"robot_text": "x"}, {})
        return [started, ok, gap, stale, replay, other]

    started, ok, gap, stale, replay, other = run(store_url, scenario)
    assert started == [] and ok == [None, None] and gap == "a round is missing before it"
    assert stale == "a newer attempt owns the job"
    assert [entry["round"] for entry in replay] == [1, 2] and SECRET not in json.dumps(replay)
    assert other == [] and not redis_client.exists(keys.job_journal("b1:S-1")), "dropped when the job ends"


def test_journal_stops_growing_at_its_cap_and_retry_fresh_drops_it(
    store_url: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keys, "JOURNAL_MAX_BYTES", 400)

    async def scenario(store: Store) -> list[object]:
        await make_jobs(store)
        await store.claim("b1:S-1", "w1", LEASE_S)
        await store.journal_start("b1:S-1", 1, "fp")
        answers = [await store.journal_append("b1:S-1", 1, "fp", n, {"round": n, "pad": "x" * 150})
                   for n in (1, 2, 3)]  # fmt: skip
        await store.fail("b1:S-1", 1, retry_in_s=None, kind="model_rejected", message="x", fields={})
        return answers

    assert run(store_url, scenario) == [None, None, "the journal is full"]
    assert not redis_client.exists(keys.job_journal("b1:S-1")), "a job failed for good keeps no journal"

    async def fresh(store: Store) -> bool:
        await store.redis.rpush(keys.job_journal("b1:S-1"), '{"fingerprint": "fp"}', '{"round": 1}')
        return await store.request_retry("b1:S-1", fresh=True)

    assert run(store_url, fresh) is True and not redis_client.exists(keys.job_journal("b1:S-1"))


def test_failure_messages_and_logs_are_redacted(store_url: str, redis_client: redis.Redis) -> None:
    async def scenario(store: Store) -> None:
        await make_jobs(store)
        await store.claim("b1:S-1", "w1", LEASE_S)
        await store.fail("b1:S-1", 1, retry_in_s=5, kind="model_unavailable", message=f"401 for key {SECRET}",
                         fields={})  # fmt: skip
        await store.append_log("b1:S-1", [{"k": "text", "t": f"echo {SECRET}"}])

    run(store_url, scenario)
    dump = json.dumps([redis_client.hgetall(keys.job("b1:S-1")), redis_client.xrange(keys.job_log("b1:S-1"))])
    assert SECRET not in dump and "***" in dump


def test_unknown_job_claim_is_unknown(store_url: str) -> None:
    assert run(store_url, lambda store: store.claim("nope", "w", LEASE_S)) == Unknown()
