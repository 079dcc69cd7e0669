"""Word sets for the writer's similarity guesses: lower case, no stopwords, crude stemming.

`words` is the plain version (file names, titles). `Vocabulary.tokens` also joins two adjacent
words when the repository knows the joined word (`log in` -> `login`, `check out` -> `checkout`,
`e-mail` -> `email`), so spec prose meets keyword names written as one word.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_STOPWORDS_TEXT = """a an and are as at be but by can for from given has have he her his i if in into is it
its my of on or our should she that the their them then they this to too was we were when will with
you your tests test robot resource resources again also been being does did do there here which who"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())
_RAW = re.compile(r"[A-Za-z0-9]+")
_CAMEL = re.compile(r"([a-z])([A-Z])")
# Two stems are the same word when they share this long a prefix (register / registration).
FUZZY_PREFIX = 6


def stem(word: str) -> str:
    """Drop common endings so `logs`/`logged`/`logging`, `cancelled`/`cancel` and
    `registration`/`register` meet (the last two through `same`)."""
    w = word.lower()
    if len(w) > 6 and w.endswith("ation"):
        w = w[:-5]
    elif len(w) > 5 and w.endswith("ing"):
        w = w[:-3]
    elif len(w) > 4 and w.endswith("ed"):
        w = w[:-2]
    elif len(w) > 4 and w.endswith("ies"):
        w = w[:-3] + "y"
    elif len(w) > 4 and w.endswith("es") and w[-3] in "sxz":
        w = w[:-2]
    elif len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        w = w[:-1]
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "s0123456789":
        w = w[:-1]
    if len(w) > 4 and w.endswith("e"):
        w = w[:-1]
    return w


def raw_words(text: str) -> list[str]:
    """Alphanumeric runs of `text` (camelCase split), lower case, stopwords kept."""
    return [w.lower() for w in _RAW.findall(_CAMEL.sub(r"\1 \2", str(text)))]


def words(text: str) -> list[str]:
    """Meaningful word stems of `text`, in order."""
    return [stem(w) for w in raw_words(text) if w not in STOPWORDS and len(w) > 1]


def same(a: str, b: str) -> bool:
    """Equal stems, or stems sharing a long prefix (`registr` / `register`)."""
    if a == b:
        return True
    short = min(len(a), len(b))
    if short < FUZZY_PREFIX:
        return False
    common = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        common += 1
    return common >= FUZZY_PREFIX and common >= 0.8 * short


def matches(word: str, pool: Iterable[str]) -> bool:
    return any(same(word, other) for other in pool)


def overlap(left: Iterable[str], right: Iterable[str]) -> set[str]:
    """The words of `left` that have a `same` word in `right`."""
    pool = list(right)
    return {word for word in left if matches(word, pool)}


class Vocabulary:
    """The single words the repository uses (keyword and argument names), for joining compounds."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self.known: set[str] = set()
        for name in names:
            self.known.update(stem(w) for w in raw_words(name))

    def tokens(self, text: str) -> list[str]:
        """Stems of `text` without stopwords, adjacent pairs joined when the joined word is known."""
        raw = raw_words(text)
        found: list[str] = []
        index = 0
        while index < len(raw):
            if index + 1 < len(raw):
                joined = self._joined(raw[index], raw[index + 1])
                if joined:
                    found.append(joined)
                    index += 2
                    continue
            word = raw[index]
            if word not in STOPWORDS and len(word) > 1:
                found.append(stem(word))
            index += 1
        return found

    def joins(self, first: str, second: str) -> bool:
        return bool(self._joined(first, second))

    def _joined(self, first: str, second: str) -> str:
        for candidate in (stem(first + second), stem(first) + stem(second)):
            if candidate in self.known and len(candidate) > 3:
                return candidate
        return ""
