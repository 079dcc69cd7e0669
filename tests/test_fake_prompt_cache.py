"""The scripted model's prompt cache, as providers cache: the longest prefix an earlier request of
the same `prompt_cache_key` shared, in whole blocks of 128 tokens, from 1,024 tokens on."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from offline.fake_llm.prompt_cache import PromptCache, serialise, tokens
from tests.conftest import StandIn
from tests.test_fake_llm import READ_TOOLS, make_spec, start_llm, user_message

pytestmark = pytest.mark.integration
__all__ = ["start_llm"]  # the fixture, used by name

FILLER = "The quick brown fox jumps over the lazy dog; "


def system(chars: int, variant: str = "") -> dict[str, str]:
    """A system message of `chars` characters; `variant` overwrites its start."""
    text = (FILLER * (chars // len(FILLER) + 1))[:chars]
    return {"role": "system", "content": variant + text[len(variant) :]}


def body(messages: list[dict[str, Any]], key: str | None, **extra: Any) -> dict[str, Any]:
    request: dict[str, Any] = {"model": "fake-writer", "messages": messages, **extra}
    if key is not None:
        request["prompt_cache_key"] = key
    return request


def usage(base: str, request: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{base}/v1/chat/completions", json=request, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["usage"]


def cached(base: str, request: dict[str, Any]) -> int:
    return int(usage(base, request)["prompt_tokens_details"]["cached_tokens"])


def streamed_usage(base: str, request: dict[str, Any]) -> dict[str, Any]:
    stream = {**request, "stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=stream, timeout=30) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: {")]
    return json.loads(lines[-1].removeprefix("data: "))["usage"]


def long_request(key: str | None, chars: int = 32_000, spec: str = "PC-1", **extra: Any) -> dict[str, Any]:
    return body([system(chars), user_message(make_spec(spec))], key, **extra)


def test_a_second_identical_request_is_cached_up_to_its_last_full_block(fake_llm: StandIn) -> None:
    request = long_request("identical")
    first = usage(fake_llm.base, request)
    assert first["prompt_tokens_details"]["cached_tokens"] == 0
    again = streamed_usage(fake_llm.base, request)
    assert again["prompt_tokens"] == first["prompt_tokens"] > 8_000
    assert again["prompt_tokens_details"]["cached_tokens"] == first["prompt_tokens"] // 128 * 128


def test_a_request_differing_at_token_1500_is_cached_up_to_the_block_before_it(fake_llm: StandIn) -> None:
    head = len(serialise(None, [{"role": "system", "content": ""}]))
    at = 1500 * 4 - head  # the system text's character at token 1500 of the prompt
    one = system(20_000)
    other = {"role": "system", "content": one["content"][:at] + "#" + one["content"][at + 1 :]}
    user = user_message(make_spec("PC-2"))
    assert cached(fake_llm.base, body([one, user], "differ")) == 0
    assert cached(fake_llm.base, body([other, user], "differ")) == 1500 // 128 * 128 == 1408


def sized(prompt_tokens: int, user: dict[str, str]) -> list[dict[str, Any]]:
    """A system message and `user`, `prompt_tokens` long together."""
    rest = len(serialise(None, [{"role": "system", "content": ""}, user]))
    messages = [system(prompt_tokens * 4 - rest), user]
    assert tokens(serialise(None, messages)) == prompt_tokens
    return messages


def test_nothing_is_cached_below_1024_tokens(fake_llm: StandIn) -> None:
    user = user_message(make_spec("PC-3"))
    under = body(sized(1023, user), "small")
    assert [cached(fake_llm.base, under) for _ in range(2)] == [0, 0]
    over = body(sized(1100, user), "small")
    assert [cached(fake_llm.base, over) for _ in range(2)] == [0, 1024]


def test_a_different_prompt_cache_key_shares_nothing(fake_llm: StandIn) -> None:
    assert cached(fake_llm.base, long_request("key-a", spec="PC-4")) == 0
    assert cached(fake_llm.base, long_request("key-b", spec="PC-4")) == 0
    assert cached(fake_llm.base, long_request("key-a", spec="PC-4")) > 0
    # every request without a key shares one namespace
    assert cached(fake_llm.base, long_request(None, spec="PC-5")) == 0
    assert cached(fake_llm.base, long_request(None, spec="PC-5")) > 0


def test_the_tools_as_sent_open_the_prefix(fake_llm: StandIn) -> None:
    assert cached(fake_llm.base, long_request("tools", spec="PC-6", tools=READ_TOOLS)) == 0
    reordered = long_request("tools", spec="PC-6", tools=list(reversed(READ_TOOLS)))
    assert cached(fake_llm.base, reordered) == 0


def test_the_knob_turns_it_off_for_a_request_which_then_feeds_nothing(fake_llm: StandIn) -> None:
    off = long_request("knob", spec="PC-7", model="fake-writer?prompt_cache=false")
    on = long_request("knob", spec="PC-7")
    assert [cached(fake_llm.base, off) for _ in range(2)] == [0, 0]
    assert cached(fake_llm.base, on) == 0
    assert cached(fake_llm.base, on) > 0
    assert cached(fake_llm.base, off) == 0


def test_the_server_flag_turns_it_off(start_llm: Callable[..., str]) -> None:
    base = start_llm("fake-llm-no-cache", "--no-prompt-cache")
    request = long_request("flag", spec="PC-8", model="fake-writer?prompt_cache=true")
    assert [cached(base, request) for _ in range(2)] == [0, 0]
    stats = httpx.get(f"{base}/stats").json()
    assert stats["prompt_cache"]["enabled"] is False and stats["cached_tokens"] == 0


def test_a_prefix_idle_for_its_ttl_is_forgotten(start_llm: Callable[..., str]) -> None:
    base = start_llm("fake-llm-short-ttl", "--prompt-cache-ttl", "0.5")
    request = long_request("ttl", spec="PC-9")
    assert cached(base, request) == 0
    time.sleep(0.3)
    assert cached(base, request) > 0  # a hit refreshes the prefix...
    time.sleep(0.3)
    assert cached(base, request) > 0
    time.sleep(0.8)
    assert cached(base, request) == 0  # ...idle longer than the TTL, it is gone
    assert httpx.get(f"{base}/stats").json()["prompt_cache"]["expired"] > 0


def test_stats_total_the_prompt_and_cached_tokens_reported(start_llm: Callable[..., str]) -> None:
    base = start_llm("fake-llm-cache-stats")
    reported = [usage(base, long_request("totals", spec="PC-10")) for _ in range(3)]
    stats = httpx.get(f"{base}/stats").json()
    assert stats["prompt_tokens"] == sum(u["prompt_tokens"] for u in reported)
    assert stats["cached_tokens"] == sum(u["prompt_tokens_details"]["cached_tokens"] for u in reported) > 0
    assert stats["prompt_cache"]["lookups"] == 3 and stats["prompt_cache"]["hits"] == 2
    [conversation] = stats["conversations"].values()
    assert (conversation["prompt_tokens"], conversation["cached_tokens"]) == (
        stats["prompt_tokens"],
        stats["cached_tokens"],
    )
    httpx.post(f"{base}/stats/reset").raise_for_status()
    assert cached(base, long_request("totals", spec="PC-10")) == 0  # a reset empties the cache


def test_a_prompt_cache_key_that_is_not_a_string_is_a_400(fake_llm: StandIn) -> None:
    response = httpx.post(f"{fake_llm.base}/v1/chat/completions", json=long_request(None, prompt_cache_key=7))
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "prompt_cache_key"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_beyond_its_capacity_the_least_recently_used_prefixes_go_first() -> None:
    texts = [chr(ord("a") + n) * 4 * 1280 for n in range(3)]  # 1,280 tokens: 3 blocks from the 8th
    cache = PromptCache(ttl_s=300, capacity=6, clock=Clock())
    assert [cache.cached_tokens("k", text) for text in texts[:2]] == [0, 0]
    assert cache.cached_tokens("k", texts[0]) == 1280  # texts[0] is now the most recently used
    assert cache.cached_tokens("k", texts[2]) == 0  # evicts texts[1]
    assert cache.cached_tokens("k", texts[0]) == 1280
    assert cache.cached_tokens("k", texts[1]) == 0
    assert cache.counters.evicted >= 3


def test_an_idle_ttl_expires_entries_and_a_hit_refreshes_them() -> None:
    clock = Clock()
    cache = PromptCache(ttl_s=10, clock=clock)
    text = "x" * 4 * 2048
    assert cache.cached_tokens(None, text) == 0
    clock.now = 9
    assert cache.cached_tokens(None, text) == 2048
    clock.now = 18
    assert cache.cached_tokens(None, text) == 2048
    clock.now = 29
    assert cache.cached_tokens(None, text) == 0
