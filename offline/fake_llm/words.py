"""Word sets for the writer's similarity guesses: lower case, no stopwords, crude stemming."""

from __future__ import annotations

import re

_STOPWORDS_TEXT = """a an and are as at be but by can for from given has have he her his i if in into is it
its my of on or our should she that the their them then they this to too was we were when will with
you your tests test robot resource resources"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


def stem(word: str) -> str:
    """Drop a plural or -ing/-ed ending so `logs`/`log` and `opened`/`open` meet."""
    if len(word) > 5 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 4 and word.endswith("ed"):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def words(text: str) -> list[str]:
    """Meaningful word stems of `text`, in order."""
    found = re.findall(r"[a-z0-9]+", re.sub(r"([a-z])([A-Z])", r"\1 \2", str(text)).lower())
    return [stem(w) for w in found if w not in STOPWORDS and len(w) > 1]
