"""The scripted OpenAI-compatible model server: routes, injected faults, usage and stats.

`POST /v1/chat/completions` (streaming and not), `GET /v1/models`, `GET /stats`,
`POST /stats/reset`, `GET /healthz`. Errors have the real API's body:
`{"error": {"message", "type", "param", "code"}}`.

Server-wide `rpm` / `tpm` budgets (a sliding window of `rate_window` seconds) answer 429 with
`Retry-After`, as the real API's rate limits do. A valid request is checked against them before its
knobs are read; it is charged its prompt tokens when admitted and its completion tokens when the
answer is produced.

A request that asks for a structured answer (`response_format` json_schema / json_object, or a
`tool_choice` naming a function) is a review request: the scripted reviewer answers it
(`reviewer.py`), not the writer.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from offline.fake_llm import protocol, reviewer, sse
from offline.fake_llm.history import find_spec, read_history
from offline.fake_llm.knobs import KnobError, Knobs, ServerConfig, resolve
from offline.fake_llm.policy import Action, Answer, ToolTurn, decide
from offline.fake_llm.prompt_cache import PromptCache, serialise, tokens
from offline.fake_llm.review_request import ReviewRequest, read_review
from offline.fake_llm.stats import Conversation, Stats
from offline.fake_llm.suite import spec_id
from offline.window import Budget, Entry, retry_after_header

log = logging.getLogger(__name__)

CONVERSATION_HEADER = "x-fake-llm-conversation"
OVERRIDE_HEADER = "x-fake-llm"
FAULTS = {
    429: (
        "Rate limit reached for requests (injected by fake-llm). Please try again later.",
        "requests",
        "rate_limit_exceeded",
    ),
    500: (
        "The server had an error while processing your request. Sorry about that! (injected by fake-llm)",
        "server_error",
        None,
    ),
    400: ("Invalid request (injected by fake-llm).", "invalid_request_error", None),
}


def error_response(
    status: int,
    message: str,
    kind: str,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


@dataclass
class _Call:
    """One POST to /v1/chat/completions: when it arrived and its entries in the two windows."""

    arrived: float
    peak: Entry
    budget: Entry | None = None
    prompt: str = ""
    # the request as the model reads it (prompt_cache.serialise): its tokens are the prompt tokens
    key: str = ""
    # its conversation (protocol.conversation_key)


class FakeLLM:
    """One server's state: default knobs, the seeded fault RNG, counters, system prompts seen."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.reset()

    def reset(self) -> None:
        """Back to a fresh start: RNG, counters, window peaks, the rpm/tpm budget, prompt cache."""
        self.rng = random.Random(self.config.seed)
        self.stats = Stats(window_s=self.config.rate_window)
        self.budget = Budget(self.config.rate_window, self.config.rpm, self.config.tpm)
        self.prompt_cache = PromptCache(self.config.prompt_cache_ttl, self.config.prompt_cache_capacity)
        self.review_book = reviewer.ReviewBook()

    async def chat(self, request: Request) -> Response:
        arrived = time.monotonic()
        self.stats.requests += 1
        call = _Call(arrived, self.stats.window.hit(arrived))
        response = await self._chat(request, call)
        self.stats.by_status[str(response.status_code)] += 1
        return response

    async def _chat(self, request: Request, call: _Call) -> Response:
        try:
            body: Any = await request.json()
        except ValueError:
            return error_response(
                400, "We could not parse the JSON body of your request.", "invalid_request_error"
            )
        try:
            protocol.validate_request(body)
        except protocol.ProtocolError as exc:
            self.stats.protocol_errors += 1
            return error_response(400, exc.message, "invalid_request_error", exc.param, exc.code)
        messages = body["messages"]
        key = call.key = protocol.conversation_key(messages)
        self.stats.retry_after.arrived(key, call.arrived)
        call.prompt = serialise(body.get("tools"), messages)
        refusal = self._over_budget(key, call)
        if refusal is not None:
            return refusal
        review = read_review(body)
        spec = review.spec if review is not None else find_spec(protocol.first_user_text(messages))
        try:
            knobs = resolve(self.config.knobs, body["model"], request.headers.get(OVERRIDE_HEADER), spec)
        except KnobError as exc:
            return error_response(400, str(exc), "invalid_request_error", "model")
        conversation = self.stats.conversation(key, spec_id(spec) if spec else "")
        conversation.requests += 1
        conversation.review = review is not None
        if review is not None:
            self.stats.reviews += 1
            self.stats.reviews_by_mode[review.mode] += 1
        fault = self._fault(knobs, conversation, key)
        if fault is not None:
            return fault
        if review is not None:
            return await self._review(body, knobs, review, conversation, key, call)
        action = decide(read_history(messages, body.get("tools")), knobs)
        self._count(action, conversation)
        return await self._respond(body, knobs, action, key, call)

    async def _review(
        self,
        body: dict[str, Any],
        knobs: Knobs,
        review: ReviewRequest,
        conversation: Conversation,
        key: str,
        call: _Call,
    ) -> Response:
        """The reviewer's answer, or the error its knob answers instead."""
        status = reviewer.rejection(knobs.review, review.mode)
        if status == 400:
            self.stats.review_answers["rejected"] += 1
            return error_response(
                400, reviewer.UNSUPPORTED_SCHEMA, "invalid_request_error", "response_format"
            )
        if status == 500:
            self.stats.review_answers["error500"] += 1
            self.stats.faults_injected += 1
            conversation.faults += 1
            message, kind, code = FAULTS[500]
            return error_response(500, message, kind, None, code)
        action, said = reviewer.answer(review, knobs.review, self.review_book)
        self.stats.review_answers[said] += 1
        self.stats.completions += 1
        conversation.completions += 1
        return await self._respond(body, knobs, action, key, call)

    def _over_budget(self, key: str, call: _Call) -> JSONResponse | None:
        """Admit the request into the rpm/tpm budget, or answer 429 as the real API does."""
        if not self.budget.active:
            return None
        prompt = tokens(call.prompt)
        entry, wait, what = self.budget.admit(prompt)
        if entry is not None:
            call.budget = entry
            return None
        self.stats.rate_limited += 1
        self.stats.rate_limited_by[what] += 1
        seconds = retry_after_header(wait)
        self.stats.retry_after.sent(key, time.monotonic(), seconds)
        limit = self.budget.rpm if what == "requests" else self.budget.tpm
        used = len(self.budget.entries) if what == "requests" else self.budget.tokens
        window = _seconds(self.budget.seconds)
        message = (
            f"Rate limit reached for {what} per {window}s (injected by fake-llm): Limit {limit}, "
            f"Used {used}, Requested {1 if what == 'requests' else prompt}. "
            f"Please try again in {seconds}s."
        )
        return error_response(429, message, what, None, "rate_limit_exceeded", {"Retry-After": str(seconds)})

    def _fault(self, knobs: Knobs, conversation: Conversation, key: str) -> JSONResponse | None:
        """`fail_first` (deterministic, per conversation), then the seeded random rates."""
        status = None
        if conversation.requests <= knobs.fail_first:
            status = knobs.fail_status
        else:
            for code, rate in ((429, knobs.rate_429), (500, knobs.rate_500), (400, knobs.rate_400)):
                if rate > 0 and self.rng.random() < rate:
                    status = code
                    break
        if status is None:
            return None
        self.stats.faults_injected += 1
        conversation.faults += 1
        message, kind, code = FAULTS[status]
        headers = None
        if status == 429:
            headers = {"Retry-After": _seconds(knobs.retry_after)}
            self.stats.retry_after.sent(key, time.monotonic(), knobs.retry_after)
        return error_response(status, message, kind, None, code, headers)

    def _cached(self, body: dict[str, Any], knobs: Knobs, call: _Call) -> int:
        """The prompt tokens an earlier request of the same `prompt_cache_key` shared."""
        if not (self.config.prompt_cache and knobs.prompt_cache):
            return 0
        return self.prompt_cache.cached_tokens(body.get("prompt_cache_key"), call.prompt)

    def _usage(
        self, body: dict[str, Any], knobs: Knobs, completion_chars: int, call: _Call
    ) -> dict[str, Any]:
        prompt = tokens(call.prompt)
        cached = self._cached(body, knobs, call)
        completion = -(-completion_chars // 4)
        self.stats.prompt_tokens += prompt
        self.stats.completion_tokens += completion
        self.stats.cached_tokens += cached
        conversation = self.stats.conversations.get(call.key)
        if conversation is not None:
            conversation.prompt_tokens += prompt
            conversation.cached_tokens += cached
        self.stats.window.add_tokens(call.peak, prompt + completion)
        if call.budget is not None:
            self.budget.add_tokens(call.budget, completion)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        }

    def _count(self, action: Action, conversation: Conversation) -> None:
        self.stats.completions += 1
        conversation.completions += 1
        if isinstance(action, ToolTurn):
            for call in action.calls:
                self.stats.tool_calls_emitted[call.name] += 1
            conversation.tool_calls += len(action.calls)
            return
        self.stats.final_answers += 1
        conversation.final_answers += 1
        self.stats.empty_answers += 0 if action.text else 1
        if isinstance(action, Answer) and action.repair:
            self.stats.repairs += 1
            conversation.repairs += 1

    async def _respond(
        self,
        body: dict[str, Any],
        knobs: Knobs,
        action: Action,
        key: str,
        call: _Call,
    ) -> Response:
        usage = self._usage(body, knobs, sse.output_chars(action, knobs), call)
        meta = sse.Meta(sse.completion_id(), int(time.time()), body["model"].partition("?")[0])
        ids = sse.tool_call_ids(action, knobs)
        headers = {CONVERSATION_HEADER: key}
        if not body.get("stream"):
            await asyncio.sleep(knobs.latency)
            return JSONResponse(sse.completion_body(action, knobs, meta, ids, usage), headers=headers)
        self.stats.streamed += 1
        options = body.get("stream_options") or {}
        include_usage = bool(options.get("include_usage")) if isinstance(options, dict) else False
        chunks = sse.stream_chunks(action, knobs, meta, ids, usage if include_usage else None)
        headers["cache-control"] = "no-cache"
        return StreamingResponse(_emit(chunks, knobs), media_type="text/event-stream", headers=headers)


async def _emit(chunks: list[dict[str, Any]], knobs: Knobs) -> AsyncIterator[bytes]:
    await asyncio.sleep(knobs.latency)
    for index, chunk in enumerate(chunks):
        if index and knobs.chunk_latency:
            await asyncio.sleep(knobs.chunk_latency)
        yield sse.sse_line(chunk)
    yield sse.sse_line("[DONE]")


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def build_app(config: ServerConfig | None = None) -> Starlette:
    """The Starlette app; `app.state.fake_llm` holds the server's state."""
    server = FakeLLM(config or ServerConfig())

    async def models(_: Request) -> Response:
        model = {"id": server.config.model_name, "object": "model", "created": 0, "owned_by": "robot-fleet"}
        return JSONResponse({"object": "list", "data": [model]})

    async def stats(_: Request) -> Response:
        cache = {"enabled": server.config.prompt_cache, **server.prompt_cache.as_json()}
        return JSONResponse({**server.stats.as_json(), "prompt_cache": cache})

    async def reset(_: Request) -> Response:
        server.reset()
        return JSONResponse({"ok": True})

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", server.chat, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/stats", stats, methods=["GET"]),
            Route("/stats/reset", reset, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
    app.state.fake_llm = server
    return app
