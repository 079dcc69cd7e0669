"""Fleet-wide rate limits: every worker process of the fleet shares one budget per provider limit.

N workers behind one API key and one MCP server must together stay under the provider's requests
per minute (and tokens per minute), whatever N is. So the budgets live in Redis (the fleet's own
REDIS_URL), counted with the `limits` library's moving window: no sliding interval of the window's
length ever holds more than the budget, unlike a fixed window, which allows twice the budget across
a boundary. Budgets (all optional, None = no limit; see `Settings`):

    FLEET_LLM_RPM   model requests per window      key rfleet:LIMITER/llm-requests/<n>/<w>/second
    FLEET_LLM_TPM   model tokens per window        key rfleet:LIMITER/llm-tokens/<n>/<w>/second
    FLEET_MCP_RPM   MCP requests per window        key rfleet:LIMITER/mcp-requests/<n>/<w>/second
    FLEET_RATE_WINDOW_S  the window, seconds (60: per minute)

What is counted: every HTTP request actually sent. The limiter is an httpx2 *request event hook* on
the client the openai SDK uses and on the one the MCP session uses, so the openai client's own
retries, MCP reconnections, tool listings and the session's housekeeping requests are all charged.
The hook charges the budget, or sleeps until the window has room (read from the window's stats:
when its oldest entry expires, plus a little jitter so waiting workers do not all wake at once),
then lets the request go. Waiting is an `asyncio.sleep`: cancellable (the job's timeout still
applies) and never a busy loop.

Details that keep the guarantee honest:
- The window stored in Redis is the configured one plus `WINDOW_MARGIN_S`, rounded up to whole
  seconds (Redis expiries are whole seconds): a request is charged a few milliseconds before the
  provider sees it, and those milliseconds vary; the margin (and NTP-synchronised clocks: `limits`
  stamps entries with each worker's own clock) keeps the provider's own sliding count under budget.
- A request charged to two budgets (model requests and tokens) is charged to both only when both
  have room; if the second is full, the first charge stays spent (conservative) and the request
  waits and is charged again. The budget that last made this process wait is tried first, so the
  workers racing for a full budget fail on it without spending the other one.
- Tokens are estimated before sending, as providers count them at request time: the characters of
  the request's messages and tools (not the JSON escaping around them) / `CHARS_PER_TOKEN`
  plus the completion: the request's `max_completion_tokens` / `max_tokens` when it sets one, else
  twice the largest of the process's recent completions (`COMPLETION_ALLOWANCE_TOKENS` until five
  are seen, and never more). The estimate is clamped to the budget (a request larger than the
  whole budget would otherwise wait forever). Tokens are stored in units of `budget / MAX_UNITS`
  tokens (costs rounded up, the budget down), so a 2M-token budget is a list of at most 1000 entries.
- Redis unreachable: the limiter fails closed. Nothing is sent unaccounted; the request fails with
  `StoreUnavailable`, a retryable error: the job is retried later by Celery, like any other Redis
  outage (the broker is on the same Redis). redis-py retries a lost connection a few times first.
- A worker waiting on a budget logs it at INFO, at most once per budget every `LOG_EVERY_S` seconds
  per process, so slow jobs have a visible reason.
- Every wait is also counted fleet-wide in Redis (`keys.rate_limit_waits`, and the seconds waited in
  `keys.rate_limit_wait_seconds`), for `robot-fleet metrics`: a process's own counters die with it.
  A count that cannot be written is skipped, never a reason to fail the request.
Set the same budgets on every worker: the key holds the budget and window, so workers configured
differently count in different keys.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

import httpx2
import redis.asyncio as aioredis
import redis.exceptions
from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from worker import keys
from worker.agent.tools import BUDGET_WAIT
from worker.errors import StoreUnavailable
from worker.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

WINDOW_MARGIN_S = 1.0
CHARS_PER_TOKEN = 4
COMPLETION_ALLOWANCE_TOKENS = 2048
MIN_COMPLETION_ALLOWANCE = 256
MIN_OBSERVED_COMPLETIONS = 5
RECENT_COMPLETIONS = 64
MAX_UNITS = 1000
LOG_EVERY_S = 5.0
MIN_SLEEP_S = 0.05
MAX_JITTER_S = 0.1
REDIS_TIMEOUT_S = 5.0
REDIS_RETRIES = 3

RequestHook = Callable[[httpx2.Request], Awaitable[None]]

LLM_REQUESTS = "llm-requests"
LLM_TOKENS = "llm-tokens"
MCP_REQUESTS = "mcp-requests"


@dataclass(frozen=True)
class Budget:
    """One fleet-wide budget: at most `limit` requests (or tokens) in any `window_s` seconds."""

    name: str
    limit: int
    window_s: float
    what: str = "requests"
    unit: int = field(init=False)
    item: RateLimitItemPerSecond = field(init=False)

    def __post_init__(self) -> None:
        if self.limit < 1 or self.window_s <= 0:
            raise ValueError(f"budget {self.name}: limit and window must be positive")
        unit = max(1, math.ceil(self.limit / MAX_UNITS))
        object.__setattr__(self, "unit", unit)
        stored_window = math.ceil(self.window_s + WINDOW_MARGIN_S)
        object.__setattr__(self, "item", RateLimitItemPerSecond(self.limit // unit, stored_window))

    @property
    def capacity(self) -> int:
        """The budget in stored units."""
        return self.item.amount

    def units(self, cost: int) -> int:
        """`cost` requests/tokens in stored units: rounded up, clamped to the whole budget."""
        return max(1, min(math.ceil(cost / self.unit), self.capacity))

    def describe(self) -> str:
        return f"{self.limit} {self.what} per {self.window_s:g}s"


def estimate_tokens(body: bytes, allowance: int = COMPLETION_ALLOWANCE_TOKENS) -> int:
    """Tokens a chat request may cost, as providers count them when it arrives (see module doc):
    the characters of what it says (messages and tools, not the JSON escaping around them) / 4,
    plus its own `max_tokens` or else `allowance` for the completion."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return math.ceil(len(body) / CHARS_PER_TOKEN) + allowance
    completion = allowance
    for name in ("max_completion_tokens", "max_tokens"):
        value = data.get(name)
        if isinstance(value, int) and value > 0:
            completion = value
            break
    return math.ceil(_characters(data.get("messages"), data.get("tools")) / CHARS_PER_TOKEN) + completion


def _characters(*values: object) -> int:
    """Characters of the text in `values` (strings, nested in lists and objects; keys count too)."""
    total, stack = 0, list(values)
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            total += len(value)
        elif isinstance(value, dict):
            total += sum(len(str(key)) for key in value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif value is not None:
            total += len(str(value))
    return total


def _request_body(request: httpx2.Request) -> bytes:
    try:
        return request.content
    except httpx2.RequestNotRead:  # a streamed upload: charge what its headers announce
        return b" " * int(request.headers.get("content-length") or 0)


def limits_uri(redis_url: str) -> str:
    """The `limits` async storage URI of a redis-py URL (redis://, rediss://, unix://)."""
    if redis_url.startswith("unix://"):
        return "async+redis+" + redis_url
    return "async+" + redis_url


class FleetLimiter:
    """The fleet-wide budgets of one worker process (one event loop). Build with `from_settings`."""

    def __init__(
        self,
        redis_url: str,
        *,
        window_s: float = 60.0,
        llm_rpm: int | None = None,
        llm_tpm: int | None = None,
        mcp_rpm: int | None = None,
    ) -> None:
        self.llm_requests = Budget(LLM_REQUESTS, llm_rpm, window_s) if llm_rpm else None
        self.llm_tokens = Budget(LLM_TOKENS, llm_tpm, window_s, "tokens") if llm_tpm else None
        self.mcp_requests = Budget(MCP_REQUESTS, mcp_rpm, window_s) if mcp_rpm else None
        # one connection pool of our own, which `limits` uses and the wait counters share (and which
        # this limiter closes): `limits` offers no way to close the client it would build itself
        self._pool = aioredis.ConnectionPool.from_url(
            redis_url,
            socket_connect_timeout=REDIS_TIMEOUT_S,
            socket_timeout=REDIS_TIMEOUT_S,
            retry=Retry(ExponentialWithJitterBackoff(base=0.2, cap=2.0), REDIS_RETRIES),
        )
        self._client = aioredis.Redis(connection_pool=self._pool)
        self._storage = RedisStorage(
            limits_uri(redis_url),
            wrap_exceptions=True,
            implementation="redispy",
            key_prefix=keys.rate_limits_prefix(),
            connection_pool=self._pool,  # type: ignore[arg-type]  # `limits` annotates its options as scalars; it documents and passes on connection_pool
        )
        self._strategy = MovingWindowRateLimiter(self._storage)
        self._first: Budget | None = None
        self._last_logged: dict[str, float] = {}
        self.waiting: dict[str, int] = {}
        self._completions: deque[int] = deque(maxlen=RECENT_COMPLETIONS)
        self.waits = 0
        """Times a request of this process had to wait for room (for tests and diagnostics)."""
        self.waited_s = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> FleetLimiter | None:
        """The process's limiter, or None when no fleet-wide budget is configured."""
        if not (settings.fleet_llm_rpm or settings.fleet_llm_tpm or settings.fleet_mcp_rpm):
            return None
        return cls(
            settings.redis_url,
            window_s=settings.fleet_rate_window_s,
            llm_rpm=settings.fleet_llm_rpm,
            llm_tpm=settings.fleet_llm_tpm,
            mcp_rpm=settings.fleet_mcp_rpm,
        )

    # -- the httpx2 request hooks

    def model_hooks(self) -> list[RequestHook]:
        """Request hooks for the model's HTTP client (empty when no model budget is set)."""
        return [self.before_model_request] if self.llm_requests or self.llm_tokens else []

    def mcp_hooks(self) -> list[RequestHook]:
        """Request hooks for the MCP session's HTTP client (empty when no MCP budget is set)."""
        return [self.before_mcp_request] if self.mcp_requests else []

    async def before_model_request(self, request: httpx2.Request) -> None:
        charges: list[tuple[Budget, int]] = []
        if self.llm_requests is not None:
            charges.append((self.llm_requests, 1))
        if self.llm_tokens is not None:
            body = _request_body(request)
            if body:
                charges.append((self.llm_tokens, estimate_tokens(body, self.completion_allowance())))
        await self.acquire(charges)

    def observe_completion(self, tokens: int) -> None:
        """A completion's real size (from the provider's usage): the allowance follows what the
        model really writes instead of charging the worst case to every request."""
        self._completions.append(max(0, tokens))

    def completion_allowance(self) -> int:
        """Twice the largest of the recent completions (the fixed allowance until a few are seen),
        never above it: a budget charged for completions never written is a budget left unused."""
        if len(self._completions) < MIN_OBSERVED_COMPLETIONS:
            return COMPLETION_ALLOWANCE_TOKENS
        return min(COMPLETION_ALLOWANCE_TOKENS, max(MIN_COMPLETION_ALLOWANCE, 2 * max(self._completions)))

    async def before_mcp_request(self, request: httpx2.Request) -> None:
        if self.mcp_requests is not None:
            await self.acquire([(self.mcp_requests, 1)])

    # -- acquiring

    async def acquire(self, charges: Iterable[tuple[Budget, int]]) -> None:
        """Charge every (budget, cost), waiting until all of them have room. Cancellable.

        Raises `StoreUnavailable` (retryable) when Redis cannot be reached."""
        pending = [(budget, budget.units(cost)) for budget, cost in charges if cost > 0]
        while pending:
            pending.sort(key=lambda charge: charge[0] is not self._first)
            for budget, units in pending:
                if not await self._redis(self._strategy.hit(budget.item, budget.name, cost=units)):
                    self._first = budget
                    await self._wait_for_room(budget, units)
                    break
            else:
                return

    async def _wait_for_room(self, budget: Budget, units: int) -> None:
        started = time.monotonic()
        caller = BUDGET_WAIT.get()  # a tool call's clock: this wait is not the server's time
        if caller is not None:
            caller.since = asyncio.get_running_loop().time()
        self.waits += 1
        self.waiting[budget.name] = self.waiting.get(budget.name, 0) + 1
        try:
            await self._count_wait(keys.rate_limit_waits(), budget, 1)
            logged = False
            while True:
                reset_at, remaining = await self._redis(
                    self._strategy.get_window_stats(budget.item, budget.name)
                )
                if remaining >= units:
                    await self._count_wait(keys.rate_limit_wait_seconds(), budget, time.monotonic() - started)
                    return
                delay = max(reset_at - time.time(), MIN_SLEEP_S) + random.uniform(0, MAX_JITTER_S)
                if not logged:
                    logged = self._log_wait(budget, delay)
                await asyncio.sleep(delay)
        finally:
            self.waiting[budget.name] -= 1
            self.waited_s += time.monotonic() - started
            if caller is not None and caller.since is not None:
                caller.waited_s += asyncio.get_running_loop().time() - caller.since
                caller.since = None

    async def _count_wait(self, key: str, budget: Budget, amount: float) -> None:
        """Add `amount` to the budget's fleet-wide wait counter in `key` (best effort: see module doc)."""
        try:
            await self._client.hincrbyfloat(key, budget.name, amount)
        except (redis.exceptions.RedisError, OSError) as exc:
            logger.debug("fleet-wide limit: could not count a wait on %s: %s", budget.name, exc)

    def _log_wait(self, budget: Budget, delay: float) -> bool:
        now = time.monotonic()
        if now - self._last_logged.get(budget.name, -math.inf) < LOG_EVERY_S:
            return False
        self._last_logged[budget.name] = now
        logger.info(
            "fleet-wide limit reached: %s (%s) is used up; waiting %.1fs before sending "
            "(%d requests of this worker waiting on it)",
            budget.name,
            budget.describe(),
            delay,
            self.waiting.get(budget.name, 0),
        )
        return True

    async def _redis(self, operation: Awaitable[T]) -> T:
        try:
            return await operation
        except (StorageError, redis.exceptions.RedisError, OSError) as exc:
            cause = exc.storage_error if isinstance(exc, StorageError) else exc
            raise StoreUnavailable(
                f"fleet rate limiter: Redis unreachable ({type(cause).__name__}: {cause}); "
                "nothing is sent unaccounted, the job is retried later"
            ) from exc

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._pool.aclose()
