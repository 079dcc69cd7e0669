"""A GitLab REST v4 double: the few read routes zereight/gitlab-mcp's read tools call, over a local
directory, answering as GitLab does (JSON shapes, 404 texts, keyset pages with a `Link` header only).

It lets the CI tier run the real npm MCP server against something that behaves like GitLab without
a GitLab. Modules: `api` (the ASGI app and its routes), `pages` (tree pagination, offset and keyset),
`cli` (`robot-fleet gitlab-rest-double`, which can add generated directories to the served copy).
"""
