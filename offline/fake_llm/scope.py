"""What a test knows while the writer writes it: the values earlier steps returned (and who
created them), who is logged in, and the spec's data."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from offline.fake_llm.phrases import Phrase
from offline.fake_llm.robotfiles import norm_var
from offline.fake_llm.words import Vocabulary, overlap

_SUFFIX = re.compile(r"_\d+$")


@dataclass(frozen=True)
class Value:
    """A variable an earlier step assigned."""

    name: str
    words: frozenset[str]
    creators: frozenset[str]
    # the lower-cased values of the call that returned it (`alice`, `BK-1001`)

    @property
    def base(self) -> str:
        return norm_var(_SUFFIX.sub("", self.name))


@dataclass
class Scope:
    """One test's state; `calls` is shared by the tests of one suite."""

    vocab: Vocabulary
    data: dict[str, str] = field(default_factory=dict)
    values: list[Value] = field(default_factory=list)
    actor: str = ""
    # the cell the last login keyword was called with ("" when nobody is logged in)
    actor_arg: str = ""
    # the name of that keyword's argument (`username`): an argument of that name may take the actor
    calls: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)

    def fresh(self) -> Scope:
        """The scope a new test starts with: nothing assigned, nobody logged in."""
        return Scope(self.vocab, self.data, calls=self.calls)

    def named(self, arg_name: str) -> list[Value]:
        base = norm_var(arg_name)
        return [value for value in self.values if value.base == base]

    def mentioned(self, arg_name: str, phrase: Phrase) -> Value | None:
        """The value for `arg_name` the clause talks about (`the new order`, `alice's order`, `it`)."""
        found = [v for v in self.named(arg_name) if overlap(v.words, phrase.words) or phrase.pronoun]
        return _pick(found, phrase)

    def latest(self, arg_name: str, phrase: Phrase) -> Value | None:
        return _pick(self.named(arg_name), phrase)

    def by_name(self, name: str) -> Value | None:
        found = self.named(name)
        return found[-1] if found else None

    def assign(self, base: str, creators: frozenset[str]) -> str:
        """A new variable for a returned value; a second one of the same name gets `_2`."""
        taken = {norm_var(v.name) for v in self.values}
        name = base
        counter = 1
        while norm_var(name) in taken:
            counter += 1
            name = f"{base}_{counter}"
        self.values.append(Value(name, frozenset(self.vocab.tokens(base)), creators))
        return name

    def recent(self) -> Value | None:
        """The latest returned value that is a record or a list, not an id or a name."""
        for value in reversed(self.values):
            if not re.search(r"(?:^|_)(?:id|name|username|password|token)(?:_\d+)?$", value.name):
                return value
        return None


def _pick(found: list[Value], phrase: Phrase) -> Value | None:
    """Prefer the value whose creator the clause names; else the latest."""
    text = phrase.text.lower()
    for value in reversed(found):
        if any(re.search(rf"(?<![\w-]){re.escape(c)}(?![\w-])", text) for c in value.creators if len(c) > 2):
            return value
    return found[-1] if found else None
