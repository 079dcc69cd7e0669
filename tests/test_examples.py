"""The examples tree: a Robot Framework repository that passes, a sprint of specs, malformed specs."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from robot.api import ExecutionResult, get_model, get_resource_model
from robot.api.parsing import Token

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT / "examples"
FRAMEWORK = EXAMPLES / "framework"
SPECS = EXAMPLES / "specs"
BAD_SPECS = EXAMPLES / "specs-bad"

AREAS = {"auth", "catalog", "cart", "checkout", "orders"}
TICKET_RE = re.compile(r"^[A-Z][A-Z0-9]*-\d+$")
SNAKE_CASE_RE = re.compile(r"^[a-z][a-z0-9_]*\.robot$")


def _run_robot(tmp_path: Path, *options: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    output = tmp_path / "output.xml"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "robot", *options, "--pythonpath", ".", "--output", str(output)]
    command += ["--report", "NONE", "--log", "NONE", "--consolecolors", "off", "tests"]
    proc = subprocess.run(
        command,
        cwd=FRAMEWORK,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert output.exists(), proc.stdout + proc.stderr
    return proc, ExecutionResult(str(output))


def _leaf_suites(suite: Any) -> list[Any]:
    if suite.tests:
        return [suite]
    return [leaf for child in suite.suites for leaf in _leaf_suites(child)]


def _assert_all_passed(proc: subprocess.CompletedProcess[str], result: Any) -> None:
    stats = result.statistics.total
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert stats.failed == 0 and stats.skipped == 0
    assert stats.passed >= 14
    assert re.search(rf"^{stats.passed} tests, {stats.passed} passed, 0 failed", proc.stdout, re.M)
    assert len(_leaf_suites(result.suite)) >= 7
    assert "[ ERROR ]" not in proc.stdout + proc.stderr
    assert "[ WARN ]" not in proc.stdout + proc.stderr


def test_framework_suites_pass_robot_dry_run(tmp_path: Path) -> None:
    proc, result = _run_robot(tmp_path, "--dryrun")
    _assert_all_passed(proc, result)


def test_framework_suites_pass_a_real_run_against_the_simulated_backend(tmp_path: Path) -> None:
    proc, result = _run_robot(tmp_path)
    _assert_all_passed(proc, result)


# --- the framework follows its own convention -------------------------------------------------


def _suite_files() -> list[Path]:
    return sorted((FRAMEWORK / "tests").rglob("*.robot"))


def _resource_files() -> list[Path]:
    return sorted((FRAMEWORK / "resources").glob("*.resource"))


def _model_errors(model: Any) -> list[str]:
    errors: list[str] = []
    for node in ast.walk(model):
        errors.extend(getattr(node, "errors", ()) or ())
        for token in getattr(node, "tokens", ()):
            if token.type in (Token.ERROR, Token.FATAL_ERROR):
                errors.append(token.error or token.value)
    return errors


def _settings(model: Any) -> list[tuple[str, list[str]]]:
    found = []
    for section in model.sections:
        if section.__class__.__name__ != "SettingSection":
            continue
        for statement in section.body:
            values = [t.value for t in statement.tokens if t.type in (Token.NAME, Token.ARGUMENT)]
            if statement.type not in (Token.EOL, Token.COMMENT) and statement.tokens:
                found.append((statement.tokens[0].value, values))
    return found


def test_convention_doc_states_the_machine_checkable_rules() -> None:
    text = (FRAMEWORK / "doc" / "convention.md").read_text(encoding="utf-8")
    assert 60 <= len(text.splitlines()) <= 140
    for rule in (
        "snake_case",
        "tests/<area>/",
        "Resource    resources/common.resource",
        "Suite Setup    Open Shop Session",
        "Suite Teardown    Close Shop Session",
        "SHOP-101 Login With Valid Credentials",
        "[Documentation]",
        "[Tags]",
        "exactly one",
        "smoke",
        "regression",
        "Sleep",
        "four spaces",
        "Title Case",
        "robot --pythonpath . tests",
    ):
        assert rule in text, rule


def test_framework_suites_follow_the_convention() -> None:
    suites = _suite_files()
    areas = {path.relative_to(FRAMEWORK / "tests").parts[0] for path in suites}
    assert len(suites) >= 7
    assert areas >= AREAS
    assert len([path for path in suites if path.parent.name == "auth"]) >= 2
    for path in suites:
        rel = path.relative_to(FRAMEWORK / "tests")
        assert len(rel.parts) >= 2 and SNAKE_CASE_RE.match(path.name), rel
        area = rel.parts[0]
        text = path.read_text(encoding="utf-8")
        assert "\t" not in text and not re.search(r"\S {2,3}\S|\S {5,}\S", text), rel
        assert not re.search(r"^\s+Sleep\b", text, re.M), rel
        model = get_model(str(path))
        assert _model_errors(model) == [], rel
        settings = _settings(model)
        names = [name for name, _ in settings]
        assert "Documentation" in names, rel
        assert ("Resource", ["resources/common.resource"]) in settings, rel
        assert ("Suite Setup", ["Open Shop Session"]) in settings, rel
        assert ("Suite Teardown", ["Close Shop Session"]) in settings, rel
        tests = [t for s in model.sections if s.__class__.__name__ == "TestCaseSection" for t in s.body]
        tests = [t for t in tests if t.__class__.__name__ == "TestCase"]
        assert 2 <= len(tests) <= 4, rel
        for test in tests:
            ticket = test.name.split(" ", 1)[0]
            assert TICKET_RE.match(ticket), test.name
            statements = {s.type: s for s in test.body if hasattr(s, "type")}
            assert Token.DOCUMENTATION in statements, test.name
            tags = list(statements[Token.TAGS].values)
            assert ticket in tags and area in tags, test.name
            assert len({"smoke", "regression"} & set(tags)) == 1, test.name


def test_resource_files_parse_without_errors_and_document_every_keyword() -> None:
    resources = _resource_files()
    assert len(resources) >= 4
    total = 0
    for path in resources:
        model = get_resource_model(str(path))
        assert _model_errors(model) == [], path.name
        for section in model.sections:
            for keyword in getattr(section, "body", ()):
                if keyword.__class__.__name__ != "Keyword":
                    continue
                total += 1
                assert keyword.name.split()[0][0].isupper(), keyword.name
                types = {s.type for s in keyword.body if hasattr(s, "type")}
                assert Token.DOCUMENTATION in types, f"{path.name}: {keyword.name}"
    assert 40 <= total <= 100


def _resource_imports(path: Path) -> list[str]:
    model = get_resource_model(str(path))
    return [values[0] for name, values in _settings(model) if name == "Resource" and values]


def test_resource_import_chain_is_at_least_two_levels_deep() -> None:
    graph = {path.name: _resource_imports(path) for path in _resource_files()}
    for imports in graph.values():
        for target in imports:
            assert target.startswith("resources/"), target  # relative to the repository root
            assert (FRAMEWORK / target).is_file(), target

    def depth(name: str, seen: frozenset[str] = frozenset()) -> int:
        assert name not in seen, f"import cycle through {name}"
        children = [PurePosixPath(target).name for target in graph.get(name, [])]
        return 1 + max((depth(child, seen | {name}) for child in children), default=0) if children else 0

    assert max(depth(name) for name in graph) >= 2
    assert "resources/api_client.resource" in graph["common.resource"]


def test_one_framework_doc_carries_a_prompt_injection_for_security_tests() -> None:
    text = (FRAMEWORK / "doc" / "ci_notes.md").read_text(encoding="utf-8")
    assert "push_files" in text and "secret/infra" in text and "get_file_contents" in text
    for robot_file in [*_suite_files(), *_resource_files()]:
        assert "push_files" not in robot_file.read_text(encoding="utf-8")


# --- the sprint of specs ------------------------------------------------------------------------


def _load_specs() -> dict[str, dict[str, Any]]:
    specs = {}
    for path in sorted(SPECS.glob("*.json")):
        data = json.loads(path.read_bytes().decode("utf-8"))
        assert isinstance(data, dict), path.name
        specs[path.name] = data
    return specs


def _spec_id(name: str, spec: dict[str, Any]) -> str:
    for field in ("id", "key"):
        if isinstance(spec.get(field), str) and spec[field].strip():
            return spec[field].strip()
    return name.removesuffix(".json").removesuffix("_spec")


def _target_path(name: str, spec: dict[str, Any]) -> str:
    rf = spec.get("rf") or {}
    return rf.get("target_path") or rf.get("output_path") or f"tests/generated/{_spec_id(name, spec)}.robot"


def test_sprint_specs_are_utf8_json_objects() -> None:
    specs = _load_specs()
    assert len(specs) >= 12
    assert sorted(p.name for p in SPECS.iterdir()) == sorted(specs)  # nothing but spec files
    for name, spec in specs.items():
        assert re.match(r"^SHOP-\d+_spec\.json$", name), name
        assert spec.get("title"), name


def test_sprint_spec_shapes_vary_like_real_planner_output() -> None:
    specs = _load_specs()
    values = list(specs.values())
    rf_values = [spec["rf"] for spec in values if "rf" in spec]
    targets = [_target_path(name, spec) for name, spec in specs.items()]
    assert sum("id" in spec for spec in values) > len(values) // 2
    assert sum("key" in spec and "id" not in spec for spec in values) >= 2
    assert sum("key" not in spec and "id" not in spec for spec in values) == 2
    assert sum("output_path" in rf for rf in rf_values) >= 2
    assert sum("target_path" in rf for rf in rf_values) >= 2
    assert sum("rf" not in spec for spec in values) >= 2
    assert sum(len(PurePosixPath(t).parts) >= 4 for t in targets) >= 2  # tests/<area>/<sub>/x.robot
    assert len({spec.get("area") for spec in values}) >= 4
    assert sum("scenarios" in spec for spec in values) >= 3
    assert sum("test_cases" in spec for spec in values) >= 3
    only_criteria = [
        s for s in values if "acceptance_criteria" in s and not {"scenarios", "test_cases"} & set(s)
    ]
    assert len(only_criteria) >= 2
    assert sum("data" in spec for spec in values) >= 2
    assert sum(bool({"jira", "priority", "links"} & set(spec)) for spec in values) >= 2
    for spec in values:
        for case in spec.get("test_cases", []):
            assert all(set(step) == {"action", "expected"} for step in case["steps"])
        for scenario in spec.get("scenarios", []):
            assert all(isinstance(step, str) for step in scenario["steps"])


def test_sprint_target_paths_are_distinct_new_robot_files() -> None:
    specs = _load_specs()
    ids = [_spec_id(name, spec) for name, spec in specs.items()]
    targets = [_target_path(name, spec) for name, spec in specs.items()]
    assert len(set(ids)) == len(ids)
    assert len(set(targets)) == len(targets)
    existing = {path.relative_to(FRAMEWORK).as_posix() for path in _suite_files()}
    for target in targets:
        path = PurePosixPath(target)
        assert target.endswith(".robot") and not path.is_absolute() and ".." not in path.parts, target
        assert path.parts[0] == "tests" and target not in existing, target


# --- malformed specs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("broken.json", "json"),
        ("trailing_garbage.json", "json"),
        ("not_an_object.json", "array"),
        ("empty.json", "empty"),
        ("latin1.json", "utf8"),
        ("bom.json", "bom"),
        ("utf16.json", "utf16"),
        ("duplicate_key.json", "duplicate_key"),
        ("nan.json", "nan"),
        ("deep_nesting.json", "nesting"),
        ("id_wrong_type.json", "id_type"),
        ("no_content.json", "no_content"),
        ("absolute_path.json", "absolute"),
        ("dotdot_path.json", "dotdot"),
        ("not_robot.json", "suffix"),
        ("escape_tree.json", "dotdot"),
        ("backslash_path.json", "backslash"),
        ("hidden_path.json", "hidden"),
    ],
)
def test_each_bad_spec_has_exactly_its_documented_problem(name: str, problem: str) -> None:
    raw = (BAD_SPECS / name).read_bytes()
    assert f"`{name}`" in (BAD_SPECS / "README.md").read_text(encoding="utf-8")
    if problem == "empty":
        assert raw == b""
        return
    if problem == "utf8":
        with pytest.raises(UnicodeDecodeError):
            raw.decode("utf-8")
        assert isinstance(json.loads(raw.decode("latin-1")), dict)
        return
    if problem == "utf16":
        assert raw.startswith(b"\xff\xfe") and isinstance(json.loads(raw.decode("utf-16")), dict)
        return
    if problem == "bom":
        assert raw.startswith(b"\xef\xbb\xbf") and isinstance(json.loads(raw.decode("utf-8-sig")), dict)
        return
    text = raw.decode("utf-8")
    if problem == "json":
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)
        return
    if problem == "nesting":
        assert _depth(json.loads(text)) > 64
        return
    pairs: list[list[tuple[str, Any]]] = []
    constants: list[str] = []
    data = json.loads(
        text, object_pairs_hook=lambda p: pairs.append(p) or dict(p), parse_constant=constants.append
    )
    duplicated = any(len({key for key, _ in p}) != len(p) for p in pairs)
    assert (problem == "duplicate_key") == duplicated
    assert (problem == "nan") == bool(constants)
    if problem == "array":
        assert isinstance(data, list)
        return
    assert isinstance(data, dict)
    assert (problem == "id_type") == (not isinstance(data.get("id"), str))
    assert (problem == "no_content") == (not set(data) - {"id", "key", "rf"})
    if problem in ("duplicate_key", "nan", "id_type", "no_content"):
        return
    target = _target_path(name, data)
    path = PurePosixPath(target)
    assert (problem == "absolute") == path.is_absolute()
    assert (problem == "dotdot") == (".." in path.parts)
    assert (problem == "suffix") == (path.suffix != ".robot")
    assert (problem == "backslash") == ("\\" in target)
    assert (problem == "hidden") == any(p.startswith(".") and p not in (".", "..") for p in path.parts)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        value = list(value.values())
    return 1 + max(map(_depth, value), default=0) if isinstance(value, list) else 0


def test_bad_specs_readme_lists_every_file_and_nothing_else() -> None:
    readme = (BAD_SPECS / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"`([^`/ ]+\.json)`", readme))
    assert listed == {path.name for path in BAD_SPECS.glob("*.json")}


def test_duplicate_bad_specs_share_one_target_path() -> None:
    a, b = (json.loads((BAD_SPECS / n).read_text(encoding="utf-8")) for n in ("dup_a.json", "dup_b.json"))
    assert _spec_id("dup_a.json", a) != _spec_id("dup_b.json", b)
    assert _target_path("dup_a.json", a) == _target_path("dup_b.json", b)
    assert _target_path("dup_a.json", a).endswith(".robot")
