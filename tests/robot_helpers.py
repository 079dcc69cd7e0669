"""Reading Robot Framework files in tests with robot's own API."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from robot.api import get_model
from robot.api.parsing import ModelVisitor
from robot.libraries.BuiltIn import BuiltIn
from robot.running.builder import ResourceFileBuilder

FRAMEWORK = Path(__file__).resolve().parents[1] / "examples" / "framework"


def normalize(name: str) -> str:
    return name.lower().replace(" ", "").replace("_", "")


@cache
def framework_keywords() -> frozenset[str]:
    names = set()
    for path in (FRAMEWORK / "resources").glob("*.resource"):
        names |= {normalize(kw.name) for kw in ResourceFileBuilder().build(path).keywords}
    return frozenset(names)


@cache
def builtin_keywords() -> frozenset[str]:
    return frozenset(normalize(name) for name in dir(BuiltIn) if not name.startswith("_"))


class _Calls(ModelVisitor):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def visit_KeywordCall(self, node: object) -> None:
        self.calls.append(node.keyword)  # type: ignore[attr-defined]

    def visit_Setup(self, node: object) -> None:
        self.calls.append(node.name)  # type: ignore[attr-defined]

    visit_Teardown = visit_SuiteSetup = visit_SuiteTeardown = visit_Setup


def keyword_calls(text: str) -> list[str]:
    visitor = _Calls()
    visitor.visit(get_model(text))
    return [call for call in visitor.calls if call]


def run_in_framework(suites: dict[str, str], workdir: Path) -> tuple[int, int, list[str]]:
    """Run `suites` (target path -> text) inside a copy of examples/framework, as a person would
    (`robot --pythonpath . <paths>`): (tests run, tests passed, names of the failing tests)."""
    import shutil
    import subprocess
    import sys

    from robot.api import ExecutionResult

    root = workdir / "framework"
    shutil.copytree(FRAMEWORK, root, dirs_exist_ok=True)
    for path, text in suites.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text, encoding="utf-8")
    output = workdir / "output.xml"
    subprocess.run(
        [sys.executable, "-m", "robot", "--pythonpath", ".", "--output", str(output), "--log", "NONE",
         "--report", "NONE", "--console", "none", *suites],
        cwd=root, capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    tests = list(ExecutionResult(str(output)).suite.all_tests)
    return len(tests), sum(test.passed for test in tests), [test.name for test in tests if not test.passed]
