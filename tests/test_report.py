"""`robot-fleet report BATCH` on a real fleet's batch, opened from disk in a real headless Chromium:
the summary, one row per spec, the rejected specs, each suite highlighted, the chart; untrusted text
(a `<script>` in a spec, in a suite, in a rejected file's name) shown as text and never run; the API
key planted in a spec (and so in its suite) masked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from producer.local_redis import LocalRedis
from tests.browser import Chromium, artifacts_dir, chromium_binary
from tests.conftest import EXAMPLES, StandIn
from tests.fleet_harness import Fleet, fault_spec, spec_dir, start_fleet
from worker import keys
from worker.spec import load_spec_file

pytestmark = pytest.mark.integration

SPECS = sorted((EXAMPLES / "specs").glob("*.json"))[5:7]
PLANT = "<script>document.title='pwned'</script>"
PRICES = {"PRICE_PROMPT_PER_MTOK": "2", "PRICE_COMPLETION_PER_MTOK": "6", "PRICE_CACHED_PER_MTOK": "0.5"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    chromium_binary()  # skips, saying why, before any fleet is started
    with Chromium(width=1400, height=900) as chromium:
        yield chromium


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, redis_server: LocalRedis, mcp_server: StandIn, fake_llm: StandIn
) -> Iterator[Fleet]:
    yield from start_fleet(
        tmp_path_factory, redis_server, mcp_server, fake_llm, db=11, pool="threads", concurrency=4
    )


def untrusted_specs(api_key: str) -> dict[str, dict]:
    evil = fault_spec("EVIL-1")
    evil["title"] = f"Login {PLANT} works"  # the scripted writer puts the title in the suite
    leaky = fault_spec("LEAK-1")
    leaky["title"] = f"Login with the key {api_key}"
    return {"EVIL-1.json": evil, "LEAK-1.json": leaky, "P-1.json": fault_spec("P-1", fail_first=9, fail_status=400),
            "bad<script>x.json": {"id": "x/<img src=x onerror=alert(1)>"}}  # fmt: skip


def expected_cost(jobs: list[dict[str, str]]) -> float:
    def total(field: str) -> int:
        return sum(int(job.get(field) or 0) for job in jobs)

    prompt = total("prompt_tokens") + total("review_prompt_tokens")
    completion = total("completion_tokens") + total("review_completion_tokens")
    return ((prompt - total("cached_tokens")) * 2 + total("cached_tokens") * 0.5 + completion * 6) / 1e6


def test_report_page_reviews_a_batch_with_untrusted_text_escaped(
    browser: Chromium, fleet: Fleet, tmp_path: Path
) -> None:
    api_key = fleet.env["OPENAI_API_KEY"]
    directory = spec_dir(tmp_path, SPECS, untrusted_specs(api_key))
    run = fleet.cli("run", str(directory), "--batch", "t-report", "--output-dir", str(tmp_path / "out"))
    assert run.returncode == 1, run.stdout  # a failed job, a failing suite and a rejected spec
    batch_id = fleet.batch_of(run.stdout)
    jobs = {job["spec_id"]: job for job in fleet.jobs(batch_id)}
    assert api_key in fleet.redis.get(keys.job_result(jobs["LEAK-1"]["job_id"])), "the plant reached a suite"

    fleet.env.update(PRICES)
    made = fleet.cli("report", batch_id, cwd=tmp_path)
    assert made.returncode == 0, made.stdout + made.stderr
    page_file = tmp_path / f"report-{batch_id}.html"
    assert page_file.is_file(), made.stdout
    assert api_key not in page_file.read_text(encoding="utf-8")
    assert fleet.cli("report", "no-such-batch", "-o", str(tmp_path / "x.html")).returncode == 2

    page = browser.new_page()
    page.goto(page_file.as_uri())
    dom = page.evaluate("""(() => ({
        title: document.title,
        scripts: document.scripts.length,
        handlers: [...document.querySelectorAll('*')].filter(el => [...el.attributes].some(a => a.name.startsWith('on'))).length,
        images: document.images.length,
        rows: Object.fromEntries([...document.querySelectorAll('#jobs tbody tr')].map(tr => [tr.dataset.spec, tr.dataset.verdict])),
        evilRow: document.querySelector('#jobs tr[data-spec="EVIL-1"]').innerText,
        evilSuite: document.querySelector('#suite-EVIL-1 .highlight').innerText,
        highlighted: document.querySelectorAll('#suite-EVIL-1 .highlight span.gh, #suite-EVIL-1 .highlight span.nf').length,
        suites: document.querySelectorAll('section.suite').length,
        rejected: [...document.querySelectorAll('#rejected tbody tr')].map(tr => tr.innerText),
        summary: document.querySelector('#summary').innerText,
        bars: document.querySelectorAll('#time-chart rect').length,
        failedRow: document.querySelector('#jobs tr[data-spec="P-1"]').innerText,
        html: document.documentElement.outerHTML,
    }))()""")  # fmt: skip
    assert dom["title"] == f"robot-fleet report · {batch_id}", "no planted script ran"
    assert (dom["scripts"], dom["handlers"], dom["images"]) == (0, 0, 0)
    spec_ids = [load_spec_file(path, max_bytes=1 << 20).spec_id for path in SPECS]
    assert set(dom["rows"]) == {*spec_ids, "EVIL-1", "LEAK-1", "P-1"}
    assert [dom["rows"][spec_id] for spec_id in spec_ids] == ["verified", "verified"]
    assert (dom["rows"]["EVIL-1"], dom["rows"]["P-1"]) == ("failing", "failed")
    # shown as text (Robot's escaping turns the `=` into `\=` in the suite)
    assert "<script>document.title" in dom["evilSuite"] and "</script>" in dom["evilSuite"]
    assert "<script>" in dom["evilRow"]
    assert dom["highlighted"] >= 3, "sections and keywords highlighted by pygments"
    assert dom["suites"] == 4, "every job that produced a suite"
    assert "model_rejected" in dom["failedRow"]
    assert any("bad<script>x.json" in row and "spec id" in row for row in dom["rejected"]), dom["rejected"]
    assert len(dom["rejected"]) == 1
    cost = expected_cost(list(jobs.values()))
    assert f"{cost:,.4f}" in dom["summary"] and "cost" in dom["summary"], dom["summary"]
    assert dom["summary"].startswith("3\nverified\n1\nfailing\n1\nfailed\n1\nrejected\n"), dom["summary"]
    assert dom["bars"] == 5
    assert api_key not in dom["html"] and "Login with the key ***" in dom["html"]
    shot = page.screenshot(artifacts_dir() / "report.png")
    print(f"\nreport screenshot: {shot}\nreport page: {page_file}")
