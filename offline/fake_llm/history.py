"""What the scripted writer knows, read from the request alone: the spec, the prompt's markers,
the tool calls made so far and their results (files fetched, tree listings, errors).
"""

from __future__ import annotations

import ast
import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from offline.fake_llm.given import catalog, given_files
from offline.fake_llm.protocol import content_text
from offline.fake_llm.robotfiles import Keyword

CONVENTION = "doc/convention.md"
CONVENTION_MARKER = re.compile(r"(?m)^##\s*doc/convention\.md\s*$")
TREE_MARKER = re.compile(r"(?m)^##\s*Repository tree\s*$")
SPEC_MARKER = re.compile(r"(?m)^##\s*Spec\s*$")
FENCE = re.compile(r"```[ \t]*(?:json)?[ \t]*\n(.*?)\n[ \t]*```", re.S)
ROBOT_PATH = re.compile(r"(?<![\w./-])((?:\./)?[\w.@+-]+(?:/[\w.@+-]+)*\.(?:robot|resource))(?![\w/])")
PAGE_TOKEN = re.compile(r'"next_page_token"\s*:\s*"([^"]+)"')
CONTENT_START = re.compile(r'"content"\s*:\s*"')
ENCODING = re.compile(r'"encoding"\s*:\s*"(\w+)"')
JSON_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f"}


@dataclass(frozen=True)
class Call:
    """One tool call: name and arguments (canonical JSON gives it an identity)."""

    name: str
    arguments: Mapping[str, Any]

    @property
    def key(self) -> tuple[str, str]:
        return self.name, json.dumps(self.arguments, sort_keys=True)


@dataclass
class History:
    """The conversation as the writer sees it."""

    spec: dict[str, Any]
    prompt: str
    offered: frozenset[str]
    results: list[tuple[Call, str]] = field(default_factory=list)
    requested: set[tuple[str, str]] = field(default_factory=set)
    answers: int = 0
    last_role: str = ""
    repairs: list[str] = field(default_factory=list)
    # the user messages that follow an answer, in order: the repair requests
    given: dict[str, str] = field(default_factory=dict)
    # the files the prompt gives (`## Repository file:`), in order: as good as fetched
    catalog: list[Keyword] = field(default_factory=list)
    # the keywords the prompt lists (`## Keywords of the repository`)

    @property
    def repair_requested(self) -> bool:
        """A user message follows an answer already given."""
        return self.answers > 0 and self.last_role == "user"

    def called(self, name: str) -> bool:
        return any(call.name == name for call, _ in self.results)

    def fetched(self) -> dict[str, str | None]:
        """File path -> its text, or None when the fetch failed or returned no Robot data (no
        Python for a `.py` variable file)."""
        files: dict[str, str | None] = {}
        for call, raw in self.results:
            path = call.arguments.get("file_path")
            if call.name == "get_file_contents" and isinstance(path, str):
                files[norm_path(path)] = file_text(raw, python=path.endswith(".py"))
        return files

    def files(self) -> dict[str, str | None]:
        """What the writer has read: the files the prompt gives, then those it fetched."""
        given: dict[str, str | None] = {
            path: text if _usable(text, path.endswith(".py")) else None for path, text in self.given.items()
        }
        return {**given, **{path: text for path, text in self.fetched().items() if path not in given}}

    def given_tests(self) -> list[str]:
        """The suites the prompt gives, in its order: the tests most like the one to write."""
        return [p for p in self.given if p.endswith(".robot") and not p.endswith("__init__.robot")]

    def tree_results(self) -> list[tuple[Call, str]]:
        return [(call, raw) for call, raw in self.results if call.name == "get_repository_tree"]

    def known_paths(self) -> list[str]:
        """Every .robot/.resource path named by the prompt's tree or a tree listing, sorted."""
        texts = [prompt_tree(self.prompt), *(tree_paths(raw) for _, raw in self.tree_results())]
        return sorted({norm_path(m) for text in texts for m in ROBOT_PATH.findall(text)})

    def convention_known(self) -> bool:
        if CONVENTION_MARKER.search(self.prompt):
            return True
        return any(
            call.name == "get_file_contents"
            and norm_path(str(call.arguments.get("file_path", ""))) == CONVENTION
            for call, _ in self.results
        )

    def tree_known(self) -> bool:
        return bool(TREE_MARKER.search(self.prompt)) or bool(self.tree_results())


def prompt_tree(prompt: str) -> str:
    """The lines under `## Repository tree`, up to the next `## ` heading."""
    marker = TREE_MARKER.search(prompt)
    if not marker:
        return ""
    section = prompt[marker.end() :]
    end = re.search(r"(?m)^## ", section)
    return section[: end.start()] if end else section


def tree_paths(raw: str) -> str:
    """The `path` of each item of a JSON tree listing, one a line (a bare `name` is no path);
    any other text as it is."""
    try:
        data = json.loads(raw)
    except ValueError:
        return raw
    items = data.get("items") if isinstance(data, dict) else data
    if not isinstance(items, list):
        return raw
    return "\n".join(str(i["path"]) for i in items if isinstance(i, dict) and isinstance(i.get("path"), str))


def norm_path(path: str) -> str:
    path = path.strip().replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    return path.lstrip("/")


def file_text(raw: str, python: bool = False) -> str | None:
    """A file's text from a get_file_contents result (JSON object or plain text), None if unusable:
    Robot data must have a section header, Python must parse."""
    text: str | None = raw
    try:
        data = json.loads(raw)
    except ValueError:
        data = _cut_off_object(raw)
    if isinstance(data, dict):
        content = data.get("content")
        text = content if isinstance(content, str) else None
        if text is not None and data.get("encoding") == "base64":
            try:
                text = base64.b64decode(text).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                text = None
    if text is None:
        return None
    return text if _usable(text, python) else None


def _usable(text: str, python: bool) -> bool:
    """Robot data must have a section header, Python must parse."""
    return _is_python(text) if python else "***" in text


def _cut_off_object(raw: str) -> dict[str, str] | None:
    """A JSON file result cut short by the client (a tool-result size limit): its `content` as far
    as it goes, without the last, incomplete line. None when `raw` is no such object."""
    start = CONTENT_START.search(raw)
    if not raw.lstrip().startswith("{") or start is None:
        return None
    found: list[str] = []
    index = start.end()
    while index < len(raw) and raw[index] not in '"\n':
        char = raw[index]
        if char != "\\":
            found.append(char)
            index += 1
            continue
        escape = raw[index + 1 : index + 2]
        if escape == "u" and len(raw) >= index + 6:
            found.append(chr(int(raw[index + 2 : index + 6], 16)))
            index += 6
        elif escape in JSON_ESCAPES:
            found.append(JSON_ESCAPES[escape])
            index += 2
        else:
            break
    content = "".join(found)
    closed = index < len(raw) and raw[index] == '"'
    encoding = ENCODING.search(raw)
    return {
        "content": content if closed else content.rpartition("\n")[0],
        "encoding": encoding.group(1) if encoding else "",
    }


def _is_python(text: str) -> bool:
    try:
        ast.parse(text)
    except SyntaxError:
        return False
    return True


def find_spec(text: str) -> dict[str, Any]:
    """The first ```json block after `## Spec` (else anywhere), else the first JSON object."""
    marker = SPEC_MARKER.search(text)
    for region in ([text[marker.end() :]] if marker else []) + [text]:
        for block in FENCE.findall(region):
            spec = _json_object(block.strip())
            if spec is not None:
                return spec
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _parse_arguments(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    try:
        value = json.loads(arguments or "{}")
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def read_history(messages: Sequence[Mapping[str, Any]], tools: Any) -> History:
    """Read a validated message list (and the request's `tools`) into a `History`."""
    prompt = "\n".join(
        content_text(m.get("content")) for m in messages if m.get("role") in ("system", "developer", "user")
    )
    first_user = next((content_text(m.get("content")) for m in messages if m.get("role") == "user"), "")
    history = History(spec=find_spec(first_user), prompt=prompt, offered=offered_tools(tools))
    # what comes before the conversation: the system messages and the first user message
    opening = "\n".join(
        content_text(m.get("content")) for m in messages if m.get("role") in ("system", "developer")
    )
    history.given = {norm_path(path): text for path, text in given_files(f"{opening}\n{first_user}").items()}
    history.catalog = catalog(opening) or catalog(first_user)
    calls: dict[str, Call] = {}
    for message in messages:
        role = str(message.get("role"))
        history.last_role = role
        if role == "user" and history.answers:
            history.repairs.append(content_text(message.get("content")))
        if role == "assistant":
            tool_calls = [c for c in message.get("tool_calls") or [] if isinstance(c, dict)]
            if not tool_calls:
                history.answers += 1
            for raw in tool_calls:
                function = raw.get("function") or {}
                call = Call(str(function.get("name", "")), _parse_arguments(function.get("arguments")))
                calls[str(raw.get("id"))] = call
                history.requested.add(call.key)
        elif role == "tool" and message.get("tool_call_id") in calls:
            history.results.append((calls[message["tool_call_id"]], content_text(message.get("content"))))
    return history


def offered_tools(tools: Any) -> frozenset[str]:
    """Names of the function tools a request offers."""
    names = set()
    for tool in tools or []:
        if isinstance(tool, dict):
            function = tool.get("function") or {}
            if isinstance(function, dict) and function.get("name"):
                names.add(str(function["name"]))
    return frozenset(names)


def next_page_token(raw: str) -> str | None:
    """The `next_page_token` a tree listing carries, if any."""
    match = PAGE_TOKEN.search(raw)
    return match.group(1) if match else None
