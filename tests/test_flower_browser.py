"""Flower's tasks page in a real headless Chromium, on a real fleet: each task is named by its spec
id and batch, a running job shows its state and the round it reached, and nothing secret shows."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from producer.local_redis import LocalRedis, free_port
from producer.procs import Child, robot_fleet_command, start_child
from tests.browser import Chromium, Page, artifacts_dir, basic_auth, chromium_binary
from tests.conftest import EXAMPLES, StandIn
from tests.fleet_harness import Fleet, fault_spec, spec_dir, start_fleet
from worker.adapters.celery_config import FLOWER_TASK_COLUMNS
from worker.spec import load_spec_file

pytestmark = pytest.mark.integration

AUTH = ("qa", "flower-browser-pw")
SPECS = sorted((EXAMPLES / "specs").glob("*.json"))[:2]
ROWS_JS = """[...document.querySelectorAll('#tasks-table tbody tr[id]')].map(
    tr => [...tr.cells].map(td => td.innerText.trim()))"""
COLUMNS_JS = "[...document.querySelectorAll('#tasks-table thead th')].map(th => th.dataset.column)"


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    chromium_binary()  # skips, saying why, before any fleet is started
    with Chromium(width=1500, height=800) as chromium:
        yield chromium


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, redis_server: LocalRedis, mcp_server: StandIn, fake_llm: StandIn
) -> Iterator[Fleet]:
    yield from start_fleet(
        tmp_path_factory, redis_server, mcp_server, fake_llm, db=4, pool="threads", concurrency=4
    )


def start_flower(fleet: Fleet) -> tuple[Child, str]:
    port = free_port()
    flower = start_child("flower", robot_fleet_command("flower", "--port", str(port)), fleet.log_dir,
                         env={**fleet.env, "FLOWER_BASIC_AUTH": ":".join(AUTH)},
                         ready_port=("127.0.0.1", port))  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    # task names and args come with task-received: Flower must be listening before the batch
    while not httpx.get(f"{base}/api/workers", auth=AUTH, timeout=5).json():
        assert time.monotonic() < deadline, "Flower never saw the worker"
        time.sleep(0.3)
    return flower, base


def table_rows(page: Page, url: str) -> list[list[str]]:
    """The tasks page's rows as text, once DataTables has drawn them (it loads them by XHR)."""
    page.goto(url)
    page.wait_for("document.querySelector('#tasks-table tbody tr[id]')", what="the tasks table's rows")
    return page.evaluate(ROWS_JS)


def rows_by_name(rows: list[list[str]], batch_id: str) -> dict[str, dict[str, str]]:
    by_name = {}
    for row in rows:
        cells = dict(zip(FLOWER_TASK_COLUMNS, row, strict=True))
        if cells["name"].endswith(f" @ {batch_id}"):
            by_name[cells["name"].removesuffix(f" @ {batch_id}")] = cells
    return by_name


def test_flower_tasks_page_shows_each_job_by_spec_id_and_batch_with_its_progress(
    browser: Chromium, fleet: Fleet, tmp_path: Path
) -> None:
    flower, base = start_flower(fleet)
    try:
        directory = spec_dir(tmp_path, SPECS, {"SLOW-1.json": fault_spec("SLOW-1", chunk_latency=0.06),
                                               "P-9.json": fault_spec("P-9", fail_first=9, fail_status=400)})  # fmt: skip
        done = fleet.cli(
            "enqueue", str(directory), "--batch", "t-flower-ui", "--output-dir", str(tmp_path / "o")
        )
        assert done.returncode == 0, done.stdout + done.stderr
        batch_id = done.stdout.strip().splitlines()[-1]
        page = browser.new_page(headers=basic_auth(*AUTH))
        url = f"{base}/tasks"

        # while SLOW-1 runs: its state and the round it reached, on the page
        deadline = time.monotonic() + 60
        while True:
            slow = rows_by_name(table_rows(page, url), batch_id).get("SLOW-1", {})
            if slow.get("state") == "PROGRESS" and slow["result"].startswith("round "):
                break
            assert time.monotonic() < deadline and slow.get("state") != "SUCCESS", slow
            time.sleep(0.5)
        assert page.evaluate(COLUMNS_JS) == list(FLOWER_TASK_COLUMNS)
        running = rows_by_name(table_rows(page, f"{url}?state=PROGRESS"), batch_id)  # the README's search
        assert "SLOW-1" in running and {row["state"] for row in running.values()} == {"PROGRESS"}, running
        page.screenshot(artifacts_dir() / "flower-tasks-running.png")
        running_rows = [" | ".join(row.values()) for row in running.values()]
        page.evaluate("localStorage.clear()")  # DataTables saved that search: the next loads show all

        fleet.wait_states(batch_id, {"succeeded", "failed"}, timeout=90)
        deadline = time.monotonic() + 20
        while True:
            rows = table_rows(page, url)
            shown = rows_by_name(rows, batch_id)
            if len(shown) == 4 and {row["state"] for row in shown.values()} <= {"SUCCESS", "FAILURE"}:
                break
            assert time.monotonic() < deadline, shown
            time.sleep(0.5)
        spec_ids = [load_spec_file(path, max_bytes=1 << 20).spec_id for path in SPECS]
        assert {spec_id: shown[spec_id]["state"] for spec_id in [*spec_ids, "SLOW-1", "P-9"]} == {
            **dict.fromkeys([*spec_ids, "SLOW-1"], "SUCCESS"), "P-9": "FAILURE"}  # fmt: skip
        assert all(row["worker"] and row["received"] for row in shown.values())
        assert shown["SLOW-1"]["result"].startswith("{"), "the return value replaced the progress line"

        html = page.evaluate("document.documentElement.outerHTML")
        assert fleet.env["OPENAI_API_KEY"] not in html
        shot = page.screenshot(artifacts_dir() / "flower-tasks.png")
        first_rows = "\n".join(" | ".join(row) for row in [list(FLOWER_TASK_COLUMNS), *rows[:5]])
        text = f"while running (state:PROGRESS):\n{chr(10).join(running_rows)}\n\nat the end:\n{first_rows}\n"
        (artifacts_dir() / "flower-tasks.txt").write_text(text, encoding="utf-8")
        print(f"\nFlower tasks page: {shot}\n{text}")
    finally:
        flower.stop()
