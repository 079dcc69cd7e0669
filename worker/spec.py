"""The spec-file contract: reading a planner's JSON spec and deciding where its .robot file goes.

A spec is any JSON object with something to test; unknown fields are kept and given to the model.
Rejections are `SpecError`s whose message is one line: the file, then the reason and what to do
about it. They never stop the rest of a batch.
"""

from __future__ import annotations

import codecs
import errno
import hashlib
import json
import math
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from worker.errors import SpecError

DEFAULT_TARGET_DIR = "tests/generated"
MAX_JSON_DEPTH = 64
MAX_TARGET_PATH_CHARS = 255
MAX_NAME_BYTES = 255
MAX_INT_DIGITS = 4300  # Python's own limit for int(str)
_SPEC_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SPEC_SUFFIXES = ("_spec.json", ".json")
_SPEC_FIELDS = frozenset({"id", "key", "rf"})  # the contract's own fields: not something to test
# Characters that would break a message's single line or cannot be printed: C0/C1 controls, the
# Unicode line separators, lone surrogates (file-name bytes that are not UTF-8).
_UNPRINTABLE_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", *(f"COM{n}" for n in range(1, 10)), *(f"LPT{n}" for n in range(1, 10))}
)
_FORBIDDEN_NAME_CHARS = '<>:"|?*'
_JSON_HINTS = {
    "Extra data": "extra text after the JSON object (two objects, or a stray character?)",
    "Expecting value": "expected a value",
    "Expecting property name enclosed in double quotes": "expected a key in double quotes (a trailing comma?)",
    "Expecting ',' delimiter": "expected ',' between items (a missing comma or an unclosed string?)",
    "Expecting ':' delimiter": "expected ':' after a key",
    "Unterminated string starting at": "a string is never closed (a missing '\"', or the file is cut short)",
    "Invalid \\escape": "a backslash that is not a JSON escape (write \\\\ for a backslash)",
    "Invalid control character at": "a raw line break or tab inside a string (write \\n or \\t)",
}
JSON_FIX = "fix the file (or export it again from the planner) and run again"
_WIDE_BOMS = (  # longest first: the UTF-32-LE mark starts with the UTF-16-LE one
    (codecs.BOM_UTF32_LE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF32_BE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF16_LE, "utf-16", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16", "UTF-16"),
)
_WIDE_PATTERNS = (  # the zero bytes around an ASCII character (RFC 4627, section 3)
    (lambda h: h[:3] == b"\x00\x00\x00" and h[3], "utf-32-be", "UTF-32"),
    (lambda h: h[0] and h[1:4] == b"\x00\x00\x00", "utf-32-le", "UTF-32"),
    (lambda h: not h[0] and h[1] and not h[2] and h[3], "utf-16-be", "UTF-16"),
    (lambda h: h[0] and not h[1] and h[2] and not h[3], "utf-16-le", "UTF-16"),
)


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

    @property
    def tags(self) -> tuple[str, ...]:
        """Tags the spec asks for on every test: `rf.tags`, and the planner's `tags` and `labels`."""
        rf = self.data.get("rf")
        found = [*_strings(rf.get("tags") if isinstance(rf, dict) else None)]
        found += [*_strings(self.data.get("tags")), *_strings(self.data.get("labels"))]
        return tuple(dict.fromkeys(tag.strip() for tag in found if tag.strip()))


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def printable(text: str) -> str:
    """`text` with every character that could split a line or fail to print shown as an escape."""

    def escape(match: re.Match[str]) -> str:
        code = ord(match.group())
        if 0xDC80 <= code <= 0xDCFF:  # a file-name byte that is not UTF-8 (surrogateescape)
            return f"\\x{code - 0xDC00:02x}"
        return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"

    return _UNPRINTABLE_RE.sub(escape, text)


def load_spec_file(path: Path, *, max_bytes: int) -> Spec:
    """Read and validate one spec file; raise `SpecError` naming the file and the reason.

    Only regular files are opened (never a FIFO or a device, which could block or never end), and
    never more than `max_bytes` + 1 bytes are read."""
    source = str(path)
    shown = printable(source)
    if shown != source:
        raise SpecError(
            f"{shown}: file name has control characters or bytes that are not UTF-8; rename the file"
        )
    try:
        info = path.stat()
    except OSError as exc:
        raise SpecError(_stat_failure(path, source, exc)) from exc
    _check_file_type(info.st_mode, source)
    if info.st_size > max_bytes:
        raise SpecError(f"{source}: spec is {info.st_size} bytes, over the {max_bytes}-byte limit")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as handle:
            _check_file_type(os.fstat(handle.fileno()).st_mode, source)  # swapped since the stat?
            raw = handle.read(max_bytes + 1)
    except OSError as exc:
        raise SpecError(f"{source}: cannot read spec: {exc.strerror or exc}") from exc
    return parse_spec(raw, source=source, max_bytes=max_bytes)


def _stat_failure(path: Path, source: str, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return f"{source}: symlink loop (the link points back to itself); replace it with the spec file"
    if path.is_symlink():
        target = printable(os.readlink(path))
        return f"{source}: dangling symlink: its target {target!r} does not exist"
    return f"{source}: cannot read spec: {exc.strerror or exc}"


def _check_file_type(mode: int, source: str) -> None:
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise SpecError(
            f"{source}: is a directory, not a spec file (use --recursive to read the specs in it)"
        )
    kind = (
        "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
        else "a socket" if stat.S_ISSOCK(mode)
        else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a special file"
    )  # fmt: skip
    raise SpecError(f"{source}: is {kind}, not a regular file; a spec must be a plain JSON file")


def parse_spec(raw: bytes, *, source: str, max_bytes: int) -> Spec:
    """Validate spec bytes against the contract (`source` names the file in messages)."""
    source = printable(source)
    if len(raw) > max_bytes:
        raise SpecError(f"{source}: spec is {len(raw)} bytes, over the {max_bytes}-byte limit")
    data = _decode_object(raw, source)
    spec_id = _spec_id(data, source)
    target = validate_target_path(_target_field(data, spec_id, source), source=source)
    _check_content(data, source)
    digest = hashlib.sha256(raw).hexdigest()
    return Spec(spec_id=spec_id, target_path=target, data=data, sha256=digest, source=source)


def _decode_object(raw: bytes, source: str) -> dict[str, Any]:
    if not raw.strip():
        what = "0 bytes" if not raw else "only whitespace"
        raise SpecError(f"{source}: spec file is empty ({what}); it must hold one JSON object")
    text = _decode_text(raw, source)
    _check_depth(text, source)
    try:
        data = json.loads(
            text,
            object_pairs_hook=lambda pairs: _object(pairs, source),
            parse_constant=lambda name: _constant(name, source),
            parse_float=lambda number: _float(number, source),
            parse_int=lambda number: _int(number, source),
        )
    except json.JSONDecodeError as exc:
        hint = _JSON_HINTS.get(exc.msg, exc.msg.rstrip(" :at") or "not JSON")
        if exc.pos >= len(text.rstrip()):
            hint = "the file ends too early (cut short, or a '{' or '[' never closed)"
        raise SpecError(
            f"{source}: invalid JSON at line {exc.lineno} column {exc.colno}: {hint}; {JSON_FIX}"
        ) from exc
    except RecursionError as exc:  # pragma: no cover - _check_depth stops this first
        raise SpecError(f"{source}: JSON nested too deeply") from exc
    if not isinstance(data, dict):
        raise SpecError(f"{source}: spec must be a JSON object ({{...}}), got {_json_type(data)}")
    _check_strings(data, source)
    return data


def _decode_text(raw: bytes, source: str) -> str:
    if raw.startswith(codecs.BOM_UTF8):
        raise SpecError(f"{source}: starts with a UTF-8 byte-order mark; save it as UTF-8 without BOM")
    wide = _wide_encoding(raw)
    if wide:
        raise SpecError(f"{source}: spec is {wide} text, not UTF-8; save it as UTF-8 (without BOM)")
    if b"\x00" in raw:
        offset = raw.index(b"\x00")
        raise SpecError(f"{source}: spec is binary (a NUL byte at offset {offset}), not UTF-8 JSON text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SpecError(
            f"{source}: spec is not UTF-8: byte 0x{raw[exc.start]:02X} at line {line} column {column} "
            f"({exc.reason}); save it as UTF-8"
        ) from exc


def _wide_encoding(raw: bytes) -> str | None:
    """UTF-16 or UTF-32 JSON text, told by its byte-order mark or the zero bytes of its first
    ASCII characters, and only if it decodes to text starting like JSON (else it is binary)."""
    head = raw[:4]
    candidates = [(codec, name) for bom, codec, name in _WIDE_BOMS if raw.startswith(bom)]
    if not candidates and len(head) == 4:
        candidates = [(codec, name) for pattern, codec, name in _WIDE_PATTERNS if pattern(head)]
    for codec, name in candidates:
        try:
            text = raw.decode(codec)
        except UnicodeDecodeError:
            continue
        if text.lstrip("\ufeff \t\r\n")[:1] in ("{", "["):
            return name
    return None


def _object(pairs: list[tuple[str, Any]], source: str) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise SpecError(
                f"{source}: key {printable(key[:60])!r} appears twice in one object; keep only one"
            )
        data[key] = value
    return data


def _constant(name: str, source: str) -> Any:
    raise SpecError(
        f"{source}: {name} is not valid JSON (JSON has no NaN or Infinity); use a number or a string"
    )


def _float(number: str, source: str) -> float:
    value = float(number)
    if not math.isfinite(value):
        raise SpecError(f"{source}: number {number[:40]} is too large for JSON; write it as a string")
    return value


def _int(number: str, source: str) -> int:
    if len(number.lstrip("-")) > MAX_INT_DIGITS:
        raise SpecError(
            f"{source}: a number has {len(number)} digits (limit {MAX_INT_DIGITS}); write it as a string"
        )
    return int(number)


def _check_strings(data: Any, source: str) -> None:
    """Refuse text Redis and the model could not take: a lone surrogate from a `\\ud800` escape."""
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SpecError(
            f"{source}: a string holds an invalid \\u escape (a lone UTF-16 surrogate such as \\ud800); fix the text"
        ) from exc


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


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
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise SpecError(
                f"{source}: field {key!r} must be a string or an integer, got {_json_type(value)}"
            )
        if not str(value).strip():
            raise SpecError(f"{source}: field {key!r} is empty; give the spec an id or remove the field")
        return _checked_id(str(value).strip(), f"field {key!r}", source)
    return _checked_id(id_from_file_name(source), "file name", source)


def id_from_file_name(source: str) -> str:
    """The spec id a file name gives (`SHOP-1_spec.json` -> `SHOP-1`), checked or not."""
    name = PurePosixPath(source.replace("\\", "/")).name
    for suffix in _SPEC_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _checked_id(value: str, origin: str, source: str) -> str:
    if not _SPEC_ID_RE.match(value):
        raise SpecError(
            f"{source}: spec id {printable(value[:60])!r} from {origin} must be 1-128 letters, digits, '.', '_' or '-'"
        )
    return value


def _target_field(data: dict[str, Any], spec_id: str, source: str) -> str:
    rf = data.get("rf")
    if rf is None:
        return f"{DEFAULT_TARGET_DIR}/{spec_id}.robot"
    if not isinstance(rf, dict):
        raise SpecError(f"{source}: field 'rf' must be an object, got {_json_type(rf)}")
    for key in ("target_path", "output_path"):
        value = rf.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise SpecError(f"{source}: rf.{key} must be a string, got {_json_type(value)}")
        return value
    return f"{DEFAULT_TARGET_DIR}/{spec_id}.robot"


def _check_content(data: dict[str, Any], source: str) -> None:
    if not any(value not in (None, "", [], {}) for key, value in data.items() if key not in _SPEC_FIELDS):
        raise SpecError(
            f"{source}: spec has nothing to write a test from; add a title and scenarios, "
            "test_cases or acceptance_criteria"
        )


def validate_target_path(target: str, *, source: str) -> str:
    """Return the normalised relative target path, or raise why it cannot be used."""
    where = f"{source}: target path {printable(target[:80])!r}"
    if not target.strip():
        raise SpecError(f"{where} is empty")
    if len(target) > MAX_TARGET_PATH_CHARS:
        raise SpecError(f"{where} is longer than {MAX_TARGET_PATH_CHARS} characters")
    if _UNPRINTABLE_RE.search(target):
        raise SpecError(f"{where} contains control characters")
    if "\\" in target:
        raise SpecError(f"{where} contains backslashes; use '/' between folders")
    if target.startswith(("/", "~")) or re.match(r"^[A-Za-z]:", target):
        raise SpecError(f"{where} is absolute; it must be relative to the output tree")
    segments = target.split("/")
    if ".." in segments:
        raise SpecError(f"{where} contains '..' and could escape the output tree")
    if not target.endswith(".robot") or segments[-1] == ".robot":
        raise SpecError(f"{where} does not end in '.robot'")
    for segment in segments:
        _check_segment(segment, where)
    return str(PurePosixPath(*[segment for segment in segments if segment != "."]))


def _check_segment(segment: str, where: str) -> None:
    if segment == ".":
        return
    if not segment:
        raise SpecError(f"{where} has an empty folder name ('//'); remove the extra '/'")
    if segment.startswith("."):
        raise SpecError(
            f"{where} has a hidden file or folder {segment[:40]!r}; names must not start with '.'"
        )
    if segment != segment.strip() or segment.endswith("."):
        raise SpecError(
            f"{where} has a name ending in a space or '.' ({segment[:40]!r}), which Windows drops"
        )
    if any(char in _FORBIDDEN_NAME_CHARS for char in segment):
        raise SpecError(f"{where} has a character not allowed in file names ({_FORBIDDEN_NAME_CHARS})")
    if segment.split(".", 1)[0].upper() in _WINDOWS_RESERVED:
        raise SpecError(
            f"{where} uses the reserved device name {segment.split('.', 1)[0]!r} (not allowed on Windows)"
        )
    if len(segment.encode("utf-8")) > MAX_NAME_BYTES:
        raise SpecError(f"{where} has a file or folder name over {MAX_NAME_BYTES} bytes")


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
