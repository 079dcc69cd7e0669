"""The job store in Redis: each lifecycle step is one atomic script or pipeline (async only).

    create_batch  batch record, job records and specs, in one transaction
    claim         queued/retrying -> running, attempt + 1, leased; refuses finished jobs and jobs
                  running under a live lease (duplicate deliveries)
    finish        running -> succeeded, result stored, results-stream entry; current attempt only
    fail          running -> retrying | failed with kind and message; current attempt only
    renew         the leases of the jobs a live worker holds (received, running)
    sweep         jobs whose lease ran out (their worker died) -> queued, to be sent again; after
                  MAX_REQUEUES such deaths -> failed (`worker_lost`: the job may be what kills them)
    collected     succeeded -> collected after the file is durably written; current attempt only
    request_retry failed -> queued (the next claim is a new attempt; older attempts can't write)

A job's state lives in its record only; the batch's counts are derived from its jobs. Every text
that may carry provider words (errors, logs) goes through the redactor first: secrets never land
in Redis.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from worker import keys
from worker.errors import StoreUnavailable

Redactor = Callable[[str], str]

SOCKET_CONNECT_TIMEOUT_S = 5.0
SOCKET_TIMEOUT_S = 30.0
"""No Redis command may wait longer than this (blocking reads use at most a few seconds)."""
RETRY_BACKOFF_CAP_S = 2.0
RETRIES = 20
"""A command that loses its connection is retried (redis-py's Retry) for about half a minute, so a
restart of Redis (AOF on: nothing lost) is ridden over by workers and collectors. The scripts are
safe to run twice: each checks the state it moves from."""

_NOW = """
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
"""
# Lease deadlines are on the Redis server's clock (TIME), so workers' clocks may disagree.

_CLAIM = (
    _NOW
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {-1, ''} end
if state == 'succeeded' or state == 'collected' or state == 'failed' then return {0, state} end
local clock = now()
if state == 'running' and tonumber(redis.call('ZSCORE', KEYS[3], ARGV[5]) or '0') > clock then
  return {0, 'running'}
end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempt', 1)
redis.call('HSET', KEYS[1], 'state', 'running', 'started_at', ARGV[1], 'worker', ARGV[2],
  'error_kind', '', 'error_message', '')
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[3], clock + tonumber(ARGV[4]), ARGV[5])
return {attempt, redis.call('GET', KEYS[2]) or ''}
"""
)

_FINISH = """
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'state') ~= 'running' then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[4])
redis.call('HSET', KEYS[1], 'state', 'succeeded', unpack(cjson.decode(ARGV[3])))
redis.call('XADD', KEYS[3], '*', 'v', '1', 'job_id', ARGV[5], 'attempt', ARGV[1])
redis.call('EXPIRE', KEYS[3], ARGV[4])
redis.call('ZREM', KEYS[4], ARGV[5])
return 1
"""

_FAIL = """
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'state') ~= 'running' then
  return 0
end
redis.call('HSET', KEYS[1], 'state', ARGV[2], unpack(cjson.decode(ARGV[3])))
redis.call('ZREM', KEYS[2], ARGV[4])
return 1
"""

RENEW_SCRIPT = (
    _NOW
    + """
local deadline = now() + tonumber(ARGV[1])
for i = 3, #ARGV do
  local state = redis.call('HGET', ARGV[2] .. ARGV[i], 'state')
  if state == 'queued' or state == 'running' or state == 'retrying' then
    redis.call('ZADD', KEYS[1], 'GT', deadline, ARGV[i])
  end
end
return 1
"""
)

SWEEP_SCRIPT = (
    _NOW
    + """
local clock = now()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', clock, 'LIMIT', 0, tonumber(ARGV[1]))
local requeued = {}
for _, job_id in ipairs(due) do
  redis.call('ZREM', KEYS[1], job_id)
  local key = ARGV[2] .. job_id
  local state = redis.call('HGET', key, 'state')
  if state == 'queued' or state == 'running' or state == 'retrying' then
    local times = tonumber(redis.call('HGET', key, 'requeued') or '0')
    if times >= tonumber(ARGV[3]) then
      redis.call('HSET', key, 'state', 'failed', 'error_kind', 'worker_lost', 'finished_at', clock,
        'error_message', 'its worker died ' .. (times + 1) .. ' times while holding it (killed, out of memory?)')
    else
      redis.call('HSET', key, 'state', 'queued', 'queued_at', clock, 'lease_expired_in', state)
      redis.call('HINCRBY', key, 'requeued', 1)
      table.insert(requeued, job_id)
      table.insert(requeued, redis.call('HGET', key, 'spec_id') or '')
    end
  end
end
return requeued
"""
)

_COLLECTED = """
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'state') ~= 'succeeded' then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'collected', unpack(cjson.decode(ARGV[2])))
return 1
"""

_REQUEST_RETRY = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'failed' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'queued', 'error_kind', '', 'error_message', '', 'queued_at', ARGV[1])
return 1
"""


@dataclass(frozen=True)
class Claim:
    attempt: int
    spec_json: str


@dataclass(frozen=True)
class ResultEntry:
    batch_id: str
    entry_id: str
    job_id: str
    attempt: int


def _flat(fields: dict[str, Any]) -> str:
    """A hash update as the flat JSON list the scripts unpack into HSET."""
    flat: list[str] = []
    for name, value in fields.items():
        flat += [name, value if isinstance(value, str) else json.dumps(value)]
    return json.dumps(flat)


def _no_redact(text: str) -> str:
    return text


class Store:
    def __init__(self, client: aioredis.Redis, redact: Redactor = _no_redact) -> None:
        self.redis = client
        self.redact = redact
        self._claim = client.register_script(_CLAIM)
        self._finish = client.register_script(_FINISH)
        self._fail = client.register_script(_FAIL)
        self._collected = client.register_script(_COLLECTED)
        self._request_retry = client.register_script(_REQUEST_RETRY)

    @classmethod
    def from_url(cls, url: str, redact: Redactor = _no_redact) -> Store:
        client = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            health_check_interval=30,
            socket_connect_timeout=SOCKET_CONNECT_TIMEOUT_S,
            socket_timeout=SOCKET_TIMEOUT_S,
            retry=Retry(EqualJitterBackoff(cap=RETRY_BACKOFF_CAP_S, base=0.1), RETRIES),
            retry_on_error=[RedisConnectionError, RedisTimeoutError, OSError],
        )
        return cls(client, redact)

    async def close(self) -> None:
        await self.redis.aclose()

    async def _run(self, coro: Any) -> Any:
        try:
            return await coro
        except ResponseError:
            raise  # a command or script error is a bug, not an outage
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"Redis unavailable: {exc}") from exc

    # -- batches -------------------------------------------------------------------------

    async def create_batch(self, record: dict[str, Any], jobs: list[tuple[dict[str, Any], str]]) -> None:
        """Store the batch, its jobs (each with its spec JSON) and its results group at once."""
        batch_id = record["batch_id"]
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(keys.batch(batch_id), mapping=_strings({**record, "v": keys.RECORD_VERSION}))
        pipe.expire(keys.batch(batch_id), keys.BATCH_TTL_S)
        pipe.zadd(keys.batches(), {batch_id: float(record["created_at"])})
        for position, (job, spec_json) in enumerate(jobs):
            job_id = job["job_id"]
            pipe.hset(keys.job(job_id), mapping=_strings({**job, "v": keys.RECORD_VERSION}))
            pipe.expire(keys.job(job_id), keys.BATCH_TTL_S)
            pipe.set(keys.job_spec(job_id), spec_json, ex=keys.BATCH_TTL_S)
            pipe.zadd(keys.batch_jobs(batch_id), {job_id: position})
        pipe.expire(keys.batch_jobs(batch_id), keys.BATCH_TTL_S)
        await self._run(pipe.execute())
        await self.ensure_group(batch_id)

    async def ensure_group(self, batch_id: str) -> None:
        try:
            await self.redis.xgroup_create(
                keys.batch_results(batch_id), keys.COLLECTOR_GROUP, id="0", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"Redis unavailable: {exc}") from exc

    async def batch(self, batch_id: str) -> dict[str, str] | None:
        record = await self._run(self.redis.hgetall(keys.batch(batch_id)))
        return record or None

    async def batch_ids(self, limit: int = 50) -> list[str]:
        return list(await self._run(self.redis.zrevrange(keys.batches(), 0, limit - 1)))

    async def job_ids(self, batch_id: str) -> list[str]:
        return list(await self._run(self.redis.zrange(keys.batch_jobs(batch_id), 0, -1)))

    async def jobs(self, job_ids: Iterable[str]) -> list[dict[str, str]]:
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(keys.job(job_id))
        return [record for record in await self._run(pipe.execute()) if record]

    async def job(self, job_id: str) -> dict[str, str] | None:
        record = await self._run(self.redis.hgetall(keys.job(job_id)))
        return record or None

    async def result(self, job_id: str) -> dict[str, Any] | None:
        raw = await self._run(self.redis.get(keys.job_result(job_id)))
        return json.loads(raw) if raw else None

    # -- lifecycle -----------------------------------------------------------------------

    async def claim(self, job_id: str, worker: str, lease_s: float) -> Claim | str | None:
        """A new attempt of `job_id` leased for `lease_s`, or the state that refuses it (finished, or
        `running` under another live lease), or None if the job is unknown."""
        code, payload = await self._run(
            self._claim(
                keys=[keys.job(job_id), keys.job_spec(job_id), keys.leases()],
                args=[time.time(), worker, keys.BATCH_TTL_S, lease_s, job_id],
            )
        )
        if int(code) < 0:
            return None
        if int(code) == 0:
            return str(payload)
        return Claim(attempt=int(code), spec_json=str(payload))

    async def finish(
        self, job_id: str, batch_id: str, attempt: int, result: dict[str, Any], fields: dict[str, Any]
    ) -> bool:
        """Record success and announce it to collectors; False when a newer attempt owns the job."""
        payload = json.dumps({**result, "v": keys.RECORD_VERSION, "attempt": attempt})
        done = await self._run(
            self._finish(
                keys=[keys.job(job_id), keys.job_result(job_id), keys.batch_results(batch_id), keys.leases()],
                args=[
                    attempt,
                    payload,
                    _flat({**fields, "finished_at": time.time()}),
                    keys.BATCH_TTL_S,
                    job_id,
                ],
            )
        )
        return bool(done)

    async def fail(
        self, job_id: str, attempt: int, *, final: bool, kind: str, message: str, fields: dict[str, Any]
    ) -> bool:
        """Record a failed attempt. A retrying job holds no lease while it waits for its countdown
        and in the queue; the worker that receives its retry leases it again."""
        state = "failed" if final else "retrying"
        update = {
            **fields,
            "error_kind": kind,
            "error_message": self.redact(message),
            "finished_at": time.time(),
        }
        if isinstance(update.get("diagnostics"), list):
            update["diagnostics"] = [self.redact(str(line)) for line in update["diagnostics"]]
        done = await self._run(
            self._fail(keys=[keys.job(job_id), keys.leases()], args=[attempt, state, _flat(update), job_id])
        )
        return bool(done)

    async def mark_collected(self, job_id: str, attempt: int, fields: dict[str, Any]) -> bool:
        update = {**fields, "collected_at": time.time()}
        return bool(await self._run(self._collected(keys=[keys.job(job_id)], args=[attempt, _flat(update)])))

    async def request_retry(self, job_id: str) -> bool:
        return bool(await self._run(self._request_retry(keys=[keys.job(job_id)], args=[time.time()])))

    # -- logs ----------------------------------------------------------------------------

    async def append_log(self, job_id: str, entries: list[dict[str, str]]) -> None:
        if not entries:
            return
        pipe = self.redis.pipeline(transaction=False)
        for entry in entries:
            safe = {name: self.redact(value) for name, value in entry.items()}
            pipe.xadd(keys.job_log(job_id), safe, maxlen=keys.LOG_MAX_ENTRIES, approximate=True)
        pipe.expire(keys.job_log(job_id), keys.LOG_TTL_S)
        await self._run(pipe.execute())

    async def read_log(
        self, job_id: str, after: str = "0", block_ms: int | None = None
    ) -> list[tuple[str, dict[str, str]]]:
        answer = await self._run(self.redis.xread({keys.job_log(job_id): after}, count=500, block=block_ms))
        return [(entry_id, fields) for _, entries in answer or [] for entry_id, fields in entries]

    # -- results stream (collector) -------------------------------------------------------

    async def read_results(self, batch_ids: list[str], consumer: str, block_ms: int) -> list[ResultEntry]:
        if not batch_ids:
            return []
        streams = {keys.batch_results(batch_id): ">" for batch_id in batch_ids}
        answer = await self._run(
            self.redis.xreadgroup(keys.COLLECTOR_GROUP, consumer, streams, count=64, block=block_ms)
        )
        return [
            _entry(stream, entry_id, fields)
            for stream, entries in answer or []
            for entry_id, fields in entries
        ]

    async def reclaim_results(self, batch_id: str, consumer: str, min_idle_ms: int) -> list[ResultEntry]:
        """Entries a dead collector read but never acknowledged, now owned by `consumer`."""
        stream = keys.batch_results(batch_id)
        answer = await self._run(
            self.redis.xautoclaim(
                stream, keys.COLLECTOR_GROUP, consumer, min_idle_time=min_idle_ms, start_id="0-0"
            )
        )
        claimed = answer[1] if answer else []
        return [_entry(stream, entry_id, fields) for entry_id, fields in claimed if fields]

    async def ack(self, entry: ResultEntry) -> None:
        await self._run(
            self.redis.xack(keys.batch_results(entry.batch_id), keys.COLLECTOR_GROUP, entry.entry_id)
        )


def _entry(stream: str, entry_id: str, fields: dict[str, str]) -> ResultEntry:
    batch_id = stream.removeprefix(keys.batch("")).removesuffix(":results")
    return ResultEntry(
        batch_id=batch_id, entry_id=entry_id, job_id=fields["job_id"], attempt=int(fields["attempt"])
    )


def _strings(record: dict[str, Any]) -> dict[str, str]:
    return {name: value if isinstance(value, str) else json.dumps(value) for name, value in record.items()}
