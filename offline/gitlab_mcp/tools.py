"""The MCP tools, named and shaped like zereight/gitlab-mcp's, over a `RepoView`.

Read tools answer with one text content holding JSON, as the real server does. Failures are
JSON-RPC errors (code -32603), never `is_error` results, again as the real server does:
- `File not found: <path>` — missing file, a directory, or a path refused by confinement;
- `GitLab API error: 404 Project Not Found` — a project other than the configured id or plain
  path (an already URL-encoded path such as `qa%2Fshop-tests` included), counted in
  `foreign_project_calls`;
- `GitLab API error: 404 Commit Not Found` — a ref other than the configured one;
- `GitLab API error: 404 Tree Not Found` — a tree path that is not a directory (or is refused);
- `403 Forbidden: this server is read-only` — every write tool, every time.
With `--real-errors` the texts are the real server's instead, which do not say what is missing
(`texts`): `File not found: <path>` for a file read at a wrong project or ref too, `Repository or
path not found` for every failed tree listing.
With `--discover-tools`, as the real server by default, `search_project_code` is not listed until
`discover_tools` activates its category (`search`); the server then sends
`notifications/tools/list_changed` (delivered on a session's GET stream: needs `--sessions`).
A read without `ref` resolves the default branch first, counted in `default_branch_lookups` (the
real server spends one more GitLab call there). Tool-call counting and `--tool-latency` live in
a server middleware (`count_and_delay`), so calls rejected by argument validation count too.
"""

import base64
import hashlib
import json
import posixpath
from collections.abc import Callable
from typing import Annotated, Any

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR
from pydantic import BaseModel, BeforeValidator, Field

from offline.gitlab_mcp.config import ServerConfig
from offline.gitlab_mcp.discovery import SEARCH_TOOLS, ToolDiscovery
from offline.gitlab_mcp.paging import DEFAULT_PER_PAGE, MAX_PER_PAGE, PageTokenError, paginate
from offline.gitlab_mcp.repo import RepoPathError, RepoView, decode_text, git_blob_id
from offline.gitlab_mcp.stats import Stats
from offline.gitlab_mcp.texts import ErrorTexts

WRITE_TOOLS = frozenset({"create_or_update_file", "push_files", "create_merge_request", "create_branch"})


def _id_as_text(value: object) -> object:
    # the real server coerces numeric ids (zod `coerce.string()`); models often send 42, not "42"
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


ProjectId = Annotated[str, BeforeValidator(_id_as_text), Field(description="Project ID or URL-encoded path")]
OptionalProjectId = Annotated[
    str | None, BeforeValidator(_id_as_text), Field(description="Project ID or URL-encoded path")
]
Ref = Annotated[str | None, Field(description="Branch, tag or commit (default: the default branch)")]
PerPage = Annotated[int, Field(ge=1, le=MAX_PER_PAGE, description="Results per page (max 100)")]
Branch = Annotated[str, Field(description="Name of the branch")]
CommitMessage = Annotated[str, Field(description="Commit message")]


class PushFileAction(BaseModel):
    """One file of a `push_files` commit."""

    file_path: str = Field(description="Path where to create the file")
    content: str = Field(description="Content of the file")


def fail(message: str) -> MCPError:
    """A JSON-RPC error as the real server sends it (code -32603, the message verbatim)."""
    return MCPError(INTERNAL_ERROR, message)


def project_json(config: ServerConfig) -> dict[str, Any]:
    """The configured project, shaped like GitLab's `GET /projects/:id`."""
    namespace, _, name = config.project_path.rpartition("/")
    web_url = f"{config.web_base}/{config.project_path}"
    return {
        "id": config.numeric_project_id,
        "name": name,
        "name_with_namespace": f"{namespace.replace('/', ' / ')} / {name}" if namespace else name,
        "path": name,
        "path_with_namespace": config.project_path,
        "description": "Robot Framework test suites (offline stand-in served from a local checkout)",
        "default_branch": config.ref,
        "visibility": "private",
        "archived": False,
        "empty_repo": False,
        "web_url": web_url,
        "http_url_to_repo": f"{web_url}.git",
        "ssh_url_to_repo": f"git@{config.web_base.split('://', 1)[-1]}:{config.project_path}.git",
        "readme_url": f"{web_url}/-/blob/{config.ref}/README.md",
        "created_at": "2024-01-15T09:00:00.000Z",
        "last_activity_at": "2024-06-01T12:00:00.000Z",
        "namespace": {"id": 7, "name": namespace, "path": namespace, "kind": "group", "full_path": namespace},
        "topics": [],
        "star_count": 0,
        "forks_count": 0,
    }


class GitLabTools:
    """The tool bodies; `register` adds them to an `MCPServer`."""

    def __init__(self, config: ServerConfig, repo: RepoView, stats: Stats) -> None:
        self.config = config
        self.repo = repo
        self.stats = stats
        self.texts = ErrorTexts(real=config.real_errors)
        self.commit_id = hashlib.sha1(
            f"commit {config.project_path}@{config.ref}".encode(), usedforsecurity=False
        ).hexdigest()

    def _known_project(self, project_id: str | None) -> bool:
        if project_id is None or project_id in (self.config.project_id, self.config.project_path):
            return True
        self.stats.add("foreign_project_calls")
        return False

    def _resolve_ref(self, ref: str | None) -> str | None:
        """The ref to read (the default branch when none is given), or None when it does not exist."""
        if ref is None or ref == "":
            self.stats.add("default_branch_lookups")
            return self.config.ref
        return ref if ref == self.config.ref else None

    async def get_file_contents(
        self,
        project_id: OptionalProjectId = None,
        file_path: Annotated[str | None, Field(description="Path to the file or directory")] = None,
        path: Annotated[str | None, Field(description="Alias of file_path")] = None,
        ref: Ref = None,
    ) -> str:
        wanted = file_path if file_path is not None else path
        if not self._known_project(project_id):
            # without a ref the real server looks the project's default branch up first
            raise fail(self.texts.project() if not ref else self.texts.file(wanted or "", "project"))
        if not wanted:
            raise fail("file_path is required")
        ref = self._resolve_ref(ref)
        if ref is None:
            raise fail(self.texts.file(wanted, "ref"))
        try:
            data = await anyio.to_thread.run_sync(self.repo.read_blob, wanted)
        except (RepoPathError, OSError) as exc:
            raise fail(self.texts.file(wanted, "file")) from exc
        text = decode_text(data)
        content, encoding = (
            (text, "utf8") if text is not None else (base64.b64encode(data).decode(), "base64")
        )
        return json.dumps(
            {
                "file_name": posixpath.basename(wanted.rstrip("/")),
                "file_path": wanted,
                "size": len(data),
                "encoding": encoding,
                "content": content,
                "content_sha256": hashlib.sha256(data).hexdigest(),
                "ref": ref,
                "blob_id": git_blob_id(data),
                "commit_id": self.commit_id,
                "last_commit_id": self.commit_id,
                "execute_filemode": False,
            }
        )

    async def get_repository_tree(
        self,
        project_id: ProjectId,
        path: Annotated[str | None, Field(description="The path inside the repository")] = None,
        ref: Ref = None,
        recursive: Annotated[bool, Field(description="Get a recursive tree")] = False,
        per_page: PerPage = DEFAULT_PER_PAGE,
        page_token: Annotated[str | None, Field(description="Token of the next page (keyset)")] = None,
        pagination: Annotated[str | None, Field(description='Use "keyset" for keyset pagination')] = None,
    ) -> str:
        if not self._known_project(project_id):
            raise fail(self.texts.tree("project"))
        if self._resolve_ref(ref) is None:
            raise fail(self.texts.tree("ref"))
        try:
            entries = await anyio.to_thread.run_sync(self.repo.tree, path, recursive)
        except (RepoPathError, OSError) as exc:
            raise fail(self.texts.tree("path")) from exc
        try:
            answer = paginate(
                entries,
                per_page=per_page,
                page_token=page_token,
                pagination=pagination,
                quirks=self.config.gitlab_quirks,
            )
        except PageTokenError as exc:
            raise fail(f"GitLab API error: 400 Bad Request: {exc}") from exc
        return json.dumps(answer)

    async def get_project(self, project_id: ProjectId) -> str:
        if not self._known_project(project_id):
            raise fail(self.texts.project())
        return json.dumps(project_json(self.config))

    async def search_repositories(
        self,
        search: Annotated[str, Field(description="Search query")],
        page: Annotated[int, Field(ge=1, description="Page number for pagination")] = 1,
        per_page: PerPage = DEFAULT_PER_PAGE,
    ) -> str:
        project = project_json(self.config)
        haystack = f"{project['name']} {project['path_with_namespace']}".lower()
        found = page == 1 and search.strip().lower() in haystack
        return json.dumps([project] if found else [])

    async def search_project_code(
        self,
        project_id: ProjectId,
        search: Annotated[str, Field(description="Text to search for (case-insensitive)")],
        path: Annotated[str | None, Field(description="Limit the search to this file or directory")] = None,
        ref: Ref = None,
        per_page: PerPage = DEFAULT_PER_PAGE,
    ) -> str:
        if not self._known_project(project_id):
            raise fail(self.texts.project())
        ref = self._resolve_ref(ref)
        if ref is None:
            raise fail(self.texts.file(path or "", "ref"))
        matches = await anyio.to_thread.run_sync(self.repo.search, search, path, per_page)
        return json.dumps(
            [
                {
                    "path": match.path,
                    "filename": match.path,
                    "basename": posixpath.basename(match.path),
                    "startline": match.startline,
                    "data": match.data,
                    "ref": ref,
                    "project_id": self.config.numeric_project_id,
                }
                for match in matches
            ]
        )

    async def create_or_update_file(
        self,
        project_id: ProjectId,
        file_path: Annotated[str, Field(description="Path where to create/update the file")],
        content: Annotated[str, Field(description="Content of the file")],
        commit_message: CommitMessage,
        branch: Branch,
        previous_path: Annotated[str | None, Field(description="Path of the file to move/rename")] = None,
        last_commit_id: Annotated[str | None, Field(description="Last known file commit ID")] = None,
        commit_id: Annotated[str | None, Field(description="Current file commit ID (for updates)")] = None,
    ) -> str:
        raise fail(self.texts.write("create_or_update_file"))

    async def push_files(
        self,
        project_id: ProjectId,
        branch: Branch,
        files: Annotated[list[PushFileAction], Field(description="Array of files to push")],
        commit_message: CommitMessage,
    ) -> str:
        raise fail(self.texts.write("push_files"))

    async def create_merge_request(
        self,
        project_id: ProjectId,
        title: Annotated[str, Field(description="Merge request title")],
        source_branch: Annotated[str, Field(description="Branch containing changes")],
        target_branch: Annotated[str, Field(description="Branch to merge into")],
        description: Annotated[str | None, Field(description="Merge request description")] = None,
        draft: Annotated[bool | None, Field(description="Create as draft merge request")] = None,
        remove_source_branch: Annotated[bool | None, Field(description="Delete the branch on merge")] = None,
        squash: Annotated[bool | None, Field(description="Squash commits on merge")] = None,
    ) -> str:
        raise fail(self.texts.write("create_merge_request"))

    async def create_branch(
        self,
        project_id: ProjectId,
        branch: Annotated[str, Field(description="Name for the new branch")],
        ref: Annotated[str | None, Field(description="Source branch for the new branch")] = None,
    ) -> str:
        raise fail(self.texts.write("create_branch"))

    def catalogue(self) -> dict[str, tuple[Callable[..., Any], str]]:
        """Tool name -> (body, description), in the order they are listed."""
        return {
            "get_file_contents": (self.get_file_contents, "Get the contents of a file from a GitLab project"),
            "get_repository_tree": (
                self.get_repository_tree,
                "Get the repository tree for a GitLab project (list files and directories)",
            ),
            "get_project": (self.get_project, "Get details of a specific project"),
            "search_repositories": (self.search_repositories, "Search for GitLab projects"),
            "search_project_code": (self.search_project_code, "Search for code within a GitLab project"),
            "create_or_update_file": (
                self.create_or_update_file,
                "Create or update a single file in a project",
            ),
            "push_files": (self.push_files, "Push multiple files to a GitLab project in a single commit"),
            "create_merge_request": (self.create_merge_request, "Create a new merge request in a project"),
            "create_branch": (self.create_branch, "Create a new branch in a GitLab project"),
        }


def count_and_delay(stats: Stats, latency: float) -> Callable[..., Any]:
    """Server middleware: count every `tools/call` (before argument validation) and sleep."""

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "tools/call":
            name = str((ctx.params or {}).get("name", ""))
            stats.tool_call(name)
            if name in WRITE_TOOLS:
                stats.add("write_attempts")
            if latency > 0:
                await anyio.sleep(latency)
        return await call_next(ctx)

    return middleware


def build_server(config: ServerConfig, repo: RepoView, stats: Stats) -> MCPServer:
    """An `MCPServer` listing the GitLab tools over `repo`."""
    server: MCPServer = MCPServer(
        "gitlab-mcp-offline",
        version="2.1.0-offline",
        instructions="Read-only GitLab MCP stand-in over a local checkout.",
        log_level=config.log_level,
        middleware=[count_and_delay(stats, config.tool_latency)],
    )
    catalogue = GitLabTools(config, repo, stats).catalogue()
    hidden = {name: catalogue.pop(name) for name in SEARCH_TOOLS} if config.discover_tools else {}
    for name, (body, description) in catalogue.items():
        server.add_tool(body, name=name, description=description, structured_output=False)
    if config.discover_tools:
        discovery = ToolDiscovery(server, hidden)
        server.add_tool(
            discovery.discover_tools,
            name="discover_tools",
            description="Discover and activate additional tool categories for this session.",
            structured_output=False,
        )
    return server
