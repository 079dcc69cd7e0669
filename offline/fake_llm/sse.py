"""Turns the writer's action into what the wire carries: `chat.completion.chunk` objects for a
stream (with the provider quirks the knobs ask for) or one `chat.completion` object.

Quirk shapes (see `Knobs.quirks`):
- thinking: `delta.content` is a list of parts, Mistral magistral's shape:
  `[{"type": "thinking", "thinking": [{"type": "text", "text": "..."}]}]`, then the answer as
  `[{"type": "text", "text": "..."}]`.
- index0: every tool-call delta has `index` 0; each new call starts with its id and name.
- missing_index: tool-call deltas have no `index` key.
- empty_ids: tool-call ids are "".
- args_object: `function.arguments` is a JSON object, sent whole in the call's first chunk.
- stop_with_tools: `finish_reason` "stop" although tool calls were sent.

A turn whose function the request forced (`tool_choice`) finishes with "stop", as the real API
does; a `Refusal` streams `delta.refusal` pieces and no content.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from dataclasses import dataclass
from typing import Any

from offline.fake_llm.history import Call
from offline.fake_llm.knobs import Knobs
from offline.fake_llm.policy import Action, Answer, RawCall, Refusal, ToolTurn

ALPHANUMERIC = string.ascii_letters + string.digits
ARGUMENT_PIECE = 8
FINGERPRINT = "fp_fakellm01"


@dataclass(frozen=True)
class Meta:
    """What every chunk of one response repeats."""

    id: str
    created: int
    model: str


def random_id(prefix: str, length: int) -> str:
    return prefix + "".join(secrets.choice(ALPHANUMERIC) for _ in range(length))


def completion_id() -> str:
    return random_id("chatcmpl-", 29)


def tool_call_ids(action: Action, knobs: Knobs) -> list[str]:
    """OpenAI-looking ids (`call_` + 24 alphanumerics), or "" with the empty_ids quirk."""
    count = len(action.calls) if isinstance(action, ToolTurn) else 0
    return ["" if "empty_ids" in knobs.quirks else random_id("call_", 24) for _ in range(count)]


def arguments_text(call: Call | RawCall) -> str:
    """A call's `function.arguments` as sent: JSON of its arguments, or a raw call's text."""
    return call.arguments if isinstance(call, RawCall) else json.dumps(call.arguments)


def arguments_object(call: Call | RawCall) -> Any:
    """The args_object quirk's `function.arguments`: an object, or the text when it is none."""
    if isinstance(call, Call):
        return dict(call.arguments)
    try:
        value = json.loads(call.arguments)
    except ValueError:
        return call.arguments
    return value if isinstance(value, dict) else call.arguments


def finish_reason(action: Action, knobs: Knobs) -> str:
    if not isinstance(action, ToolTurn) or action.forced or "stop_with_tools" in knobs.quirks:
        return "stop"
    return "tool_calls"


def text_pieces(text: str) -> list[str]:
    """Word-sized pieces that join back to `text` exactly."""
    return [piece for piece in re.split(r"(?<=\s)(?=\S)", text) if piece]


def output_chars(action: Action, knobs: Knobs) -> int:
    """Characters generated, for completion_tokens (thinking counts when it is sent)."""
    size = len(action.thinking) if "thinking" in knobs.quirks else 0
    if isinstance(action, Answer | Refusal):
        return size + len(action.text)
    return size + sum(len(c.name) + len(arguments_text(c)) for c in action.calls)


def _chunk(meta: Meta, delta: dict[str, Any], finish: str | None, usage_field: bool) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "id": meta.id,
        "object": "chat.completion.chunk",
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": FINGERPRINT,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if usage_field:
        chunk["usage"] = None
    return chunk


def _call_deltas(action: ToolTurn, ids: list[str], knobs: Knobs) -> list[list[dict[str, Any]]]:
    """The `tool_calls` list of each chunk, in order."""
    deltas: list[list[dict[str, Any]]] = []
    for position, (call_id, call) in enumerate(zip(ids, action.calls, strict=True)):
        index = 0 if "index0" in knobs.quirks else position
        arguments = arguments_text(call)
        head: dict[str, Any] = {"index": index, "id": call_id, "type": "function"}
        if "args_object" in knobs.quirks:
            deltas.append([{**head, "function": {"name": call.name, "arguments": arguments_object(call)}}])
        elif knobs.tool_calls == "whole":
            deltas.append([{**head, "function": {"name": call.name, "arguments": arguments}}])
        else:
            deltas.append([{**head, "function": {"name": call.name, "arguments": ""}}])
            for start in range(0, len(arguments), ARGUMENT_PIECE):
                piece = arguments[start : start + ARGUMENT_PIECE]
                deltas.append([{"index": index, "function": {"arguments": piece}}])
    if "missing_index" in knobs.quirks:
        for delta in deltas:
            for entry in delta:
                entry.pop("index", None)
    return deltas


def _content_deltas(action: Action, knobs: Knobs) -> list[dict[str, Any]]:
    deltas: list[dict[str, Any]] = []
    thinking = "thinking" in knobs.quirks
    if thinking:
        for piece in text_pieces(action.thinking):
            deltas.append({"content": [{"type": "thinking", "thinking": [{"type": "text", "text": piece}]}]})
    if isinstance(action, Answer):
        for piece in text_pieces(action.text):
            deltas.append({"content": [{"type": "text", "text": piece}] if thinking else piece})
    if isinstance(action, Refusal):
        deltas += [{"refusal": piece} for piece in text_pieces(action.text)]
    return deltas


def stream_chunks(
    action: Action, knobs: Knobs, meta: Meta, ids: list[str], usage: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """All chunks of one streamed turn; with `usage`, a last chunk with no choices carries it."""
    usage_field = usage is not None
    silent = isinstance(action, ToolTurn | Refusal)
    first = {"role": "assistant", "content": None if silent else "", "refusal": None}
    chunks = [_chunk(meta, first, None, usage_field)]
    chunks += [_chunk(meta, delta, None, usage_field) for delta in _content_deltas(action, knobs)]
    if isinstance(action, ToolTurn):
        chunks += [
            _chunk(meta, {"tool_calls": d}, None, usage_field) for d in _call_deltas(action, ids, knobs)
        ]
    chunks.append(_chunk(meta, {}, finish_reason(action, knobs), usage_field))
    if usage is not None:
        last = _chunk(meta, {}, None, True)
        last["choices"] = []
        last["usage"] = usage
        chunks.append(last)
    return chunks


def _message(action: Action, knobs: Knobs, ids: list[str]) -> dict[str, Any]:
    text = action.text if isinstance(action, Answer) else ""
    content: Any = text or None
    if "thinking" in knobs.quirks:
        content = [{"type": "thinking", "thinking": [{"type": "text", "text": action.thinking}]}]
        content += [{"type": "text", "text": text}] if text else []
    refusal = action.text if isinstance(action, Refusal) else None
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": refusal}
    if isinstance(action, ToolTurn):
        object_args = "args_object" in knobs.quirks
        message["tool_calls"] = [
            {
                "id": call_id,
                "type": "function",
                "function": {
                    "name": call.name,
                    "arguments": arguments_object(call) if object_args else arguments_text(call),
                },
            }
            for call_id, call in zip(ids, action.calls, strict=True)
        ]
    return message


def completion_body(
    action: Action, knobs: Knobs, meta: Meta, ids: list[str], usage: dict[str, Any]
) -> dict[str, Any]:
    """The non-streaming `chat.completion` object."""
    finish = finish_reason(action, knobs)
    return {
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": FINGERPRINT,
        "choices": [
            {"index": 0, "message": _message(action, knobs, ids), "logprobs": None, "finish_reason": finish}
        ],
        "usage": usage,
    }


def sse_line(payload: dict[str, Any] | str) -> bytes:
    """One `data:` event, compact JSON like the real API."""
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()
