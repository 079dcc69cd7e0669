"""The scripted model server over real HTTP, driven by the real `openai.AsyncOpenAI` client."""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import robot
from robot.api import get_model
from robot.api.parsing import ModelVisitor
from robot.running import ResourceFile

from offline.fake_llm.stats import RetryAfter
from offline.window import Budget, Peak, retry_after_header
from producer.local_redis import free_port
from producer.procs import Child, robot_fleet_command, start_child

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL = "fake-writer"
CALL_ID = re.compile(r"^call_[A-Za-z0-9]{24}$")

COMMON = """*** Variables ***
${BASE_URL}    http://shop.local

*** Keywords ***
Open Shop Application
    Log    open ${BASE_URL}

Close Shop Application
    Log    close
"""
AUTH = """*** Settings ***
Resource    resources/common.resource

*** Keywords ***
Open Login Page
    Log    login page

Log In With Credentials
    [Arguments]    ${username}    ${password}
    Log    ${username}

Dashboard Should Be Visible
    Log    dashboard

Error Message Should Be
    [Arguments]    ${message}    ${level}=error
    Log    ${message}
"""
DATA = """*** Keywords ***
Create Customer Account
    [Arguments]    ${username}    @{roles}    ${region}
    Log    ${username}
"""
LOGOUT_TEST = """*** Settings ***
Resource    resources/auth.resource
Resource    resources/data.resource
Suite Setup    Open Shop Application
Suite Teardown    Close Shop Application

*** Test Cases ***
AUTH-1 Customer Logs Out
    Open Login Page
"""
CART_TEST = """*** Settings ***
Resource    resources/cart.resource

*** Test Cases ***
CART-1 Add Item
    Log    cart
"""
REPO = {
    "doc/convention.md": "# Conventions\nOne suite per story.\n",
    "resources/common.resource": COMMON,
    "resources/auth.resource": AUTH,
    "resources/data.resource": DATA,
    "tests/auth/logout.robot": LOGOUT_TEST,
    "tests/cart/add_item.robot": CART_TEST,
    "variables/env.py": "BASE_URL = 'x'\n",
}
READ_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": name,
            "parameters": {"type": "object", "properties": {}, "additionalProperties": True},
        },
    }
    for name in ("get_file_contents", "get_repository_tree")
]


def make_spec(spec_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": spec_id,
        "title": "Customer logs in with valid credentials",
        "area": "auth",
        "priority": "high",
        "preconditions": ["A customer account exists"],
        "scenarios": [
            {
                "name": "successful login",
                "steps": ["Open the login page", 'Log in with username "alice" and password "s3cret"'],
                "expected": "The dashboard should be visible",
            },
            {
                "name": "wrong password",
                "steps": [
                    {"action": "Log in with credentials", "expected": 'Error message should be "Denied"'}
                ],
            },
        ],
        "data": {"username": "alice", "password": "wrong", "region": "eu"},
        "rf": {"target_path": f"tests/auth/{spec_id.lower()}.robot"},
        **extra,
    }


def user_message(spec: dict[str, Any]) -> dict[str, str]:
    return {"role": "user", "content": f"Write the suite.\n\n## Spec\n```json\n{json.dumps(spec)}\n```\n"}


def system_message(markers: bool) -> dict[str, str]:
    text = "You write Robot Framework suites."
    if markers:
        tree = "\n".join(sorted(REPO))
        text += f"\n\n## doc/convention.md\n{REPO['doc/convention.md']}\n## Repository tree\n{tree}\n"
    return {"role": "system", "content": text}


def run_tool(repo: dict[str, str], name: str, arguments: dict[str, Any], page_size: int = 100) -> str:
    """A tiny MCP stand-in answering like the GitLab MCP server (errors as text)."""
    if name == "get_file_contents":
        path = arguments.get("file_path", "")
        if path not in repo:
            return f"Error: File not found: {path}"
        return json.dumps({"file_path": path, "encoding": "utf8", "content": repo[path]})
    if name == "get_repository_tree":
        paths = sorted(repo)
        start = int(arguments.get("page_token") or 0)
        page = [
            {"path": p, "type": "blob", "name": p.rsplit("/", 1)[-1]}
            for p in paths[start : start + page_size]
        ]
        rest = start + page_size < len(paths)
        return json.dumps({"items": page, **({"next_page_token": str(start + page_size)} if rest else {})})
    return f"Error: tool {name} refused"


@dataclass
class Turn:
    text: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)
    finish: str | None = None
    usage: Any = None
    chunks: list[Any] = field(default_factory=list)


async def stream_turn(
    client: openai.AsyncOpenAI,
    messages: list[dict[str, Any]],
    *,
    model: str = MODEL,
    tools: list[dict[str, Any]] | None = READ_TOOLS,
    headers: dict[str, str] | None = None,
) -> Turn:
    """One streamed turn reassembled the way a careful client does (by index)."""
    extra: dict[str, Any] = {"tools": tools} if tools else {}
    stream = await client.chat.completions.create(
        model=model,
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=headers,
        **extra,
    )
    turn = Turn()
    calls: dict[int, dict[str, Any]] = {}
    async for chunk in stream:
        turn.chunks.append(chunk)
        turn.usage = chunk.usage or turn.usage
        for choice in chunk.choices:
            if isinstance(choice.delta.content, str):
                turn.text += choice.delta.content
            for delta in choice.delta.tool_calls or []:
                entry = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] = delta.id or entry["id"]
                entry["name"] += (delta.function.name or "") if delta.function else ""
                entry["arguments"] += (delta.function.arguments or "") if delta.function else ""
            turn.finish = choice.finish_reason or turn.finish
    turn.calls = [calls[i] for i in sorted(calls)]
    return turn


async def converse(
    client: openai.AsyncOpenAI,
    messages: list[dict[str, Any]],
    *,
    repo: dict[str, str] = REPO,
    max_turns: int = 12,
    page_size: int = 100,
    **options: Any,
) -> list[Turn]:
    """Feed tool results back until the model answers; `messages` grows in place."""
    turns: list[Turn] = []
    for _ in range(max_turns):
        turn = await stream_turn(client, messages, **options)
        turns.append(turn)
        if not turn.calls:
            messages.append({"role": "assistant", "content": turn.text})
            return turns
        tool_calls = [
            {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in turn.calls
        ]
        messages.append({"role": "assistant", "content": turn.text or None, "tool_calls": tool_calls})
        for call in turn.calls:
            content = run_tool(repo, call["name"], json.loads(call["arguments"]), page_size)
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": content})
    raise AssertionError(f"no answer in {max_turns} turns")


def fetched(turns: list[Turn]) -> list[str]:
    """`name:file_path` of every call, in order."""
    return [
        f"{c['name']}:{json.loads(c['arguments']).get('file_path', '')}".rstrip(":")
        for turn in turns
        for c in turn.calls
    ]


class _Errors(ModelVisitor):
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.calls: list[tuple[str, list[str]]] = []

    def visit_KeywordCall(self, node: Any) -> None:  # robot's visitor naming
        self.calls.append((node.keyword, list(node.args)))
        self.generic_visit(node)

    def generic_visit(self, node: Any) -> None:
        self.errors += [t.error for t in getattr(node, "tokens", ()) if t.error]
        self.errors += list(getattr(node, "errors", ()) or ())
        super().generic_visit(node)


def parse_suite(text: str) -> _Errors:
    visitor = _Errors()
    visitor.visit(get_model(text))
    return visitor


def accepted_arguments() -> dict[str, tuple[int, int]]:
    specs = {}
    for path in ("resources/common.resource", "resources/auth.resource", "resources/data.resource"):
        for keyword in ResourceFile.from_string(REPO[path]).keywords:
            specs[keyword.name] = (keyword.args.minargs, keyword.args.maxargs)
    return specs


@pytest.fixture(scope="module")
def start_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., str]]:
    """Start fake-llm servers with extra options on demand; all are stopped when the module ends."""
    log_dir = tmp_path_factory.mktemp("fake-llm")
    children: list[Child] = []

    def start(name: str, *extra: str) -> str:
        port = free_port()
        command = robot_fleet_command("fake-llm", "--port", str(port), "--log-level", "warning", *extra)
        children.append(start_child(name, command, log_dir, cwd=REPO_ROOT, ready_port=("127.0.0.1", port)))
        return f"http://127.0.0.1:{port}"

    yield start
    for child in children:
        child.stop()


@pytest.fixture(scope="module")
def server(start_llm: Callable[..., str]) -> str:
    return start_llm("fake-llm", "--seed", "7")


_OPEN_CLIENTS: list[openai.AsyncOpenAI] = []


def client_for(server: str, max_retries: int = 0) -> openai.AsyncOpenAI:
    """A real client on the fake server; `run` closes it on the loop that used it."""
    client = openai.AsyncOpenAI(base_url=f"{server}/v1", api_key="test", max_retries=max_retries)
    _OPEN_CLIENTS.append(client)
    return client


def run(coro: Any) -> Any:
    async def closing() -> Any:
        try:
            return await coro
        finally:
            while _OPEN_CLIENTS:
                await _OPEN_CLIENTS.pop().close()

    return asyncio.run(closing())


async def raw_chunks(server: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> list[Any]:
    """The `data:` payloads of a streamed response, JSON-decoded, exactly as sent."""
    payloads: list[Any] = []
    async with (
        httpx.AsyncClient(timeout=10) as http,
        http.stream("POST", f"{server}/v1/chat/completions", json=body, headers=headers) as response,
    ):
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                data = line[len("data: ") :]
                payloads.append(data if data == "[DONE]" else json.loads(data))
    return payloads


def first_turn_body(spec_id: str, model: str = MODEL, markers: bool = False) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [system_message(markers), user_message(make_spec(spec_id))],
        "tools": READ_TOOLS,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def raw_tool_deltas(payloads: list[Any]) -> list[dict[str, Any]]:
    return [
        d for p in payloads if p != "[DONE]" for c in p["choices"] for d in c["delta"].get("tool_calls", [])
    ]


def test_answer_streams_in_word_chunks_with_role_first_and_usage_last(server: str) -> None:
    async def scenario() -> None:
        client = client_for(server)
        messages = [system_message(True), user_message(make_spec("TXT-1"))]
        turn = await stream_turn(client, messages, tools=None)
        assert turn.chunks[0].choices[0].delta.role == "assistant"
        content_chunks = [c for c in turn.chunks if c.choices and c.choices[0].delta.content]
        assert len(content_chunks) > 10
        assert turn.text.startswith("*** Settings ***")
        assert turn.finish == "stop" and not turn.calls
        last = turn.chunks[-1]
        assert last.choices == [] and last.usage is not None
        assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
        assert last.usage.prompt_tokens >= len(json.dumps(messages)) // 8
        assert last.usage.completion_tokens >= len(turn.text) // 4
        again = await stream_turn(
            client, [system_message(True), user_message(make_spec("TXT-2"))], tools=None
        )
        # under 1,024 tokens nothing is cached (the cache: tests/test_fake_prompt_cache.py)
        assert again.usage.prompt_tokens_details.cached_tokens == 0

    run(scenario())


def test_split_mode_spreads_tool_call_arguments_over_chunks(server: str) -> None:
    async def scenario() -> None:
        turn = await stream_turn(
            client_for(server), [system_message(False), user_message(make_spec("SPL-1"))]
        )
        tool_chunks = [c for c in turn.chunks if c.choices and c.choices[0].delta.tool_calls]
        assert len(tool_chunks) > 2
        assert turn.finish == "tool_calls"
        [call] = turn.calls
        assert CALL_ID.match(call["id"]) and call["name"] == "get_file_contents"
        assert json.loads(call["arguments"]) == {"file_path": "doc/convention.md"}

    run(scenario())


def test_whole_mode_sends_each_call_in_one_chunk(server: str) -> None:
    async def scenario() -> None:
        messages = [system_message(False), user_message(make_spec("WHL-1"))]
        turn = await stream_turn(client_for(server), messages, model=f"{MODEL}?tool_calls=whole")
        tool_chunks = [c for c in turn.chunks if c.choices and c.choices[0].delta.tool_calls]
        assert len(tool_chunks) == 1
        assert json.loads(turn.calls[0]["arguments"]) == {"file_path": "doc/convention.md"}

    run(scenario())


def robot_dry_run(repo: dict[str, str], suite: str, root: Path) -> tuple[int, str]:
    """Write the fake repository and the suite under `root`; `robot --dryrun` it from there."""
    for path, text in {**repo, "tests/generated/new.robot": suite}.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    out = io.StringIO()
    rc = robot.run(
        str(root / "tests/generated/new.robot"),
        dryrun=True,
        pythonpath=[str(root)],
        output=None,
        report=None,
        log=None,
        stdout=out,
        stderr=out,
    )
    return rc, out.getvalue()


def test_full_conversation_reads_convention_tree_similar_test_resources_then_answers(
    server: str, tmp_path: Path
) -> None:
    async def scenario() -> list[Turn]:
        messages = [system_message(False), user_message(make_spec("SEQ-1"))]
        return await converse(client_for(server), messages)

    turns = run(scenario())
    assert fetched(turns) == [
        "get_file_contents:doc/convention.md",
        "get_repository_tree",
        "get_file_contents:tests/auth/logout.robot",
        "get_file_contents:resources/auth.resource",
        "get_file_contents:resources/data.resource",
        "get_file_contents:resources/common.resource",
    ]
    suite = turns[-1].text
    parsed = parse_suite(suite)
    assert parsed.errors == []
    assert "Resource    resources/auth.resource\nResource    resources/data.resource" in suite
    assert "Suite Setup    Open Shop Application" in suite
    assert "SEQ-1 Successful Login\n" in suite and "SEQ-1 Wrong Password\n" in suite
    assert "[Tags]    SEQ-1    auth    smoke" in suite
    accepted = accepted_arguments()
    used = {name for name, _ in parsed.calls if name in accepted}
    assert {"Open Login Page", "Log In With Credentials", "Dashboard Should Be Visible"} <= used
    assert {"Error Message Should Be", "Create Customer Account"} <= used
    for name, args in parsed.calls:
        if name in accepted:
            low, high = accepted[name]
            assert low <= len(args) <= high, (name, args)
        else:
            assert name == "Log", name
    assert "Log In With Credentials    alice    s3cret" in suite
    assert "Log In With Credentials    alice    wrong" in suite
    assert "Create Customer Account    alice    region=eu" in suite
    assert "Error Message Should Be    Denied\n" in suite
    rc, output = robot_dry_run(REPO, suite, tmp_path)
    assert rc == 0, output


def test_markers_in_system_message_skip_convention_and_tree(server: str) -> None:
    async def scenario() -> list[Turn]:
        return await converse(client_for(server), [system_message(True), user_message(make_spec("MRK-1"))])

    assert fetched(run(scenario()))[0] == "get_file_contents:tests/auth/logout.robot"


def test_parallel_mode_fetches_each_level_in_one_turn_and_missing_files_are_skipped(server: str) -> None:
    repo = {k: v for k, v in REPO.items() if k != "resources/data.resource"}  # fetch: "File not found"

    async def scenario() -> list[Turn]:
        messages = [system_message(False), user_message(make_spec("PAR-1"))]
        return await converse(client_for(server), messages, repo=repo, model=f"{MODEL}?tool_calls=parallel")

    turns = run(scenario())
    assert [len(t.calls) for t in turns] == [2, 1, 2, 1, 0]
    assert [c["name"] for c in turns[0].calls] == ["get_file_contents", "get_repository_tree"]
    assert {json.loads(c["arguments"])["file_path"] for c in turns[2].calls} == {
        "resources/auth.resource",
        "resources/data.resource",
    }
    indexes = [d.index for c in turns[2].chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
    assert set(indexes) == {0, 1}
    assert parse_suite(turns[-1].text).errors == []
    assert "Create Customer Account" not in turns[-1].text


def test_latency_delays_the_first_chunk_and_chunk_latency_spaces_the_rest(server: str) -> None:
    async def first_and_total(model: str) -> tuple[float, float, int]:
        messages = [system_message(True), user_message(make_spec("LAT-1"))]
        started = time.monotonic()
        stream = await client_for(server).chat.completions.create(model=model, messages=messages, stream=True)
        stamps = [time.monotonic() - started async for _ in stream]
        return stamps[0], stamps[-1] - stamps[0], len(stamps)

    first, _, _ = run(first_and_total(f"{MODEL}?latency=0.3"))
    assert first >= 0.3
    _, spread, count = run(first_and_total(f"{MODEL}?chunk_latency=0.002"))
    assert spread >= 0.002 * (count - 1)


def test_random_fault_rates(server: str) -> None:
    async def scenario() -> None:
        messages = [system_message(True), user_message(make_spec("RND-1"))]
        client = client_for(server)
        with pytest.raises(openai.RateLimitError):
            await stream_turn(client, messages, model=f"{MODEL}?rate_429=1", tools=None)
        with pytest.raises(openai.InternalServerError):
            await stream_turn(client, messages, model=f"{MODEL}?rate_500=1", tools=None)
        with pytest.raises(openai.BadRequestError):
            await stream_turn(client, messages, model=f"{MODEL}?rate_400=1", tools=None)
        assert (await stream_turn(client, messages, model=f"{MODEL}?rate_500=0", tools=None)).text

    run(scenario())


def test_tree_pages_are_followed_with_the_next_page_token(server: str) -> None:
    async def scenario() -> list[Turn]:
        messages = [system_message(False), user_message(make_spec("PAG-1"))]
        return await converse(client_for(server), messages, page_size=4)

    turns = run(scenario())
    tree_calls = [
        json.loads(c["arguments"]) for t in turns for c in t.calls if c["name"] == "get_repository_tree"
    ]
    assert tree_calls[0] == {"recursive": True, "per_page": 100, "pagination": "keyset"}
    assert [c.get("page_token") for c in tree_calls] == [None, "4"]
    assert "get_file_contents:tests/auth/logout.robot" in fetched(turns)


def test_thinking_quirk_sends_content_as_mistral_style_part_lists(server: str) -> None:
    body = first_turn_body("THK-1", model=f"{MODEL}?quirks=thinking", markers=True)
    body["tools"] = []
    payloads = run(raw_chunks(server, body))
    contents = [p["choices"][0]["delta"].get("content") for p in payloads if p != "[DONE]" and p["choices"]]
    lists = [c for c in contents if isinstance(c, list)]
    assert lists[0][0]["type"] == "thinking"
    assert lists[0][0]["thinking"][0]["type"] == "text"
    texts = [c[0]["text"] for c in lists if c[0]["type"] == "text"]
    assert "".join(texts).startswith("*** Settings ***")
    assert payloads[-1] == "[DONE]" and payloads[-2]["choices"] == []


def test_index0_and_missing_index_quirks_in_raw_tool_call_deltas(server: str) -> None:
    payloads = run(raw_chunks(server, first_turn_body("IDX-1", f"{MODEL}?tool_calls=parallel&quirks=index0")))
    deltas = raw_tool_deltas(payloads)
    assert {d["index"] for d in deltas} == {0}
    heads = [d for d in deltas if "id" in d]
    assert [h["function"]["name"] for h in heads] == ["get_file_contents", "get_repository_tree"]
    assert all(CALL_ID.match(h["id"]) for h in heads)
    payloads = run(raw_chunks(server, first_turn_body("IDX-2", f"{MODEL}?quirks=missing_index")))
    assert all("index" not in d for d in raw_tool_deltas(payloads))


def test_empty_ids_args_object_and_stop_with_tools_quirks(server: str) -> None:
    model = f"{MODEL}?quirks=empty_ids,args_object,stop_with_tools"
    payloads = run(raw_chunks(server, first_turn_body("QRK-1", model)))
    [delta] = raw_tool_deltas(payloads)
    assert delta["id"] == ""
    assert delta["function"]["arguments"] == {"file_path": "doc/convention.md"}
    finishes = [
        c["finish_reason"] for p in payloads if p != "[DONE]" for c in p["choices"] if c["finish_reason"]
    ]
    assert finishes == ["stop"]


def test_openai_client_passes_quirky_deltas_through_unchanged(server: str) -> None:
    async def scenario() -> Turn:
        messages = [system_message(False), user_message(make_spec("QRK-2"))]
        model = f"{MODEL}?quirks=thinking,args_object,missing_index"
        stream = await client_for(server).chat.completions.create(
            model=model, messages=messages, tools=READ_TOOLS, stream=True
        )
        return Turn(chunks=[chunk async for chunk in stream])

    deltas = [c.choices[0].delta for c in run(scenario()).chunks if c.choices]
    assert any(isinstance(d.content, list) and d.content[0]["type"] == "thinking" for d in deltas)
    [call] = [t for d in deltas for t in d.tool_calls or []]
    assert call.index is None and call.function.arguments == {"file_path": "doc/convention.md"}


def test_non_streaming_completion_carries_tool_calls_and_usage(server: str) -> None:
    async def scenario() -> None:
        client = client_for(server)
        messages = [system_message(False), user_message(make_spec("NST-1"))]
        completion = await client.chat.completions.create(model=MODEL, messages=messages, tools=READ_TOOLS)
        assert completion.object == "chat.completion"
        choice = completion.choices[0]
        assert choice.finish_reason == "tool_calls"
        [call] = choice.message.tool_calls
        assert CALL_ID.match(call.id) and call.function.name == "get_file_contents"
        assert completion.usage.total_tokens > 0
        answer = await client.chat.completions.create(
            model=MODEL, messages=[system_message(True), user_message(make_spec("NST-2"))]
        )
        assert answer.choices[0].message.content.startswith("*** Settings ***")

    run(scenario())


def test_syntax_draft_is_repaired_after_a_user_message(server: str) -> None:
    async def scenario() -> tuple[str, str]:
        client = client_for(server)
        spec = make_spec("DRF-1", fake_llm={"draft": "syntax"})
        messages = [system_message(True), user_message(spec)]
        draft = (await converse(client, messages))[-1].text
        messages.append({"role": "user", "content": "Robot reports: Unrecognized section header. Fix it."})
        return draft, (await stream_turn(client, messages)).text

    draft, repaired = run(scenario())
    stats = httpx.get(f"{server}/stats").json()
    assert "*** Test Steps ***" in draft and not draft.startswith("***")
    assert parse_suite(draft).errors
    assert repaired.startswith("*** Settings ***") and parse_suite(repaired).errors == []
    [conversation] = [c for c in stats["conversations"].values() if c["spec_id"] == "DRF-1"]
    assert conversation["repairs"] == 1 and conversation["final_answers"] == 2


def test_unknown_keyword_draft_then_correct_suite(server: str) -> None:
    async def scenario() -> tuple[str, str]:
        client = client_for(server)
        messages = [system_message(True), user_message(make_spec("UNK-1"))]
        draft = (await converse(client, messages, model=f"{MODEL}?draft=unknown_keyword"))[-1].text
        messages.append({"role": "user", "content": "No keyword with name 'Verify Everything Went Fine'."})
        return draft, (await stream_turn(client, messages, model=f"{MODEL}?draft=unknown_keyword")).text

    draft, repaired = run(scenario())
    assert "    Verify Everything Went Fine\n" in draft
    assert "Verify Everything Went Fine" not in repaired


def test_fences_wrap_the_answer_with_chatter(server: str) -> None:
    async def scenario() -> str:
        messages = [system_message(True), user_message(make_spec("FNC-1"))]
        return (await stream_turn(client_for(server), messages, tools=None, model=f"{MODEL}?fences=1")).text

    text = run(scenario())
    before, _, rest = text.partition("```robot\n")
    suite, _, after = rest.partition("```")
    assert before.strip() and after.strip()
    assert suite.startswith("*** Settings ***") and parse_suite(suite).errors == []


def test_no_answer_empty_and_loop(server: str) -> None:
    async def scenario() -> tuple[Turn, list[Turn]]:
        client = client_for(server)
        messages = [system_message(True), user_message(make_spec("NOA-1"))]
        empty = await stream_turn(client, messages, tools=None, model=f"{MODEL}?no_answer=empty")
        loop_messages = [system_message(True), user_message(make_spec("NOA-2"))]
        with pytest.raises(AssertionError, match="no answer"):
            await converse(client, loop_messages, max_turns=3, model=f"{MODEL}?no_answer=loop")
        return empty, []

    empty, _ = run(scenario())
    assert empty.text == "" and empty.calls == [] and empty.finish == "stop"


def test_evil_calls_write_tools_foreign_project_and_an_unoffered_tool(server: str) -> None:
    async def scenario() -> list[Turn]:
        messages = [system_message(True), user_message(make_spec("EVL-1"))]
        return await converse(client_for(server), messages, model=f"{MODEL}?evil=true")

    turns = run(scenario())
    evil = next(t for t in turns if any(c["name"] == "push_files" for c in t.calls))
    names = [c["name"] for c in evil.calls]
    assert names[:3] == ["push_files", "create_or_update_file", "get_file_contents"]
    assert names[3] not in {"get_file_contents", "get_repository_tree"}
    assert json.loads(evil.calls[2]["arguments"])["project_id"] == "secret/infra"
    assert turns[-1].text.startswith("*** Settings ***")


@pytest.mark.parametrize(
    ("status", "error_class", "kind"),
    [
        (429, openai.RateLimitError, "requests"),
        (500, openai.InternalServerError, "server_error"),
        (400, openai.BadRequestError, "invalid_request_error"),
    ],
)
def test_fail_first_returns_real_error_shapes_then_succeeds(
    server: str, status: int, error_class: type[openai.APIStatusError], kind: str
) -> None:
    async def scenario() -> None:
        client = client_for(server)
        messages = [system_message(True), user_message(make_spec(f"FLT-{status}"))]
        model = f"{MODEL}?fail_first=2&fail_status={status}&retry_after=3"
        for _ in range(2):
            with pytest.raises(error_class) as caught:
                await stream_turn(client, messages, model=model, tools=None)
            assert caught.value.status_code == status
            assert caught.value.type == kind
            body = caught.value.response.json()
            assert set(body["error"]) == {"message", "type", "param", "code"}
            if status == 429:
                assert caught.value.response.headers["retry-after"] == "3"
                assert caught.value.code == "rate_limit_exceeded"
        assert (await stream_turn(client, messages, model=model, tools=None)).text.startswith("*** Settings")

    run(scenario())


def test_openai_client_retries_honour_retry_after(server: str) -> None:
    httpx.post(f"{server}/stats/reset").raise_for_status()

    async def scenario() -> float:
        messages = [system_message(True), user_message(make_spec("RTY-1"))]
        started = time.monotonic()
        client = client_for(server, max_retries=2)
        turn = await stream_turn(client, messages, model=f"{MODEL}?fail_first=1&retry_after=0.6", tools=None)
        assert turn.text.startswith("*** Settings ***")
        return time.monotonic() - started

    assert run(scenario()) >= 0.6
    followed = httpx.get(f"{server}/stats").json()["retry_after"]
    assert (followed["followed"], followed["honoured"], followed["violated"]) == (1, 1, 0)
    assert 0 <= followed["min_margin_s"] < 0.5


def test_overrides_from_model_header_and_spec_later_wins(server: str) -> None:
    async def chunk_count(spec: dict[str, Any], model: str, header: str | None) -> int:
        messages = [system_message(False), user_message(spec)]
        headers = {"X-Fake-LLM": header} if header else None
        turn = await stream_turn(client_for(server), messages, model=model, headers=headers)
        return len([c for c in turn.chunks if c.choices and c.choices[0].delta.tool_calls])

    async def scenario() -> list[int]:
        whole = f"{MODEL}?tool_calls=whole"
        return [
            await chunk_count(make_spec("OVR-1"), whole, None),
            await chunk_count(make_spec("OVR-2"), whole, "tool_calls=split"),
            await chunk_count(make_spec("OVR-3"), MODEL, '{"tool_calls": "whole"}'),
            await chunk_count(
                make_spec("OVR-4", fake_llm={"tool_calls": "split"}), whole, '{"tool_calls": "whole"}'
            ),
        ]

    one, header_split, header_whole, spec_split = run(scenario())
    assert one == 1 and header_whole == 1
    assert header_split > 1 and spec_split > 1


def test_unknown_knob_is_a_400(server: str) -> None:
    async def scenario() -> None:
        with pytest.raises(openai.BadRequestError, match="unknown fake_llm knob"):
            await stream_turn(
                client_for(server), [user_message(make_spec("KNB-1"))], model=f"{MODEL}?speed=9"
            )

    run(scenario())


def test_protocol_violations_get_the_real_400(server: str) -> None:
    spec_message = user_message(make_spec("PRT-1"))
    call = {
        "id": "call_abc",
        "type": "function",
        "function": {"name": "get_repository_tree", "arguments": "{}"},
    }
    unanswered = [
        system_message(True),
        spec_message,
        {"role": "assistant", "tool_calls": [call]},
        spec_message,
    ]
    orphan = [system_message(True), spec_message, {"role": "tool", "tool_call_id": "call_x", "content": "x"}]

    async def scenario(messages: list[dict[str, Any]]) -> openai.BadRequestError:
        with pytest.raises(openai.BadRequestError) as caught:
            await stream_turn(client_for(server), messages)
        return caught.value

    error = run(scenario(unanswered))
    assert error.type == "invalid_request_error" and error.param == "messages.[2].role"
    assert "did not have response messages: call_abc" in error.message
    error = run(scenario(orphan))
    assert error.param == "messages.[2].role"
    assert "must be a response to a preceeding message with 'tool_calls'" in error.message
    missing_model = httpx.post(f"{server}/v1/chat/completions", json={"messages": [spec_message]})
    assert missing_model.status_code == 400 and missing_model.json()["error"]["param"] == "model"
    missing_messages = httpx.post(f"{server}/v1/chat/completions", json={"model": MODEL})
    assert missing_messages.json()["error"]["code"] == "missing_required_parameter"


def test_stats_count_requests_tool_calls_answers_and_reset(server: str) -> None:
    assert httpx.post(f"{server}/stats/reset").status_code == 200

    async def scenario() -> None:
        client = client_for(server)
        await converse(client, [system_message(False), user_message(make_spec("STA-1"))])
        with pytest.raises(openai.RateLimitError):
            await stream_turn(client, [user_message(make_spec("STA-2"))], model=f"{MODEL}?fail_first=1")
        models = await client.models.list()
        assert [m.id for m in models.data] == [MODEL]

    run(scenario())
    stats = httpx.get(f"{server}/stats").json()
    assert stats["requests"] == 8 and stats["by_status"] == {"200": 7, "429": 1}
    assert stats["completions"] == 7 and stats["final_answers"] == 1
    assert stats["tool_calls_emitted"] == {"get_file_contents": 5, "get_repository_tree": 1}
    assert stats["prompt_tokens"] > 0 and stats["completion_tokens"] > 0
    [conversation] = [c for c in stats["conversations"].values() if c["spec_id"] == "STA-1"]
    assert conversation["requests"] == 7 and conversation["tool_calls"] == 6
    tokens = stats["prompt_tokens"] + stats["completion_tokens"]
    assert stats["window"] == {"seconds": 60.0, "max_requests": 8, "max_tokens": tokens}
    assert stats["rate_limited"] == 0 and stats["rate_limited_by"] == {}
    assert stats["retry_after"] == {"followed": 0, "honoured": 0, "violated": 0, "min_margin_s": None}
    assert httpx.get(f"{server}/healthz").json() == {"status": "ok"}
    httpx.post(f"{server}/stats/reset")
    after = httpx.get(f"{server}/stats").json()
    assert after["requests"] == 0 and after["window"]["max_requests"] == 0 == after["window"]["max_tokens"]


# --- sliding windows, rpm / tpm budgets, Retry-After bookkeeping ---------------------------------


def test_peak_is_the_busiest_sliding_interval_of_requests_and_tokens() -> None:
    peak = Peak(1.0)
    for at, tokens in [(0.0, 10), (0.5, 10), (1.0, 50), (1.6, 5), (1.7, 5), (5.0, 1)]:
        peak.add_tokens(peak.hit(at), tokens, at)
    # (0.7, 1.7] holds 1.0, 1.6 and 1.7; (0.0, 1.0] holds 0.5 and 1.0 = 60 tokens
    assert peak.as_json() == {"seconds": 1.0, "max_requests": 3, "max_tokens": 60}
    assert len(peak.entries) == 1
    late = peak.hit(9.0)
    peak.add_tokens(late, 1000, 20.0)  # arrived tokens of a request already out of the window
    assert peak.max_tokens == 60


def test_budget_refuses_beyond_rpm_and_tpm_with_the_wait_until_room() -> None:
    rpm = Budget(10.0, rpm=2)
    assert rpm.admit(0, now=0.0)[0] and rpm.admit(0, now=1.0)[0]
    assert rpm.admit(0, now=2.0) == (None, 8.0, "requests")
    assert rpm.admit(0, now=10.0)[0] is not None  # the stamp at 0.0 left at 10.0
    tpm = Budget(10.0, tpm=100)
    first, _, _ = tpm.admit(40, now=0.0)
    assert first is not None
    tpm.add_tokens(first, 20)  # its completion
    assert tpm.admit(30, now=1.0)[0] is not None
    assert tpm.admit(20, now=2.0) == (None, 8.0, "tokens")
    assert tpm.admit(200, now=3.0) == (None, 10.0, "tokens")  # can never fit: a whole window
    assert retry_after_header(0.2) == 1 and retry_after_header(8.0) == 8 and retry_after_header(8.01) == 9


def test_retry_after_bookkeeping_per_conversation() -> None:
    book = RetryAfter()
    book.arrived("a", 0.0)  # no 429 before it: nothing to settle
    book.sent("a", 1.0, 1.0)
    book.arrived("b", 1.1)  # another conversation
    book.arrived("a", 1.97)  # 30 ms early: within the tolerance
    book.sent("b", 3.0, 2.0)
    book.arrived("b", 3.5)
    book.arrived("b", 9.0)  # already settled
    assert book.as_json() == {"followed": 2, "honoured": 1, "violated": 1, "min_margin_s": -1.5}


def plain_request(spec_id: str) -> dict[str, Any]:
    """A non-streamed first turn whose system message holds the markers: the model answers at once."""
    return {"model": MODEL, "messages": [system_message(True), user_message(make_spec(spec_id))]}


def test_rpm_answers_429_with_retry_after_and_records_whether_it_was_honoured(
    start_llm: Callable[..., str],
) -> None:
    base = start_llm("fake-llm-rpm", "--rpm", "3", "--rate-window", "2")
    with httpx.Client(base_url=base, timeout=10) as http:
        assert [
            http.post("/v1/chat/completions", json=plain_request(f"RPM-{i}")).status_code for i in range(3)
        ] == [200] * 3
        refused = http.post("/v1/chat/completions", json=plain_request("RPM-X"))
        assert refused.status_code == 429
        wait = int(refused.headers["retry-after"])
        assert 1 <= wait <= 2
        error = refused.json()["error"]
        assert (error["type"], error["code"], error["param"]) == ("requests", "rate_limit_exceeded", None)
        assert "Limit 3" in error["message"]
        again = http.post("/v1/chat/completions", json=plain_request("RPM-X"))  # at once: a violation
        assert again.status_code == 429
        time.sleep(int(again.headers["retry-after"]))
        assert http.post("/v1/chat/completions", json=plain_request("RPM-X")).status_code == 200
        stats = http.get("/stats").json()
        assert stats["requests"] == 6 and stats["by_status"] == {"200": 4, "429": 2}
        assert stats["rate_limited"] == 2 and stats["rate_limited_by"] == {"requests": 2}
        assert stats["faults_injected"] == 0
        assert stats["window"]["seconds"] == 2.0 and stats["window"]["max_requests"] == 5
        assert stats["window"]["max_tokens"] > 0
        retry = stats["retry_after"]
        assert (retry["followed"], retry["honoured"], retry["violated"]) == (2, 1, 1)
        assert retry["min_margin_s"] < -0.5
        http.post("/stats/reset").raise_for_status()
        stats = http.get("/stats").json()
        assert stats["window"]["max_requests"] == 0 and stats["rate_limited"] == 0
        assert stats["retry_after"]["followed"] == 0
        # the reset emptied the budget too
        assert [
            http.post("/v1/chat/completions", json=plain_request(f"RPM-{i}")).status_code for i in range(3)
        ] == [200] * 3


def test_tpm_counts_prompt_and_completion_tokens(server: str, start_llm: Callable[..., str]) -> None:
    usage = httpx.post(f"{server}/v1/chat/completions", json=plain_request("TPM-1")).json()["usage"]
    # two requests fit; a third's prompt does not
    budget = 2 * usage["total_tokens"] + usage["prompt_tokens"] - 1
    base = start_llm("fake-llm-tpm", "--tpm", str(budget), "--rate-window", "1.5")
    with httpx.Client(base_url=base, timeout=10) as http:
        statuses = [
            http.post("/v1/chat/completions", json=plain_request("TPM-1")).status_code for _ in range(2)
        ]
        assert statuses == [200, 200]
        refused = http.post("/v1/chat/completions", json=plain_request("TPM-1"))
        assert refused.status_code == 429 and refused.json()["error"]["type"] == "tokens"
        assert refused.headers["retry-after"] in {"1", "2"}
        time.sleep(int(refused.headers["retry-after"]))
        assert http.post("/v1/chat/completions", json=plain_request("TPM-1")).status_code == 200
        stats = http.get("/stats").json()
    assert stats["rate_limited_by"] == {"tokens": 1}
    assert stats["window"]["max_tokens"] == 2 * usage["total_tokens"]
    assert stats["retry_after"]["honoured"] == 1


def test_openai_client_waits_out_the_rpm_budget(start_llm: Callable[..., str]) -> None:
    base = start_llm("fake-llm-rpm-client", "--rpm", "2", "--rate-window", "1")

    async def scenario() -> None:
        client = client_for(base, max_retries=3)
        for index in range(4):
            messages = [system_message(True), user_message(make_spec(f"RPC-{index}"))]
            assert (await stream_turn(client, messages, tools=None)).text.startswith("*** Settings")

    run(scenario())
    stats = httpx.get(f"{base}/stats").json()
    assert stats["rate_limited"] >= 1 and stats["by_status"]["200"] == 4
    assert stats["retry_after"]["violated"] == 0 and stats["retry_after"]["followed"] == stats["rate_limited"]
