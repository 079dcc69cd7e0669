"""The scripted writer reads what the prompt gives: files under `## Repository file:` count as read,
the keyword catalog stands for the resources not given, and only what is still needed is fetched.

The prompts are the worker's own (worker/agent/prompt.py), with chosen files given up front.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from robot.running import ResourceFile

from offline.fake_llm.given import catalog, given_files, parse_arguments
from offline.fake_llm.robotfiles import read_resource
from tests.conftest import StandIn
from tests.test_fake_llm import client_for, run
from tests.test_fake_writer_examples import (
    FRAMEWORK,
    MODEL,
    SPECS,
    answers_of,
    converse,
    framework_files,
    load_spec,
    parsed_tests,
    run_suites,
    spec_id,
    target_path,
)
from worker.agent.catalog import build_catalog
from worker.agent.context import CONVENTION_PATH, RepoContext
from worker.agent.prompt import catalog_section, files_section, initial_messages
from worker.agent.upfront import GivenFile
from worker.spec import parse_spec

pytestmark = pytest.mark.integration

DECLARATIONS = [
    "${a}    ${b}=x, y    @{rest}    ${c}    ${d}=2    &{kw}",
    "${a}    @{}    ${n}    ${m}=3",
    "${x: int}    ${y: str}=a=b",
    "${a}=    ${b}=${NONE}",
    "${a}=, z    ${b}=1",
    "${url}=http://shop:80/a    @{items}",
    "&{options}",
    "",
]
IN_CART = {
    "id": "SHOP-950",
    "title": "A logged-in customer fills the cart",
    "area": "auth",
    "acceptance_criteria": [
        'Given "alice" is logged in When she adds "BK-1001" to the cart Then the cart contains "BK-1001"'
    ],
    "rf": {"target_path": "tests/auth/fill_cart.robot"},
}


def keyword_args(declaration: str) -> tuple[str, Any]:
    arguments = f"    [Arguments]    {declaration}\n" if declaration else ""
    text = f"*** Keywords ***\nK\n{arguments}    No Operation\n"
    printed = str(ResourceFile.from_string(text).keywords[0].args)
    [keyword], _ = read_resource(text)
    return printed, keyword.args


@pytest.mark.parametrize("declaration", DECLARATIONS)
def test_a_catalog_arguments_string_reads_back_as_the_resource_declares_it(declaration: str) -> None:
    printed, declared = keyword_args(declaration)
    assert parse_arguments(printed or "-") == declared


def test_every_keyword_of_the_example_framework_reads_back_from_its_catalog_line() -> None:
    files = framework_files()
    listed = {k.name: k for k in catalog(catalog_section(run(_catalog(files))))}
    for path in sorted(p for p in files if p.endswith(".resource")):
        for keyword in read_resource(files[path], path)[0]:
            if not keyword.private:
                assert listed[keyword.name].args == keyword.args, keyword.name
                assert listed[keyword.name].source == path


def test_catalog_prose_lines_are_skipped_and_a_dash_means_none() -> None:
    text = (
        "## Keywords of the repository\n\nOne per line: name | arguments | what it does | file. Private ones"
        " are left out.\n\nLogout | - | - | resources/auth.resource\n"
        "Get Order | order_id | Returns the order. | resources/orders.resource\n"
        "Place Order | sku | Buys ``sku`` and returns the new order id. | resources/orders.resource\n"
        "... 3 more keywords in the resources.\n\n## Repository tree\n\ntests/a.robot\n"
    )
    found = {k.name: (k.args, k.doc, k.returns, k.source) for k in catalog(text)}
    assert found == {
        "Logout": ((), "", "", "resources/auth.resource"),
        "Get Order": (parse_arguments("order_id"), "Returns the order.", "-", "resources/orders.resource"),
        "Place Order": (
            parse_arguments("sku"),
            "Buys ``sku`` and returns the new order id.",
            "order_id",
            "resources/orders.resource",
        ),
    }


def test_a_given_file_is_read_whole_inside_a_fence_longer_than_its_backticks() -> None:
    robot = "*** Keywords ***\nK\n    [Documentation]    ```code``` here\n## not a heading\n    Log    x\n"
    python = "NAME = 'alice'\n"
    text = files_section([GivenFile("resources/k.resource", robot), GivenFile("variables/v.py", python)])
    assert "````robot" in text
    assert given_files(text + "Write the suite.") == {"resources/k.resource": robot, "variables/v.py": python}


async def _catalog(files: dict[str, str]) -> Any:
    async def read_file(path: str) -> str | None:
        return files.get(path)

    return await build_catalog(read_file, tuple(sorted(files)))


async def _messages(
    spec: dict[str, Any], given: Sequence[str], cut: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """The worker's first messages with the catalog and these files given up front; the catalog
    lines of the keywords named in `cut` carry 60 characters of their documentation, as a catalog
    whose lines are cut mid-sentence would."""
    files = framework_files()
    paths = tuple(sorted(files))
    product_spec = parse_spec(json.dumps(spec).encode(), source=f"{spec_id(spec)}_spec.json", max_bytes=10**6)
    context = RepoContext("42", "main", files[CONVENTION_PATH], paths, mcp_calls=0)
    shown = [GivenFile(path, files[path]) for path in given]
    entries = [
        replace(entry, doc=entry.doc[:60]) if entry.name in cut else entry for entry in await _catalog(files)
    ]
    return initial_messages(context, product_spec, tuple(entries), shown)


def write(
    server: str, spec: dict[str, Any], given: Sequence[str], model: str = MODEL, cut: Sequence[str] = ()
) -> tuple[str, list[str]]:
    """The first answer and the files the writer fetched for it."""

    async def scenario() -> list[dict[str, Any]]:
        messages = await _messages(spec, given, cut)
        await converse(client_for(server), messages, framework_files(), model)
        return messages

    messages = run(scenario())
    calls = [c for m in messages if m["role"] == "assistant" for c in m.get("tool_calls") or []]
    fetched = [json.loads(c["function"]["arguments"])["file_path"] for c in calls]
    return answers_of(messages)[0], fetched


def assert_passes(spec: dict[str, Any], text: str, root: Path) -> None:
    outcomes = run_suites({target_path(spec): text}, root / "framework", FRAMEWORK)
    assert set(outcomes) == set(parsed_tests(text)), text
    assert all(passed for passed, _ in outcomes.values()), (outcomes, text)


def test_a_keyword_of_a_resource_not_given_is_imported_from_its_catalog_path_unread(
    fake_llm: StandIn, tmp_path: Path
) -> None:
    given = ["tests/auth/login.robot", "resources/common.resource", "resources/auth.resource"]
    given += ["variables/environment.py", "variables/users.py", "variables/products.py"]
    text, fetched = write(fake_llm.base, IN_CART, given)
    assert fetched == []  # the first turn answers
    assert "Resource    resources/cart.resource\n" in text
    assert "    Add Product To Cart    BK-1001\n" in text
    assert_passes(IN_CART, text, tmp_path)


def test_a_variable_file_not_given_is_fetched_and_a_deeper_resource_the_catalog_lists_is_not(
    fake_llm: StandIn, tmp_path: Path
) -> None:
    spec = load_spec(SPECS / "SHOP-130_spec.json")
    given = ["tests/auth/login.robot", "resources/common.resource", "resources/auth.resource"]
    text, fetched = write(fake_llm.base, spec, given)
    assert fetched == ["variables/environment.py", "variables/users.py", "variables/products.py"]
    assert_passes(spec, text, tmp_path)


def test_the_similar_test_is_fetched_when_the_prompt_gives_none(fake_llm: StandIn, tmp_path: Path) -> None:
    spec = load_spec(SPECS / "SHOP-134_spec.json")
    text, fetched = write(fake_llm.base, spec, [])
    assert fetched[0].startswith("tests/cart/") and fetched[0].endswith(".robot")
    assert "resources/api_client.resource" not in fetched  # imported by common.resource: the catalog says it
    assert_passes(spec, text, tmp_path)


ORDER_HISTORY_GIVEN = [
    "tests/orders/order_history.robot",
    "resources/common.resource",
    "resources/orders.resource",
    "variables/environment.py",
    "variables/users.py",
    "variables/products.py",
]


def test_the_file_of_a_keyword_used_whose_catalog_line_is_cut_short_is_read(
    fake_llm: StandIn, tmp_path: Path
) -> None:
    """`Place Order For Products` listed as `Logs in as ``username``, buys one item of each of ``sk`:
    what it returns (the order id later steps use) is in checkout.resource."""
    spec = load_spec(SPECS / "SHOP-141_spec.json")
    text, fetched = write(fake_llm.base, spec, ORDER_HISTORY_GIVEN, cut=["Place Order For Products"])
    assert fetched == ["resources/checkout.resource"]
    assert "    ${order_id}=    Place Order For Products    alice    BK-1001\n" in text
    assert_passes(spec, text, tmp_path)


def test_a_keyword_whose_catalog_line_says_what_it_returns_is_used_without_reading_its_file(
    fake_llm: StandIn, tmp_path: Path
) -> None:
    """The catalog carries the documentation's whole first sentence (`... and returns the order id.`)."""
    spec = load_spec(SPECS / "SHOP-141_spec.json")
    text, fetched = write(fake_llm.base, spec, ORDER_HISTORY_GIVEN)
    assert fetched == []
    assert "    ${order_id}=    Place Order For Products    alice    BK-1001\n" in text
    assert_passes(spec, text, tmp_path)


def test_the_upfront_knob_ignore_makes_the_writer_read_everything_with_the_tools(fake_llm: StandIn) -> None:
    spec = load_spec(SPECS / "SHOP-130_spec.json")
    given = ["tests/auth/login.robot", "resources/common.resource", "resources/auth.resource"]
    read, fetched = write(fake_llm.base, spec, given)
    ignored, refetched = write(fake_llm.base, spec, given, model=f"{MODEL}?upfront=ignore")
    assert "tests/auth/login.robot" not in fetched
    assert refetched[:3] == given and "resources/cart.resource" in refetched  # as given nothing
    assert parsed_tests(ignored).keys() == parsed_tests(read).keys()
