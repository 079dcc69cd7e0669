"""The rules file `.robot-fleet.toml`: read strictly (every mistake named with its key), enforced
only for what it states, its placeholders filled from the spec and the suite's path."""

from __future__ import annotations

import pytest

from tests.unit.verify_helpers import stage, verify
from worker.agent.checks.rules import NO_RULES, load_rules, placeholders
from worker.agent.checks.verdict import Outcome, Stage
from worker.errors import ConfigError

RESOURCE = "*** Keywords ***\nOpen Session\n    No Operation\n"
SUITE = (
    "*** Settings ***\nResource    resources/common.resource\n\n*** Test Cases ***\n"
    "SHOP-7 Checks Out\n    [Tags]    regression    SHOP-7\n    Open Session\n    Sleep    1s\n"
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[tags]\nfrist = 'x'\n", ".robot-fleet.toml: unknown key `tags.frist`"),
        ("[tagz]\nfirst = 'x'\n", ".robot-fleet.toml: unknown key `tagz`"),
        (
            "[tags]\nrequired = 'SHOP'\n",
            ".robot-fleet.toml: key `tags.required`: input should be a valid list",
        ),
        ("[documentation]\ntests = 'yes'\n", "key `documentation.tests`: input should be a valid boolean"),
        ("[names]\ntests = '(unclosed'\n", "key `names.tests`"),
        ("[tags\n", ".robot-fleet.toml: not valid TOML"),
        ("version = 2\n", "version 2 is not supported"),
    ],
)
def test_mistakes_in_the_rules_file_are_config_errors_naming_the_file_and_key(
    text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_rules(text)
    assert message in caught.value.message


def test_no_rules_file_means_no_rule_but_the_default_run_options() -> None:
    assert load_rules(None) is NO_RULES and NO_RULES.source is None
    assert NO_RULES.describe() == ["suites are run with: robot --pythonpath ."]


def test_placeholders_come_from_the_spec_and_the_folder_under_the_suites_root() -> None:
    assert placeholders("SHOP-7", "tests/cart/coupons/x.robot", None, "tests") == {
        "ticket": "SHOP-7", "folder": "cart", "area": "cart"}  # fmt: skip
    assert placeholders("SHOP-7", "atest/x.robot", "orders", "tests")["folder"] == ""
    assert placeholders("SHOP-7", "atest/api/x.robot", "orders", "atest")["area"] == "orders"


def test_a_rule_the_file_does_not_state_is_not_enforced() -> None:
    verification = verify(SUITE, {"resources/common.resource": RESOURCE}, target="tests/cart/x.robot")
    assert stage(verification, Stage.RULES).outcome is Outcome.PASSED


def test_each_stated_rule_is_enforced_with_its_key_in_the_diagnostic() -> None:
    rules = (
        "[keywords]\nforbidden = ['sleep']\n[tags]\nfirst = '{folder}'\nrequired = ['{ticket}', 'cart']\n"
        "one_of = [['smoke', 'regression']]\n[documentation]\nsuite = true\ntests = true\n"
        "[imports]\nrequired = ['resources/base.resource']\n[names]\ntests = '^{ticket} [a-z]'\n"
    )
    files = {"resources/common.resource": RESOURCE, ".robot-fleet.toml": rules}
    result = stage(verify(SUITE, files, target="tests/cart/x.robot", spec_id="SHOP-7"), Stage.RULES)
    keys = sorted(line.split(".robot-fleet.toml: ")[1].split(")")[0] for line in result.diagnostics)
    assert keys == [
        "documentation.suite", "documentation.tests", "imports.required", "keywords.forbidden",
        "names.tests", "tags.first", "tags.required",
    ], result.diagnostics  # fmt: skip
    assert "lacks the tag `cart`" in " ".join(result.diagnostics)
    assert result.figures["rule_violations"] == 7


def test_the_repositorys_robocop_configuration_is_what_lints_the_suite() -> None:
    files = {
        "resources/common.resource": RESOURCE,
        "pyproject.toml": "[tool.robocop.lint]\nselect = ['missing-doc-test-case']\nthreshold = 'I'\n",
    }
    result = stage(verify(SUITE, files), Stage.RULES)
    assert result.outcome is Outcome.FAILED
    assert result.diagnostics == (
        "line 5: [DOC02] Missing documentation in 'SHOP-7 Checks Out' test case (Robocop, pyproject.toml)",
    )
    assert (
        stage(verify(SUITE, {"resources/common.resource": RESOURCE}), Stage.RULES).outcome is Outcome.PASSED
    )
