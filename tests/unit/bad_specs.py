"""The bad-input corpus of issue 6: every kind of spec file the producer must refuse, each with the
fragment its one-line rejection must hold. Files kept in examples/specs-bad are copied; the rest
(binary, huge, symlinks, a FIFO, a directory, odd file names, ...) are generated here.

`tests/unit/test_spec.py` runs each kind through the loader alone; `tests/reliability/
test_bad_input.py` runs the whole corpus through the fleet next to valid specs."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.settings import DEFAULT_SPEC_MAX_BYTES
from worker.spec import printable

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples"
BAD_EXAMPLES = EXAMPLES / "specs-bad"
VALID_SPECS = sorted((EXAMPLES / "specs").glob("*.json"))[:3]
VALID_IDS = ("SHOP-130", "SHOP-131", "SHOP-132")  # the ids of VALID_SPECS
SPEC_MAX_BYTES = DEFAULT_SPEC_MAX_BYTES

Builder = Callable[[Path, Path], list[str]]


@dataclass(frozen=True)
class Kind:
    """One kind of bad input: `build(specs_dir, outside_dir)` makes its files in `specs_dir` and
    returns their names; each must be refused with a line holding `reason`."""

    name: str
    reason: str
    build: Builder


def spec_bytes(spec_id: str = "X-1", **fields: Any) -> bytes:
    """A spec that is fine except for what `fields` changes."""
    data: dict[str, Any] = {"id": spec_id, "title": f"Login works ({spec_id})", "area": "auth",
                            "acceptance_criteria": ["Given a customer When logging in Then it works"]}  # fmt: skip
    data.update(fields)
    return json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8")


def with_target(target: str, spec_id: str = "X-1") -> bytes:
    return spec_bytes(spec_id, rf={"target_path": target})


def raw(name: str, content: bytes) -> Builder:
    def build(specs: Path, outside: Path) -> list[str]:
        (specs / name).write_bytes(content)
        return [name]

    return build


def example(*names: str) -> Builder:
    def build(specs: Path, outside: Path) -> list[str]:
        for name in names:
            shutil.copy(BAD_EXAMPLES / name, specs / name)
        return list(names)

    return build


def _huge(specs: Path, outside: Path) -> list[str]:
    with (specs / "huge.json").open("wb") as handle:
        handle.write(b'{"id": "HUGE-1", "title": "')
        handle.write(b"x" * (4 * SPEC_MAX_BYTES))
        handle.write(b'"}')
    return ["huge.json"]


def _symlink_outside(specs: Path, outside: Path) -> list[str]:
    target = outside / "SHOP-999_spec.json"
    target.write_bytes(spec_bytes("SHOP-999"))  # a good spec, but not in the directory
    (specs / "outside_link.json").symlink_to(target)
    return ["outside_link.json"]


def _dangling(specs: Path, outside: Path) -> list[str]:
    (specs / "dangling.json").symlink_to("no_such_spec.json")
    return ["dangling.json"]


def _loop(specs: Path, outside: Path) -> list[str]:
    (specs / "loop_a.json").symlink_to("loop_b.json")
    (specs / "loop_b.json").symlink_to("loop_a.json")
    return ["loop_a.json", "loop_b.json"]


def _directory(specs: Path, outside: Path) -> list[str]:
    (specs / "folder.json").mkdir()
    (specs / "folder.json" / "SHOP-998_spec.json").write_bytes(spec_bytes("SHOP-998"))
    return ["folder.json"]


def _fifo(specs: Path, outside: Path) -> list[str]:
    os.mkfifo(specs / "pipe.json")  # reading it would block forever: it must never be opened
    return ["pipe.json"]


def _fifo_link(specs: Path, outside: Path) -> list[str]:
    os.mkfifo(specs / "pipe.fifo")  # not matched by *.json itself
    (specs / "pipe_link.json").symlink_to("pipe.fifo")
    return ["pipe_link.json"]


def _named(name: str) -> Builder:
    def build(specs: Path, outside: Path) -> list[str]:
        (specs / name).write_bytes(spec_bytes("NAME-1"))
        return [name]

    return build


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10" + bytes(range(256))
TEXT = spec_bytes("ENC-1", title="Café crème voucher")

KINDS: tuple[Kind, ...] = (
    # --- not JSON, or not one JSON object
    Kind("malformed_json", "invalid JSON at line 7 column 1: the file ends too early", example("broken.json")),
    Kind("trailing_garbage", "extra text after the JSON object", example("trailing_garbage.json")),
    Kind("missing_comma", "invalid JSON at line 1 column 14: expected ','",
         raw("missing_comma.json", b'{"id": "MC"  "title": "x"}')),
    Kind("not_an_object", "spec must be a JSON object ({...}), got an array", example("not_an_object.json")),
    Kind("json_scalar", "spec must be a JSON object ({...}), got a string", raw("scalar.json", b'"SHOP-1"\n')),
    Kind("json_null", "spec must be a JSON object ({...}), got null", raw("null.json", b"null")),
    Kind("empty_file", "spec file is empty (0 bytes)", example("empty.json")),
    Kind("whitespace_only", "spec file is empty (only whitespace)", raw("blank.json", b"  \n\t\r\n")),
    Kind("huge_file", f"over the {SPEC_MAX_BYTES}-byte limit", _huge),
    Kind("deep_nesting", "JSON nested deeper than 64 levels", example("deep_nesting.json")),
    Kind("deep_nesting_objects", "JSON nested deeper than 64 levels",
         raw("deep_objects.json", b'{"id": "D", "a": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5001)),
    Kind("nan", "NaN is not valid JSON", example("nan.json")),
    Kind("infinity", "Infinity is not valid JSON", raw("infinity.json", spec_bytes("INF-1")[:-1] + b', "n": -Infinity}')),
    Kind("number_overflow", "number 1e999 is too large for JSON", raw("overflow.json", spec_bytes("OF-1")[:-1] + b', "n": 1e999}')),
    Kind("huge_integer", "digits (limit 4300)", raw("bigint.json", spec_bytes("BI-1")[:-1] + b', "n": ' + b"7" * 5000 + b"}")),
    Kind("duplicate_key", "key 'id' appears twice in one object", example("duplicate_key.json")),
    Kind("lone_surrogate", "lone UTF-16 surrogate", raw("surrogate.json", spec_bytes("SU-1")[:-1] + b', "note": "\\ud800"}')),
    # --- not UTF-8 text
    Kind("not_utf8", "spec is not UTF-8: byte 0xE9 at line 3 column 16", example("latin1.json")),
    Kind("utf8_bom", "starts with a UTF-8 byte-order mark; save it as UTF-8 without BOM", example("bom.json")),
    Kind("utf16", "spec is UTF-16 text, not UTF-8", example("utf16.json")),
    Kind("utf32_no_bom", "spec is UTF-32 text, not UTF-8", raw("utf32.json", TEXT.decode().encode("utf-32-be"))),
    Kind("binary", "spec is binary (a NUL byte at offset 8)", raw("image.json", PNG)),
    Kind("nul_byte", "spec is binary (a NUL byte at offset", raw("nul.json", spec_bytes("NUL-1", title="a@b").replace(b"@", b"\x00"))),
    # --- not a regular file in the directory
    Kind("symlink_outside", "symlink pointing outside the specs directory", _symlink_outside),
    Kind("dangling_symlink", "dangling symlink: its target 'no_such_spec.json' does not exist", _dangling),
    Kind("symlink_loop", "symlink loop", _loop),
    Kind("directory", "is a directory, not a spec file", _directory),
    Kind("fifo", "is a FIFO (named pipe), not a regular file", _fifo),
    Kind("symlink_to_fifo", "is a FIFO (named pipe), not a regular file", _fifo_link),
    Kind("file_name_newline", "file name has control characters", _named("new\nline.json")),
    Kind("file_name_not_utf8", "bytes that are not UTF-8; rename the file",
         _named(os.fsdecode(b"caf\xe9_spec.json"))),
    Kind("markup_in_file_name", "invalid JSON at line 1", raw("[red]oops[bold].json", b"{oops")),
    # --- fields of the wrong type, or unusable
    Kind("id_wrong_type", "field 'id' must be a string or an integer, got an array", example("id_wrong_type.json")),
    Kind("id_boolean", "field 'id' must be a string or an integer, got a boolean", raw("id_bool.json", spec_bytes(True))),  # type: ignore[arg-type]
    Kind("id_empty", "field 'id' is empty", raw("id_empty.json", spec_bytes("  "))),
    Kind("id_not_a_file_name", "from field 'id' must be 1-128 letters", raw("id_path.json", spec_bytes("../../etc/passwd"))),
    Kind("file_name_not_an_id", "from file name must be 1-128 letters",
         raw("no id here.json", json.dumps({"title": "No id, and a file name with spaces"}).encode())),
    Kind("rf_not_an_object", "field 'rf' must be an object, got a string", raw("rf_string.json", spec_bytes("RF-1", rf="tests/x.robot"))),
    Kind("target_wrong_type", "rf.target_path must be a string, got a number", raw("target_number.json", spec_bytes("RF-2", rf={"target_path": 42}))),
    Kind("no_content", "spec has nothing to write a test from", example("no_content.json")),
    Kind("empty_object", "spec has nothing to write a test from", raw("EMPTY-1.json", b"{}")),
    # --- target paths
    Kind("absolute_target", "is absolute; it must be relative to the output tree", example("absolute_path.json")),
    Kind("drive_letter_target", "is absolute; it must be relative to the output tree", raw("drive.json", with_target("C:/robot/x.robot"))),
    Kind("dotdot_target", "contains '..' and could escape the output tree", example("dotdot_path.json")),
    Kind("escaping_target", "contains '..' and could escape the output tree", example("escape_tree.json")),
    Kind("not_robot_target", "does not end in '.robot'", example("not_robot.json")),
    Kind("backslash_target", "contains backslashes; use '/' between folders", example("backslash_path.json")),
    Kind("hidden_component", "has a hidden file or folder '.git'", example("hidden_path.json")),
    Kind("empty_segment", "has an empty folder name ('//')", raw("double_slash.json", with_target("tests//auth/x.robot"))),
    Kind("reserved_name", "uses the reserved device name 'con'", raw("reserved.json", with_target("tests/auth/con.robot"))),
    Kind("forbidden_character", "has a character not allowed in file names", raw("question.json", with_target("tests/auth/why?.robot"))),
    Kind("trailing_dot_folder", "has a name ending in a space or '.'", raw("trailing_dot.json", with_target("tests/auth./x.robot"))),
    Kind("control_char_target", "contains control characters", raw("control.json", with_target("tests/a\tb.robot"))),
    Kind("overlong_target", "is longer than 255 characters", raw("overlong.json", with_target("tests/" + "a" * 300 + ".robot"))),
    Kind("overlong_file_name", "has a file or folder name over 255 bytes", raw("long_name.json", with_target("tests/" + "é" * 130 + ".robot"))),
    # --- conflicts inside the batch
    Kind("duplicate_target", "target path 'tests/cart/duplicate_target.robot' also claimed by", example("dup_a.json", "dup_b.json")),
    Kind("duplicate_id", "spec id 'SHOP-130' already used by",
         raw("zz_same_id.json", spec_bytes("SHOP-130", rf={"target_path": "tests/auth/other.robot"}))),
)  # fmt: skip


def build_corpus(specs: Path, outside: Path, kinds: tuple[Kind, ...] = KINDS) -> dict[str, list[Path]]:
    """The 3 valid specs and the bad `kinds` in `specs`; returns each kind's bad files."""
    specs.mkdir(parents=True, exist_ok=True)
    outside.mkdir(parents=True, exist_ok=True)
    for path in VALID_SPECS:
        shutil.copy(path, specs / path.name)
    return {kind.name: [specs / name for name in kind.build(specs, outside)] for kind in kinds}


def shown(path: Path) -> str:
    """How a rejection names the file: its path with unprintable characters escaped."""
    return printable(str(path))
