"""The job store in Redis: the one owner of the job lifecycle; each step is one atomic script.

    create_batch   the batch, its jobs (queued, dispatched) and specs, and its results group
    claim          queued/retrying -> running, attempt + 1, leased; refuses finished jobs and jobs
                   running under another live lease (duplicate deliveries)
    finish         running -> succeeded, result stored, results-stream entry; current attempt only
    fail           running -> retrying (dispatched again) | failed; current attempt only; a failure
                   charged to an outage the fleet paused on does not count against `retries`
    hand_back      running -> queued (dispatched again): a worker stopping gives its attempt back;
                   not a failure, the journal kept
    hold           a live worker holds these jobs (received, waiting for a slot or a countdown,
                   running): leased for one more lease, no longer `dispatched`
    release        a worker shutting down gives back the jobs it held but never started
    sweep          leases that ran out (the holder died) -> queued and sent again; messages lost
                   before any worker received them -> sent again; past a cap -> failed `worker_lost`
    collected      succeeded -> collected after the file is durably written; current attempt only
    request_retry  failed -> queued, dispatched (`fresh`: its journal dropped)
    journal_*      the writer's completed rounds, current attempt only (see `RedisJournal`)

Every job that is not finished is always in one of two places: `leases` (a worker holds it and
renews it) or `dispatched` (its message is on the way: recorded before it is sent). A job can only
be lost by a worker that dies (its lease runs out) or by a message that never reaches one: the
broker refused it, or the worker that took it from the queue died before it said so. Redis's queue
is first in, first out: once a job dispatched later than this one was received a grace ago, or the
queue is empty and this one was dispatched a grace ago, its message is gone and the sweep sends it
again. A message thought lost that was only slow makes a duplicate, dropped at the claim.

A job's state lives in its record only; the batch's counts are derived from its jobs. Every text
that may carry provider words (errors, logs, the journal's messages and tool results) goes through
the redactor first: secrets never land in Redis.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from worker import keys
from worker.errors import StoreUnavailable, WorkerLost
from worker.records import (
    BatchRecord,
    Claimed,
    ClaimOutcome,
    FleetCounts,
    JobRecord,
    JobResult,
    JobState,
    LogEntry,
    NewJob,
    PendingResult,
    Refused,
    Resend,
    ResultEntry,
    Swept,
    Unknown,
)

Redactor = Callable[[str], str]

SOCKET_CONNECT_TIMEOUT_S = 5.0
SOCKET_TIMEOUT_S = 30.0
"""No Redis command may wait longer than this (blocking reads use at most a few seconds)."""
RETRY_BACKOFF_CAP_S = 2.0
RETRIES = 20
"""A command that loses its connection is retried (redis-py's Retry), so a restart or an outage of
Redis (AOF on: nothing lost) is ridden over by workers and collectors. redis-py applies the Retry
twice over: each of a command's 21 tries reconnects with 21 tries of its own (1-2 s apart, about
27 s). So a command whose connection Redis dropped waits about 9 minutes (551 s measured) before it
raises `StoreUnavailable`, and one that needs a new connection about 27 s (a store that never
reached Redis: the commands check it first, `producer.fleet_cmds._store`). The scripts are safe to
run twice: each checks the state it moves from."""
SWEEP_BATCH = 200
"""Jobs one sweep moves at most, per kind (lease ran out, message lost)."""

LUA_CLOCK = """
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function t(seconds)
  return string.format('%.6f', seconds)
end
"""
"""The server's clock for scripts: `now()`, and `t(x)` to store a time (also `worker.adapters.circuits`)."""
_LIB = (
    LUA_CLOCK
    + """
local function active(state)
  return state == 'queued' or state == 'running' or state == 'retrying'
end
"""
)
# Every deadline and dispatch time is on the Redis server's clock (TIME): workers' clocks may disagree.
# Times go to commands as `t(x)`: Lua would print a number with 14 digits, 100 µs of a Unix time.

_CREATE_BATCH = (
    _LIB
    + """
local clock = now()
local ttl = tonumber(ARGV[5])
redis.call('HSET', KEYS[1], 'v', ARGV[1], unpack(cjson.decode(ARGV[2])))
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
for n = 1, #ARGV - 5 do
  local job = cjson.decode(ARGV[n + 5])
  local key, spec = KEYS[3 + 2 * n], KEYS[4 + 2 * n]
  redis.call('HSET', key, 'state', 'queued', 'attempt', 0, 'queued_at', t(clock), 'v', ARGV[1], unpack(job.fields))
  redis.call('EXPIRE', key, ttl)
  redis.call('SET', spec, job.spec, 'EX', ttl)
  redis.call('ZADD', KEYS[3], n - 1, job.id)
  redis.call('ZADD', KEYS[4], t(clock + n / 1000000), job.id)
end
redis.call('EXPIRE', KEYS[3], ttl)
return 1
"""
)
# dispatch times one microsecond apart, in the order the messages are sent

# a new attempt keeps the previous one's error as `last_error_*`: `run` and `status` show why a job
# is on its third attempt while it runs
_CLAIM = (
    _LIB
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {-1, '', {}} end
if not active(state) then return {0, state, {}} end
local clock = now()
if state == 'running' and tonumber(redis.call('ZSCORE', KEYS[3], ARGV[4]) or '0') > clock then
  return {0, 'running', {}}
end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempt', 1)
local kind = redis.call('HGET', KEYS[1], 'error_kind')
if kind and kind ~= '' then
  redis.call('HSET', KEYS[1], 'last_error_kind', kind, 'last_error_message', redis.call('HGET', KEYS[1], 'error_message') or '')
end
redis.call('HSET', KEYS[1], 'state', 'running', 'started_at', t(clock), 'worker', ARGV[1],
  'error_kind', '', 'error_message', '', 'retry_at', '', 'resumed_from_round', 0, 'resume_saved_tokens', 0)
redis.call('HSETNX', KEYS[1], 'first_started_at', t(clock))
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[3], t(clock + tonumber(ARGV[3])), ARGV[4])
redis.call('ZREM', KEYS[4], ARGV[4])
return {attempt, redis.call('GET', KEYS[2]) or '', redis.call('HGETALL', KEYS[1])}
"""
)

_CURRENT = """
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'state') ~= 'running' then
  return 0
end
"""

_ENDED = """
local function ended(key, clock)
  local first = tonumber(redis.call('HGET', key, 'first_started_at') or '0') or 0
  redis.call('HSET', key, 'finished_at', t(clock))
  if first > 0 then redis.call('HSET', key, 'duration_s', string.format('%.3f', clock - first)) end
end
"""
# a job's time is its own clock, on the server's: from its first claim to its end, whatever attempts,
# retries and pauses came between (the writer's time of the last attempt is `attempt_s`)

_FINISH = (
    _LIB
    + _ENDED
    + _CURRENT
    + """
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[4])
redis.call('HSET', KEYS[1], 'state', 'succeeded', 'journal_bytes', 0, unpack(cjson.decode(ARGV[3])))
ended(KEYS[1], now())
redis.call('XADD', KEYS[3], '*', 'v', '1', 'job_id', ARGV[5], 'attempt', ARGV[1])
redis.call('EXPIRE', KEYS[3], ARGV[4])
redis.call('ZREM', KEYS[4], ARGV[5])
redis.call('ZREM', KEYS[5], ARGV[5])
redis.call('DEL', KEYS[6])
return 1
"""
)

_FAIL = (
    _LIB
    + _ENDED
    + _CURRENT
    + """
local clock = now()
redis.call('HSET', KEYS[1], 'state', ARGV[2], unpack(cjson.decode(ARGV[3])))
redis.call('ZREM', KEYS[2], ARGV[4])
if ARGV[2] == 'retrying' then
  redis.call('HINCRBY', KEYS[1], ARGV[6] == '1' and 'retries' or 'outage_retries', 1)
  redis.call('HSET', KEYS[1], 'retry_at', t(clock + tonumber(ARGV[5])), 'finished_at', t(clock))
  redis.call('ZADD', KEYS[3], t(clock), ARGV[4])
else
  redis.call('ZREM', KEYS[3], ARGV[4])
  redis.call('DEL', KEYS[4])
  redis.call('HSET', KEYS[1], 'journal_bytes', 0)
  ended(KEYS[1], clock)
end
return 1
"""
)

_HAND_BACK = (
    _LIB
    + _CURRENT
    + """
local clock = now()
redis.call('HSET', KEYS[1], 'state', 'queued', 'queued_at', t(clock), 'worker', '')
redis.call('HINCRBY', KEYS[1], 'handed_back', 1)
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], t(clock), ARGV[2])
return 1
"""
)
# not a failure: no error, no retry counted, the journal kept (the next attempt resumes from it)

_HOLD = (
    _LIB
    + """
local clock = now()
local deadline = clock + tonumber(ARGV[1])
for i = 3, #ARGV do
  if active(redis.call('HGET', ARGV[2] .. ARGV[i], 'state')) then
    redis.call('ZADD', KEYS[1], 'GT', t(deadline), ARGV[i])
    local sent = redis.call('ZSCORE', KEYS[2], ARGV[i])
    if sent then
      redis.call('ZREM', KEYS[2], ARGV[i])
      redis.call('ZADD', KEYS[3], t(clock), sent)
    end
  end
end
return 1
"""
)

_RELEASE = (
    _LIB
    + """
local clock = now()
for i = 2, #ARGV do
  local state = redis.call('HGET', ARGV[1] .. ARGV[i], 'state')
  if (state == 'queued' or state == 'retrying') and redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[2], t(clock), ARGV[i])
  end
end
return 1
"""
)

_SWEEP = (
    _LIB
    + """
local clock = now()
local limit, prefix = tonumber(ARGV[1]), ARGV[2]
local max_requeues, max_resends, grace = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local out, failed = {}, {}

local function give_up(key, id, message)
  redis.call('HSET', key, 'state', 'failed', 'error_kind', ARGV[6], 'finished_at', t(clock), 'error_message', message)
  redis.call('ZREM', KEYS[2], id)
  redis.call('DEL', key .. ':journal')
  table.insert(failed, id)
end

local function send_again(key, id, state, why)
  local countdown = 0
  if state == 'retrying' then
    countdown = math.max(0, tonumber(redis.call('HGET', key, 'retry_at') or '0') - clock)
  end
  redis.call('ZADD', KEYS[2], t(clock), id)
  table.insert(out, {id, redis.call('HGET', key, 'spec_id') or '', t(countdown), why})
end

-- 1. leases that ran out: the worker holding the job died
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', t(clock), 'LIMIT', 0, limit)) do
  redis.call('ZREM', KEYS[1], id)
  local key = prefix .. id
  local state = redis.call('HGET', key, 'state')
  if active(state) then
    local times = tonumber(redis.call('HGET', key, 'requeued') or '0')
    if times >= max_requeues then
      give_up(key, id, 'its worker died ' .. (times + 1) .. ' times while holding it (killed, out of memory?)')
    else
      if state == 'running' then state = 'queued' end
      redis.call('HSET', key, 'state', state, 'queued_at', t(clock), 'lease_expired_in', state)
      redis.call('HINCRBY', key, 'requeued', 1)
      send_again(key, id, state, 'requeued')
    end
  end
end

-- 2. the receipt mark: the newest dispatch time received more than a grace ago
local mark = tonumber(redis.call('GET', KEYS[4]) or '0')
for _, sent in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', t(clock - grace))) do
  mark = math.max(mark, tonumber(sent))
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', t(clock - grace))
redis.call('SET', KEYS[4], t(mark))

-- 3. messages lost before any worker received them
local lost = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. t(mark), 'LIMIT', 0, limit)
if redis.call('LLEN', KEYS[5]) == 0 then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', t(clock - grace), 'LIMIT', 0, limit)) do
    table.insert(lost, id)
  end
end
local seen = {}
for _, id in ipairs(lost) do
  if not seen[id] then
    seen[id] = true
    local key = prefix .. id
    local state = redis.call('HGET', key, 'state')
    if not active(state) then
      redis.call('ZREM', KEYS[2], id)
    else
      local times = tonumber(redis.call('HGET', key, 'resent') or '0')
      if times >= max_resends then
        give_up(key, id, 'its message was lost ' .. (times + 1) .. ' times before a worker received it')
      else
        redis.call('HINCRBY', key, 'resent', 1)
        send_again(key, id, state, 'resent')
      end
    end
  end
end
return {out, failed}
"""
)

_UNSENT = """
for i = 2, #ARGV, 2 do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], 0, ARGV[i])
    redis.call('HINCRBY', ARGV[1] .. ARGV[i], ARGV[i + 1], -1)
  end
end
return 1
"""
# a resend the broker refused: due again at the next sweep, and not counted against the job

_COLLECTED = """
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'state') ~= 'succeeded' then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'collected', unpack(cjson.decode(ARGV[2])))
return 1
"""

_REQUEST_RETRY = (
    _LIB
    + """
if redis.call('HGET', KEYS[1], 'state') ~= 'failed' then return 0 end
local clock = now()
redis.call('HSET', KEYS[1], 'last_error_kind', redis.call('HGET', KEYS[1], 'error_kind') or '',
  'last_error_message', redis.call('HGET', KEYS[1], 'error_message') or '')
redis.call('HSET', KEYS[1], 'state', 'queued', 'error_kind', '', 'error_message', '', 'queued_at', t(clock),
  'retries', 0, 'outage_retries', 0, 'requeued', 0, 'resent', 0)
redis.call('HDEL', KEYS[1], 'first_started_at')
redis.call('ZADD', KEYS[2], t(clock), ARGV[1])
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[3])
  redis.call('HSET', KEYS[1], 'journal_bytes', 0)
end
return 1
"""
)

_JOURNAL_START = (
    _CURRENT
    + """
local header = redis.call('LINDEX', KEYS[2], 0)
if header and cjson.decode(header).fingerprint == ARGV[2] then
  redis.call('EXPIRE', KEYS[2], ARGV[4])
  return redis.call('LRANGE', KEYS[2], 1, -1)
end
redis.call('DEL', KEYS[2])
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('HSET', KEYS[1], 'journal_bytes', string.len(ARGV[3]))
return {}
"""
)

_JOURNAL_APPEND = (
    _CURRENT
    + """
local header = redis.call('LINDEX', KEYS[2], 0)
if not header or cjson.decode(header).fingerprint ~= ARGV[2] then return -1 end
if redis.call('LLEN', KEYS[2]) ~= tonumber(ARGV[3]) then return -2 end
local size = tonumber(redis.call('HGET', KEYS[1], 'journal_bytes') or '0') + string.len(ARGV[4])
if size > tonumber(ARGV[5]) then return -3 end
redis.call('RPUSH', KEYS[2], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[6])
redis.call('HSET', KEYS[1], 'journal_bytes', size)
return 1
"""
)
# an append is refused (0) when a newer attempt owns the job, or when the journal is not the one
# this attempt started (-1), has a gap (-2), or is full (-3)

_RECORD_RESUME = (
    _CURRENT
    + """
redis.call('HSET', KEYS[1], 'resumed_from_round', ARGV[2], 'resume_saved_tokens', ARGV[3])
return 1
"""
)

JOURNAL_REFUSALS = {0: "a newer attempt owns the job", -1: "the journal was started by another attempt",
                    -2: "a round is missing before it", -3: "the journal is full"}  # fmt: skip


async def answer_of(coro: Awaitable[Any]) -> Any:
    """Its answer (redis-py types answers `bytes | str`; with `decode_responses` they are `str`,
    and they are parsed into records where they are read); a lost Redis is `StoreUnavailable`."""
    try:
        return await coro
    except ResponseError:
        raise  # a command or script error is a bug, not an outage
    except (RedisError, OSError) as exc:
        raise StoreUnavailable(f"Redis unavailable: {exc}") from exc


def _flat(fields: Mapping[str, Any]) -> str:
    """A hash update as the flat JSON list the scripts unpack into HSET."""
    flat: list[str] = []
    for name, value in fields.items():
        flat += [name, value if isinstance(value, str) else json.dumps(value)]
    return json.dumps(flat)


def _no_redact(text: str) -> str:
    return text


def scrub(value: Any, redact: Redactor) -> Any:
    """`value` (JSON-like) with every string redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list | tuple):
        return [scrub(item, redact) for item in value]
    if isinstance(value, dict):
        return {str(key): scrub(item, redact) for key, item in value.items()}
    return value


class Store:
    def __init__(self, client: aioredis.Redis, redact: Redactor = _no_redact) -> None:
        self.redis = client
        self.redact = redact
        self._scripts = {
            name: client.register_script(source)
            for name, source in (("create", _CREATE_BATCH), ("claim", _CLAIM), ("finish", _FINISH), ("fail", _FAIL),
                                 ("hold", _HOLD), ("release", _RELEASE), ("sweep", _SWEEP), ("unsent", _UNSENT),
                                 ("collected", _COLLECTED), ("request_retry", _REQUEST_RETRY), ("hand_back", _HAND_BACK),
                                 ("journal_start", _JOURNAL_START), ("journal_append", _JOURNAL_APPEND),
                                 ("record_resume", _RECORD_RESUME))
        }  # fmt: skip

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

    async def _run(self, coro: Awaitable[Any]) -> Any:
        return await answer_of(coro)

    async def _script(self, name: str, keys_: Sequence[str], args: Sequence[Any]) -> Any:
        return await self._run(self._scripts[name](keys=list(keys_), args=list(args)))

    # -- batches -------------------------------------------------------------------------

    async def create_batch(self, batch: BatchRecord, jobs: Sequence[NewJob]) -> None:
        """Store the batch, its jobs (queued, each dispatched: its message is to be sent next) and
        their specs, and the batch's results group. Jobs are dispatched in the order given."""
        job_keys = [key for job in jobs for key in (keys.job(job.job_id), keys.job_spec(job.job_id))]
        payloads = [
            json.dumps({"id": job.job_id, "fields": [v for pair in job.stored().items() for v in pair],
                        "spec": job.spec_json})
            for job in jobs
        ]  # fmt: skip
        await self._script(
            "create",
            [keys.batch(batch.batch_id), keys.batches(), keys.batch_jobs(batch.batch_id), keys.dispatched(),
             *job_keys],
            [keys.RECORD_VERSION, _flat(batch.stored()), batch.batch_id, batch.created_at, keys.BATCH_TTL_S,
             *payloads],
        )  # fmt: skip
        await self.ensure_group(batch.batch_id)

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

    async def batch(self, batch_id: str) -> BatchRecord | None:
        raw = await self._run(self.redis.hgetall(keys.batch(batch_id)))
        return BatchRecord.parse(raw, batch_id) if raw else None

    async def batches(self, batch_ids: Iterable[str]) -> list[BatchRecord]:
        ids = list(batch_ids)
        pipe = self.redis.pipeline(transaction=False)
        for batch_id in ids:
            pipe.hgetall(keys.batch(batch_id))
        answers = await self._run(pipe.execute())
        return [BatchRecord.parse(raw, batch_id) for batch_id, raw in zip(ids, answers, strict=True) if raw]

    async def batch_ids(self, limit: int = 50) -> list[str]:
        return list(await self._run(self.redis.zrevrange(keys.batches(), 0, limit - 1)))

    async def job_ids(self, batch_id: str) -> list[str]:
        return list(await self._run(self.redis.zrange(keys.batch_jobs(batch_id), 0, -1)))

    async def jobs(self, job_ids: Iterable[str], only: Sequence[str] | None = None) -> list[JobRecord]:
        """The records of these jobs (those that exist); `only`: read just these fields (the others
        take their defaults)."""
        ids = list(job_ids)
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            if only is None:
                pipe.hgetall(keys.job(job_id))
            else:
                pipe.hmget(keys.job(job_id), ["state", *only])
        answers = await self._run(pipe.execute())
        records = []
        for job_id, answer in zip(ids, answers, strict=True):
            raw = (
                answer if only is None else {n: v for n, v in zip(["state", *only], answer, strict=True) if v}
            )
            if raw:
                records.append(JobRecord.parse(raw, job_id))
        return records

    async def job(self, job_id: str) -> JobRecord | None:
        raw = await self._run(self.redis.hgetall(keys.job(job_id)))
        return JobRecord.parse(raw, job_id) if raw else None

    async def result(self, job_id: str) -> JobResult | None:
        raw = await self._run(self.redis.get(keys.job_result(job_id)))
        return JobResult.parse(raw) if raw else None

    async def fleet_counts(self, queue: str, budgets: Sequence[str]) -> FleetCounts:
        pipe = self.redis.pipeline(transaction=False)
        pipe.llen(keys.broker_queue(queue))
        pipe.zcard(keys.leases())
        pipe.zcard(keys.dispatched())
        pipe.hgetall(keys.rate_limit_waits())
        pipe.hgetall(keys.rate_limit_wait_seconds())
        queued, leased, dispatched, waits, waited = await self._run(pipe.execute())

        def number(values: Mapping[str, str], name: str) -> float:
            try:
                return float(values.get(name) or 0)
            except ValueError:
                return 0.0

        return FleetCounts(int(queued), int(leased), int(dispatched), {n: number(waits, n) for n in budgets},
                           {n: number(waited, n) for n in budgets})  # fmt: skip

    # -- lifecycle -----------------------------------------------------------------------

    async def claim(self, job_id: str, worker: str, lease_s: float) -> ClaimOutcome:
        """A new attempt of `job_id` leased for `lease_s`, or why not."""
        code, payload, raw = await self._script(
            "claim",
            [keys.job(job_id), keys.job_spec(job_id), keys.leases(), keys.dispatched()],
            [worker, keys.BATCH_TTL_S, lease_s, job_id],
        )
        if int(code) < 0:
            return Unknown()
        if int(code) == 0:
            return Refused(JobState(payload))
        record = JobRecord.parse(dict(zip(raw[::2], raw[1::2], strict=True)), job_id)
        return Claimed(attempt=int(code), spec_json=str(payload), job=record)

    async def finish(
        self, job_id: str, batch_id: str, attempt: int, result: Mapping[str, Any], fields: Mapping[str, Any]
    ) -> bool:
        """Record success and announce it to collectors; False when a newer attempt owns the job."""
        payload = json.dumps({**result, "v": keys.RECORD_VERSION, "attempt": attempt})
        done = await self._script(
            "finish",
            [keys.job(job_id), keys.job_result(job_id), keys.batch_results(batch_id), keys.leases(),
             keys.dispatched(), keys.job_journal(job_id)],
            [attempt, payload, _flat(fields), keys.BATCH_TTL_S, job_id],
        )  # fmt: skip
        return bool(done)

    async def fail(self, job_id: str, attempt: int, *, retry_in_s: float | None, kind: str, message: str,
                   fields: Mapping[str, Any], counted: bool = True) -> bool:  # fmt: skip
        """Record a failed attempt: retrying in `retry_in_s` (the job is dispatched again: its retry
        message is to be sent next), or, with None, failed for good. `counted`: the retry spends the
        job's budget (`retries`); not when an outage the fleet paused on is to blame
        (`outage_retries`). False when a newer attempt owns the job."""
        update: dict[str, Any] = {
            **fields,
            "error_kind": kind,
            "error_message": self.redact(message),
            "retry_in_s": round(retry_in_s, 1) if retry_in_s is not None else "",
        }
        if isinstance(update.get("diagnostics"), list):
            update["diagnostics"] = [self.redact(str(line)) for line in update["diagnostics"]]
        state = JobState.RETRYING if retry_in_s is not None else JobState.FAILED
        done = await self._script(
            "fail",
            [keys.job(job_id), keys.leases(), keys.dispatched(), keys.job_journal(job_id)],
            [attempt, str(state), _flat(update), job_id, retry_in_s or 0, "1" if counted else "0"],
        )
        return bool(done)

    async def hand_back(self, job_id: str, attempt: int) -> bool:
        """A worker stopping gives back the attempt it runs: the job is queued and dispatched again
        (its message is to be sent next), nothing counted against it; False when it no longer owns it."""
        done = await self._script(
            "hand_back", [keys.job(job_id), keys.leases(), keys.dispatched()], [attempt, job_id]
        )
        return bool(done)

    async def hold(self, job_ids: Sequence[str], lease_s: float) -> None:
        """This worker holds these jobs: leased for `lease_s` from now (a longer lease is never
        shortened); a job still `dispatched` is now received."""
        if job_ids:
            await self._script(
                "hold", [keys.leases(), keys.dispatched(), keys.receipts()], [lease_s, keys.job(""), *job_ids]
            )

    async def release(self, job_ids: Sequence[str]) -> None:
        """Give back jobs held but not started (a worker shutting down): dispatched again, no count."""
        if job_ids:
            await self._script("release", [keys.leases(), keys.dispatched()], [keys.job(""), *job_ids])

    async def sweep(self, *, queue: str, grace_s: float, max_requeues: int, max_resends: int) -> Swept:
        """Put back on their way the jobs whose holder died or whose message was lost (see the module
        doc); the caller sends their messages. `grace_s`: how long a receipt may lag its delivery."""
        resend, failed = await self._script(
            "sweep",
            [
                keys.leases(),
                keys.dispatched(),
                keys.receipts(),
                keys.receipt_mark(),
                keys.broker_queue(queue),
            ],
            [SWEEP_BATCH, keys.job(""), max_requeues, max_resends, grace_s, WorkerLost.kind],
        )
        return Swept(
            tuple(Resend(str(j), str(s), float(c), str(w)) for j, s, c, w in resend), tuple(map(str, failed))
        )

    async def unsent(self, resends: Sequence[Resend]) -> None:
        """The broker refused these resends: the next sweep takes them again, uncounted."""
        if resends:
            args = [value for resend in resends for value in (resend.job_id, resend.why)]
            await self._script("unsent", [keys.dispatched()], [keys.job(""), *args])

    async def mark_collected(self, job_id: str, attempt: int, fields: Mapping[str, Any]) -> bool:
        update = {**fields, "collected_at": time.time()}
        return bool(await self._script("collected", [keys.job(job_id)], [attempt, _flat(update)]))

    async def request_retry(self, job_id: str, *, fresh: bool = False) -> bool:
        """failed -> queued and dispatched (its message is to be sent next); `fresh`: the next attempt
        starts from the first round, whatever its journal holds."""
        return bool(
            await self._script(
                "request_retry",
                [keys.job(job_id), keys.dispatched(), keys.job_journal(job_id)],
                [job_id, "1" if fresh else "0"],
            )
        )

    # -- the writer's journal ------------------------------------------------------------

    async def journal_start(self, job_id: str, attempt: int, fingerprint: str) -> list[dict[str, Any]] | None:
        """The rounds journaled for this fingerprint (a journal of another one is replaced by an empty
        one); None when a newer attempt owns the job."""
        header = json.dumps({"v": keys.RECORD_VERSION, "fingerprint": fingerprint})
        answer = await self._script(
            "journal_start", [keys.job(job_id), keys.job_journal(job_id)],
            [attempt, fingerprint, header, keys.JOURNAL_TTL_S],
        )  # fmt: skip
        if answer == 0:
            return None
        return [json.loads(entry) for entry in answer]

    async def journal_append(
        self, job_id: str, attempt: int, fingerprint: str, round_: int, entry: Mapping[str, Any]
    ) -> str | None:
        """Append round `round_` (redacted); None when done, else why it was refused."""
        text = json.dumps(scrub(dict(entry), self.redact), ensure_ascii=False)
        code = await self._script(
            "journal_append",
            [keys.job(job_id), keys.job_journal(job_id)],
            [attempt, fingerprint, round_, text, keys.JOURNAL_MAX_BYTES, keys.JOURNAL_TTL_S],
        )
        return None if int(code) == 1 else JOURNAL_REFUSALS.get(int(code), f"refused ({code})")

    async def record_resume(self, job_id: str, attempt: int, from_round: int, saved_tokens: int) -> None:
        await self._script("record_resume", [keys.job(job_id)], [attempt, from_round, saved_tokens])

    # -- logs ----------------------------------------------------------------------------

    async def append_log(self, job_id: str, entries: list[dict[str, str]]) -> None:
        if not entries:
            return
        pipe = self.redis.pipeline(transaction=False)
        for entry in entries:
            safe: dict[str | bytes, str] = {name: self.redact(value) for name, value in entry.items()}
            pipe.xadd(keys.job_log(job_id), safe, maxlen=keys.LOG_MAX_ENTRIES, approximate=True)  # type: ignore[arg-type]  # redis-py's stubs take an invariant dict of every key type
        pipe.expire(keys.job_log(job_id), keys.LOG_TTL_S)
        await self._run(pipe.execute())

    async def read_log(self, job_id: str, after: str = "0", block_ms: int | None = None) -> list[LogEntry]:
        answer = await self._run(self.redis.xread({keys.job_log(job_id): after}, count=500, block=block_ms))
        return [
            LogEntry.parse(entry_id, fields) for _, entries in answer or [] for entry_id, fields in entries
        ]

    # -- results stream (collector) -------------------------------------------------------

    async def read_results(self, batch_ids: list[str], consumer: str, block_ms: int) -> list[ResultEntry]:
        if not batch_ids:
            return []
        streams: dict[Any, Any] = {keys.batch_results(batch_id): ">" for batch_id in batch_ids}
        answer = await self._run(
            self.redis.xreadgroup(keys.COLLECTOR_GROUP, consumer, streams, count=64, block=block_ms)
        )
        return [
            _entry(stream, entry_id, fields)
            for stream, entries in answer or []
            for entry_id, fields in entries
        ]

    async def own_pending(self, batch_id: str, consumer: str) -> list[ResultEntry]:
        """Entries read by a collector of this name and never acknowledged: a collector restarted
        under its name takes them over at once."""
        stream, after = keys.batch_results(batch_id), "0"
        entries: list[ResultEntry] = []
        while True:
            answer = await self._run(self.redis.xreadgroup(keys.COLLECTOR_GROUP, consumer, {stream: after},
                                                           count=64))  # fmt: skip
            read = [(entry_id, fields) for _, items in answer or [] for entry_id, fields in items]
            if not read:
                return entries
            entries += [_entry(stream, entry_id, fields) for entry_id, fields in read if fields]
            after = read[-1][0]

    async def pending_results(self, batch_id: str) -> list[PendingResult]:
        """Every entry of the batch read by some collector and not acknowledged yet."""
        answer = await self._run(
            self.redis.xpending_range(keys.batch_results(batch_id), keys.COLLECTOR_GROUP, min="-", max="+",
                                      count=10_000)
        )  # fmt: skip
        return [PendingResult(batch_id, str(item["message_id"]), str(item["consumer"]),
                              int(item["time_since_delivered"])) for item in answer or []]  # fmt: skip

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


def _entry(stream: str, entry_id: str, fields: Mapping[str, str]) -> ResultEntry:
    batch_id = stream.removeprefix(keys.batch("")).removesuffix(":results")
    return ResultEntry(
        batch_id=batch_id, entry_id=entry_id, job_id=fields["job_id"], attempt=int(fields["attempt"])
    )
