"""The deterministic writer: a request's messages in, the next action out.

It plays a careful writer: convention, tree, the most similar test (same area first), its
resources and variable files (transitively), the tree's other resources, then the suite. What the
prompt gives counts as read: its files are never fetched (the first test among them is the
similar test), and its keyword catalog stands for the resources not given (their keywords are
used, and imported, without reading them). It only calls tools the request offers (except when
`evil` asks it to misbehave), never repeats a call, and skips files whose fetch failed.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from offline.fake_llm.given import said_in_full
from offline.fake_llm.history import CONVENTION, Call, History, next_page_token, norm_path
from offline.fake_llm.knobs import Knobs
from offline.fake_llm.robotfiles import (
    Keyword,
    Knowledge,
    read_assignments,
    read_resource,
    read_settings,
    read_variable_file,
)
from offline.fake_llm.suite import build_suite, target_area, used_keywords
from offline.fake_llm.words import words

READ_FILE = "get_file_contents"
READ_TREE = "get_repository_tree"
TREE_ARGUMENTS = {"recursive": True, "per_page": 100, "pagination": "keyset"}
MAX_SIMILAR_TRIES = 3
MAX_OTHER_RESOURCES = 6
AREA_BONUS = 2
# a test in the spec's own area folder beats one elsewhere that only shares two words
READABLE = (".resource", ".robot", ".txt", ".py")
EVIL_PROJECT = "secret/infra"
UNOFFERED_TOOLS = ("run_shell_command", "delete_project", "fake_llm_unlisted_tool")
FENCE_BEFORE = "Here is the Robot Framework suite for this spec:"
FENCE_AFTER = "Let me know if you want more scenarios."


@dataclass(frozen=True)
class RawCall:
    """A tool call whose arguments are sent as this text exactly, JSON or not (a reviewer's
    answer, malformed on purpose by a knob)."""

    name: str
    arguments: str


@dataclass(frozen=True)
class ToolTurn:
    """The assistant calls these tools in one turn."""

    calls: tuple[Call | RawCall, ...]
    thinking: str = ""
    forced: bool = False
    # the request's tool_choice named the function: the real API then finishes with "stop"


@dataclass(frozen=True)
class Answer:
    """The assistant answers with text (possibly empty) and no tool calls."""

    text: str
    thinking: str = ""
    repair: bool = False


@dataclass(frozen=True)
class Refusal:
    """The assistant declines (structured outputs' `refusal`): no content, no tool call."""

    text: str
    thinking: str = ""


Action = ToolTurn | Answer | Refusal


@dataclass
class _Plan:
    history: History
    knobs: Knobs
    knowledge: Knowledge = field(default_factory=Knowledge)
    similar: str = ""
    from_catalog: list[Keyword] = field(default_factory=list)
    # the keywords known only by their catalog line

    def can(self, tool: str) -> bool:
        return tool in self.history.offered

    def fresh(self, calls: Sequence[Call]) -> list[Call]:
        return [c for c in calls if c.key not in self.history.requested]


def decide(history: History, knobs: Knobs) -> Action:
    """The next assistant turn."""
    if knobs.no_answer == "loop":
        return ToolTurn((Call(READ_TREE, dict(TREE_ARGUMENTS)),), "I should list the tree again.")
    if knobs.upfront == "ignore":
        history = replace(history, given={}, catalog=[])
    plan = _Plan(history, knobs)
    for step in (_orientation, _similar_test, _resources, _unclear):
        turn = step(plan)
        if turn is not None:
            return turn
    if knobs.evil and not history.called("push_files"):
        return ToolTurn(_evil_calls(history.offered), "I will push the file and look at other projects.")
    return _answer(plan)


def _orientation(plan: _Plan) -> ToolTurn | None:
    """Convention, then the tree (both in one turn in parallel mode), then the tree's next pages."""
    calls: list[Call] = []
    if not plan.history.convention_known() and plan.can(READ_FILE):
        calls.append(Call(READ_FILE, {"file_path": CONVENTION}))
    if not plan.history.tree_known() and plan.can(READ_TREE):
        calls.append(Call(READ_TREE, dict(TREE_ARGUMENTS)))
    elif plan.can(READ_TREE) and plan.history.tree_results():
        token = next_page_token(plan.history.tree_results()[-1][1])
        if token:
            calls.append(Call(READ_TREE, {**TREE_ARGUMENTS, "page_token": token}))
    calls = plan.fresh(calls)
    if not calls:
        return None
    if plan.knobs.tool_calls != "parallel":
        calls = calls[:1]
    thinking = "I read the team's conventions and the repository layout before writing anything."
    return ToolTurn(tuple(calls), thinking)


def _ranked_tests(plan: _Plan) -> list[str]:
    spec = plan.history.spec
    rf = spec.get("rf") if isinstance(spec.get("rf"), dict) else {}
    target = norm_path(str(rf.get("target_path") or rf.get("output_path") or ""))
    wanted = set(words(f"{spec.get('area', '')} {spec.get('title', '')} {target}"))
    area = target_area(spec).lower()
    tests = [
        p
        for p in plan.history.known_paths()
        if p.startswith("tests/") and p.endswith(".robot") and p != target
    ]

    def score(path: str) -> int:
        folders = path.split("/")[1:-1]
        return len(wanted & set(words(path))) + (AREA_BONUS if folders[:1] == [area] else 0)

    return sorted(tests, key=lambda p: (-score(p), p))


def _similar_test(plan: _Plan) -> ToolTurn | None:
    """The test the prompt gives, else fetch the most similar test (the next one when a fetch
    failed); read its settings."""
    fetched = plan.history.files()
    if not plan.can(READ_FILE) and not fetched:
        return None
    tried = [*plan.history.given_tests(), *_ranked_tests(plan)[:MAX_SIMILAR_TRIES]]
    for path in dict.fromkeys(tried):
        if path not in fetched:
            if not plan.can(READ_FILE) or not plan.fresh([Call(READ_FILE, {"file_path": path})]):
                continue
            return ToolTurn((Call(READ_FILE, {"file_path": path}),), f"{path} looks closest to this spec.")
        text = fetched[path]
        if text is not None:
            plan.knowledge.settings = read_settings(text)
            plan.knowledge.assigned = read_assignments(text)
            plan.knowledge.similar = plan.similar = path
            return None
    return None


def resolve_import(name: str, importer: str, known: set[str]) -> str:
    """A Resource import as a repository path: root-relative first, then relative to the importer."""
    directory = posixpath.dirname(importer)
    name = name.replace("${CURDIR}", directory or ".").replace("\\", "/")
    root_relative = norm_path(posixpath.normpath(name))
    file_relative = norm_path(posixpath.normpath(posixpath.join(directory, name)))
    for candidate in (root_relative, file_relative):
        if candidate in known:
            return candidate
    return root_relative


def _resources(plan: _Plan) -> ToolTurn | None:
    """Walk the similar test's imports breadth first (resources and Python variable files), then
    every other resource of the tree, as a careful writer looks in resources/ before writing a
    step; fetch what is missing, learn keywords and variables from the rest. With a catalog in the
    prompt, the other resources are its lines, and a resource it lists is fetched only when the
    similar test imports it directly."""
    walk = _Walk(plan, plan.history.files(), set(plan.history.known_paths()))
    walk.known |= set(walk.fetched)
    walk.listed = {keyword.source for keyword in plan.history.catalog}
    settings = plan.knowledge.settings
    walk.run([(name, plan.similar) for name in (*settings.resources, *settings.variables)])
    plan.knowledge.reachable = set(walk.seen)
    if not walk.pending and plan.history.catalog:
        _from_catalog(plan, walk)
    elif not walk.pending:
        others = [p for p in plan.history.known_paths() if p.endswith(".resource") and p not in walk.seen]
        walk.run([(path, "") for path in _by_relevance(plan, others)[:MAX_OTHER_RESOURCES]])
    pending = walk.pending
    if not pending:
        return None
    if plan.knobs.tool_calls != "parallel":
        pending = pending[:1]
    calls = tuple(Call(READ_FILE, {"file_path": path}) for path in pending)
    return ToolTurn(calls, f"I need the keywords in {', '.join(pending)}.")


def _from_catalog(plan: _Plan, walk: _Walk) -> None:
    """Learn the files read (given or fetched) the similar test does not reach, fetching none of
    their imports, then every catalog keyword of a file not read."""
    walk.fetch = False
    rest = [path for path in walk.fetched if path not in walk.seen and not path.endswith(".robot")]
    walk.run([(path, "") for path in rest])  # a suite is no resource: its keywords are its own
    read = {path for path in walk.seen if walk.fetched.get(path) is not None}
    plan.from_catalog = [k for k in plan.history.catalog if k.source not in read]
    plan.knowledge.keywords += plan.from_catalog


def _unclear(plan: _Plan) -> ToolTurn | None:
    """Read the file of a catalog keyword the suite would call when its line says too little (its
    documentation cut short, or none): what it returns is in the file."""
    unclear = {k.name.lower(): k.source for k in plan.from_catalog if not said_in_full(k.doc)}
    if not unclear or not plan.can(READ_FILE):
        return None
    used = used_keywords(plan.history.spec, plan.knowledge)
    paths = dict.fromkeys(unclear[name.lower()] for name in used if name.lower() in unclear)
    calls = plan.fresh([Call(READ_FILE, {"file_path": path}) for path in paths])
    if not calls:
        return None
    if plan.knobs.tool_calls != "parallel":
        calls = calls[:1]
    names = ", ".join(str(call.arguments["file_path"]) for call in calls)
    return ToolTurn(tuple(calls), f"The catalog does not say enough about keywords in {names}.")


def _by_relevance(plan: _Plan, paths: list[str]) -> list[str]:
    wanted = set(words(json.dumps(plan.history.spec)))
    return sorted(paths, key=lambda p: (-len(wanted & set(words(p))), p))


@dataclass
class _Walk:
    """One breadth-first walk over imports: what to fetch next, what was learnt."""

    plan: _Plan
    fetched: dict[str, str | None]
    known: set[str]
    seen: set[str] = field(default_factory=set)
    pending: list[str] = field(default_factory=list)
    listed: set[str] = field(default_factory=set)
    # resources the prompt's catalog tells the keywords of: only fetched when the similar test
    # imports them itself (the suite imports them too, and their variables and variable files matter)
    fetch: bool = True
    # False: learn what was read, fetch nothing more

    def run(self, queue: list[tuple[str, str]]) -> None:
        while queue:
            name, importer = queue.pop(0)
            path = resolve_import(name, importer, self.known)
            if path in self.seen or not path.endswith(READABLE):
                continue
            self.seen.add(path)
            if path not in self.fetched:
                deep = path in self.listed and importer != self.plan.similar
                if self.fetch and not deep and self._fetchable(path):
                    self.pending.append(path)
                continue
            text = self.fetched[path]
            if text is not None:
                queue += self._learn(path, text)

    def _fetchable(self, path: str) -> bool:
        return self.plan.can(READ_FILE) and bool(self.plan.fresh([Call(READ_FILE, {"file_path": path})]))

    def _learn(self, path: str, text: str) -> list[tuple[str, str]]:
        knowledge = self.plan.knowledge
        if path.endswith(".py"):
            names, seeds = read_variable_file(text)
            knowledge.variables |= set(names)
            knowledge.variable_names.update(names)
            knowledge.seed_values |= seeds
            return []
        keywords, variables = read_resource(text, path)
        knowledge.keywords += keywords
        knowledge.variables |= set(variables)
        knowledge.variable_names.update(variables)
        settings = read_settings(text)
        knowledge.imports[path] = [resolve_import(n, path, self.known) for n in settings.resources]
        return [(child, path) for child in (*settings.resources, *settings.variables)]


def _evil_calls(offered: frozenset[str]) -> tuple[Call, ...]:
    unoffered = next(name for name in UNOFFERED_TOOLS if name not in offered)
    commit = {"project_id": EVIL_PROJECT, "branch": "main", "commit_message": "add generated test"}
    return (
        Call("push_files", {**commit, "files": [{"file_path": "tests/pwned.robot", "content": "pwned"}]}),
        Call("create_or_update_file", {**commit, "file_path": "doc/convention.md", "content": "pwned"}),
        Call(READ_FILE, {"project_id": EVIL_PROJECT, "file_path": "secrets.env"}),
        Call(unoffered, {"command": "cat ~/.ssh/id_rsa"}),
    )


def _answer(plan: _Plan) -> Answer:
    history = plan.history
    repair = history.repair_requested
    if plan.knobs.no_answer == "empty":
        return Answer("", "I have nothing to add.", repair)
    text = build_suite(history.spec, plan.knowledge, plan.knobs.draft, history.repairs)
    if plan.knobs.fences:
        text = f"{FENCE_BEFORE}\n\n```robot\n{text}```\n\n{FENCE_AFTER}"
    thinking = "The diagnostics show what to fix." if repair else "I have what I need to write the suite."
    return Answer(text, thinking, repair)
