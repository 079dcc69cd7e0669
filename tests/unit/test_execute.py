"""The execution stage: the suite run by a real Robot Framework subprocess in a private directory
holding what it needs from the repository, with no secret in its environment."""

from __future__ import annotations

import pytest

from tests.unit.verify_helpers import stage, verify
from worker.agent.checks.execute import RunSettings
from worker.agent.checks.verdict import Outcome, Stage, Verdict

FILES = {
    "resources/shop.resource": (
        "*** Settings ***\nLibrary    OperatingSystem\nLibrary    libs/prices.py\nVariables    vars/data.py\n\n"
        "*** Keywords ***\nTotal Should Be\n    [Arguments]    ${items}    ${expected}\n"
        "    ${total}=    Sum Prices    ${items}\n    Should Be Equal As Numbers    ${total}    ${expected}\n\n"
        "Users File Should List\n    [Arguments]    ${name}\n"
        "    ${text}=    Get File    ${CURDIR}/../data/users.csv\n    Should Contain    ${text}    ${name}\n"
    ),
    "libs/prices.py": "from libs.money import cents\n\ndef sum_prices(items):\n    return sum(cents(i) for i in items.split(',')) / 100\n",
    "libs/money.py": "def cents(text):\n    return round(float(text) * 100)\n",
    "libs/__init__.py": "",
    "vars/data.py": "PRICE = '2.50'\n",
    "data/users.csv": "name\nalice\nbob\n",
    "tests/__init__.robot": "*** Settings ***\nSuite Setup    Set Global Variable    ${FROM_INIT}    set-by-init\n",
    "doc/unrelated.md": "not needed",
}
HEAD = "*** Settings ***\nResource    resources/shop.resource\n\n*** Test Cases ***\n"


def run(body: str, files: dict[str, str] | None = None, **settings: object):
    verification = verify(HEAD + body, files or FILES, target="tests/shop/new.robot", execute=True,
                          run=RunSettings(**settings))  # type: ignore[arg-type]  # fmt: skip
    return verification, stage(verification, Stage.EXECUTION)


def test_a_passing_suite_runs_with_its_libraries_variables_data_files_and_init_files() -> None:
    body = ("T-1 Prices\n    Total Should Be    ${PRICE},1.25    3.75\n    Users File Should List    bob\n"
            "    Should Be Equal    ${FROM_INIT}    set-by-init\n")  # fmt: skip
    verification, result = run(body + "    Variable Should Exist    ${FROM_INIT}\n")
    assert result.outcome is Outcome.PASSED, result.diagnostics
    assert result.figures["tests_run"] == result.figures["tests_passed"] == 1
    assert result.figures["files_materialized"] == 7  # everything but doc/unrelated.md
    assert verification.checks.verdict is Verdict.VERIFIED


def test_a_failing_test_comes_back_with_its_name_step_and_robots_message() -> None:
    body = "T-1 Good\n    Total Should Be    1,2    3\n\nT-1 Wrong Total\n    Total Should Be    1,2    4\n"
    verification, result = run(body)
    assert result.outcome is Outcome.FAILED
    assert result.diagnostics == (
        "test `T-1 Wrong Total` failed when run at `Total Should Be    1,2    4` (line 9): 3.0 != 4.0",
    )
    assert (result.figures["tests_passed"], result.figures["tests_failed"]) == (1, 1)
    assert verification.checks.verdict is Verdict.FAILING


def test_the_run_environment_holds_no_secret_even_when_asked_to_pass_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-must-not-leak")
    monkeypatch.setenv("SHOP_ENVIRONMENT", "staging")
    body = ("T-1 Env\n    Environment Variable Should Not Be Set    OPENAI_API_KEY\n"
            "    Should Be Equal    %{SHOP_ENVIRONMENT}    staging\n    Total Should Be    1    1\n")  # fmt: skip
    _, result = run(
        body, env_names=("OPENAI_API_KEY", "SHOP_ENVIRONMENT"), secret_names=frozenset({"OPENAI_API_KEY"})
    )
    assert result.outcome is Outcome.PASSED, result.diagnostics


def test_a_suite_that_runs_too_long_is_stopped_and_fails() -> None:
    _, result = run("T-1 Slow\n    Total Should Be    1    1\n    Sleep    20s\n", timeout_s=2)
    assert result.outcome is Outcome.FAILED
    assert result.diagnostics == ("the suite did not finish within 2s (WRITER_EXECUTE_TIMEOUT_S)",)


def test_a_run_robot_refuses_is_not_run_never_passed() -> None:
    verification, result = run("T-1 X\n    Total Should Be    1    1\n", extra_options=("--no-such-option",))
    assert result.outcome is Outcome.NOT_RUN
    assert (
        "robot did not run the suite" in result.diagnostics[0]
        and "--nosuchoption not recognized" in result.diagnostics[0]
    )
    assert verification.checks.verdict is Verdict.UNVERIFIED
