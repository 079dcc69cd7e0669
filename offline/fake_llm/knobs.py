"""The scripted model's knobs: one frozen dataclass, server defaults, per-request overrides.

Overrides come, later winning, from the model name's query string
(`fake-writer?tool_calls=whole&quirks=thinking,empty_ids`), the `X-Fake-LLM` header (the same
query syntax, or a JSON object) and a `"fake_llm": {...}` object inside the spec JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import parse_qsl

from offline.fake_llm.prompt_cache import DEFAULT_CAPACITY, DEFAULT_TTL_S

TOOL_CALL_MODES = ("split", "whole", "parallel")
QUIRKS = ("thinking", "index0", "empty_ids", "missing_index", "args_object", "stop_with_tools")
DRAFTS = (
    "none",
    "syntax",
    "unknown_keyword",
    "wrong_args",
    "missing_resource",
    "fails_when_run",
    "log_only",
    "placeholder",
    "undefined_variable",
    "rule_breaking",
)
NO_ANSWERS = ("none", "empty", "loop")
UPFRONT = ("read", "ignore")
REVIEWS = ("pass", "violation", "uncovered", "malformed", "refusal", "no_json_schema", "error500", "obey")
FAIL_STATUSES = (429, 500, 400)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class KnobError(ValueError):
    """An override names an unknown knob or gives it a value it cannot take."""


@dataclass(frozen=True)
class Knobs:
    """How the scripted model behaves for one request."""

    latency: float = 0.0
    # seconds before the first chunk of each response
    chunk_latency: float = 0.0
    # seconds between chunks
    tool_calls: str = "split"
    # split (arguments over many chunks) | whole (one chunk per call) | parallel (several calls a turn)
    quirks: frozenset[str] = field(default_factory=frozenset)
    # provider quirks, see QUIRKS
    rate_429: float = 0.0
    # probability of a 429 (seeded RNG)
    retry_after: float = 1.0
    # seconds sent in the Retry-After header of a 429
    rate_500: float = 0.0
    # probability of a 500
    rate_400: float = 0.0
    # probability of a 400
    fail_first: int = 0
    # fail the first N requests of each conversation...
    fail_status: int = 429
    # ...with this status
    draft: str = "none"
    # see DRAFTS: the first answer is broken one way; a repair fixes what its diagnostics name
    fences: bool = False
    # wrap final answers in ```robot fences with chatter around them
    no_answer: str = "none"
    # none | empty (empty final turn) | loop (calls get_repository_tree forever)
    evil: bool = False
    # call write tools, a foreign project and an unoffered tool before answering
    review: str = "pass"
    # see REVIEWS: how the reviewer answers a review request (reviewer.py)
    prompt_cache: bool = True
    # false: this request neither uses nor feeds the prompt cache (cached_tokens 0)
    upfront: str = "read"
    # read (the files and keyword catalog the prompt gives count as read) | ignore (the writer reads
    # everything with the tools, as for a prompt that gives nothing: tool-call shapes show)

    def merged(self, overrides: Mapping[str, Any]) -> Knobs:
        """A copy with `overrides` applied (values may be strings, as in a query string)."""
        if not overrides:
            return self
        changes = {name: _coerce(name, value) for name, value in overrides.items()}
        return replace(self, **changes)


_FIELDS = {f.name: f for f in fields(Knobs)}


def _coerce(name: str, value: Any) -> Any:
    """Parse one override value into the knob's type, checking its allowed values."""
    name = name.strip().replace("-", "_")
    if name not in _FIELDS:
        raise KnobError(f"unknown fake_llm knob {name!r}; known: {', '.join(sorted(_FIELDS))}")
    default = _FIELDS[name].default
    try:
        if name == "quirks":
            parsed: Any = _quirks(value)
        elif isinstance(default, bool):
            parsed = _boolean(value)
        elif isinstance(default, int):
            parsed = int(value)
        elif isinstance(default, float):
            parsed = float(value)
        else:
            parsed = str(value).strip()
    except (TypeError, ValueError) as exc:
        raise KnobError(f"fake_llm knob {name}: cannot use {value!r}: {exc}") from exc
    _check_choice(name, parsed)
    return parsed


def _check_choice(name: str, value: Any) -> None:
    choices: dict[str, tuple[Any, ...]] = {
        "tool_calls": TOOL_CALL_MODES,
        "draft": DRAFTS,
        "no_answer": NO_ANSWERS,
        "upfront": UPFRONT,
        "review": REVIEWS,
        "fail_status": FAIL_STATUSES,
    }
    if name in choices and value not in choices[name]:
        raise KnobError(f"fake_llm knob {name}: {value!r} is not one of {choices[name]}")
    if isinstance(value, float | int) and not isinstance(value, bool) and value < 0:
        raise KnobError(f"fake_llm knob {name}: {value!r} must not be negative")


def _quirks(value: Any) -> frozenset[str]:
    items = value if isinstance(value, list | tuple | set | frozenset) else str(value).split(",")
    quirks = frozenset(str(item).strip() for item in items if str(item).strip())
    unknown = quirks - set(QUIRKS)
    if unknown:
        raise ValueError(f"unknown quirks {sorted(unknown)}; known: {', '.join(QUIRKS)}")
    return quirks


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("expected a boolean")


def parse_query(text: str) -> dict[str, str]:
    """`a=1&quirks=x,y` -> {"a": "1", "quirks": "x,y"}; a bare name means true."""
    pairs = parse_qsl(text, keep_blank_values=True)
    return {key: (value if value != "" else "true") for key, value in pairs}


def model_overrides(model: str) -> dict[str, str]:
    """Overrides from a model name such as `fake-writer?tool_calls=whole`."""
    _, sep, query = model.partition("?")
    return parse_query(query) if sep else {}


def header_overrides(header: str | None) -> dict[str, Any]:
    """Overrides from the `X-Fake-LLM` header: a JSON object or query syntax."""
    if not header or not header.strip():
        return {}
    text = header.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise KnobError(f"X-Fake-LLM header is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise KnobError("X-Fake-LLM header JSON must be an object")
        return data
    return parse_query(text.lstrip("?"))


def spec_overrides(spec: Mapping[str, Any] | None) -> dict[str, Any]:
    """Overrides from the spec's `fake_llm` object."""
    if not spec:
        return {}
    value = spec.get("fake_llm")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise KnobError("the spec's fake_llm field must be an object")
    return value


def resolve(defaults: Knobs, model: str, header: str | None, spec: Mapping[str, Any] | None) -> Knobs:
    """Server defaults, then the model name, then the header, then the spec."""
    knobs = defaults.merged(model_overrides(model))
    knobs = knobs.merged(header_overrides(header))
    return knobs.merged(spec_overrides(spec))


@dataclass(frozen=True)
class ServerConfig:
    """What `build_app` needs: the default knobs, the fault RNG's seed and the server-wide limits
    (these are not knobs: no request can change them)."""

    knobs: Knobs = field(default_factory=Knobs)
    seed: int = 0
    # seeds the RNG behind rate_429 / rate_500 / rate_400
    model_name: str = "fake-writer"
    # the id listed by GET /v1/models
    rate_window: float = 60.0
    # seconds of the sliding window behind rpm / tpm and the stats' "window" peak
    rpm: int | None = None
    # at most this many requests per rate_window (server-wide), else 429 with Retry-After
    tpm: int | None = None
    # at most this many tokens per rate_window (server-wide), else 429 with Retry-After
    prompt_cache: bool = True
    # false: a provider without prompt caching, whatever a request's knob says
    prompt_cache_ttl: float = DEFAULT_TTL_S
    # seconds a cached prefix lives after its last use
    prompt_cache_capacity: int = DEFAULT_CAPACITY
    # block-aligned prefixes remembered; beyond it the least recently used are forgotten
