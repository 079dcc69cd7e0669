"""Writing into the output tree: atomic (temp file, fsync, rename), never outside the tree."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from worker.failpoints import failpoint
from worker.spec import resolve_in_output


def current_umask() -> int:
    """The process's umask, read without changing it (Linux exposes it in /proc)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022


def atomic_write_text(path: Path, text: str, *, crash_point: str = "") -> None:
    """Replace `path` with `text` so a reader sees the old file or the whole new one, never a part.
    The file gets the mode a plain `open` would give it (0644 under umask 022), not mkstemp's 0600.

    `crash_point` names a failpoint between the two halves of the text (fault tests)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text[: len(text) // 2])
            handle.flush()
            if crash_point:
                failpoint(crash_point)
            handle.write(text[len(text) // 2 :])
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)


def sweep_temp_files(path: Path) -> list[Path]:
    """Remove the temp files an interrupted `atomic_write_text` of `path` left behind.

    Only call it where no other writer of `path` can be running (e.g. under a lock)."""
    swept = sorted(path.parent.glob(f".{path.name}.*.tmp"))
    for stale in swept:
        stale.unlink(missing_ok=True)
    return swept


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_output(output_dir: Path, target_path: str, text: str) -> Path:
    """Write one generated suite under `output_dir`; return the file written."""
    path = resolve_in_output(output_dir, target_path)
    atomic_write_text(path, text)
    return path
