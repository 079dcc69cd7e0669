"""`robot-fleet fake-llm`: run the scripted OpenAI-compatible model server.

Every knob flag sets a server default; requests override them per call through the model name's
query string, the `X-Fake-LLM` header or the spec's `fake_llm` object (see `knobs.py`). The
server-wide limits (`--rate-window`, `--rpm`, `--tpm`) and the prompt cache (`--no-prompt-cache`,
`--prompt-cache-ttl`) are set here only; a request's `prompt_cache` knob can only turn it off.
"""

from __future__ import annotations

import logging

import typer

from offline.fake_llm.knobs import KnobError, Knobs, ServerConfig
from offline.fake_llm.prompt_cache import DEFAULT_TTL_S

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9002
GRACEFUL_SHUTDOWN_S = 2


def serve(
    host: str = typer.Option(DEFAULT_HOST, "--host", help="Address to listen on."),
    port: int = typer.Option(DEFAULT_PORT, "--port", help="Port to listen on."),
    latency: float = typer.Option(0.0, "--latency", help="Seconds before the first chunk."),
    chunk_latency: float = typer.Option(0.0, "--chunk-latency", help="Seconds between chunks."),
    tool_calls: str = typer.Option("split", "--tool-calls", help="split | whole | parallel."),
    quirks: str = typer.Option(
        "",
        "--quirks",
        help="Comma list: thinking,index0,empty_ids,missing_index,args_object,stop_with_tools.",
    ),
    rate_429: float = typer.Option(0.0, "--rate-429", help="Probability of a 429."),
    retry_after: float = typer.Option(1.0, "--retry-after", help="Retry-After seconds of a 429."),
    rate_500: float = typer.Option(0.0, "--rate-500", help="Probability of a 500."),
    rate_400: float = typer.Option(0.0, "--rate-400", help="Probability of a 400."),
    fail_first: int = typer.Option(0, "--fail-first", help="Fail the first N requests of each conversation."),
    fail_status: int = typer.Option(429, "--fail-status", help="Status of fail-first: 429, 500 or 400."),
    draft: str = typer.Option(
        "none",
        "--draft",
        help="none | syntax | unknown_keyword | wrong_args | missing_resource | fails_when_run | "
        "log_only | placeholder | undefined_variable | rule_breaking.",
    ),
    fences: bool = typer.Option(False, "--fences/--no-fences", help="Fence final answers with chatter."),
    no_answer: str = typer.Option("none", "--no-answer", help="none | empty | loop."),
    evil: bool = typer.Option(False, "--evil/--no-evil", help="Call write and unoffered tools first."),
    upfront: str = typer.Option(
        "read", "--upfront", help="read | ignore: the files and keyword catalog the prompt gives."
    ),
    review: str = typer.Option(
        "pass",
        "--review",
        help="How review requests are answered: pass | violation | uncovered | malformed | refusal | "
        "no_json_schema | error500 | obey.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the fault RNG."),
    rate_window: float = typer.Option(
        60.0, "--rate-window", min=0.001, help="Seconds of the sliding window of --rpm, --tpm and /stats."
    ),
    rpm: int | None = typer.Option(
        None, "--rpm", min=1, help="Requests per --rate-window, server-wide; beyond it 429 + Retry-After."
    ),
    tpm: int | None = typer.Option(
        None, "--tpm", min=1, help="Tokens per --rate-window, server-wide; beyond it 429 + Retry-After."
    ),
    prompt_cache: bool = typer.Option(
        True,
        "--prompt-cache/--no-prompt-cache",
        help="Cache prompt prefixes as providers do (cached_tokens).",
    ),
    prompt_cache_ttl: float = typer.Option(
        DEFAULT_TTL_S, "--prompt-cache-ttl", min=0.0, help="Seconds a cached prefix lives after its last use."
    ),
    log_level: str = typer.Option("info", "--log-level", help="debug | info | warning | error."),
) -> None:
    """Run the scripted OpenAI-compatible model server."""
    import uvicorn  # imported here so `robot-fleet --help` and other commands start fast

    from offline.fake_llm.app import build_app

    settings = {
        "latency": latency,
        "chunk_latency": chunk_latency,
        "tool_calls": tool_calls,
        "quirks": quirks,
        "rate_429": rate_429,
        "retry_after": retry_after,
        "rate_500": rate_500,
        "rate_400": rate_400,
        "fail_first": fail_first,
        "fail_status": fail_status,
        "draft": draft,
        "fences": fences,
        "no_answer": no_answer,
        "evil": evil,
        "upfront": upfront,
        "review": review,
    }
    try:
        knobs = Knobs().merged(settings)
    except KnobError as exc:
        raise typer.BadParameter(str(exc)) from exc
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = ServerConfig(
        knobs,
        seed,
        rate_window=rate_window,
        rpm=rpm,
        tpm=tpm,
        prompt_cache=prompt_cache,
        prompt_cache_ttl=prompt_cache_ttl,
    )
    app = build_app(config)
    uvicorn.run(
        app, host=host, port=port, log_level=log_level.lower(), timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S
    )
