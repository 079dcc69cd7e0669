"""Checks an incoming chat request the way the real API does, and reads message text.

A failed check raises `ProtocolError`, which the app turns into a 400 with the real API's
`{"error": {"message", "type", "param", "code"}}` body.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ROLES = ("system", "developer", "user", "assistant", "tool")
UNANSWERED = (
    "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
    "'tool_call_id'. The following tool_call_ids did not have response messages: {ids}"
)
RESPONSE_FORMATS = ("json_object", "json_schema", "text")
JSON_WORD = (
    "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'."
)
TOOL_CHOICE_WITHOUT_TOOLS = (
    "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified."
)
ORPHAN = (
    "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with "
    "'tool_calls'."
)


@dataclass
class ProtocolError(Exception):
    """A request the real API would refuse with a 400 `invalid_request_error`."""

    message: str
    param: str | None = None
    code: str | None = None

    def __str__(self) -> str:
        return self.message


def validate_request(body: Any) -> None:
    """Raise `ProtocolError` unless `body` is a chat request with a valid message sequence."""
    if not isinstance(body, dict):
        raise ProtocolError("The request body must be a JSON object.", None, "invalid_json")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise ProtocolError("you must provide a model parameter", "model", None)
    messages = body.get("messages")
    if messages is None:
        raise ProtocolError(
            "Missing required parameter: 'messages'.", "messages", "missing_required_parameter"
        )
    if not isinstance(messages, list) or not messages:
        raise ProtocolError(
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            "messages",
            "empty_array",
        )
    for index, message in enumerate(messages):
        _check_message(index, message)
    check_tool_pairing(messages)
    _check_response_format(body.get("response_format"), messages)
    if body.get("tool_choice") is not None and not body.get("tools"):
        raise ProtocolError(TOOL_CHOICE_WITHOUT_TOOLS, "tool_choice", None)
    key = body.get("prompt_cache_key")
    if key is not None and not isinstance(key, str):
        raise ProtocolError(
            "Invalid type for 'prompt_cache_key': expected a string.", "prompt_cache_key", "invalid_type"
        )


def _check_response_format(value: Any, messages: Sequence[Mapping[str, Any]]) -> None:
    """The real API's checks of `response_format`, which a structured review request meets."""
    if value is None:
        return
    if not isinstance(value, dict):
        raise ProtocolError("Invalid type for 'response_format': expected an object.", "response_format")
    kind = value.get("type")
    if kind not in RESPONSE_FORMATS:
        raise ProtocolError(
            f"Invalid value: '{kind}'. Supported values are: 'json_object', 'json_schema', and 'text'.",
            "response_format.type",
            "invalid_value",
        )
    if kind == "json_schema" and not isinstance(value.get("json_schema"), dict):
        raise ProtocolError(
            "Missing required parameter: 'response_format.json_schema'.",
            "response_format.json_schema",
            "missing_required_parameter",
        )
    if kind == "json_object" and not any("json" in content_text(m.get("content")).lower() for m in messages):
        raise ProtocolError(JSON_WORD, "messages", None)


def _check_message(index: int, message: Any) -> None:
    if not isinstance(message, dict):
        raise ProtocolError(
            f"Invalid type for 'messages[{index}]': expected an object.", f"messages.[{index}]"
        )
    role = message.get("role")
    if role not in ROLES:
        raise ProtocolError(
            f"Invalid value: '{role}'. Supported values are: {', '.join(repr(r) for r in ROLES)}.",
            f"messages.[{index}].role",
            "invalid_value",
        )
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        raise ProtocolError(
            f"Missing required parameter: 'messages.[{index}].tool_call_id'.",
            f"messages.[{index}].tool_call_id",
            "missing_required_parameter",
        )


def check_tool_pairing(messages: Sequence[Mapping[str, Any]]) -> None:
    """Every assistant tool call answered by one tool message before the next turn; no orphans."""
    pending: list[str] = []
    pending_at = 0
    for index, message in enumerate(messages):
        role = message.get("role")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in pending:
                raise ProtocolError(ORPHAN, f"messages.[{index}].role")
            pending.remove(call_id)
            continue
        if pending:
            raise ProtocolError(UNANSWERED.format(ids=", ".join(pending)), f"messages.[{pending_at}].role")
        if role == "assistant":
            pending = [
                str(call.get("id")) for call in message.get("tool_calls") or [] if isinstance(call, dict)
            ]
            pending_at = index
    if pending:
        raise ProtocolError(UNANSWERED.format(ids=", ".join(pending)), f"messages.[{pending_at}].role")


def content_text(content: Any) -> str:
    """A message's `content` as plain text: strings as they are, text parts joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "".join(parts)
    return str(content)


def first_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    for message in messages:
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def conversation_key(messages: Sequence[Mapping[str, Any]]) -> str:
    """Stable id of a conversation: a hash of its first user message."""
    return hashlib.sha256(first_user_text(messages).encode()).hexdigest()[:16]
