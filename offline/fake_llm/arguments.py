"""Filling a keyword's arguments from a clause, in the order a careful writer looks for them.

1. a value whose label names the argument (`password "x"`, `status 402`, `status is paid`);
2. a returned variable of the argument's name that the clause mentions (`the new order`);
3. a repository variable the clause names that shares a word with the argument (`declined card`);
4. the remaining values in order (optional arguments only take a value of their own type);
5. for a required argument: a returned variable of its name, who is logged in (for the login
   keyword's argument name), the spec's data, another keyword's default for an argument of that name;
6. a boolean option whose words the clause says (`only in-stock` -> in_stock_only=${TRUE});
7. varargs: the remaining values of their type, else an earlier call's (`placed an order`).
A required argument left empty means the keyword does not fit the clause.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from offline.fake_llm.phrases import CODE, NUMBER, Literal, Phrase, placeholders
from offline.fake_llm.robotfiles import Arg, escape, norm_var
from offline.fake_llm.scope import Scope
from offline.fake_llm.words import matches, overlap, same, stem

if TYPE_CHECKING:
    from offline.fake_llm.matching import Index, View

_NUMERIC = (
    "count",
    "quantity",
    "price",
    "total",
    "stock",
    "discount",
    "amount",
    "number",
    "limit",
    "percent",
)
NUMERIC_WORDS = frozenset(stem(w) for w in (*_NUMERIC, "size", "length"))
PATH_WORDS = frozenset({"path", "url", "rout", "endpoint"})
CODE_WORDS = frozenset({"sku", "code", "id"})
BOOLEANS = frozenset({"${false}", "${true}", "false", "true"})


@dataclass(frozen=True)
class Filled:
    """The cells of a call and how they were found."""

    cells: tuple[str, ...]
    arg_names: tuple[str, ...]
    literal_cells: tuple[int, ...]
    used_words: frozenset[str]
    creators: frozenset[str]
    label_fits: int = 0
    var_fits: int = 0
    repo_fits: int = 0
    type_fits: int = 0
    order_fits: int = 0
    weak: int = 0
    unused: int = 0


@dataclass
class _State:
    view: View
    phrase: Phrase
    scope: Scope
    index: Index
    values: dict[str, str] = field(default_factory=dict)
    from_literal: set[str] = field(default_factory=set)
    used: set[int] = field(default_factory=set)
    words: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)
    extra: list[str] = field(default_factory=list)

    @property
    def slots(self) -> list[Arg]:
        return [a for a in self.view.keyword.args if a.kind in ("positional", "named")]

    def arg_words(self, arg: Arg) -> frozenset[str]:
        return frozenset(self.index.vocab.tokens(arg.name))

    def put(self, arg: Arg, cell: str, how: str, literal: int | None = None) -> None:
        self.values[arg.name] = cell
        self.counts[how] = self.counts.get(how, 0) + 1
        if literal is not None:
            self.used.add(literal)
            self.from_literal.add(arg.name)

    def cell(self, index: int) -> str | None:
        return literal_cell(self.phrase.literals[index].value, self.scope)

    def open_literals(self) -> list[int]:
        return [
            i for i in range(len(self.phrase.literals)) if i not in self.used and self.cell(i) is not None
        ]


def fill(view: View, phrase: Phrase, scope: Scope, index: Index) -> Filled | None:
    state = _State(view, phrase, scope, index)
    for step in (_labelled, _mentioned, _repository, _in_order, _required, _booleans, _varargs):
        step(state)
    if any(a.required and a.name not in state.values for a in state.slots):
        return None
    return _result(state)


def _labelled(state: _State) -> None:
    for i in state.open_literals():
        lit = state.phrase.literals[i]
        if not lit.label:
            continue
        if lit.kind == "word" and lit.value.lower() not in state.view.doc_text:
            continue  # `status is cancelled` only for a keyword documenting `cancelled`
        for arg in state.slots:
            if arg.name in state.values or not compatible(arg, lit, state.arg_words(arg)):
                continue
            names = state.index.vocab.tokens(arg.name)
            if names and (same(lit.label, names[-1]) if lit.kind == "word" else matches(lit.label, names)):
                state.put(arg, state.cell(i) or "", "label", i)
                state.words.add(lit.label)
                break


def _mentioned(state: _State) -> None:
    for arg in state.slots:
        if arg.name not in state.values:
            value = state.scope.mentioned(arg.name, state.phrase)
            if value is not None:
                state.put(arg, f"${{{value.name}}}", "var")
                state.words.update(value.words)


def _repository(state: _State) -> None:
    for arg in state.slots:
        if arg.name not in state.values:
            name = state.index.repo_variable(state.arg_words(arg), state.phrase)
            if name:
                state.put(arg, f"${{{name}}}", "repo")
                state.words.update(state.index.vocab.tokens(name))


def _in_order(state: _State) -> None:
    for arg in state.slots:
        if (
            arg.name in state.values
            or state.scope.named(arg.name)
            or _kind(arg, state.arg_words(arg)) == "bool"
        ):
            continue
        for i in state.open_literals():
            lit = state.phrase.literals[i]
            fit = compatible(arg, lit, state.arg_words(arg))
            if lit.kind == "word" or not fit or (not arg.required and fit != "type"):
                continue
            if lit.kind == "number" and state.phrase.counts and fit != "type":
                continue  # `1 product`: a count, not a name
            state.put(arg, state.cell(i) or "", "type" if fit == "type" else "order", i)
            break


def _required(state: _State) -> None:
    for arg in state.slots:
        if arg.name in state.values or not arg.required:
            continue
        value = state.scope.latest(arg.name, state.phrase)
        if value is not None:
            state.put(arg, f"${{{value.name}}}", "weak")
        elif state.scope.actor and norm_var(arg.name) == norm_var(state.scope.actor_arg):
            state.put(arg, state.scope.actor, "weak")
        elif norm_var(arg.name) in state.scope.data:
            state.put(arg, escape(state.scope.data[norm_var(arg.name)]), "weak")
        elif state.index.default_for(arg.name):
            state.put(arg, state.index.default_for(arg.name), "weak")


def _booleans(state: _State) -> None:
    if state.phrase.negated:
        return
    for arg in state.slots:
        words = state.arg_words(arg)
        if arg.name in state.values or _kind(arg, words) != "bool" or not words:
            continue
        if len(overlap(words, state.phrase.words)) == len(words):
            flipped = "${FALSE}" if (arg.default or "").lower() in ("${true}", "true") else "${TRUE}"
            state.put(arg, flipped, "label")
            state.words.update(words)


def _varargs(state: _State) -> None:
    star = next((a for a in state.view.keyword.args if a.kind == "varargs"), None)
    if star is None:
        return
    for i in state.open_literals():
        if compatible(star, state.phrase.literals[i], state.arg_words(star)) == "type":
            state.extra.append(state.cell(i) or "")
            state.used.add(i)
    if not state.extra:
        state.extra = _earlier_varargs(state)


def _earlier_varargs(state: _State) -> list[str]:
    """`alice placed an order` after `alice placed an order for BK-1001`: the same call again."""
    mine = [state.values.get(a.name, "") for a in state.view.keyword.positional]
    for name, cells in reversed(state.scope.calls):
        if name == state.view.keyword.name and tuple(cells[: len(mine)]) == tuple(mine):
            return list(cells[len(mine) :])
    return []


def _result(state: _State) -> Filled:
    cells: list[str] = []
    names: list[str] = []
    literal_cells: list[int] = []
    gap = False
    for arg in state.view.keyword.args:
        value = state.values.get(arg.name)
        if arg.kind == "varargs" and not gap:
            cells += state.extra
            names += [arg.name] * len(state.extra)
            continue
        if value is None or arg.kind in ("varargs", "kwargs"):
            gap = gap or arg.kind == "positional"
            continue
        if arg.name in state.from_literal:
            literal_cells.append(len(cells))
        named = gap or arg.kind == "named" or _kind(arg, state.arg_words(arg)) == "bool"
        gap = gap or (named and arg.kind == "positional")
        cells.append(f"{arg.name}={value}" if named else value)
        names.append(arg.name)
    phrase = state.phrase
    creators = {phrase.literals[i].value.lower() for i in state.used}
    return Filled(
        cells=tuple(cells),
        arg_names=tuple(names),
        literal_cells=tuple(literal_cells),
        used_words=frozenset(state.words | state.view.words),
        creators=frozenset(creators),
        label_fits=state.counts.get("label", 0),
        var_fits=state.counts.get("var", 0),
        repo_fits=state.counts.get("repo", 0),
        type_fits=state.counts.get("type", 0),
        order_fits=state.counts.get("order", 0),
        weak=state.counts.get("weak", 0),
        unused=len(state.open_literals()),
    )


def _kind(arg: Arg, words: frozenset[str]) -> str:
    default = (arg.default or "").lower()
    if default in BOOLEANS:
        return "bool"
    if words & PATH_WORDS:
        return "path"
    if NUMBER.fullmatch(default) or words & NUMERIC_WORDS:
        return "number"
    if words & CODE_WORDS:
        return "code"
    return "any"


def _literal_kind(lit: Literal) -> str:
    if lit.kind != "text":
        return lit.kind
    if CODE.fullmatch(lit.value):
        return "code"
    if NUMBER.fullmatch(lit.value):
        return "number"
    return "path" if lit.value.startswith("/") else "text"


def compatible(arg: Arg, lit: Literal, words: frozenset[str]) -> str:
    """ "type" when the value is of the argument's own type, "any" when it may go there, else ""."""
    wanted, kind = _kind(arg, words), _literal_kind(lit)
    if wanted == "bool":
        return ""
    if wanted == kind:
        return "type"
    if wanted == "any" or kind == "word":
        return "any"
    if wanted == "code" and kind == "text" and any(ch.isdigit() for ch in lit.value):
        return "any"  # a coupon code written in lower case, not a name
    return ""


def literal_cell(value: str, scope: Scope) -> str | None:
    """The value as a cell; `<username>` becomes `${username}` when an earlier step returned it,
    and a value naming something nobody returned cannot be used."""
    names = placeholders(value)
    if not names:
        return escape(value)
    cell = escape(value)
    for name in names:
        found = scope.by_name(name)
        if found is None:
            return None
        cell = cell.replace(f"<{name}>", f"${{{found.name}}}")
    return cell
