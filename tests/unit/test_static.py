"""The static stage beyond grounding: variables, placeholders, reuse of the repository's keywords,
private keywords and the spec's tags. Each failure is diagnosed with its line and statement, and is
not blocking (a person can finish such a suite)."""

from __future__ import annotations

from tests.unit.verify_helpers import stage, verify
from worker.agent.checks.verdict import Outcome, Stage, Verdict

COMMON = (
    "*** Settings ***\nVariables    variables/env.py\n\n"
    "*** Variables ***\n${BASE_URL}    http://shop\n\n"
    "*** Keywords ***\nLogin As\n    [Documentation]    Logs in.\n    [Arguments]    ${username}    ${password}=${NONE}\n"
    "    Set Suite Variable    ${CURRENT_USER}    ${username}\n\n"
    "Cart Total Should Be\n    [Arguments]    ${expected_total}\n    Log    ${expected_total}\n\n"
    "Backend Reset\n    [Tags]    robot:private\n    No Operation\n"
)
FILES = {
    "resources/common.resource": COMMON,
    "variables/env.py": "VALID_CARD = '4111'\n_HIDDEN = 1\nDECLINED_CARD, OTHER = '4000', '1'\n",
}
HEAD = "*** Settings ***\nResource    resources/common.resource\n\n*** Test Cases ***\nT-1 Case\n"


def static(body: str, files: dict[str, str] | None = None, **options: object):
    return stage(verify(HEAD + body, files or FILES, **options), Stage.STATIC)  # type: ignore[arg-type]


def test_variables_from_every_source_in_scope_are_defined() -> None:
    body = (
        "    Login As    alice\n    Log    ${CURRENT_USER} ${BASE_URL} ${VALID_CARD} ${DECLINED_CARD}\n"
        "    ${total}=    Set Variable    58.50\n    Cart Total Should Be    ${total}\n"
        "    FOR    ${item}    IN    a    b\n        Log    ${item}[0] ${TEST NAME} ${SPACE * 2} ${1}\n    END\n"
        "    TRY\n        Fail    x\n    EXCEPT    AS    ${error}\n        Log    ${error}\n    END\n"
        "    VAR    ${local}    x\n    IF    $local == 'x'    Log    ${local.upper()}\n"
        "    Log    %{HOME} ${{ 1 + 1 }} ${FROM_CLI}\n"
    )
    result = static(body, {**FILES, ".robot-fleet.toml": "[variables]\nexternal = ['FROM_CLI']\n"})
    assert result.outcome is Outcome.PASSED, result.diagnostics


def test_undefined_variable_is_named_with_its_line_and_statement() -> None:
    result = static("    Login As    alice\n    Log    ${BROWSER_HEADLESS}\n    ${late}=    Set Variable    ${early}\n"
                    "    ${early}=    Set Variable    1\n")  # fmt: skip
    assert result.outcome is Outcome.FAILED and not result.blocking
    assert result.diagnostics[0].startswith(
        "line 7: variable `${BROWSER_HEADLESS}` is not defined: not in the suite's or its resources' Variables"
    )
    assert result.diagnostics[0].endswith("— in: Log    ${BROWSER_HEADLESS}")
    assert "`${early}`" in result.diagnostics[1] and result.diagnostics[1].startswith("line 8:")
    assert len(result.diagnostics) == 2


def test_keyword_arguments_and_embedded_arguments_are_defined_in_their_keyword_only() -> None:
    text = (
        HEAD
        + "    Login As    alice\n    Log    ${who}\n\n*** Keywords ***\nGreet ${who} Politely\n    [Arguments]    ${tone}\n    Log    ${who} ${tone}\n"
    )
    result = stage(verify(text, FILES), Stage.STATIC)
    assert [d.split(":")[0] for d in result.diagnostics] == ["line 7"], result.diagnostics


def test_a_dynamic_variable_file_leaves_variables_unchecked_and_the_suite_unverified() -> None:
    files = {**FILES, "variables/env.py": "def get_variables():\n    return {'X': 1}\n"}
    verification = verify(HEAD + "    Login As    alice\n    Log    ${X}\n", files)
    result = stage(verification, Stage.STATIC)
    assert result.outcome is Outcome.INCOMPLETE
    assert result.diagnostics == (
        "variables were not checked: `variables/env.py` defines them only when it runs.",
    )
    assert verification.checks.verdict is Verdict.UNVERIFIED


def test_placeholder_arguments_and_unfinished_markers_are_refused() -> None:
    result = static(
        "    Login As    <username>    Secret1\n    Cart Total Should Be    TODO\n    # FIXME later\n"
    )
    assert result.outcome is Outcome.FAILED and not result.blocking
    assert [d.split(" — ")[0] for d in result.diagnostics] == [
        "line 6: placeholder `<username>`: write the real value (from the spec, the test data, a variable or "
        "an earlier step's result).",
        "line 7: placeholder `TODO`: write the real value (from the spec, the test data, a variable or an "
        "earlier step's result).",
        "line 8: placeholder `FIXME`: write the real value (from the spec, the test data, a variable or an "
        "earlier step's result).",
    ]
    assert result.figures["placeholders"] == 3


def test_a_suite_that_calls_none_of_the_repositorys_keywords_gets_the_closest_ones() -> None:
    text = (
        "*** Test Cases ***\nT-1 Case\n    Log    Given alice logs in\n    Log    the cart total is 58.50\n"
    )
    result = stage(verify(text, FILES), Stage.STATIC)
    assert result.outcome is Outcome.FAILED
    assert result.diagnostics == (
        "the suite calls none of the repository's keywords; use them for its steps. "
        "Closest: `Cart Total Should Be`, `Login As`.",
    )
    assert result.figures["reuse_share"] == 0.0


def test_calling_another_files_private_keyword_is_refused() -> None:
    result = static("    Login As    alice\n    Backend Reset\n")
    assert result.diagnostics == (
        "line 7: `Backend Reset` is private to `resources/common.resource` (robot:private): call a public "
        "keyword of the repository instead. — in: Backend Reset",
    )


def test_every_test_carries_the_specs_tags_compared_as_robot_does() -> None:
    text = HEAD.replace(
        "T-1 Case\n", "T-1 Tagged\n    [Tags]    shop-1    Smoke Test\n    Login As    a\n\nT-1 Bare\n"
    )
    result = stage(
        verify(text + "    Login As    a\n", FILES, spec_tags=("SHOP-1", "smoke_test")), Stage.STATIC
    )
    assert result.diagnostics == (
        "line 9: test `T-1 Bare` lacks the spec's tags `SHOP-1`, `smoke_test`. — in: T-1 Bare",
    )


def test_a_test_of_log_lines_is_refused_even_when_the_suite_setup_calls_the_repository() -> None:
    text = (
        "*** Settings ***\nResource    resources/common.resource\nSuite Setup    Login As    alice\n\n"
        "*** Test Cases ***\nT-1 Logs Only\n    Log    the cart total is 58.50\n\n"
        "T-1 Through A Local Keyword\n    Check The Total\n\n"
        "*** Keywords ***\nCheck The Total\n    Inner Check\n\nInner Check\n    Cart Total Should Be    1\n"
    )
    result = stage(verify(text, FILES), Stage.STATIC)
    assert result.outcome is Outcome.FAILED
    assert result.diagnostics == (
        "line 6: test `T-1 Logs Only` calls none of the repository's keywords; use them for its steps. "
        "Closest: `Cart Total Should Be`, `Login As`. — in: T-1 Logs Only",
    )
