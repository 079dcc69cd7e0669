"""`robot-fleet rules`: what the fleet will enforce on the configured project and ref, read the way a
worker reads it (through the MCP server), so a team can check its rules before a sprint.

It prints the rules file's rules, the Robocop configuration in force, how suites are run, and the
libraries the repository needs that this machine (and so, probably, the workers' image) lacks:
those declared in its requirements and those its resources import.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import tomllib
from dataclasses import dataclass, field
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from rich.console import Console
from rich.markup import escape

from worker.adapters.mcp_tools import McpSession
from worker.agent.checks.rules import as_dict
from worker.agent.checks.scope import library_keywords, parse_resource
from worker.agent.context import CONVENTION_PATH, ContextCache, RepoContext
from worker.agent.tools import GuardedTools
from worker.agent.writer import WriterConfig
from worker.settings import Settings

REQUIREMENT_FILES = ("requirements.txt", "requirements-test.txt", "requirements/test.txt", "pyproject.toml")
MAX_RESOURCES = 200


@dataclass
class Needs:
    declared: dict[str, str] = field(default_factory=dict)
    """Requirement -> the file declaring it."""
    missing: list[str] = field(default_factory=list)
    """Declared requirements not installed here."""
    unloadable: dict[str, list[str]] = field(default_factory=dict)
    """Library imported by resources but not loadable here -> the resources importing it."""


async def _gather(settings: Settings) -> tuple[RepoContext, Needs]:
    config = WriterConfig.from_settings(settings)
    async with McpSession(settings.gitlab_mcp_url, settings.mcp_headers(), connect_wait_s=5.0) as session:
        cache = ContextCache()
        tools = GuardedTools(session, await session.list_tools(), config.policy, cache.memo)
        context, _ = await cache.get(tools, config.policy.project_id, config.policy.ref)
        needs = Needs()
        for path in (name for name in REQUIREMENT_FILES if name in context.paths):
            text = await cache.read_file(tools, path) or ""
            needs.declared.update(dict.fromkeys(_requirements(text, path), path))
        needs.missing = [name for name in needs.declared if not _installed(name)]
        resources = [path for path in context.paths if path.endswith(".resource")][:MAX_RESOURCES]
        for path in resources:
            try:
                resource, _ = parse_resource(await cache.read_file(tools, path) or "")
            except Exception:  # an unreadable resource is the verification's business, not this listing's
                continue
            names = [
                i.name
                for i in resource.imports
                if i.type == "LIBRARY" and ".py" not in i.name and "/" not in i.name
            ]
            for name in names:
                if await asyncio.to_thread(library_keywords, name) is None:
                    needs.unloadable.setdefault(name, []).append(path)
        return context, needs


def _requirements(text: str, path: str) -> list[str]:
    if path.endswith(".toml"):
        try:
            lines = tomllib.loads(text).get("project", {}).get("dependencies", [])
        except tomllib.TOMLDecodeError:
            return []
    else:
        lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    names = []
    for line in lines:
        if not isinstance(line, str) or not line or line.startswith("-"):
            continue
        try:
            names.append(Requirement(line).name)
        except InvalidRequirement:
            continue
    return names


def _installed(name: str) -> bool:
    try:
        importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def run_rules(settings: Settings, console: Console, *, as_json: bool) -> int:
    context, needs = asyncio.run(_gather(settings))
    if as_json:
        console.print_json(json.dumps(_as_json(context, needs, settings)))
    else:
        _print(console, context, needs, settings)
    return 0


def _as_json(context: RepoContext, needs: Needs, settings: Settings) -> dict[str, Any]:
    return {
        "project_id": context.project_id,
        "ref": context.ref,
        "convention": {
            "path": CONVENTION_PATH,
            "lines": len(context.convention.splitlines()),
            "reviewed": settings.writer_review,
        },
        "rules": as_dict(context.rules),
        "enforced": context.rules.describe(),
        "robocop": context.robocop.source if context.robocop else None,
        "robocop_problem": context.robocop_problem,
        "execution": settings.writer_execute,
        "requirements": needs.declared,
        "missing_requirements": needs.missing,
        "unloadable_libraries": needs.unloadable,
    }


def _review_line(settings: Settings) -> str:
    if not settings.writer_review:
        return "the writer follows its prose; no reviewer checks it (WRITER_REVIEW=false)"
    model = settings.openai_model_reviewer or settings.openai_model_writer
    return f"the reviewer ({model}) checks each suite against it and the spec's criteria"


def _print(console: Console, context: RepoContext, needs: Needs, settings: Settings) -> None:
    say = console.print
    say(f"project [bold]{escape(context.project_id)}[/] at ref {escape(context.ref or '(default branch)')}")
    say(
        f"convention: {escape(CONVENTION_PATH)}, {len(context.convention.splitlines())} lines",
        highlight=False,
    )
    say(f"  {escape(_review_line(settings))}", highlight=False)
    rules = context.rules
    say(
        f"rules file: {rules.source or 'none (.robot-fleet.toml: rules checked by code on every suite)'}",
        highlight=False,
    )
    lines = rules.describe()
    for line in lines:
        say(f"  - {escape(line)}", highlight=False)
    if any("{" in line for line in lines):
        say("  ({ticket} is the spec id, {folder} the folder under the suites root of the suite's path, "
            "{area} the spec's area or else {folder})", highlight=False, markup=False)  # fmt: skip
    lint = (
        (context.robocop.source or "Robocop")
        if context.robocop
        else "none: robot-fleet's defaults (errors only)"
    )
    say(f"Robocop configuration: {escape(lint)}", highlight=False)
    if context.robocop_problem:
        say(f"  [red]cannot be used:[/] {escape(context.robocop_problem)}", highlight=False)
    execution = "on" if settings.writer_execute else "off (WRITER_EXECUTE=false)"
    say(f"execution of generated suites: {execution}")
    if needs.declared:
        say(f"libraries the repository declares: {', '.join(sorted(needs.declared))}", highlight=False)
    for name in needs.missing:
        say(f"  [yellow]not installed here:[/] {escape(name)} ({escape(needs.declared[name])}): install it "
            "on the workers, or calls to its keywords stay unverified", highlight=False)  # fmt: skip
    for name, users in sorted(needs.unloadable.items()):
        shown = ", ".join(users[:3]) + (" ..." if len(users) > 3 else "")
        say(f"  [yellow]cannot be loaded here:[/] library {escape(name)} (imported by {escape(shown)})",
            highlight=False)  # fmt: skip
    if not needs.missing and not needs.unloadable:
        say("every library the repository needs loads here", highlight=False)
