"""The output tree's manifest: what robot-fleet wrote where, from which spec, model, ref and prompt.

`OUTPUT_DIR/.robot-fleet/manifest.json`, one entry per target path. It decides two things:
- a spec is up to date (skipped by `enqueue` unless `--force`) when its entry has the same spec
  hash, model, ref and prompt version, and the file on disk is still the one that was written;
- a file a person edited since it was generated (its hash differs from the entry), or a file
  robot-fleet never wrote, is not overwritten: the new version goes beside it as `.robot.new`.
Updates are read-modify-write under an exclusive file lock, written atomically.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from producer.outputs import atomic_write_text, sweep_temp_files

MANIFEST_DIR = ".robot-fleet"
MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


def manifest_path(output_dir: Path) -> Path:
    return output_dir / MANIFEST_DIR / MANIFEST_NAME


def file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def load_entries(output_dir: Path) -> dict[str, dict[str, Any]]:
    path = manifest_path(output_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise RuntimeError(
            f"{path}: manifest is corrupt ({exc}); move it away to regenerate everything"
        ) from exc
    return dict(data.get("files", {}))


@contextlib.contextmanager
def locked_entries(output_dir: Path) -> Iterator[dict[str, dict[str, Any]]]:
    """The manifest's entries for update; saved atomically when the block ends without error."""
    path = manifest_path(output_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with (path.parent / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        sweep_temp_files(path)
        entries = load_entries(output_dir)
        yield entries
        payload = {"version": MANIFEST_VERSION, "files": dict(sorted(entries.items()))}
        atomic_write_text(path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


def is_up_to_date(
    entries: dict[str, dict[str, Any]], output_dir: Path, target_path: str, wanted: dict[str, str]
) -> bool:
    """True when the file for `target_path` was generated from the same inputs and is untouched."""
    entry = entries.get(target_path)
    if entry is None or any(entry.get(name) != value for name, value in wanted.items()):
        return False
    return file_sha256(output_dir / target_path) == entry.get("file_sha256")


def edited_by_a_person(entries: dict[str, dict[str, Any]], target_path: str, current: str | None) -> bool:
    """An existing file (`current` is its hash) that differs from what robot-fleet last wrote there,
    or that it never wrote."""
    if current is None:
        return False
    entry = entries.get(target_path)
    return entry is None or entry.get("file_sha256") != current
