"""Read-only, confined access to the served checkout: file bytes, tree listing, code search.

Every path a client names is relative to the repository root. A path is refused (the caller turns
`RepoPathError` into GitLab's "not found") when it is absolute, contains `..` or a NUL, passes
through `.git`, or resolves — following symlinks — outside the root or into `.git`.

Listing follows git's view of a checkout: directories are trees (mode 040000), files are blobs
(100644, or 100755 when executable), a symlink is a blob of mode 120000 and is never descended
into (so no cycles). A symlink whose target lies outside the repository (or in `.git`) is left out
of listings and search altogether, and reading it fails like a missing file; reading a symlink that
stays inside returns its target's bytes (simpler than git's link text). Entries are sorted by
path (code-point order), trees and blobs interleaved; the order is stable, which keyset paging
relies on. Blob ids are real git blob ids (sha1 of `blob <size>\\0<bytes>`); tree ids are
stable opaque sha1s of the tree's path.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath

GIT_DIR = ".git"
TREE_MODE = "040000"
BLOB_MODE = "100644"
EXEC_MODE = "100755"
LINK_MODE = "120000"
SEARCH_MAX_FILE_BYTES = 1024 * 1024


class RepoPathError(Exception):
    """The path is not allowed, does not exist, or is not of the kind asked for."""


@dataclass(frozen=True)
class TreeEntry:
    """One row of GitLab's repository tree API."""

    id: str
    name: str
    type: str
    path: str
    mode: str

    def as_json(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "type": self.type, "path": self.path, "mode": self.mode}


@dataclass(frozen=True)
class CodeMatch:
    """One matching line of a code search."""

    path: str
    startline: int
    data: str


def git_blob_id(data: bytes) -> str:
    """The id git gives a blob with these bytes."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def tree_id(path: str) -> str:
    return hashlib.sha1(f"tree {path}".encode(), usedforsecurity=False).hexdigest()


def decode_text(data: bytes) -> str | None:
    """The text of a UTF-8 file, or None for binary content (NUL bytes or invalid UTF-8)."""
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


@lru_cache(maxsize=8192)
def _cached_blob_id(path: str, size: int, mtime_ns: int) -> str:
    # size and mtime are part of the key so an edited file gets a fresh id
    return git_blob_id(Path(path).read_bytes())


class RepoView:
    """The repository directory seen through GitLab's read-only file APIs."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve(strict=True)
        if not self.root.is_dir():
            raise NotADirectoryError(f"{root}: not a directory")

    def _relative(self, path: str | None) -> PurePosixPath:
        """Validate a client path; '' or None is the root."""
        text = (path or "").strip()
        if "\0" in text or text.startswith("/") or text.startswith("\\"):
            raise RepoPathError(path)
        rel = PurePosixPath(text)
        if any(part in ("..", GIT_DIR) for part in rel.parts):
            raise RepoPathError(path)
        return rel

    def _confined(self, target: Path) -> bool:
        """True when `target` (already resolved) is the root or inside it, and not inside .git."""
        if target == self.root:
            return True
        try:
            inside = target.relative_to(self.root)
        except ValueError:
            return False
        return inside.parts[0] != GIT_DIR

    def locate(self, path: str | None) -> tuple[PurePosixPath, Path]:
        """The cleaned relative path and the resolved filesystem path, confined to the root."""
        rel = self._relative(path)
        resolved = (self.root / rel).resolve()
        if not self._confined(resolved):
            raise RepoPathError(path)
        return rel, resolved

    def read_blob(self, path: str) -> bytes:
        """The bytes of a file; directories, missing and escaping paths raise `RepoPathError`."""
        rel, resolved = self.locate(path)
        if str(rel) in ("", ".") or not resolved.is_file():
            raise RepoPathError(path)
        return resolved.read_bytes()

    def tree(self, path: str | None, recursive: bool) -> list[TreeEntry]:
        """The entries under a directory (all descendants when `recursive`), sorted by path."""
        rel, resolved = self.locate(path)
        if not resolved.is_dir():
            raise RepoPathError(path)
        prefix = "" if str(rel) == "." else str(rel)
        entries = list(self._walk(resolved, prefix, recursive))
        entries.sort(key=lambda entry: entry.path)
        return entries

    def _walk(self, directory: Path, prefix: str, recursive: bool) -> Iterator[TreeEntry]:
        with os.scandir(directory) as scan:
            children = sorted(scan, key=lambda item: item.name)
        for child in children:
            entry = self._entry(child, prefix)
            if entry is None:
                continue
            yield entry
            if recursive and entry.type == "tree":
                yield from self._walk(Path(child.path), entry.path, recursive)

    def _entry(self, child: os.DirEntry[str], prefix: str) -> TreeEntry | None:
        """The tree row for one directory entry, or None when it is hidden from clients."""
        path = f"{prefix}/{child.name}" if prefix else child.name
        if child.is_symlink():
            if not self._confined(Path(child.path).resolve()):
                return None
            target = os.readlink(child.path).encode()
            return TreeEntry(git_blob_id(target), child.name, "blob", path, LINK_MODE)
        if child.is_dir(follow_symlinks=False):
            if child.name == GIT_DIR:
                return None
            return TreeEntry(tree_id(path), child.name, "tree", path, TREE_MODE)
        if not child.is_file(follow_symlinks=False):
            return None
        info = child.stat(follow_symlinks=False)
        mode = EXEC_MODE if info.st_mode & stat.S_IXUSR else BLOB_MODE
        blob_id = _cached_blob_id(child.path, info.st_size, info.st_mtime_ns)
        return TreeEntry(blob_id, child.name, "blob", path, mode)

    def search(self, needle: str, path: str | None, limit: int) -> list[CodeMatch]:
        """Case-insensitive substring matches, line by line, in text files under `path`."""
        wanted = needle.lower()
        if not wanted:
            return []
        try:
            rel, resolved = self.locate(path)
        except RepoPathError:
            return []
        if resolved.is_file() and not (self.root / rel).is_symlink():
            files = [str(rel)]
        elif resolved.is_dir():
            scope = None if str(rel) == "." else str(rel)
            files = [
                entry.path
                for entry in self.tree(scope, recursive=True)
                if entry.type == "blob" and entry.mode != LINK_MODE
            ]
        else:
            return []
        matches: list[CodeMatch] = []
        for file_path in files:
            matches.extend(self._search_file(file_path, wanted))
            if len(matches) >= limit:
                break
        return matches[:limit]

    def _search_file(self, file_path: str, wanted: str) -> Iterator[CodeMatch]:
        full = self.root / file_path
        if not full.is_file() or full.stat().st_size > SEARCH_MAX_FILE_BYTES:
            return
        text = decode_text(full.read_bytes())
        if text is None:
            return
        for number, line in enumerate(text.splitlines(), start=1):
            if wanted in line.lower():
                yield CodeMatch(path=file_path, startline=number, data=line)
