"""The spec-file contract: ids, target paths, rejections naming the file and the reason."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from producer.enqueue import Plan, Rejection, plan_batch
from producer.fleet_cmds import print_plan
from tests.unit.bad_specs import KINDS, SPEC_MAX_BYTES, VALID_IDS, Kind, build_corpus, shown
from worker.errors import SpecError
from worker.settings import Settings
from worker.spec import Spec, find_conflicts, load_spec_file, parse_spec, resolve_in_output

LIMIT = 64 * 1024


def spec(data: dict, source: str = "specs/X-1_spec.json") -> Spec:
    """A spec with something to test (a title) unless `data` says otherwise."""
    return parse_spec(json.dumps({"title": "t", **data}).encode(), source=source, max_bytes=LIMIT)


def test_id_key_and_file_name_give_the_spec_id() -> None:
    assert spec({"id": "SHOP-1"}).spec_id == "SHOP-1"
    assert spec({"key": "SHOP-2"}).spec_id == "SHOP-2"
    assert spec({"title": "x"}, source="a/SHOP-3_spec.json").spec_id == "SHOP-3"
    assert spec({"title": "x"}, source="a/SHOP-4.json").spec_id == "SHOP-4"


def test_target_path_from_rf_fields_or_default() -> None:
    assert spec({"id": "A", "rf": {"target_path": "tests/a/b.robot"}}).target_path == "tests/a/b.robot"
    assert spec({"id": "A", "rf": {"output_path": "./tests/c.robot"}}).target_path == "tests/c.robot"
    assert spec({"id": "A"}).target_path == "tests/generated/A.robot"


def test_unknown_fields_are_kept() -> None:
    assert spec({"id": "A", "jira": {"epic": "E"}}).data["jira"] == {"epic": "E"}


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("/etc/x.robot", "absolute"),
        ("tests/../../x.robot", "'..'"),
        ("tests/x.txt", "does not end in '.robot'"),
        ("C:/x.robot", "absolute"),
        ("tests\\x.robot", "backslashes"),
        ("", "empty"),
    ],
)
def test_rejects_bad_target_paths_naming_the_file(target: str, reason: str) -> None:
    with pytest.raises(SpecError) as info:
        spec({"id": "A", "rf": {"target_path": target}}, source="specs/bad.json")
    assert info.value.message.startswith("specs/bad.json: ")
    assert reason in info.value.message


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "invalid JSON at line 1"),
        (b"[1, 2]", "must be a JSON object .*, got an array"),
        (b"", "empty"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"\x00\x01\x02", "binary"),
        (b"[" * 100 + b"]" * 100, "nested deeper"),
        (b'{"id": "a/b"}', "spec id"),
        (b'{"id": "A", "rf": "x"}', "'rf' must be an object"),
    ],
)
def test_rejects_unreadable_specs(raw: bytes, reason: str) -> None:
    with pytest.raises(SpecError, match=reason):
        parse_spec(raw, source="s.json", max_bytes=LIMIT)


def test_bom_is_refused_with_what_to_do() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(b'\xef\xbb\xbf{"id": "B", "title": "t"}', source="s.json", max_bytes=LIMIT)
    assert info.value.message == "s.json: starts with a UTF-8 byte-order mark; save it as UTF-8 without BOM"


def test_rejects_spec_over_the_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    path.write_text(json.dumps({"id": "H", "pad": "x" * 2000}))
    with pytest.raises(SpecError, match=r"huge.json: spec is \d+ bytes, over the 1024-byte limit"):
        load_spec_file(path, max_bytes=1024)


def test_conflicting_targets_are_found() -> None:
    a = spec({"id": "A", "rf": {"target_path": "tests/x.robot"}})
    b = spec({"id": "B", "rf": {"target_path": "tests/X.robot"}})
    c = spec({"id": "C"})
    conflicts = find_conflicts([a, b, c])
    assert list(conflicts) == ["tests/x.robot"]
    assert {s.spec_id for s in conflicts["tests/x.robot"]} == {"A", "B"}


def test_symlinked_output_directory_cannot_escape(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "tests").mkdir(parents=True)
    (out / "tests" / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(SpecError, match="escapes the output tree"):
        resolve_in_output(out, "tests/link/x.robot")


def test_a_spec_re_read_from_its_json_is_the_same_spec() -> None:
    """The worker parses `to_json()` of what the producer accepted: it must be accepted again."""
    first = spec({"id": "A", "note": "é \u2028", "n": 1.5, "rf": {"target_path": "./tests/a/b.robot"}})
    again = parse_spec(first.to_json().encode(), source=first.source, max_bytes=LIMIT)
    assert (again.spec_id, again.target_path, again.data) == (first.spec_id, first.target_path, first.data)


# --- the bad-input corpus of issue 6, one kind at a time, through the loader only ---------------


@pytest.mark.parametrize("kind", KINDS, ids=[kind.name for kind in KINDS])
def test_each_bad_kind_is_refused_in_one_line_and_its_siblings_are_kept(kind: Kind, tmp_path: Path) -> None:
    bad = build_corpus(tmp_path / "specs", tmp_path / "outside", (kind,))[kind.name]
    settings = Settings(_env_file=None, spec_max_bytes=SPEC_MAX_BYTES)  # type: ignore[call-arg]
    plan = plan_batch(tmp_path / "specs", tmp_path / "out", settings)
    assert sorted(spec.spec_id for spec in plan.accepted) == list(VALID_IDS)
    assert sorted(r.source for r in plan.rejected) == sorted(shown(path) for path in bad)
    for rejection in plan.rejected:
        assert rejection.reason.startswith(f"{rejection.source}: "), rejection.reason
        assert kind.reason in rejection.reason, rejection.reason
        assert rejection.reason.isprintable(), rejection.reason  # one line, prints anywhere


def test_the_corpus_has_at_least_20_kinds_each_its_own_case() -> None:
    names = [kind.name for kind in KINDS]
    assert len(set(names)) == len(names) >= 20


def test_rejections_print_one_line_each_however_long_and_never_as_markup() -> None:
    reason = "specs/[red]x[/red].json: " + "a long reason " * 20 + "[bold]"
    plan = Plan(Path("specs"), Path("out"), rejected=[Rejection("specs/[red]x[/red].json", reason)])
    out = io.StringIO()
    print_plan(Console(file=out, width=40, color_system=None), plan)
    lines = out.getvalue().splitlines()
    assert lines[0] == f"rejected {reason}"
    assert lines[1:] == ["0 to generate, 0 up to date, 1 rejected"]
