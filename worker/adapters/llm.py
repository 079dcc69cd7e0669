"""The production `ChatModel`: the openai client, streaming, its exceptions translated once here.

The client's own retries (with Retry-After honoured) absorb short 429/5xx bursts; what still fails
becomes `ModelUnavailable` (retryable: the Celery task retries the job later) or
`ModelRequestRejected` (permanent: 400/401/403/404/422 will not get better).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import httpx2
import openai

from worker.agent.prompt import PROMPT_VERSION
from worker.errors import ModelRequestRejected, ModelUnavailable, retry_after_seconds
from worker.settings import Settings

if TYPE_CHECKING:
    from worker.adapters.ratelimit import FleetLimiter

logger = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})


def build_client(settings: Settings, limiter: FleetLimiter | None = None) -> openai.AsyncOpenAI:
    """The model client; with a fleet limiter, every HTTP request it sends (its own retries
    included) first waits for room in the fleet-wide model budgets (an httpx2 request hook)."""
    hooks = limiter.model_hooks() if limiter is not None else []
    http_client = openai.DefaultAsyncHttpxClient(event_hooks={"request": hooks}) if hooks else None
    return openai.AsyncOpenAI(
        api_key=settings.openai_api_key.get_secret_value() or "not-set",
        base_url=settings.openai_base_url,
        max_retries=settings.openai_max_retries,
        timeout=settings.openai_timeout_s,
        http_client=http_client,
    )


def prompt_cache_key(settings: Settings, role: str) -> str:
    """One key per (project, ref, prompt version, role): a provider routes the requests of every job
    of a batch to the same cache, where their identical prefix is already warm."""
    basis = f"{settings.gitlab_project_id}|{settings.gitlab_ref or ''}|{PROMPT_VERSION}|{role}"
    return f"rfleet-{role}-{hashlib.sha256(basis.encode()).hexdigest()[:16]}"


def writer_and_reviewer(
    settings: Settings, client: openai.AsyncOpenAI, limiter: FleetLimiter | None = None
) -> tuple[OpenAIChatModel, OpenAIChatModel]:
    """The writer's model and the reviewer's, on one client (the reviewer: its own model name,
    when set, and its own temperature, 0 by default), each with its prompt cache key."""
    keyed = settings.openai_prompt_cache_key
    observe = limiter.observe_completion if limiter is not None else None
    writer = OpenAIChatModel(client, settings.openai_model_writer, settings.writer_temperature,
                             prompt_cache_key(settings, "writer") if keyed else None, observe)  # fmt: skip
    reviewer_name = settings.openai_model_reviewer or settings.openai_model_writer
    reviewer = OpenAIChatModel(client, reviewer_name, settings.reviewer_temperature,
                               prompt_cache_key(settings, "reviewer") if keyed else None, observe)  # fmt: skip
    return writer, reviewer


_NO_CACHE_KEY: set[str] = set()
"""Models (per process) whose provider refused `prompt_cache_key`: it is not sent to them again."""


class OpenAIChatModel:
    def __init__(
        self,
        client: openai.AsyncOpenAI,
        model: str,
        temperature: float | None,
        cache_key: str | None = None,
        on_completion: Callable[[int], None] | None = None,
    ) -> None:
        self._client = client
        self._model = model
        self._temperature = temperature
        self._cache_key = cache_key
        self._on_completion = on_completion
        """Told each completion's size (the fleet limiter's allowance follows it)."""

    @property
    def name(self) -> str:
        return self._model

    async def probe(self, timeout_s: float) -> None:
        """One cheap request (a one-token completion, not retried, its body never parsed): returns
        once the provider answers (a refusal, 4xx, is an answer: jobs will say what it refused);
        raises `ModelUnavailable` while it does not (down, 429, 5xx, timeout)."""
        client = self._client.with_options(max_retries=0, timeout=timeout_s)
        try:
            await client.chat.completions.with_raw_response.create(
                model=self._model, messages=[{"role": "user", "content": "ping"}], max_tokens=1
            )
        except openai.APIStatusError as exc:
            error = translate_status_error(exc)
            if isinstance(error, ModelUnavailable):
                raise error from exc
        except (openai.APITimeoutError, openai.APIConnectionError) as exc:
            raise ModelUnavailable(f"model server unreachable: {exc}") from exc
        except (httpx2.HTTPError, openai.APIError) as exc:
            raise ModelUnavailable(f"model server probe failed: {exc!r}") from exc

    async def stream_turn(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], extra: dict[str, Any] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        request: dict[str, Any] = {
            "model": self._model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if tools:
            request["tools"] = tools
            request["tool_choice"] = "auto"
        if self._temperature is not None:
            request["temperature"] = self._temperature
        if self._cache_key and self._model not in _NO_CACHE_KEY:
            request["prompt_cache_key"] = self._cache_key
        request.update(extra or {})
        try:
            async for chunk in self._stream(request):
                yield chunk
        except ModelRequestRejected as exc:
            if "prompt_cache_key" not in request or "prompt_cache_key" not in exc.message:
                raise
            logger.info("model %s refused prompt_cache_key; sending requests without it", self._model)
            _NO_CACHE_KEY.add(self._model)
            del request["prompt_cache_key"]
            async for chunk in self._stream(request):
                yield chunk

    async def _stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        try:
            # the client builds, sends and retries the request and raises on an error status; the
            # chunks are read as plain JSON (a pydantic object per chunk, dumped back to the dict the
            # assembler takes, was a third of the worker's CPU for the model client)
            async with self._client.chat.completions.with_streaming_response.create(**request) as response:
                async for chunk in _sse_chunks(response.iter_lines()):
                    usage = chunk.get("usage")
                    if self._on_completion is not None and isinstance(usage, dict):
                        self._on_completion(int(usage.get("completion_tokens") or 0))
                    yield chunk
        except openai.APIStatusError as exc:
            raise translate_status_error(exc) from exc
        except (openai.APITimeoutError, openai.APIConnectionError) as exc:
            raise ModelUnavailable(f"model server unreachable: {exc}") from exc
        except (httpx2.HTTPError, openai.APIError) as exc:  # openai 3.x streams over httpx2
            raise ModelUnavailable(f"model stream broke off: {exc!r}") from exc
        except ValueError as exc:  # a data line that is not JSON
            raise ModelUnavailable(f"model stream sent something that is not JSON: {exc}") from exc


async def _sse_chunks(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, Any]]:
    """The JSON objects of a server-sent event stream, up to `[DONE]`; an error event raises."""
    data: list[str] = []
    async for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
            continue
        if line or not data:  # `event:`/`id:`/comment lines, or blank lines between events
            continue
        payload, data = "\n".join(data), []
        if payload == "[DONE]":
            return
        chunk = json.loads(payload)
        if isinstance(chunk, dict) and chunk.get("error"):
            error = chunk["error"]
            message = error.get("message", error) if isinstance(error, dict) else error
            raise ModelUnavailable(f"model stream reported an error: {message}")
        yield chunk


def translate_status_error(exc: openai.APIStatusError) -> ModelUnavailable | ModelRequestRejected:
    status = exc.status_code
    message = _provider_message(exc)
    if status in RETRYABLE_STATUS or status >= 500:
        retry_after = retry_after_seconds(exc.response.headers.get("retry-after"))
        return ModelUnavailable(f"model server answered {status}: {message}", retry_after=retry_after)
    return ModelRequestRejected(f"model server rejected the request ({status}): {message}")


def _provider_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return exc.message
