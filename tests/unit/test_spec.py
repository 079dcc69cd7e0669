"""The spec-file contract: ids, target paths, rejections naming the file and the reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from worker.errors import SpecError
from worker.spec import find_conflicts, load_spec_file, parse_spec, resolve_in_output

LIMIT = 64 * 1024


def spec(data: object, source: str = "specs/X-1_spec.json") -> object:
    return parse_spec(json.dumps(data).encode(), source=source, max_bytes=LIMIT)


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
        (b"[1, 2]", "must be a JSON object, got list"),
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


def test_bom_is_accepted() -> None:
    assert parse_spec(b'\xef\xbb\xbf{"id": "B"}', source="s.json", max_bytes=LIMIT).spec_id == "B"


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
