"""`--discover-tools`: the real server's tool discovery, which changes the tool list at run time.

zereight/gitlab-mcp lists its default toolsets only (no `search_project_code`) plus a
`discover_tools` tool; activating a category adds its tools to the list and sends
`notifications/tools/list_changed`. Here the one category is `search`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR
from pydantic import Field

SEARCH_CATEGORY = "search"
SEARCH_TOOLS = ("search_project_code",)


class ToolDiscovery:
    """The real server's `discover_tools`: a category's tools are listed once it is activated, and
    the client is told with `notifications/tools/list_changed` (the stand-in's list is one for all
    sessions; the real server keeps one per session)."""

    def __init__(self, server: MCPServer, hidden: dict[str, tuple[Callable[..., Any], str]]) -> None:
        self.server = server
        self.hidden = hidden

    async def discover_tools(
        self,
        ctx: Context,
        category: Annotated[str | None, Field(description="Toolset category to activate")] = None,
    ) -> str:
        active = not self.hidden
        if not category:
            return json.dumps({"categories": [{"id": SEARCH_CATEGORY, "active": active}]})
        if category.strip().lower() != SEARCH_CATEGORY:
            raise MCPError(INTERNAL_ERROR, f'Unknown category "{category}". Available: {SEARCH_CATEGORY}')
        if active:
            return f'Category "{SEARCH_CATEGORY}" is already active.'
        added = list(self.hidden)
        for name, (body, description) in self.hidden.items():
            self.server.add_tool(body, name=name, description=description, structured_output=False)
        self.hidden = {}
        with contextlib.suppress(Exception):  # a client without a GET stream cannot be told
            await ctx.request_context.session.send_tool_list_changed()
        return json.dumps({"activated": SEARCH_CATEGORY, "addedTools": added})
