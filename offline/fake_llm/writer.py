"""Writing the steps of one test from its clauses, the way a careful writer does.

- A clause joined by `and` / `,` (and `with` in a precondition) is cut where one keyword call
  does not use what the next part says (`Log in as "alice" and empty the cart`: two calls;
  `with password "x" and e-mail "y"`: one).
- A precondition that the seed data already makes true (`the catalog is seeded`,
  `Customer "bob" exists` when the variable files know bob) needs no step; `has X in the cart`
  means starting from an empty cart and adding X; a precondition no keyword establishes replays
  the earlier test of the spec it refers to (`Given the payment was declined`).
- A `When` whose quoted actor is not the one logged in logs that actor in first.
- A test that starts in the middle of an earlier test's flow gets that test's first actions.
- A check no keyword states may be a BuiltIn assertion on a returned value; an action no keyword
  does is a `Log` of its text (the last resort); an unstated check is left out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from offline.fake_llm.clauses import Clause, split_top
from offline.fake_llm.matching import Choice, Index, candidates
from offline.fake_llm.model import Step
from offline.fake_llm.phrases import UNFINISHED, Phrase, is_check, placeholders, read_phrase
from offline.fake_llm.robotfiles import Knowledge, escape
from offline.fake_llm.scope import Scope, Value
from offline.fake_llm.words import overlap

LOG = "Log"
FIELD = re.compile(r"\b([a-z][a-z0-9]*(?:_[a-z0-9]+)+)\s+(?:is|are|equals)\s")
POSSESSION = re.compile(
    r"(?i)\bha(?:s|ve)\s+(?P<items>.+?)\s+in\s+(?:the\s+|her\s+|his\s+|their\s+|its\s+|a\s+)?(?P<noun>\w+)\W*$"
)


class Writer:
    """Writes the tests of one suite in order (later tests may reuse earlier ones)."""

    def __init__(self, knowledge: Knowledge, data: dict[str, str], assigned: dict[str, str]) -> None:
        self.index = Index(knowledge, assigned)
        self.knowledge = knowledge
        self.root = Scope(self.index.vocab, data)
        self.written: list[tuple[str, list[Step]]] = []

    def write(self, clauses: Sequence[Clause], text: str, attempt: int = 0) -> list[Step]:
        """The steps of one test; `attempt` > 0 takes the next-best keyword of each step."""
        scope = self.root.fresh()
        steps: list[Step] = []
        for clause in clauses:
            steps += self._clause(clause, scope, attempt)
        steps = _without_repeated_checks(self._with_prefix(steps))
        self.written.append((text, steps))
        return steps

    def read(self, text: str, context: str = "", actor: str = "") -> Phrase:
        """`text` read once; `it` takes the words of `context`; the quoted `actor` of a `When`
        is who acts, not a value for the call."""
        phrase = read_phrase(text, self.index.vocab)
        if phrase.pronoun and context:
            phrase = replace(phrase, words=phrase.words | read_phrase(context, self.index.vocab).words)
        if actor:
            kept = tuple(lit for lit in phrase.literals if lit.value.lower() != actor.lower())
            phrase = replace(phrase, literals=kept)
        return phrase

    def _clause(self, clause: Clause, scope: Scope, attempt: int) -> list[Step]:
        if clause.role == "given" and self._seeded(clause.text):
            return []
        if clause.failing_action:
            steps = self._failure(clause, scope, attempt)
            if steps is not None:
                return steps
            action = Clause(clause.failing_action, "action", subject=clause.subject)
            return self._clause(action, scope, attempt) + self._clause(
                replace(clause, failing_action=""), scope, attempt
            )
        steps: list[Step] = []
        for text, role in self._segments(clause, scope):
            steps += self._segment(text, role, clause, scope, attempt)
        return steps

    def _failure(self, clause: Clause, scope: Scope, attempt: int) -> list[Step] | None:
        """An action checked to fail, as one `... Should Fail ...` call."""
        action = self.read(clause.failing_action)
        phrase = self.read(f"{clause.failing_action} {clause.text}", actor=clause.subject)
        found = candidates(phrase, "check", scope, self.index, failing_action=action)
        if not found:
            return None
        before = self._actor_switch(clause.subject, scope)
        return [*before, self._apply(_pick(found, attempt), scope)]

    def _segments(self, clause: Clause, scope: Scope) -> list[tuple[str, str]]:
        separators = (" and ", ", ", " with ") if clause.role == "given" else (" and ", ", ")
        parts = split_top(clause.text, separators) or [clause.text]
        merged: list[tuple[str, str]] = []
        for part in parts:
            role = "check" if is_check(part) and clause.role != "given" else clause.role
            if merged and merged[-1][1] == role:
                joined = _span(clause.text, merged[-1][0], part)
                if self._covers(joined, [merged[-1][0], part], role, clause, scope):
                    merged[-1] = (joined, role)
                    continue
            merged.append((part, role))
        return merged

    def _covers(self, joined: str, parts: list[str], role: str, clause: Clause, scope: Scope) -> bool:
        """Whether one call for `joined` uses every part (its values, else its words)."""
        found = candidates(self.read(joined, clause.context), role, scope, self.index)
        if not found:
            return not any(candidates(self.read(p, clause.context), role, scope, self.index) for p in parts)
        best = found[0].filled
        for part in parts:
            phrase = self.read(part)
            if phrase.literals:
                if not all(lit.value.lower() in best.creators for lit in phrase.literals):
                    return False
                continue
            said = overlap(phrase.words, best.used_words)
            if phrase.first not in said or 2 * len(said) < len(phrase.words):
                return False
        return True

    def _segment(self, text: str, role: str, clause: Clause, scope: Scope, attempt: int) -> list[Step]:
        phrase = self.read(text, clause.context)
        if role == "given":
            return self._given(text, phrase, scope, attempt)
        if role == "action":
            return self._action(text, phrase, clause.subject, scope, attempt)
        found = candidates(phrase, "check", scope, self.index, optional=clause.optional)
        if found:
            return [self._apply(_pick(found, attempt), scope)]
        builtin = None if clause.optional else self._builtin(phrase, scope)
        return [builtin] if builtin else []

    def _given(self, text: str, phrase: Phrase, scope: Scope, attempt: int) -> list[Step]:
        if self._seeded(text):
            return []
        possession = POSSESSION.search(text)
        if possession:
            noun, items = possession.group("noun"), possession.group("items")
            steps = []
            for sentence in (f"empty the {noun}", f"add {items} to the {noun}"):
                found = candidates(self.read(sentence), "action", scope, self.index)
                steps += [self._apply(_pick(found, attempt), scope)] if found else []
            if steps:
                return steps
        found = candidates(phrase, "given", scope, self.index)
        if found:
            return [self._apply(_pick(found, attempt), scope)]
        return self._replay(phrase, scope) or [self._log(text, scope)]

    def _action(self, text: str, phrase: Phrase, subject: str, scope: Scope, attempt: int) -> list[Step]:
        found = candidates(phrase, "action", scope, self.index)
        if subject and not (found and found[0].view.logs_in):
            found = candidates(self.read(text, actor=subject), "action", scope, self.index)
        before = [] if found and found[0].view.logs_in else self._actor_switch(subject, scope)
        if found:
            return [*before, self._apply(_pick(found, attempt), scope)]
        return [*before, self._log(text, scope)]

    def _actor_switch(self, subject: str, scope: Scope) -> list[Step]:
        """Log in the quoted actor of a `When` when someone else (or nobody) is logged in."""
        if not subject or escape(subject).lower() == scope.actor.lower():
            return []
        found = candidates(self.read(f'log in as "{subject}"'), "action", scope, self.index)
        logins = [choice for choice in found if choice.view.logs_in]
        return [self._apply(logins[0], scope)] if logins else []

    def _apply(self, choice: Choice, scope: Scope) -> Step:
        view, filled = choice.view, choice.filled
        actor: str | None = None
        if view.logs_in and filled.cells:
            actor = scope.actor = filled.cells[0]
            scope.actor_arg = filled.arg_names[0]
        elif view.logs_out:
            actor = scope.actor = ""
        creators = filled.creators | ({scope.actor.lower()} if scope.actor else set())
        assign = scope.assign(view.result, creators) if view.result else ""
        scope.calls.append((view.keyword.name, filled.cells))
        return Step(
            view.keyword.name,
            filled.cells,
            filled.arg_names,
            filled.literal_cells,
            assign,
            view.assertion,
            actor,
            creators,
        )

    def _replay(self, phrase: Phrase, scope: Scope) -> list[Step]:
        """The steps of the earlier test a precondition refers to, with what they assigned."""
        for text, steps in self.written:
            said = self.index.vocab.tokens(text)
            if steps and phrase.words and len(overlap(phrase.words, said)) == len(phrase.words):
                for step in steps:
                    if step.assign and scope.by_name(step.assign) is None:
                        words = frozenset(self.index.vocab.tokens(step.assign))
                        scope.values.append(Value(step.assign, words, step.creators))
                    if step.actor is not None:
                        scope.actor = step.actor
                        scope.actor_arg = step.arg_names[0] if step.actor and step.arg_names else ""
                    scope.calls.append((step.keyword, step.cells))
                return list(steps)
        return []

    def _with_prefix(self, steps: list[Step]) -> list[Step]:
        """A test starting with a step an earlier test only reached later gets that test's
        actions before it (`Apply coupon` alone needs the login and cart the first test had)."""
        if not steps or steps[0].keyword == LOG:
            return steps
        own = {step.keyword for step in steps}
        for _, earlier in self.written:
            names = [step.keyword for step in earlier]
            if steps[0].keyword in names[1:] and names[0] != steps[0].keyword and names[0] not in own:
                cut = names.index(steps[0].keyword)
                return [step for step in earlier[:cut] if not step.check] + steps
        return steps

    def _builtin(self, phrase: Phrase, scope: Scope) -> Step | None:
        """A BuiltIn assertion on a value an earlier step returned."""
        named = [v for v in scope.values if overlap(v.words, phrase.words)]
        value = (
            named[-1] if named else (scope.recent() if phrase.pronoun or FIELD.search(phrase.text) else None)
        )
        if value is None:
            return None
        variable = f"${{{value.name}}}"
        field = FIELD.search(phrase.text)
        after = [lit for lit in phrase.literals if field and lit.start > field.start()]
        if field and after:
            cell = escape(after[0].value)
            return Step(
                "Should Be Equal", (f"{variable}[{field.group(1)}]", cell), ("", ""), (1,), check=True
            )
        numbers = [lit for lit in phrase.literals if lit.kind == "number"]
        if phrase.counts and numbers:
            return Step("Length Should Be", (variable, numbers[0].value), ("", ""), (1,), check=True)
        if phrase.none:
            return Step("Should Be Empty", (variable,), ("",), check=True)
        return None

    def _seeded(self, text: str) -> bool:
        """A state the seed data already gives: `... is seeded`, or `... exists` naming only
        values the variable files hold."""
        phrase = self.read(text)
        if "seed" in phrase.words:
            return True
        values = [lit.value.lower() for lit in phrase.literals]
        return "exist" in phrase.words and bool(values) and set(values) <= self.knowledge.seed_values

    def _log(self, text: str, scope: Scope) -> Step:
        return Step(LOG, (log_cell(text, scope),))


def log_cell(text: str, scope: Scope | None = None) -> str:
    """A step's text as a Log message: a `<name>` becomes the variable an earlier step returned,
    else the bare name (no placeholder is ever written)."""
    cleaned = UNFINISHED.sub("", text)
    cell = escape(cleaned if cleaned.strip() else "(empty step)")
    for name in placeholders(text):
        found = scope.by_name(name) if scope else None
        cell = cell.replace(f"<{name}>", f"${{{found.name}}}" if found else name)
    return cell


def _pick(found: list[Choice], attempt: int) -> Choice:
    return found[min(attempt, len(found) - 1)]


def _span(text: str, first: str, last: str) -> str:
    """The original text from the start of `first` to the end of `last`."""
    start = text.find(first)
    end = text.find(last, max(start, 0) + len(first))
    if start < 0 or end < 0:
        return f"{first} and {last}"
    return text[start : end + len(last)]


def _without_repeated_checks(steps: list[Step]) -> list[Step]:
    """The same check twice with nothing done in between says nothing new."""
    kept: list[Step] = []
    for step in steps:
        since_action = kept[_last_action(kept) + 1 :]
        if step.check and any(s.line() == step.line() for s in since_action):
            continue
        kept.append(step)
    return kept


def _last_action(steps: list[Step]) -> int:
    return max((i for i, s in enumerate(steps) if not s.check), default=-1)
