"""Which repository keyword says what a clause says, and which values it takes.

Every public keyword is scored against the clause: shared words with its name (its documentation
a little), and how well the clause's values fit its arguments. A check only takes an assertion
(`... Should ...`) whose predicate the clause states and whose polarity it shares; an action or a
precondition only takes a non-assertion. Arguments are filled (see `arguments.py`) from labelled
values, returned variables the clause mentions, repository variables it names, the remaining values
in order, the spec's data and, for a required argument, another keyword's default of that name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from offline.fake_llm.arguments import Filled, fill
from offline.fake_llm.phrases import Phrase
from offline.fake_llm.robotfiles import Keyword, Knowledge, norm_var
from offline.fake_llm.scope import Scope
from offline.fake_llm.words import Vocabulary, matches, overlap, raw_words, stem

FAILURE_WORDS = frozenset({"fail", "error"})
NEGATIVE_WORDS = frozenset({"not", "no", "cannot", "never"})
ABSENCE_WORDS = frozenset({"empty", "unavailabl"})
# a positive assertion of absence may state a negated clause (`she has no orders` -> `... Should Be Empty`)
PREPOSITIONS = frozenset({"by", "for", "with", "to", "from", "of", "in", "on", "as", "at"})
MIN_RATIO = 0.5
HEAD_BONUS = 2.0
UNUSED_PENALTY = 2.0
# a keyword that leaves a value the step names unused does not say what the step says
MAX_DOC_WORDS = 3


@dataclass(frozen=True)
class View:
    """A keyword with its words precomputed."""

    keyword: Keyword
    words: frozenset[str]
    predicate: frozenset[str]
    head: str
    assertion: bool
    failure: bool
    negative: bool
    logs_in: bool
    logs_out: bool
    doc_words: frozenset[str]
    doc_text: str
    result: str
    # the variable name its return value gets ("" when it returns nothing)


@dataclass(frozen=True)
class Choice:
    """A keyword call chosen for a clause."""

    view: View
    filled: Filled
    score: float


class Index:
    """The public keywords of what the writer read, ready for matching."""

    def __init__(self, knowledge: Knowledge, assigned: dict[str, str] | None = None) -> None:
        seen: set[str] = set()
        public = []
        for keyword in knowledge.keywords:
            if not keyword.private and keyword.name.lower() not in seen:
                seen.add(keyword.name.lower())
                public.append(keyword)
        names = [k.name for k in public] + [a.name for k in public for a in k.args]
        self.vocab = Vocabulary(names)
        self.knowledge = knowledge
        self.views = [_view(k, self.vocab, (assigned or {}).get(k.name.lower(), "")) for k in public]
        self.defaults = _sibling_defaults(public)

    def repo_variable(self, arg_words: frozenset[str], phrase: Phrase) -> str:
        """A repository variable the clause names for the argument: its name shares a word with
        the argument, another with the clause, and says nothing else (`the declined card` ->
        DECLINED_CARD for `card_number`, `the overdue book` -> OVERDUE_ISBN for `isbn`)."""
        best = ""
        for written in sorted(self.knowledge.variable_names.values()):
            name_words = set(self.vocab.tokens(written))
            said = overlap(name_words, phrase.words)
            if not overlap(name_words, arg_words) or not said - overlap(name_words, arg_words):
                continue
            if len(said | overlap(name_words, arg_words)) == len(name_words) and len(written) > len(best):
                best = written
        return best

    def default_for(self, arg_name: str) -> str:
        return self.defaults.get(norm_var(arg_name), "")


def _view(keyword: Keyword, vocab: Vocabulary, assigned: str) -> View:
    name_words = frozenset(vocab.tokens(keyword.name))
    raw = raw_words(keyword.name)
    assertion = "should" in raw
    subject, predicate = (keyword.name, "")
    if assertion:
        subject, predicate = re.split(r"(?i)\bshould\b", keyword.name, maxsplit=1)
    subject_words = vocab.tokens(subject)
    doc_words = frozenset(vocab.tokens(keyword.doc))
    stems = {stem(w) for w in raw}
    return View(
        keyword=keyword,
        words=name_words,
        predicate=frozenset(vocab.tokens(predicate)),
        head=subject_words[-1] if subject_words else "",
        assertion=assertion,
        failure=bool(stems & FAILURE_WORDS),
        negative=bool(set(raw) & NEGATIVE_WORDS),
        logs_in=("login" in (name_words | doc_words)) and not assertion,
        logs_out="logout" in name_words,
        doc_words=doc_words,
        doc_text=keyword.doc.lower(),
        result=_result_name(keyword, assigned) if keyword.returns else "",
    )


def _result_name(keyword: Keyword, assigned: str) -> str:
    """The similar test's name for this keyword's result, else its RETURN variable, else the last
    word of its name before a preposition (`Search Products` -> products)."""
    if assigned:
        return assigned
    if keyword.returns and keyword.returns != "-":
        return keyword.returns
    raw = raw_words(keyword.name)
    cut = next((i for i, w in enumerate(raw) if i and w in PREPOSITIONS), len(raw))
    return raw[cut - 1] if cut else "value"


def _sibling_defaults(keywords: list[Keyword]) -> dict[str, str]:
    defaults: dict[str, str] = {}
    for keyword in keywords:
        for arg in keyword.args:
            if (
                arg.default
                and arg.kind == "positional"
                and arg.default.upper() not in ("${NONE}", "${EMPTY}")
            ):
                defaults.setdefault(norm_var(arg.name), arg.default)
    return defaults


def candidates(
    phrase: Phrase,
    role: str,
    scope: Scope,
    index: Index,
    *,
    failing_action: Phrase | None = None,
    optional: bool = False,
) -> list[Choice]:
    """Every keyword call that could say `phrase`, best first."""
    found = []
    for view in index.views:
        if (role == "check") != view.assertion:
            continue
        shared = overlap(phrase.words, view.words)
        if not shared or not _states(view, phrase, failing_action):
            continue
        filled = fill(view, phrase, scope, index)
        if filled is None:
            continue
        score = _score(
            view, phrase, filled, len(shared), failing=failing_action is not None, optional=optional
        )
        if score is not None:
            found.append(Choice(view, filled, score))
    found.sort(key=lambda c: (-c.score, len(c.view.keyword.name), c.view.keyword.name))
    return found


def _score(
    view: View, phrase: Phrase, filled: Filled, shared: int, *, failing: bool, optional: bool
) -> float | None:
    """How well the call says the clause; None when it shares too little of the keyword's name."""
    ratio = shared / len(view.words)
    named_value = any(
        lit.value.lower() in view.doc_text
        for lit in phrase.literals
        if len(lit.value) > 2 and lit.kind != "word"
    )
    # an action whose arguments the clause's labelled values or named variables fill
    strong = not view.assertion and bool(filled.label_fits or filled.repo_fits or named_value)
    # an assertion on the property the clause names (`exactly 1 product` -> `... Count Should Be`)
    stated = view.assertion and not view.predicate and view.head in phrase.words and not filled.weak
    if ratio < MIN_RATIO and not (strong or stated or failing):
        return None
    if optional and (ratio < MIN_RATIO or filled.weak):
        return None
    doc = min(MAX_DOC_WORDS, len(overlap(phrase.words - view.words, view.doc_words)))
    return (
        3 * shared
        + 2 * ratio
        + 1.5 * filled.label_fits
        + filled.var_fits
        + filled.repo_fits
        + 0.8 * filled.type_fits
        + 0.3 * filled.order_fits
        + 0.3 * doc
        + (1.0 if named_value else 0.0)
        + (HEAD_BONUS if phrase.head and phrase.head in view.words else 0.0)
        - UNUSED_PENALTY * filled.unused
        - 0.5 * filled.weak
    )


def _states(view: View, phrase: Phrase, failing_action: Phrase | None) -> bool:
    """An assertion must state the clause's predicate, with its polarity."""
    if not view.assertion:
        return True
    if failing_action is not None:
        # the failure stands for the predicate: `refused` says what `Should Not Be Accessible` does
        return (view.failure or view.negative) and bool(overlap(view.words, failing_action.words))
    if view.predicate and not overlap(view.predicate, phrase.words):
        return False
    if not view.predicate and not matches(view.head, phrase.words):
        return False
    if view.negative and not phrase.negated:
        return False
    if phrase.negated and not view.negative and not (view.predicate & ABSENCE_WORDS):
        return False
    return not view.failure or phrase.failing
