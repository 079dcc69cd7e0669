"""The repository's keyword catalog: every public keyword of its resource files, read by code.

Built once per process per (project, ref), on first need, from the `.resource` files the tree shows
(through the per-process file memo). `suggest` ranks keywords by the words they share with a text
(a suite's steps, a spec): the closest candidates a diagnostic offers a writer that used none.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from robot.errors import DataError

from worker.agent.checks.scope import ReadFile, parse_resource

MAX_RESOURCE_FILES = 200
DOC_CHARS = 240
READ_CONCURRENCY = 4
_WORD_RE = re.compile(r"[^\W\d_]{3,}")


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    arguments: str
    doc: str
    """The first sentence of its documentation (at most `DOC_CHARS`)."""
    file: str


async def build_catalog(read_file: ReadFile, paths: Iterable[str]) -> tuple[CatalogEntry, ...]:
    files = [path for path in paths if path.endswith(".resource")][:MAX_RESOURCE_FILES]
    limit = asyncio.Semaphore(READ_CONCURRENCY)

    async def read(path: str) -> str | None:
        async with limit:
            return await read_file(path)

    texts = await asyncio.gather(*(read(path) for path in files))
    entries: list[CatalogEntry] = []
    for path, text in zip(files, texts, strict=True):
        if not text:
            continue
        try:
            resource, _ = parse_resource(text)
        except DataError:
            continue
        for keyword in resource.keywords:
            if "robot:private" in keyword.tags:
                continue
            entries.append(CatalogEntry(keyword.name, str(keyword.args), first_sentence(keyword.doc), path))
    return tuple(entries)


def first_sentence(doc: str) -> str:
    """The documentation's first sentence, its line breaks joined (a doc line is often cut mid-sentence)."""
    paragraph = " ".join(doc.strip().split("\n\n", 1)[0].split())
    match = re.search(r"(?<=[.!?])\s", paragraph)
    sentence = paragraph[: match.start()] if match else paragraph
    return sentence if len(sentence) <= DOC_CHARS else sentence[: DOC_CHARS - 1] + "…"


def _words(text: str) -> set[str]:
    return set(_WORD_RE.findall(text.lower()))


def _shared(wanted: set[str], words: set[str]) -> int:
    """Words of `wanted` that `words` holds, or holds a longer or shorter form of (`log` / `login`)."""
    return sum(
        1 for word in wanted if any(word.startswith(other) or other.startswith(word) for other in words)
    )


def suggest(catalog: Sequence[CatalogEntry], text: str, count: int = 5) -> list[str]:
    """The names of the `count` keywords sharing most words with `text` (name words weigh double)."""
    wanted = _words(text)
    scored = []
    for entry in catalog:
        score = 2 * _shared(wanted, _words(entry.name)) + _shared(wanted, _words(entry.doc))
        if score:
            scored.append((-score, entry.name))
    return [name for _, name in sorted(scored)[:count]] or [entry.name for entry in catalog[:count]]
