"""Pages of `GET /projects/:id/repository/tree`, as GitLab cuts them.

- Offset pagination (the default): `page` (from 1) and `per_page` (default 20, at most 100); the
  answer carries `X-Page`, `X-Per-Page`, `X-Next-Page`, `X-Prev-Page`, `X-Total`, `X-Total-Pages`
  and a `Link` header.
- Keyset pagination (`pagination=keyset`): `page_token` is the tree record id (`id`) of the last
  entry of the previous page, as GitLab documents it; the page resumes after the first entry with
  that id. The next page is announced only in a `Link` header (`rel="next"`), never in an
  `X-Next-Page*` header: zereight/gitlab-mcp reads only those, so its `next_page_token` never comes
  back. An unknown token is answered 400.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlencode

from offline.gitlab_mcp.repo import TreeEntry

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100
KEYSET = "keyset"


class BadPageRequest(ValueError):
    """A page parameter GitLab would refuse."""


@dataclass
class Page:
    entries: list[TreeEntry]
    headers: dict[str, str] = field(default_factory=dict)


def per_page_of(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_PER_PAGE
    try:
        value = int(raw)
    except ValueError as exc:
        raise BadPageRequest("per_page is invalid") from exc
    return min(max(value, 1), MAX_PER_PAGE)


def _link(base_url: str, query: dict[str, str], rel: str) -> str:
    return f'<{base_url}?{urlencode(query)}>; rel="{rel}"'


def keyset_page(
    entries: Sequence[TreeEntry], per_page: int, token: str | None, base_url: str, query: dict[str, str]
) -> Page:
    start = 0
    if token:
        start = next((i + 1 for i, entry in enumerate(entries) if entry.id == token), -1)
        if start < 0:
            raise BadPageRequest("page_token is invalid")
    chunk = list(entries[start : start + per_page])
    page = Page(chunk)
    if start + per_page < len(entries) and chunk:
        page.headers["Link"] = _link(base_url, {**query, "page_token": chunk[-1].id}, "next")
    return page


def offset_page(
    entries: Sequence[TreeEntry], per_page: int, raw_page: str | None, base_url: str, query: dict[str, str]
) -> Page:
    try:
        number = max(1, int(raw_page)) if raw_page else 1
    except ValueError as exc:
        raise BadPageRequest("page is invalid") from exc
    total_pages = max(1, math.ceil(len(entries) / per_page))
    chunk = list(entries[(number - 1) * per_page : number * per_page])
    has_next = number < total_pages
    links = [_link(base_url, {**query, "page": str(number + 1)}, "next")] if has_next else []
    if number > 1:
        links.append(_link(base_url, {**query, "page": str(number - 1)}, "prev"))
    links.append(_link(base_url, {**query, "page": "1"}, "first"))
    links.append(_link(base_url, {**query, "page": str(total_pages)}, "last"))
    headers = {
        "X-Page": str(number),
        "X-Per-Page": str(per_page),
        "X-Next-Page": str(number + 1) if has_next else "",
        "X-Prev-Page": str(number - 1) if number > 1 else "",
        "X-Total": str(len(entries)),
        "X-Total-Pages": str(total_pages),
        "Link": ", ".join(links),
    }
    return Page(chunk, headers)
