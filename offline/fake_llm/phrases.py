"""Reading one step of a spec: the values it names and the words it says.

A value is a quoted string, or an unquoted path (`/api/cart`), code (`EL-2001`, `WELCOME10`),
number (`29.99`) or the word after `<field> is` at the end of a clause (`status is cancelled`).
Each value carries its label: the nearest content word before it (`password "x"`, `total is 3`),
which is how the writer decides which argument it belongs to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from offline.fake_llm.words import STOPWORDS, Vocabulary, raw_words, stem

QUOTED = re.compile(r'"([^"]*)"|(?<![\w\'])\'([^\']+)\'(?![\w])')
PATH = re.compile(r"(?<![\w/])/[\w./<>{}-]+")
CODE = re.compile(r"\b[A-Z][A-Z0-9]*-[A-Z0-9-]*\d[A-Z0-9-]*\b|\b[A-Z]{2,}\d+\b")
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w])")
WORD_VALUE = re.compile(r"\b([A-Za-z_]+)\s+(?:is|are|stays|remains|becomes)\s+([A-Za-z][\w-]*)\W*$")
PLACEHOLDER = re.compile(r"<([A-Za-z_][\w .:-]*)>")
UNFINISHED = re.compile(r"\b(?:TODO|FIXME|XXX|TBD)\b:?\s*")
LABEL_SKIP = frozenset({"equal", "equals", "stays", "remains", "becomes", "exactly", "now", "still"})
ROLE_VERBS = frozenset({"verify", "check", "ensure", "confirm", "assert", "expect", "see", "make", "sure"})
NEGATIONS = frozenset({"not", "no", "never", "without", "cannot", "none", "nothing", "nobody"})
NONE_WORDS = frozenset({"no", "none", "nothing", "empty"})
FAILURES = frozenset({"fail", "reject", "refus", "error", "deni", "denied", "cannot", "forbid", "forbidden"})
PRONOUNS = frozenset({"it", "they", "them", "its", "their"})
PREPOSITIONS = frozenset({"by", "for", "with", "without", "to", "from", "of", "in", "on", "as", "at", "into"})
LABEL_DISTANCE = 3


@dataclass(frozen=True)
class Literal:
    """One value named by a step."""

    value: str
    kind: str
    # text (quoted) | number | code | path | word
    label: str
    start: int


@dataclass(frozen=True)
class Phrase:
    """A clause's text read once: its values, its content words and what it signals."""

    text: str
    literals: tuple[Literal, ...]
    words: frozenset[str]
    head: str
    # its last content word before a preposition: what it is about (`opens his order history`)
    first: str
    # its first content word: usually the verb
    negated: bool
    none: bool
    # it says there is nothing: `no products`, `is empty`
    failing: bool
    pronoun: bool
    counts: bool
    # a number directly before a known noun ("1 item", "0 products"): the clause talks of a count


def read_phrase(text: str, vocab: Vocabulary) -> Phrase:
    literals = find_literals(text, vocab)
    # a word value (`status is cancelled`) is also a word of the clause (`is listed`, `stays empty`)
    spans = [(lit.start, lit.start + len(_source(text, lit))) for lit in literals if lit.kind != "word"]
    masked = _mask(text, spans)
    tokens = vocab.tokens(masked)
    raw = set(raw_words(masked))
    ordered = [t for t in tokens if t not in ROLE_VERBS]
    found = frozenset(ordered)
    before = [t for t in vocab.tokens(_before_preposition(masked, vocab)) if t not in ROLE_VERBS]
    counts = _counts(text, literals, vocab)
    return Phrase(
        text=text,
        literals=tuple(literals),
        words=found | ({"count"} if counts else set()),
        head=before[-1] if before else "",
        first=ordered[0] if ordered else "",
        negated=bool(raw & NEGATIONS) or "n't" in text.lower(),
        none=bool(raw & NONE_WORDS),
        failing=bool({stem(w) for w in raw} & FAILURES),
        pronoun=bool(raw & PRONOUNS),
        counts=counts,
    )


def _before_preposition(masked: str, vocab: Vocabulary) -> str:
    """The text up to the first value or preposition that is not part of a compound (`log in`)."""
    cut = re.search(r"\s{2,}", masked.strip())
    text = masked.strip()[: cut.start()] if cut else masked
    raw = raw_words(text)
    for index, word in enumerate(raw):
        if index and word in PREPOSITIONS and not vocab.joins(raw[index - 1], word):
            return " ".join(raw[:index])
    return " ".join(raw)


def is_check(text: str) -> bool:
    """A step phrased as a check: it starts with a checking verb (not `check out`) or says `should`."""
    raw = raw_words(text)
    if raw[:1] == ["check"] and raw[1:2] in (["out"], ["in"]):
        return False
    return (bool(raw) and raw[0] in ROLE_VERBS) or "should" in raw


def find_literals(text: str, vocab: Vocabulary) -> list[Literal]:
    spans: list[tuple[int, int, str, str]] = []
    for match in QUOTED.finditer(text):
        spans.append((match.start(), match.end(), match.group(1) or match.group(2) or "", "text"))
    masked = _mask(text, [(s, e) for s, e, _, _ in spans])
    for pattern, kind in ((PATH, "path"), (CODE, "code"), (NUMBER, "number")):
        for match in pattern.finditer(masked):
            spans.append((match.start(), match.end(), match.group(0), kind))
            masked = _mask(masked, [(match.start(), match.end())])
    word = WORD_VALUE.search(masked)
    if word and word.group(2).lower() not in STOPWORDS | NEGATIONS and word.group(1).lower() not in STOPWORDS:
        spans.append((word.start(2), word.end(2), word.group(2), "word"))
    spans.sort()
    literals = []
    previous_end = 0
    for start, end, value, kind in spans:
        label = stem(word.group(1)) if kind == "word" and word else _label(text[previous_end:start], vocab)
        literals.append(Literal(value, kind, label, start))
        previous_end = end
    return literals


def _label(before: str, vocab: Vocabulary) -> str:
    raws = [w for w in raw_words(before) if w not in LABEL_SKIP]
    tail = raws[-LABEL_DISTANCE:]
    while tail and tail[-1] in STOPWORDS:
        tail.pop()
    tokens = vocab.tokens(" ".join(raws[-LABEL_DISTANCE - 1 :])) if tail else []
    return tokens[-1] if tokens else ""


def _counts(text: str, literals: list[Literal], vocab: Vocabulary) -> bool:
    for lit in literals:
        if lit.kind != "number":
            continue
        after = raw_words(text[lit.start + len(lit.value) : lit.start + len(lit.value) + 30])
        if after and after[0] not in STOPWORDS and stem(after[0]) in vocab.known:
            return True
    return False


def _source(text: str, lit: Literal) -> str:
    """The literal as written, with its quotes."""
    if lit.kind == "text":
        match = QUOTED.match(text, lit.start)
        return match.group(0) if match else lit.value
    return lit.value


def _mask(text: str, spans: list[tuple[int, int]]) -> str:
    chars = list(text)
    for start, end in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)


def placeholders(value: str) -> list[str]:
    """`<username>@example.com` -> ["username"]."""
    return [m.group(1) for m in PLACEHOLDER.finditer(value)]
