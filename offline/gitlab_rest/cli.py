"""`robot-fleet gitlab-rest-double`: serve a checkout as one GitLab project over REST v4 (uvicorn).

`--generate-dir testdata/bulk=130` adds 130 generated text files in that directory: the double then
serves a private copy of `--repo` (deleted on exit), never the checkout itself.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Annotated

import typer

from offline.gitlab_mcp.repo import RepoView
from offline.gitlab_rest.api import DoubleConfig, build_app

DEFAULT_PORT = 9003
TOKEN_ENV = "GITLAB_DOUBLE_TOKEN"
LOG_LEVELS = ("debug", "info", "warning", "error")

logger = logging.getLogger(__name__)


def parse_generated(specs: list[str]) -> dict[str, int]:
    """`DIR=N` options as {directory: file count}; a bad one is a one-line usage error."""
    wanted: dict[str, int] = {}
    for spec in specs:
        directory, _, count = spec.partition("=")
        rel = PurePosixPath(directory.strip())
        if not count.isdigit() or not directory.strip() or rel.is_absolute() or ".." in rel.parts:
            raise typer.BadParameter(f"{spec!r}: expected DIR=N, DIR relative", param_hint="--generate-dir")
        wanted[str(rel)] = int(count)
    return wanted


@contextmanager
def served_copy(repo: Path, generated: dict[str, int]) -> Iterator[Path]:
    """`repo` itself, or a temporary copy of it with the generated files added."""
    if not generated:
        yield repo
        return
    with tempfile.TemporaryDirectory(prefix="gitlab-rest-double-") as scratch:
        root = Path(scratch) / "repo"
        shutil.copytree(repo, root, ignore=shutil.ignore_patterns(".git"))
        for directory, count in generated.items():
            target = root / directory
            target.mkdir(parents=True, exist_ok=True)
            for number in range(count):
                # distinct contents: distinct blob ids, as keyset page tokens need
                (target / f"item_{number:04d}.txt").write_text(f"{directory} item {number}\n")
        yield root


def serve(
    repo: Annotated[
        Path, typer.Option("--repo", exists=True, file_okay=False, help="Checkout served as the project.")
    ],
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = DEFAULT_PORT,
    project_id: Annotated[str, typer.Option("--project-id", help="Numeric project id.")] = "42",
    project_path: Annotated[str, typer.Option("--project-path", help="group/name path.")] = "qa/shop-tests",
    ref: Annotated[str, typer.Option("--ref", help="The one branch (the default branch).")] = "main",
    token: Annotated[
        str | None,
        typer.Option("--token", envvar=TOKEN_ENV, show_default=False, help="Require this GitLab token."),
    ] = None,
    generate_dir: Annotated[
        list[str] | None, typer.Option("--generate-dir", help="DIR=N: add N generated files in DIR.")
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level")] = "warning",
) -> None:
    """Serve a local checkout as a GitLab REST v4 API (the read routes of zereight/gitlab-mcp)."""
    import uvicorn  # here so `robot-fleet --help` stays fast

    level = log_level.lower()
    if level not in LOG_LEVELS:
        raise typer.BadParameter(f"expected one of {', '.join(LOG_LEVELS)}", param_hint="--log-level")
    generated = parse_generated(generate_dir or [])
    with served_copy(repo, generated) as root:
        config = DoubleConfig(RepoView(root), project_id, project_path, ref, token or None)
        logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logger.info(
            "GitLab REST double for %s (%s) at http://%s:%d/api/v4", project_path, project_id, host, port
        )
        uvicorn.run(build_app(config), host=host, port=port, log_level=level, timeout_graceful_shutdown=2)
