"""Pure logic of the job store, on fakeredis: records parsed at the boundary, the claim's outcomes,
the key schema the scripts rely on, and the retry policy. The lifecycle under real timing, leases
and sweeps runs on a real redis-server (tests/test_store.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import fakeredis
import pytest

from worker import keys
from worker.adapters.store import Store
from worker.errors import ModelUnavailable, RoundsExhausted, StoreUnavailable
from worker.fleet.retry import GiveUp, RetryIn, RetryPolicy
from worker.records import (
    BatchRecord,
    Claimed,
    JobRecord,
    JobState,
    NewJob,
    RecordError,
    Refused,
    Rejected,
    Unknown,
)

T = TypeVar("T")


def on_fake_redis(scenario: Callable[[Store], Awaitable[T]]) -> T:
    async def go() -> T:
        store = Store(
            fakeredis.FakeAsyncRedis(decode_responses=True), redact=lambda t: t.replace("sk-x1", "***")
        )
        try:
            return await scenario(store)
        finally:
            await store.close()

    return asyncio.run(go())


def new_job(n: int = 1) -> NewJob:
    return NewJob(f"b1:S-{n}", "b1", f"S-{n}", f"S-{n}.json", f"tests/S-{n}.robot", "f" * 64, '{"id": "S"}',
                  model="m", ref="main", prompt_version="4")  # fmt: skip


def test_job_record_parses_stored_text_once_with_defaults_for_what_is_absent() -> None:
    record = JobRecord.parse({"job_id": "b:S", "state": "collected", "attempt": "3", "prompt_tokens": "1200",
                              "duration_s": "2.5", "withheld": "1", "stages": '{"static": "passed"}',
                              "rounds": "not a number", "diagnostics": '["a"]'})  # fmt: skip
    assert record.state is JobState.COLLECTED and record.attempt == 3 and record.prompt_tokens == 1200
    assert record.duration_s == 2.5 and record.withheld and record.stages == {"static": "passed"}
    assert record.rounds == 0 and record.resumed_from_round == 0, "garbage and absent fields read as 0"
    assert record.shown()["diagnostics"] == ["a"] and record.shown()["attempt"] == 3
    assert record.state.settled and record.state.has_suite and not record.state.active
    with pytest.raises(RecordError, match="unknown state 'lost'"):
        JobRecord.parse({"job_id": "b:S", "state": "lost"})


def test_batch_record_survives_the_round_trip_through_its_stored_hash() -> None:
    batch = BatchRecord("b1", created_at=12.5, output_dir="/out", total=2, write_failing=False,
                        rejected=(Rejected("x.json", "x.json: not JSON", "x"),), skipped=("S-9",))  # fmt: skip
    assert BatchRecord.parse(batch.stored()) == batch


def test_claim_answers_one_outcome_per_case_and_hands_the_record_back() -> None:
    async def scenario(store: Store) -> list[object]:
        await store.create_batch(BatchRecord("b1", created_at=1.0), [new_job()])
        first = await store.claim("b1:S-1", "w1", 60)
        busy = await store.claim("b1:S-1", "w2", 60)
        unknown = await store.claim("b1:nope", "w2", 60)
        assert isinstance(first, Claimed)
        await store.finish("b1:S-1", "b1", first.attempt, {"robot_text": "x"}, {"rounds": 1})
        done = await store.claim("b1:S-1", "w3", 60)
        return [first, busy, unknown, done]

    first, busy, unknown, done = on_fake_redis(scenario)
    assert isinstance(first, Claimed) and first.attempt == 1 and first.spec_json == '{"id": "S"}'
    assert first.job.state is JobState.RUNNING and first.job.worker == "w1" and first.job.target_path
    assert busy == Refused(JobState.RUNNING) and unknown == Unknown() and done == Refused(JobState.SUCCEEDED)


def test_a_recorded_job_is_dispatched_until_a_worker_holds_it_and_leased_after() -> None:
    async def scenario(store: Store) -> tuple[list[str], list[str], list[str]]:
        await store.create_batch(BatchRecord("b1", created_at=1.0), [new_job(1), new_job(2)])
        dispatched = await store.redis.zrange(keys.dispatched(), 0, -1)
        await store.hold(["b1:S-2"], 60)
        return (
            dispatched,
            await store.redis.zrange(keys.dispatched(), 0, -1),
            await store.redis.zrange(keys.leases(), 0, -1),
        )

    dispatched, after, leased = on_fake_redis(scenario)
    assert dispatched == ["b1:S-1", "b1:S-2"], "in the order their messages are sent"
    assert after == ["b1:S-1"] and leased == ["b1:S-2"]


def test_failure_messages_and_journal_entries_are_redacted_before_they_are_stored() -> None:
    async def scenario(store: Store) -> str:
        await store.create_batch(BatchRecord("b1", created_at=1.0), [new_job()])
        await store.claim("b1:S-1", "w1", 60)
        assert await store.journal_start("b1:S-1", 1, "fp") == []
        refused = await store.journal_append("b1:S-1", 1, "fp", 1, {"messages": [{"content": "key sk-x1"}]})
        assert refused is None
        await store.fail("b1:S-1", 1, retry_in_s=None, kind="model_rejected", message="401 sk-x1", fields={})
        return json.dumps(await store.redis.hgetall(keys.job("b1:S-1")))

    assert "sk-x1" not in on_fake_redis(scenario)


def test_every_key_is_under_the_prefix_and_the_scripts_derived_keys_match_the_schema() -> None:
    built = [keys.batches(), keys.batch("b"), keys.batch_jobs("b"), keys.batch_results("b"), keys.job("j"),
             keys.job_spec("j"), keys.job_result("j"), keys.job_log("j"), keys.job_journal("j"), keys.leases(),
             keys.dispatched(), keys.receipts(), keys.receipt_mark(), keys.rate_limit_waits(),
             keys.rate_limit_wait_seconds()]  # fmt: skip
    assert all(key.startswith(f"{keys.PREFIX}:") for key in built) and len(set(built)) == len(built)
    # the sweep builds job keys as prefix .. id and a job's journal as its key .. ':journal'
    assert keys.job("") + "b:S-1" == keys.job("b:S-1")
    assert keys.job("b:S-1") + ":journal" == keys.job_journal("b:S-1")
    assert keys.rate_limits_prefix() == keys.PREFIX


def test_retry_policy_answers_retry_with_a_countdown_or_gives_up_at_each_cap() -> None:
    policy = RetryPolicy()
    outage = ModelUnavailable("503", retry_after=40.0)
    first = policy.decide(outage, attempt=1, retries=0, age_s=1.0)
    assert isinstance(first, RetryIn) and first.countdown >= 40.0, "never sooner than Retry-After"
    assert isinstance(policy.decide(ModelUnavailable("503"), attempt=1, retries=0, age_s=1), RetryIn)
    backoff = policy.decide(StoreUnavailable("down"), attempt=3, retries=2, age_s=1)
    assert isinstance(backoff, RetryIn) and 8.0 <= backoff.countdown <= 16.0
    assert policy.decide(RoundsExhausted("no"), attempt=1, retries=0, age_s=1) == GiveUp("permanent")
    assert isinstance(policy.decide(outage, attempt=2, retries=policy.max_retries, age_s=1), GiveUp)
    assert isinstance(policy.decide(outage, attempt=policy.max_attempts, retries=0, age_s=1), GiveUp)
    assert isinstance(policy.decide(outage, attempt=2, retries=1, age_s=policy.window_s + 1), GiveUp)
    huge = policy.decide(ModelUnavailable("429", retry_after=10_000.0), attempt=1, retries=0, age_s=1)
    assert isinstance(huge, RetryIn) and huge.countdown == policy.retry_after_max_s


def test_during_a_pause_a_retry_spends_no_budget_and_the_window_counts_from_the_resumption() -> None:
    from worker.fleet.jobs import _age
    from worker.records import JobRecord

    policy = RetryPolicy()
    outage = ModelUnavailable("503")
    paused = policy.decide(
        outage, attempt=3, retries=policy.max_retries, age_s=policy.window_s * 2, outage=True
    )
    assert isinstance(paused, RetryIn), "the outage's failure, not the job's: no cap but MAX_ATTEMPTS"
    assert isinstance(
        policy.decide(outage, attempt=policy.max_attempts, retries=0, age_s=1, outage=True), GiveUp
    )
    assert policy.may_retry(attempt=1, retries=0, age_s=1) is True
    assert policy.may_retry(attempt=2, retries=policy.max_retries, age_s=1) is False
    assert policy.may_retry(attempt=2, retries=0, age_s=policy.window_s + 1) is False
    started_long_ago = JobRecord.parse({"first_started_at": str(time.time() - 3600)}, "b:S-1")
    assert 3599 < _age(started_long_ago, resumed_at=0.0) < 3700
    assert _age(started_long_ago, resumed_at=time.time() - 60) < 70, "a pause ended a minute ago"
    assert _age(JobRecord.parse({}, "b:S-2"), resumed_at=0.0) == 0.0


def test_an_open_circuit_no_worker_probes_says_so_instead_of_a_probe_that_never_comes() -> None:
    from worker.records import CircuitRecord, Dependency

    raw = {"circuit": "open", "opened_at": "1000", "next_probe_at": "1005", "last_kind": "model_unavailable",
           "last_error": "model server answered 503"}  # fmt: skip
    circuit = CircuitRecord.parse(Dependency.MODEL, raw)
    assert circuit.describe(1003).endswith("; next probe in 2s") and not circuit.unprobed(1003)
    assert circuit.unprobed(1100) and circuit.shown(1100)["unprobed"] is True
    assert (
        "no worker has probed it for 1m35s (none running, or FLEET_PAUSE_AFTER=0 on them)"
        in circuit.describe(1100)
    )
