"""The scripted writer over HTTP on the example sprint: its 17 clean suites pass when run.

The test plays the product and the MCP server itself: it builds each spec's first messages with the
worker's own prompt code (convention, rules, keyword catalog and tree in the system message; the
files most like the suite, then the spec, in the user message; the id from the file name when the
spec has none), answers the model's `get_file_contents` / `get_repository_tree` calls from the
files of examples/framework, then runs every answer inside a copy of the framework with
`robot --pythonpath . tests/...`. `upfront=False` sends the bare spec instead, as a product that
gives nothing up front does: the writer then reads everything with the tools.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import openai
import pytest
from robot.api import ExecutionResult, ResultVisitor, get_model
from robot.api.parsing import ModelVisitor
from robot.running import ResourceFile

from tests.conftest import StandIn
from tests.test_fake_llm import READ_TOOLS, client_for, run, stream_turn
from worker.agent.catalog import build_catalog
from worker.agent.context import CONVENTION_PATH, RepoContext
from worker.agent.prompt import initial_messages
from worker.agent.upfront import upfront_files
from worker.spec import parse_spec

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[1]
FRAMEWORK = REPO_ROOT / "examples" / "framework"
SPECS = REPO_ROOT / "examples" / "specs"
MODEL = "fake-writer"
MAX_TURNS = 30
PLACEHOLDER = re.compile(r"<[A-Za-z_][\w -]*>|\b(?:TODO|FIXME|XXX)\b")
KINDS = {"smoke", "regression"}
MAX_SPEC_BYTES = 1_000_000
MAX_ROUNDS = 2


def framework_files() -> dict[str, str]:
    return {
        p.relative_to(FRAMEWORK).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(FRAMEWORK.rglob("*"))
        if p.is_file()
    }


def tree_items(files: dict[str, str]) -> list[dict[str, str]]:
    folders = {str(Path(path).parent.as_posix()) for path in files} - {"."}
    items = [{"path": f, "type": "tree"} for f in sorted(folders)]
    return items + [{"path": p, "type": "blob"} for p in sorted(files)]


def answer_tool(files: dict[str, str], name: str, arguments: dict[str, Any], cut: int | None = None) -> str:
    """What the GitLab MCP server answers (a failure is text the model reads); `cut` shortens a
    result the way a client's result-size limit does."""
    text = _tool_text(files, name, arguments)
    if cut is None or len(text) <= cut:
        return text
    return text[:cut] + f"\n[... truncated: {len(text) - cut} of {len(text)} characters not shown ...]"


def _tool_text(files: dict[str, str], name: str, arguments: dict[str, Any]) -> str:
    if name == "get_file_contents":
        path = str(arguments.get("file_path", ""))
        if path not in files:
            return f"Error: File not found: {path}"
        return json.dumps({"file_path": path, "encoding": "utf8", "content": files[path]})
    if name == "get_repository_tree":
        return json.dumps(tree_items(files))
    return f"Error: tool {name} is not offered"


def load_spec(path: Path) -> dict[str, Any]:
    """The spec as the worker shows it: with an `id` taken from the file name when it has none."""
    spec = json.loads(path.read_text(encoding="utf-8"))
    if "id" not in spec and "key" not in spec:
        spec = {"id": path.name.removesuffix("_spec.json"), **spec}
    return spec


def spec_id(spec: dict[str, Any]) -> str:
    return str(spec.get("id") or spec.get("key"))


def target_path(spec: dict[str, Any]) -> str:
    rf = spec.get("rf") or {}
    return str(rf.get("target_path") or rf.get("output_path") or f"tests/generated/{spec_id(spec)}.robot")


async def product_messages(spec: dict[str, Any], files: dict[str, str]) -> list[dict[str, Any]]:
    """The first messages as the worker builds them (worker/agent/writer.py `_given`, worker/agent/prompt.py)."""

    async def read_file(path: str) -> str | None:
        return files.get(path)

    paths = tuple(sorted(files))
    product_spec = parse_spec(
        json.dumps(spec).encode(), source=f"{spec_id(spec)}_spec.json", max_bytes=MAX_SPEC_BYTES
    )
    context = RepoContext("42", "main", files.get(CONVENTION_PATH, ""), paths, mcp_calls=0)
    catalog = await build_catalog(read_file, paths)
    text = json.dumps(product_spec.data, ensure_ascii=False)
    given = await upfront_files(read_file, paths, product_spec.target_path, text)
    return initial_messages(context, product_spec, catalog, given)


def first_messages(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The bare spec: a product that gives nothing up front."""
    user = (
        f"Write the suite for spec {spec_id(spec)}.\n\n## Spec\n```json\n{json.dumps(spec, indent=2)}\n```\n"
    )
    return [
        {"role": "system", "content": "You write Robot Framework suites."},
        {"role": "user", "content": user},
    ]


async def converse(
    client: openai.AsyncOpenAI,
    messages: list[dict[str, Any]],
    files: dict[str, str],
    model: str = MODEL,
    cut: int | None = None,
) -> None:
    """Answer tool calls until the model answers; `messages` grows in place."""
    for _ in range(MAX_TURNS):
        turn = await stream_turn(client, messages, model=model, tools=READ_TOOLS)
        if not turn.calls:
            messages.append({"role": "assistant", "content": turn.text})
            return
        calls = [
            {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in turn.calls
        ]
        messages.append({"role": "assistant", "content": turn.text or None, "tool_calls": calls})
        for call in turn.calls:
            content = answer_tool(files, call["name"], json.loads(call["arguments"]), cut)
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": content})
    raise AssertionError(f"no answer in {MAX_TURNS} turns")


async def conversation(
    client: openai.AsyncOpenAI,
    spec: dict[str, Any],
    repairs: Sequence[str] = (),
    model: str = MODEL,
    cut: int | None = None,
    files: dict[str, str] | None = None,
    upfront: bool = True,
) -> list[dict[str, Any]]:
    """The messages of the first answer, then of one answer per repair request (the repository:
    examples/framework unless `files`)."""
    files = files or framework_files()
    messages = await product_messages(spec, files) if upfront else first_messages(spec)
    await converse(client, messages, files, model, cut)
    for request in repairs:
        messages.append({"role": "user", "content": request})
        await converse(client, messages, files, model, cut)
    return messages


def answers_of(messages: list[dict[str, Any]]) -> list[str]:
    return [m["content"] for m in messages if m["role"] == "assistant" and not m.get("tool_calls")]


async def write_suite(
    client: openai.AsyncOpenAI,
    spec: dict[str, Any],
    repairs: Sequence[str] = (),
    model: str = MODEL,
    cut: int | None = None,
    files: dict[str, str] | None = None,
    upfront: bool = True,
) -> list[str]:
    """The first answer, then one answer per repair request."""
    return answers_of(await conversation(client, spec, repairs, model, cut, files, upfront))


def write_conversations(
    server: str, specs: Sequence[dict[str, Any]], upfront: bool = True
) -> list[list[dict[str, Any]]]:
    async def scenario() -> list[list[dict[str, Any]]]:
        client = client_for(server)
        talks = (conversation(client, spec, upfront=upfront) for spec in specs)
        return list(await asyncio.gather(*talks))

    return run(scenario())


def write_suites(server: str, specs: Sequence[dict[str, Any]]) -> list[str]:
    return [answers_of(messages)[0] for messages in write_conversations(server, specs)]


def run_suites(suites: dict[str, str], root: Path, source: Path = FRAMEWORK) -> dict[str, tuple[bool, str]]:
    """Write `suites` (target path -> text) into a copy of the repository and run them there:
    test name -> (passed, message)."""
    shutil.copytree(source, root)
    for target, text in suites.items():
        (root / target).parent.mkdir(parents=True, exist_ok=True)
        (root / target).write_text(text, encoding="utf-8")
    command = [sys.executable, "-m", "robot", "--pythonpath", ".", "--output", "output.xml"]
    command += ["--log", "NONE", "--report", "NONE", "--console", "none", *suites]
    subprocess.run(command, cwd=root, check=False, timeout=120)
    collector = _Collector()
    ExecutionResult(str(root / "output.xml")).visit(collector)
    return collector.outcomes


class _Collector(ResultVisitor):
    def __init__(self) -> None:
        self.outcomes: dict[str, tuple[bool, str]] = {}

    def visit_test(self, test: Any) -> None:
        self.outcomes[test.name] = (test.passed, test.message)


class _Tests(ModelVisitor):
    """Each test's settings and keyword calls, as Robot parses the suite."""

    def __init__(self) -> None:
        self.tests: dict[str, dict[str, Any]] = {}
        self.current: dict[str, Any] = {}

    def visit_TestCase(self, node: Any) -> None:  # robot's visitor naming
        self.current = self.tests.setdefault(node.name, {"doc": None, "tags": [], "calls": []})
        self.generic_visit(node)

    def visit_Documentation(self, node: Any) -> None:
        if self.current:
            self.current["doc"] = node.value

    def visit_Tags(self, node: Any) -> None:
        self.current["tags"] = list(node.values)

    def visit_KeywordCall(self, node: Any) -> None:
        self.current["calls"].append(node.keyword)


def parsed_tests(text: str) -> dict[str, dict[str, Any]]:
    visitor = _Tests()
    visitor.visit(get_model(text))
    return visitor.tests


def private_keywords() -> set[str]:
    names = set()
    for path in (FRAMEWORK / "resources").glob("*.resource"):
        for keyword in ResourceFile.from_string(path.read_text(encoding="utf-8")).keywords:
            if "robot:private" in keyword.tags:
                names.add(keyword.name.lower())
    return names


def expected_area(spec: dict[str, Any]) -> str:
    parts = target_path(spec).split("/")
    rf = spec.get("rf") or {}
    return parts[1] if (rf.get("target_path") or rf.get("output_path")) and len(parts) > 2 else spec["area"]


def assert_follows_convention(spec: dict[str, Any], text: str, private: set[str]) -> None:
    ident = spec_id(spec)
    tests = parsed_tests(text)
    assert tests, text
    own = [str(t) for t in (spec.get("rf") or {}).get("tags", []) + spec.get("tags", [])]
    own += [str(t) for t in (spec.get("jira") or {}).get("labels", [])]
    for name, test in tests.items():
        assert name.startswith(f"{ident} "), name
        assert test["doc"], f"{name}: no [Documentation]"
        tags = test["tags"]
        assert tags[:2] == [ident, expected_area(spec)], (name, tags)
        assert len([t for t in tags if t.lower() in KINDS]) == 1 and tags[-1].lower() in KINDS, (name, tags)
        assert {t for t in own if t.lower() not in KINDS} <= set(tags), (name, tags, own)
        assert not [c for c in test["calls"] if c.lower() in private], (name, test["calls"])


@pytest.mark.parametrize("upfront", [True, False], ids=["context-given", "nothing-given"])
def test_clean_drafts_of_the_example_sprint_pass_when_run(
    fake_llm: StandIn, tmp_path: Path, upfront: bool
) -> None:
    """Given the catalog and the similar files, each spec is answered within two rounds; given
    nothing, the writer reads what it needs with the tools and writes the same quality of suite."""
    specs = [load_spec(path) for path in sorted(SPECS.glob("*_spec.json"))]
    assert len(specs) == 17
    conversations = write_conversations(fake_llm.base, specs, upfront)
    answers = [answers_of(messages)[0] for messages in conversations]
    rounds = {
        spec_id(s): sum(m["role"] == "assistant" for m in c)
        for s, c in zip(specs, conversations, strict=True)
    }
    assert max(rounds.values()) <= (MAX_ROUNDS if upfront else MAX_TURNS), rounds
    suites = dict(zip((target_path(s) for s in specs), answers, strict=True))
    private = private_keywords()
    for spec, text in zip(specs, answers, strict=True):
        assert not PLACEHOLDER.search(text), f"{spec_id(spec)}: placeholder in\n{text}"
        assert_follows_convention(spec, text, private)
    outcomes = run_suites(suites, tmp_path / "framework")
    expected = {name for text in answers for name in parsed_tests(text)}
    assert set(outcomes) == expected
    failed = {name: message for name, (passed, message) in outcomes.items() if not passed}
    assert not failed, f"{len(failed)} of {len(outcomes)} generated tests failed: {failed}"


def test_a_file_result_cut_short_is_read_as_far_as_it_goes(fake_llm: StandIn, tmp_path: Path) -> None:
    """A client's result-size limit cuts api_client.resource (24 kB) in its private keywords: the
    public ones before the cut are still used (nothing given up front: the writer fetches it)."""
    spec = load_spec(SPECS / "SHOP-130_spec.json")
    [text] = run(write_suite(client_for(fake_llm.base), spec, cut=12_000, upfront=False))
    assert "    ${response}=    Send GET Request    /api/cart\n    Response Status Should Be    401\n" in text
    outcomes = run_suites({target_path(spec): text}, tmp_path / "framework")
    assert outcomes and all(passed for passed, _ in outcomes.values()), outcomes
