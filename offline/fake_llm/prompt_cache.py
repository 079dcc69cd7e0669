"""Prompt caching as providers do it (OpenAI's model; Mistral's and others' are alike).

A request's prompt is what the model reads: the tools as sent, then the messages in order (role,
content, tool calls), serialised one fixed way (`serialise`) and cut into the fake tokenizer's
tokens (4 characters each; `prompt_tokens` counts the same text). The cached part of a request is
the longest prefix an earlier request with the same `prompt_cache_key` shared, in whole blocks of
128 tokens and only from 1,024 tokens on.

Only hashes are kept: one per block-aligned prefix, each chained on the one before, so finding the
hash of block k means the first k blocks are the same text. An entry not seen for the idle TTL is
forgotten, and beyond the capacity the least recently seen go first (an `OrderedDict` kept in
last-seen order makes both cheap).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from offline.fake_llm.protocol import content_text

CHARS_PER_TOKEN = 4
BLOCK_TOKENS = 128
MIN_CACHED_TOKENS = 1024
BLOCK_CHARS = BLOCK_TOKENS * CHARS_PER_TOKEN
MIN_BLOCKS = MIN_CACHED_TOKENS // BLOCK_TOKENS
DEFAULT_TTL_S = 300.0
# OpenAI keeps a prefix 5 to 10 minutes after its last use
DEFAULT_CAPACITY = 200_000
# block-aligned prefixes remembered server-wide (a 60k-token prompt stores about 470)
NO_KEY = ""
# the namespace of every request that sends no prompt_cache_key


def serialise(tools: Any, messages: Sequence[Mapping[str, Any]]) -> str:
    """The prompt as one text: compact JSON of the tools (their order and keys as sent), then each
    message as `<|role|>content`, each of its tool calls as `<|call|>name(arguments)`."""
    parts = []
    if tools:
        parts.append("<|tools|>" + json.dumps(tools, ensure_ascii=False, separators=(",", ":")))
    for message in messages:
        parts.append(f"<|{message.get('role')}|>{content_text(message.get('content'))}")
        for call in message.get("tool_calls") or []:
            function = (call.get("function") if isinstance(call, dict) else None) or {}
            arguments = function.get("arguments", "")
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))
            parts.append(f"<|call|>{function.get('name', '')}({arguments})")
    return "".join(parts)


def tokens(text: str) -> int:
    """The fake tokenizer: token i is characters 4i to 4i+3."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def block_hashes(text: str) -> list[bytes]:
    """The chained hash of each whole block of 128 tokens (the last may end in a short token)."""
    hashes = []
    previous = b""
    for index in range(tokens(text) // BLOCK_TOKENS):
        block = text[index * BLOCK_CHARS : (index + 1) * BLOCK_CHARS].encode()
        previous = hashlib.blake2b(previous + block, digest_size=16).digest()
        hashes.append(previous)
    return hashes


@dataclass
class CacheCounters:
    """What `/stats` shows of the cache."""

    lookups: int = 0
    hits: int = 0
    # lookups that found at least MIN_CACHED_TOKENS
    expired: int = 0
    evicted: int = 0


class PromptCache:
    """Block-aligned prefix hashes per `prompt_cache_key`, with their last-seen time."""

    def __init__(
        self,
        ttl_s: float = DEFAULT_TTL_S,
        capacity: int = DEFAULT_CAPACITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.capacity = capacity
        self.counters = CacheCounters()
        self._clock = clock
        self._seen: OrderedDict[tuple[str, bytes], float] = OrderedDict()

    def cached_tokens(self, key: str | None, text: str) -> int:
        """The tokens of `text` an earlier request of namespace `key` shared, then `text` is
        remembered (a hit refreshes the prefixes it used)."""
        now = self._clock()
        self._expire(now)
        namespace = key or NO_KEY
        # blocks before MIN_BLOCKS are never reported alone: the chain makes storing them needless
        hashes = block_hashes(text)[MIN_BLOCKS - 1 :]
        shared = 0
        for digest in hashes:
            if (namespace, digest) not in self._seen:
                break
            shared += 1
        self._remember(namespace, hashes, now)
        self.counters.lookups += 1
        self.counters.hits += 1 if shared else 0
        return (MIN_BLOCKS - 1 + shared) * BLOCK_TOKENS if shared else 0

    def _remember(self, namespace: str, hashes: list[bytes], now: float) -> None:
        # longest prefix first: under pressure the least recently used, longest prefixes go first,
        # and a shorter prefix of the same request stays usable
        for digest in reversed(hashes):
            entry = (namespace, digest)
            self._seen[entry] = now
            self._seen.move_to_end(entry)
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
            self.counters.evicted += 1

    def _expire(self, now: float) -> None:
        while self._seen:
            entry, seen = next(iter(self._seen.items()))
            if now - seen <= self.ttl_s:
                return
            del self._seen[entry]
            self.counters.expired += 1

    def as_json(self) -> dict[str, Any]:
        return {
            "entries": len(self._seen),
            "ttl_s": self.ttl_s,
            "capacity": self.capacity,
            **vars(self.counters),
        }
