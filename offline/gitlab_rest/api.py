"""The ASGI app of the GitLab REST v4 double.

Routes (all `GET`, under `/api/v4`), answered as GitLab answers them:
- `/user` — the token's user (zereight's remote-authorization mode validates client tokens here);
- `/projects/:id` — the project (numeric id or URL-encoded `group/name` path);
- `/projects/:id/repository/tree` — `path`, `ref`, `recursive`, paged as `pages` describes;
- `/projects/:id/repository/files/:file_path` (JSON, content in base64) and `.../raw`, `ref` required.
Failures carry GitLab's bodies: `404 Project Not Found`, `404 File Not Found`, `404 Commit Not
Found` (a file read at an unknown ref), `404 Tree Not Found` (a tree at an unknown ref or path),
`401 Unauthorized`. Any other route is `404 Not Found` and is listed in `/stats` (`unknown_routes`),
so a new call from the MCP server shows up instead of passing unnoticed; any other method is refused
(403) and counted in `routes.write`.

Paths are read from the raw request path: GitLab ids and file paths arrive URL-encoded
(`qa%2Fshop-tests`, `doc%2Fconvention.md`) and must be split before they are decoded.
`GET /stats` and `POST /stats/reset` (no token) are for the tests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from offline.gitlab_mcp.repo import RepoPathError, RepoView, git_blob_id
from offline.gitlab_rest.pages import KEYSET, BadPageRequest, keyset_page, offset_page, per_page_of

API_PREFIX = "/api/v4/"


@dataclass(frozen=True)
class DoubleConfig:
    repo: RepoView
    project_id: str = "42"
    project_path: str = "qa/shop-tests"
    ref: str = "main"
    token: str | None = field(default=None, repr=False)
    web_base: str = "https://gitlab.example.com"

    @property
    def commit_id(self) -> str:
        return hashlib.sha1(
            f"commit {self.project_path}@{self.ref}".encode(), usedforsecurity=False
        ).hexdigest()


class RestStats:
    """What the double was asked: requests by route kind, 404s by route kind, unknown routes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.routes: Counter[str] = Counter()
        self.not_found: Counter[str] = Counter()
        self.unauthorized = 0
        self.unknown: list[str] = []

    def record(self, kind: str, status: int) -> None:
        with self._lock:
            self.routes[kind] += 1
            if status == 404:
                self.not_found[kind] += 1
            if status == 401:
                self.unauthorized += 1

    def unknown_route(self, path: str) -> None:
        with self._lock:
            self.unknown.append(path)

    def reset(self) -> None:
        with self._lock:
            self.routes.clear()
            self.not_found.clear()
            self.unauthorized = 0
            self.unknown.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": sum(self.routes.values()),
                "routes": dict(self.routes),
                "not_found": dict(self.not_found),
                "unauthorized": self.unauthorized,
                "unknown_routes": list(self.unknown[-50:]),
            }


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


class GitLabDouble:
    def __init__(self, config: DoubleConfig, stats: RestStats) -> None:
        self.config = config
        self.stats = stats

    async def handle(self, request: Request) -> Response:
        raw = _raw_path(request)
        parts = raw[len(API_PREFIX) :].split("/")
        kind, response = self._route(request, parts)
        if kind == "unknown":
            self.stats.unknown_route(raw)
        self.stats.record(kind, response.status_code)
        return response

    async def refuse_write(self, request: Request) -> Response:
        """This double is read-only, and counts every attempt to change something (`writes`)."""
        self.stats.record("write", 403)
        return _error(403, "403 Forbidden - the GitLab REST double is read-only")

    def _route(self, request: Request, parts: list[str]) -> tuple[str, Response]:
        if not self._authorized(request):
            return "auth", _error(401, "401 Unauthorized")
        if parts == ["user"]:
            return "user", JSONResponse(
                {"id": 1, "username": "robot-fleet-ci", "name": "CI", "state": "active"}
            )
        if len(parts) < 2 or parts[0] != "projects":
            return "unknown", _error(404, "404 Not Found")
        if unquote(parts[1]) not in (self.config.project_id, self.config.project_path):
            return _kind(parts), _error(404, "404 Project Not Found")
        rest = parts[2:]
        if not rest:
            return "project", JSONResponse(self._project())
        if rest == ["repository", "tree"]:
            return "tree", self._tree(request)
        if len(rest) >= 3 and rest[:2] == ["repository", "files"]:
            raw = len(rest) == 4 and rest[3] == "raw"
            if len(rest) == 3 or raw:
                return "file", self._file(request, unquote(rest[2]), raw=raw)
        return "unknown", _error(404, "404 Not Found")

    def _authorized(self, request: Request) -> bool:
        expected = self.config.token
        if not expected:
            return True
        offered = request.headers.get("private-token", "")
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            offered = offered or bearer.strip()
        return bool(offered) and hmac.compare_digest(offered.encode(), expected.encode())

    def _known_ref(self, ref: str | None) -> bool:
        return ref in (self.config.ref, self.config.commit_id)

    def _tree(self, request: Request) -> Response:
        query = dict(request.query_params)
        ref = query.get("ref") or self.config.ref
        if not self._known_ref(ref):
            return _error(404, "404 Tree Not Found")
        try:
            entries = self.config.repo.tree(query.get("path") or None, query.get("recursive") == "true")
        except (RepoPathError, OSError):
            return _error(404, "404 Tree Not Found")
        base_url = f"{request.url.scheme}://{request.url.netloc}{_raw_path(request)}"
        try:
            per_page = per_page_of(query.get("per_page"))
            if query.get("pagination") == KEYSET:
                page = keyset_page(entries, per_page, query.get("page_token"), base_url, query)
            else:
                page = offset_page(entries, per_page, query.get("page"), base_url, query)
        except BadPageRequest as exc:
            return _error(400, f"400 Bad request - {exc}")
        return JSONResponse([entry.as_json() for entry in page.entries], headers=page.headers)

    def _file(self, request: Request, path: str, *, raw: bool) -> Response:
        ref = request.query_params.get("ref")
        if not ref:
            return JSONResponse({"error": "ref is missing, ref is empty"}, status_code=400)
        if not self._known_ref(ref):
            return _error(404, "404 Commit Not Found")
        try:
            data = self.config.repo.read_blob(path)
        except (RepoPathError, OSError):
            return _error(404, "404 File Not Found")
        if raw:
            return Response(data, media_type="text/plain; charset=utf-8")
        return JSONResponse(
            {
                "file_name": path.rsplit("/", 1)[-1],
                "file_path": path,
                "size": len(data),
                "encoding": "base64",
                "content_sha256": hashlib.sha256(data).hexdigest(),
                "ref": ref,
                "blob_id": git_blob_id(data),
                "commit_id": self.config.commit_id,
                "last_commit_id": self.config.commit_id,
                "execute_filemode": False,
                "content": base64.b64encode(data).decode(),
            }
        )

    def _project(self) -> dict[str, Any]:
        config = self.config
        namespace, _, name = config.project_path.rpartition("/")
        web_url = f"{config.web_base}/{config.project_path}"
        return {
            "id": int(config.project_id) if config.project_id.isdigit() else config.project_id,
            "name": name,
            "path": name,
            "path_with_namespace": config.project_path,
            "name_with_namespace": f"{namespace} / {name}" if namespace else name,
            "description": "Robot Framework test suites (GitLab REST double)",
            "default_branch": config.ref,
            "visibility": "private",
            "archived": False,
            "empty_repo": False,
            "web_url": web_url,
            "http_url_to_repo": f"{web_url}.git",
            "created_at": "2024-01-15T09:00:00.000Z",
            "last_activity_at": "2024-06-01T12:00:00.000Z",
            "namespace": {
                "id": 7,
                "name": namespace,
                "path": namespace,
                "kind": "group",
                "full_path": namespace,
            },
        }


def _raw_path(request: Request) -> str:
    """The path as sent, `%2F` kept (Starlette's `path` has it decoded)."""
    return str(request.scope.get("raw_path", b"").decode("latin-1")).split("?", 1)[0]


def _kind(parts: list[str]) -> str:
    rest = parts[2:]
    if not rest:
        return "project"
    return {"tree": "tree", "files": "file"}.get(rest[1] if len(rest) > 1 else "", "unknown")


def build_app(config: DoubleConfig) -> Starlette:
    stats = RestStats()
    double = GitLabDouble(config, stats)

    async def read_stats(request: Request) -> Response:
        return JSONResponse(stats.snapshot())

    async def reset_stats(request: Request) -> Response:
        stats.reset()
        return JSONResponse(stats.snapshot())

    return Starlette(
        routes=[
            Route("/stats", read_stats, methods=["GET"]),
            Route("/stats/reset", reset_stats, methods=["POST"]),
            Route("/api/v4/{rest:path}", double.handle, methods=["GET"]),
            Route("/api/v4/{rest:path}", double.refuse_write, methods=["POST", "PUT", "PATCH", "DELETE"]),
        ]
    )
