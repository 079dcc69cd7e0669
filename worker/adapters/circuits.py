"""The fleet's circuits in Redis: one per dependency every job needs (the model provider, the MCP
server), shared by every worker, so the whole fleet pauses on an outage at once. Each step is one
script on the server's clock; the decisions (when to open, how often to probe) are the caller's
(`worker.fleet.breaker`).

    failed     a job's attempt failed on the dependency: counted among the different jobs failing
               in a row; the `threshold`-th opens the circuit. Answers whether it is open (the
               failure is then the outage's, not the job's)
    succeeded  a job finished: failures are no longer "in a row" (an open circuit stays open: only
               a probe closes it, since a job may finish from cached reads)
    probed     a probe failed: the next one is due in `next_in_s`
    close      a probe got an answer: the fleet resumes
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from worker import keys
from worker.adapters.store import LUA_CLOCK, Redactor, Store, answer_of
from worker.records import CircuitRecord, Dependency

_FAILED = (
    LUA_CLOCK
    + """
local clock = now()
redis.call('HSET', KEYS[1], 'last_kind', ARGV[5], 'last_error', ARGV[6], 'last_failure_at', t(clock))
if redis.call('HGET', KEYS[1], 'circuit') == 'open' then return {1, 0} end
redis.call('ZADD', KEYS[2], t(clock), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', t(clock - tonumber(ARGV[3])))
redis.call('EXPIRE', KEYS[2], math.ceil(tonumber(ARGV[3])))
local failing = redis.call('ZCARD', KEYS[2])
if failing < tonumber(ARGV[2]) then return {0, 0} end
redis.call('HSET', KEYS[1], 'circuit', 'open', 'opened_at', t(clock), 'next_probe_at', t(clock + tonumber(ARGV[4])),
  'probes', 0, 'reason', failing .. ' different jobs failed on it in a row, the last: ' .. ARGV[5] .. ': ' .. ARGV[6])
redis.call('HINCRBY', KEYS[1], 'pauses', 1)
redis.call('DEL', KEYS[2])
return {1, 1, t(clock)}
"""
)

_SUCCEEDED = """
redis.call('DEL', KEYS[1], KEYS[2])
return 1
"""

_PROBED = (
    LUA_CLOCK
    + """
if redis.call('HGET', KEYS[1], 'circuit') ~= 'open' then return -1 end
redis.call('HSET', KEYS[1], 'next_probe_at', t(now() + tonumber(ARGV[1])), 'last_kind', ARGV[2], 'last_error', ARGV[3])
return redis.call('HINCRBY', KEYS[1], 'probes', 1)
"""
)

_CLOSE = (
    LUA_CLOCK
    + """
redis.call('DEL', KEYS[2])
if redis.call('HGET', KEYS[1], 'circuit') ~= 'open' then return '-1' end
local clock = now()
local paused = clock - tonumber(redis.call('HGET', KEYS[1], 'opened_at') or clock)
redis.call('HSET', KEYS[1], 'circuit', 'closed', 'closed_at', t(clock), 'next_probe_at', '')
redis.call('HINCRBYFLOAT', KEYS[1], 'paused_s', t(paused))
return t(paused)
"""
)

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


@dataclass(frozen=True)
class Failed:
    """What recording a failure answered."""

    open: bool
    """The circuit is open: the failure is the outage's."""
    opened: bool
    """This failure opened it."""
    opened_at: float = 0.0


@dataclass(frozen=True)
class CircuitsView:
    circuits: tuple[CircuitRecord, ...]
    now: float
    """The Redis server's clock when they were read (their times are on it)."""

    @property
    def paused(self) -> tuple[CircuitRecord, ...]:
        return tuple(circuit for circuit in self.circuits if circuit.paused)


class Circuits:
    """The circuits' scripts, on the store's connection and redactor (errors may quote a provider)."""

    def __init__(self, store: Store) -> None:
        self._redis = store.redis
        self._redact: Redactor = store.redact
        self._scripts = {
            name: store.redis.register_script(source)
            for name, source in (("failed", _FAILED), ("succeeded", _SUCCEEDED), ("probed", _PROBED),
                                 ("close", _CLOSE), ("unlock", _UNLOCK))
        }  # fmt: skip

    def redact(self, text: str) -> str:
        return self._redact(text)

    async def _script(self, name: str, keys_: Sequence[str], args: Sequence[str | int | float]) -> object:
        return await answer_of(self._scripts[name](keys=list(keys_), args=list(args)))

    @staticmethod
    def _keys(dependency: Dependency) -> list[str]:
        return [keys.circuit(dependency), keys.circuit_failing(dependency)]

    async def failed(self, dependency: Dependency, job_id: str, *, threshold: int, first_probe_s: float,
                     kind: str, message: str) -> Failed:  # fmt: skip
        answer = await self._script(
            "failed", self._keys(dependency),
            [job_id, threshold, keys.CIRCUIT_FAILING_TTL_S, first_probe_s, kind, self._redact(message)[:500]],
        )  # fmt: skip
        values = list(answer) if isinstance(answer, list) else [0, 0]
        return Failed(bool(values[0]), bool(values[1]), float(values[2]) if len(values) > 2 else 0.0)

    async def succeeded(self, dependencies: Sequence[Dependency]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for dependency in dependencies:
            pipe.delete(keys.circuit_failing(dependency))
        await answer_of(pipe.execute())

    async def probed(self, dependency: Dependency, *, next_in_s: float, kind: str, message: str) -> int:
        """A failed probe; answers the probes failed so far (-1: the circuit closed meanwhile)."""
        answer = await self._script(
            "probed", self._keys(dependency), [next_in_s, kind, self._redact(message)[:500]]
        )
        return int(str(answer))

    async def close(self, dependency: Dependency) -> float | None:
        """The dependency answered: the fleet resumes. Answers how long it was paused (None: it was
        not, or another worker closed it first)."""
        paused = float(str(await self._script("close", self._keys(dependency), [])))
        return paused if paused >= 0 else None

    async def read(self) -> CircuitsView:
        pipe = self._redis.pipeline(transaction=False)
        for dependency in Dependency:
            pipe.hgetall(keys.circuit(dependency))
            pipe.zcard(keys.circuit_failing(dependency))
        pipe.time()
        *answers, (seconds, micros) = await answer_of(pipe.execute())
        circuits = tuple(
            CircuitRecord.parse(dependency, answers[2 * n], int(answers[2 * n + 1]))
            for n, dependency in enumerate(Dependency)
        )
        return CircuitsView(circuits, int(seconds) + int(micros) / 1_000_000)

    async def lock_probe(self, dependency: Dependency, holder: str, ttl_s: float) -> bool:
        """One prober at a time, fleet-wide; the lock expires on its own after `ttl_s`."""
        locked = await answer_of(
            self._redis.set(keys.circuit_probe(dependency), holder, nx=True, px=int(ttl_s * 1000))
        )
        return bool(locked)

    async def unlock_probe(self, dependency: Dependency, holder: str) -> None:
        await self._script("unlock", [keys.circuit_probe(dependency)], [holder])
