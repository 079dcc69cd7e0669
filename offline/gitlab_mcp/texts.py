"""The error texts of the offline server: its own explicit ones, or the real server's (`--real-errors`).

zereight/gitlab-mcp over GitLab does not say what is missing: a file read answers
`File not found: <path>` when the file, the project or the ref does not exist (it turns every 404
into that), and a tree listing answers `Repository or path not found`. Only `get_project` (and a
read without `ref`, which looks the default branch up first) passes GitLab's own
`404 Project Not Found` through. The stand-in's texts name the missing thing, which is kinder but
lets a client that trusts them pass tests it would fail against the real server; `--real-errors`
closes that gap.
"""

from __future__ import annotations

from dataclasses import dataclass

PROJECT_NOT_FOUND = "GitLab API error: 404 Project Not Found"
REF_NOT_FOUND = "GitLab API error: 404 Commit Not Found"
TREE_NOT_FOUND = "GitLab API error: 404 Tree Not Found"
READ_ONLY = "403 Forbidden: this server is read-only"
REAL_PROJECT_NOT_FOUND = 'GitLab API error: 404 Not Found\n{"message":"404 Project Not Found"}'
REAL_TREE_NOT_FOUND = "Repository or path not found"


@dataclass(frozen=True)
class ErrorTexts:
    real: bool = False

    def project(self) -> str:
        """A project the server does not know, asked for by `get_project` (or a default-branch lookup)."""
        return REAL_PROJECT_NOT_FOUND if self.real else PROJECT_NOT_FOUND

    def file(self, path: str, missing: str) -> str:
        """A file read that failed because `missing` ("file", "project" or "ref") does not exist."""
        if self.real or missing == "file":
            return f"File not found: {path}"
        return PROJECT_NOT_FOUND if missing == "project" else REF_NOT_FOUND

    def tree(self, missing: str) -> str:
        """A tree listing that failed because `missing` ("path", "project" or "ref") does not exist."""
        if self.real:
            return REAL_TREE_NOT_FOUND
        return {"project": PROJECT_NOT_FOUND, "ref": REF_NOT_FOUND}.get(missing, TREE_NOT_FOUND)

    def write(self, tool: str) -> str:
        return f"{tool} is not allowed in read-only mode" if self.real else READ_ONLY
