"""A read-only GitLab-compatible MCP server over a local directory (stands in for zereight/gitlab-mcp).

Modules: `config` (settings), `repo` (confined file access, tree, search), `paging` (tree pages,
normal and quirks modes), `tools` (the MCP tools), `stats` (counters), `app` (ASGI app, auth and
rate limit, `/stats`), `cli` (`robot-fleet mcp-serve`).
"""
