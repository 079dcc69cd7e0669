"""The spec-file contract: reading a planner's JSON spec and deciding where its .robot file goes.

A spec is any JSON object; unknown fields are kept and given to the model. Rejections are
`SpecError`s whose message names the file and the reason; they never stop the rest of a batch.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from worker.errors import SpecError

DEFAULT_TARGET_DIR = "tests/generated"
MAX_JSON_DEPTH = 64
MAX_TARGET_PATH_CHARS = 255
_SPEC_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SPEC_SUFFIXES = ("_spec.json", ".json")


@dataclass(frozen=True)
class Spec:
    """A validated spec: its id, the path of its .robot file in the output tree, its content."""

    spec_id: str
    target_path: str
    data: dict[str, Any] = field(repr=False)
    sha256: str
    source: str

    def to_json(self) -> str:
        return json.dumps(self.data, ensure_ascii=False, sort_keys=True)


def load_spec_file(path: Path, *, max_bytes: int) -> Spec:
    """Read and validate one spec file; raise `SpecError` naming the file and the reason."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise SpecError(f"{path}: spec is {size} bytes, over the {max_bytes}-byte limit")
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"{path}: cannot read spec: {exc.strerror or exc}") from exc
    return parse_spec(raw, source=str(path), max_bytes=max_bytes)


def parse_spec(raw: bytes, *, source: str, max_bytes: int) -> Spec:
    """Validate spec bytes against the contract (`source` names the file in messages)."""
    if len(raw) > max_bytes:
        raise SpecError(f"{source}: spec is {len(raw)} bytes, over the {max_bytes}-byte limit")
    data = _decode_object(raw, source)
    spec_id = _spec_id(data, source)
    target = validate_target_path(_target_field(data, spec_id, source), source=source)
    digest = hashlib.sha256(raw).hexdigest()
    return Spec(spec_id=spec_id, target_path=target, data=data, sha256=digest, source=source)


def _decode_object(raw: bytes, source: str) -> dict[str, Any]:
    if not raw.strip():
        raise SpecError(f"{source}: spec file is empty")
    if b"\x00" in raw:
        raise SpecError(f"{source}: spec is binary (contains NUL bytes), not UTF-8 JSON")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{source}: spec is not UTF-8 (byte {exc.start}: {exc.reason})") from exc
    _check_depth(text, source)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"{source}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    except RecursionError as exc:  # pragma: no cover - _check_depth stops this first
        raise SpecError(f"{source}: JSON nested too deeply") from exc
    if not isinstance(data, dict):
        raise SpecError(f"{source}: spec must be a JSON object, got {type(data).__name__}")
    return data


def _check_depth(text: str, source: str) -> None:
    """Refuse nesting deeper than MAX_JSON_DEPTH before json.loads can recurse on it."""
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise SpecError(f"{source}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
        elif char in "]}":
            depth -= 1


def _spec_id(data: dict[str, Any], source: str) -> str:
    for key in ("id", "key"):
        value = data.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, int | str) and str(value).strip():
            return _checked_id(str(value).strip(), f"field {key!r}", source)
    name = PurePosixPath(source.replace("\\", "/")).name
    for suffix in _SPEC_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return _checked_id(name, "file name", source)


def _checked_id(value: str, origin: str, source: str) -> str:
    if not _SPEC_ID_RE.match(value):
        raise SpecError(
            f"{source}: spec id {value[:60]!r} from {origin} must be 1-128 letters, digits, '.', '_' or '-'"
        )
    return value


def _target_field(data: dict[str, Any], spec_id: str, source: str) -> str:
    rf = data.get("rf")
    if rf is None:
        return f"{DEFAULT_TARGET_DIR}/{spec_id}.robot"
    if not isinstance(rf, dict):
        raise SpecError(f"{source}: field 'rf' must be an object, got {type(rf).__name__}")
    for key in ("target_path", "output_path"):
        value = rf.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise SpecError(f"{source}: rf.{key} must be a string, got {type(value).__name__}")
        return value
    return f"{DEFAULT_TARGET_DIR}/{spec_id}.robot"


def validate_target_path(target: str, *, source: str) -> str:
    """Return the normalised relative target path, or raise why it cannot be used."""
    where = f"{source}: target path {target[:80]!r}"
    if not target.strip():
        raise SpecError(f"{where} is empty")
    if len(target) > MAX_TARGET_PATH_CHARS:
        raise SpecError(f"{where} is longer than {MAX_TARGET_PATH_CHARS} characters")
    if any(ord(char) < 32 for char in target) or "\\" in target:
        raise SpecError(f"{where} contains control characters or backslashes")
    if target.startswith("/") or re.match(r"^[A-Za-z]:", target):
        raise SpecError(f"{where} is absolute; it must be relative to the output tree")
    parts = PurePosixPath(target).parts
    if ".." in parts:
        raise SpecError(f"{where} contains '..' and could escape the output tree")
    if not target.endswith(".robot") or PurePosixPath(target).name == ".robot":
        raise SpecError(f"{where} does not end in '.robot'")
    return str(PurePosixPath(*[part for part in parts if part != "."]))


def resolve_in_output(output_dir: Path, target_path: str) -> Path:
    """The absolute file for a target path, refusing anything that resolves outside `output_dir`."""
    root = output_dir.resolve()
    candidate = (root / target_path).resolve()
    if not candidate.is_relative_to(root):
        raise SpecError(f"target path {target_path!r} escapes the output tree {root}")
    return candidate


def find_conflicts(specs: Iterable[Spec]) -> dict[str, list[Spec]]:
    """Target paths claimed by more than one spec of a batch (compared case-insensitively)."""
    claims: dict[str, list[Spec]] = {}
    for spec in specs:
        claims.setdefault(spec.target_path.lower(), []).append(spec)
    return {path: group for path, group in claims.items() if len(group) > 1}
