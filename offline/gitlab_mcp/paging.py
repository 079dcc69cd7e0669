"""Pages of `get_repository_tree`, in the normal mode and in the GitLab-quirks mode.

Entries come sorted by path (see `repo`); a page token is opaque to clients (URL-safe base64 of
the last path of the page) and a page resumes strictly after that path, keyset style. A
`page_token` may also be an entry's `id` (GitLab documents its keyset token as the tree record id
of the last entry of the previous page): the page then resumes after the first entry with that id,
in both modes, which is how a client reads on past a page whose token the real server dropped.

Normal mode (default) — honest paging, so a client that follows tokens sees every entry once:
- without `pagination: "keyset"`, a page with nothing after it (e.g. a listing that fits in
  `per_page`) is a plain JSON list; when more pages remain the answer is
  `{"items": [...], "next_page_token": "<token>"}`;
- with `pagination: "keyset"` the answer is always `{"items": [...], "next_page_token": ...}`,
  the token `null` on the last page;
- a `page_token` continues the listing in both cases.

Quirks mode (`--gitlab-quirks`) — the traps of the real zereight/gitlab-mcp over GitLab:
- without `pagination: "keyset"` the list is silently cut at `per_page` entries: a plain list, no
  token, and any `page_token` is ignored (always the first page);
- with `pagination: "keyset"` and `per_page` 100, `next_page_token` is always `null` (GitLab sends
  the next page only in a `Link` header the server drops), so a listing stops at 100 entries;
  with a smaller `per_page` tokens come back as in normal mode.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

from offline.gitlab_mcp.repo import TreeEntry

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100
KEYSET = "keyset"


class PageTokenError(ValueError):
    """A page token this server did not issue."""


def encode_token(path: str) -> str:
    return base64.urlsafe_b64encode(path.encode()).decode().rstrip("=")


def decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise PageTokenError(f"invalid page_token: {token!r}") from exc


def _page(
    entries: Sequence[TreeEntry], per_page: int, page_token: str | None
) -> tuple[list[TreeEntry], bool]:
    """One page after the token's path, and whether entries remain after it."""
    start = 0
    if page_token:
        by_id = next((i + 1 for i, entry in enumerate(entries) if entry.id == page_token), None)
        if by_id is not None:
            start = by_id
        else:
            after = decode_token(page_token)
            start = next((i for i, entry in enumerate(entries) if entry.path > after), len(entries))
    page = list(entries[start : start + per_page])
    return page, start + per_page < len(entries)


def paginate(
    entries: Sequence[TreeEntry],
    *,
    per_page: int,
    page_token: str | None,
    pagination: str | None,
    quirks: bool,
) -> list[dict[str, str]] | dict[str, Any]:
    """The JSON value `get_repository_tree` answers with (see the module docstring)."""
    keyset = pagination == KEYSET
    if quirks and not keyset:
        return [entry.as_json() for entry in entries[:per_page]]
    page, more = _page(entries, per_page, page_token)
    items = [entry.as_json() for entry in page]
    if not keyset and not more:
        return items
    token = encode_token(page[-1].path) if more and page else None
    if quirks and per_page >= MAX_PER_PAGE:
        token = None
    return {"items": items, "next_page_token": token}
