"""What the prompt gives the writer up front, read as a careful model reads it.

- `## Repository file: <path>`, then a fenced block (```` ```robot ````, ```` ```python ````; the
  fence may be longer than three backticks, and only a line holding exactly that fence closes it):
  the file's text, as good as read with a tool.
- `## Keywords of the repository`: one line per public keyword, `name | arguments | what it does |
  file`, up to the next `## ` heading. `arguments` is Robot's `ArgumentSpec` as it prints
  (`path, body=${NONE}`, `*items`, `**params`, `a, *, b`; `-` for none), `what it does` the first
  line of its documentation (`-` for none). Any other line of the section (no path in its last
  field) is prose and skipped.
"""

from __future__ import annotations

import re

from offline.fake_llm.robotfiles import Arg, Keyword

FILE_MARKER = re.compile(r"(?m)^##[ \t]*Repository file:[ \t]*(\S[^\n]*?)[ \t]*$")
OPENING_FENCE = re.compile(r"[ \t]*\n(?:[ \t]*\n)*[ \t]*(`{3,})[^\n`]*\n")
CATALOG_MARKER = re.compile(r"(?m)^##[ \t]*Keywords of the repository[ \t]*$")
NEXT_HEADING = re.compile(r"(?m)^## ")
PATH = re.compile(r"[\w.@+-]+(?:/[\w.@+-]+)*\.\w+")
FIELD_SEPARATOR = " | "
NONE = "-"
ARGUMENT = re.compile(
    r"(?P<stars>\*{0,2})(?P<name>[^=:*][^=:]*?)(?::[ \t]*[^=]+?)?(?:(?: = |=)(?P<default>.*))?"
)
RETURNS = re.compile(r"(?i)\breturns?\b(?:\s+(?:the\s+|an?\s+|its\s+)?(?:new\s+)?(\w+)(?:[ _](id)\b)?)?")
NOTHING = frozenset({"nothing", "none"})
SENTENCE_END = (".", "!", "?")
GETTERS = frozenset({"get", "search", "find", "list", "filter", "fetch", "read", "load", "generate"})
# a keyword whose name starts with one of these gives a value back, whatever its first doc line says


def given_files(text: str) -> dict[str, str]:
    """Path -> text of every file the prompt gives (the first wins when a path comes twice)."""
    files: dict[str, str] = {}
    for marker in FILE_MARKER.finditer(text):
        opening = OPENING_FENCE.match(text, marker.end())
        if opening is None:
            continue
        closing = re.compile(rf"(?m)^[ \t]*{opening.group(1)}[ \t]*$").search(text, opening.end())
        if closing is None:
            continue
        path = marker.group(1).strip().strip("`")
        files.setdefault(path, text[opening.end() : closing.start()])
    return files


def catalog(text: str) -> list[Keyword]:
    """The keywords the prompt's catalog lists, as the writer's own `Keyword` (source: their file)."""
    marker = CATALOG_MARKER.search(text)
    if marker is None:
        return []
    section = text[marker.end() :]
    end = NEXT_HEADING.search(section)
    keywords = []
    for line in (section[: end.start()] if end else section).splitlines():
        fields = [field.strip() for field in line.split(FIELD_SEPARATOR)]
        if len(fields) < 4 or not fields[0] or not PATH.fullmatch(fields[-1]):
            continue
        doc = FIELD_SEPARATOR.join(fields[2:-1])
        doc = "" if doc == NONE else doc
        name = fields[0]
        keywords.append(
            Keyword(name, parse_arguments(fields[1]), doc, returns=_returns(name, doc), source=fields[-1])
        )
    return keywords


def parse_arguments(text: str) -> tuple[Arg, ...]:
    """An `ArgumentSpec` as Robot prints it, back into arguments: positional (with defaults),
    `*varargs`, named-only after `*` or the varargs, `**kwargs`; `/` (positional-only) is dropped.
    A default may hold `, `: a bare piece after a positional default continues it, since Robot
    allows no argument without a default there."""
    if text.strip() in ("", NONE):
        return ()
    args: list[Arg] = []
    kind = "positional"
    for piece in text.split(", "):
        stripped = piece.strip()
        if stripped == "/":
            continue
        if stripped == "*":
            kind = "named"
            continue
        match = ARGUMENT.fullmatch(stripped)
        previous = args[-1] if args else None
        continues = previous is not None and previous.default is not None and previous.kind == "positional"
        if match is None or (continues and not match.group("stars") and match.group("default") is None):
            if previous is not None and previous.default is not None:
                args[-1] = Arg(previous.name, f"{previous.default}, {piece}", previous.kind)
            continue
        name, stars = match.group("name").strip(), match.group("stars")
        if stars == "**":
            args.append(Arg(name, "", "kwargs"))
        elif stars == "*":
            args.append(Arg(name, "", "varargs"))
            kind = "named"
        else:
            args.append(Arg(name, match.group("default"), kind))
    return tuple(args)


def _returns(name: str, doc: str) -> str:
    """What the keyword says it gives back: the id it names (`returns the new order id` ->
    `order_id`, the name a careful writer gives it), "-" for another value, "" for nothing."""
    words = name.lower().split()
    if "should" in words:  # an assertion checks, it gives nothing back
        return ""
    said = RETURNS.search(doc)
    if said and (said.group(1) or "").lower() in NOTHING:
        return ""
    if said and said.group(2):
        return f"{said.group(1)}_{said.group(2)}".lower()
    return "-" if said or (words and words[0] in GETTERS) else ""


def said_in_full(doc: str) -> bool:
    """Whether a catalog line's documentation is a whole sentence; one cut short (or none) leaves
    what the keyword returns and how to call it to its file."""
    return doc.rstrip().endswith(SENTENCE_END)
