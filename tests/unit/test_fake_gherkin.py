"""The scripted writer reads a criterion's Gherkin steps in the language it is written in (Gherkin's
own keywords), so a sprint written in Spanish or French gets steps, not one `Log` line."""

from __future__ import annotations

import pytest

from offline.fake_llm.clauses import gherkin_parts

CASES = [
    (
        "Dado que el libro 978 está prestado a ana Cuando ella lo devuelve Entonces el libro está disponible"
        " Y nadie lo tiene",
        [("given", "el libro 978 está prestado a ana"), ("when", "ella lo devuelve"),
         ("then", "el libro está disponible"), ("and", "nadie lo tiene")],
    ),
    (
        "Étant donné que alice est connectée Quand elle ajoute BK-1 au panier Alors le panier contient BK-1",
        [("given", "alice est connectée"), ("when", "elle ajoute BK-1 au panier"),
         ("then", "le panier contient BK-1")],
    ),
    (
        "Angenommen der Kunde ist angemeldet Wenn er BK-1 kauft Dann sieht er die Bestellung Und keinen Fehler",
        [("given", "der Kunde ist angemeldet"), ("when", "er BK-1 kauft"), ("then", "sieht er die Bestellung"),
         ("and", "keinen Fehler")],
    ),
    (  # English: words that are keywords elsewhere (Dan, Data, E, Y) stay words
        "Given Dan is logged in When he opens Data E Then Y is shown",
        [("given", "Dan is logged in"), ("when", "he opens Data E"), ("then", "Y is shown")],
    ),
]  # fmt: skip


@pytest.mark.parametrize(("criterion", "parts"), CASES)
def test_a_criterion_splits_on_the_gherkin_keywords_of_its_language(
    criterion: str, parts: list[tuple[str, str]]
) -> None:
    assert gherkin_parts(criterion) == parts
